"""From decoded predictions to final detections: score threshold and class-aware NMS.

The one NMS path of the project: the predictor, the evaluator, the demo and the
benchmarks go through :func:`postprocess`; the ONNX export's in-graph NMS
(:class:`yolo_asff.engine.export.DetectorWithNms`) applies the same rules in a traceable
form and is tested against it.
"""
from __future__ import annotations

from typing import List, NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ..config import TestConfig

__all__ = ["Detections", "postprocess"]


class Detections(NamedTuple):
    """Detections of one image: ``boxes`` ``(N, 4)`` x1, y1, x2, y2; ``scores`` ``(N,)``; ``labels`` ``(N,)`` int64.

    Sorted by descending score. Coordinates are in whatever frame the decoded input was
    (input pixels from the model; original-image pixels after un-letterboxing).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def postprocess(
    decoded: Tensor,
    conf_thresh: float = TestConfig.conf_thresh,
    nms_thresh: float = TestConfig.nms_thresh,
    max_det: int = TestConfig.max_det,
) -> List[Detections]:
    """Threshold and class-aware NMS over a batch of decoded predictions.

    Args:
        decoded: ``(B, N, 5 + C)`` rows ``x1, y1, x2, y2, objectness, class probabilities``
            (the model's eval-mode output).
        conf_thresh: keep boxes whose score = objectness × class probability of their best
            class is above this (one candidate per box: its best class, as in the ONNX NMS).
        nms_thresh: IoU above which a lower-scoring box of the same class is suppressed.
        max_det: most detections kept per image.
        (The defaults are the config's ``test.conf_thresh``, ``test.nms_thresh``, ``test.max_det``.)

    Returns:
        one :class:`Detections` per image. One ``batched_nms`` call covers the whole batch
        (image index × classes form the groups), on the tensor's device, with no Python loop
        over classes or images before the final split.
    """
    if decoded.dim() != 3 or decoded.shape[-1] < 6:
        raise ValueError(f"decoded predictions must be (B, N, 5 + C), got {tuple(decoded.shape)}")
    decoded = decoded.float()
    batch, _, width = decoded.shape
    num_classes = width - 5
    scores_all = decoded[..., 4:5] * decoded[..., 5:]  # (B, N, C)
    best, cls = scores_all.max(dim=-1)  # (B, N)
    img, box = (best > conf_thresh).nonzero(as_tuple=True)
    scores, cls = best[img, box], cls[img, box]
    boxes = decoded[img, box, :4]
    # One group per (image, class): boxes of different images or classes never suppress each other.
    keep = batched_nms(boxes, scores, img * num_classes + cls, nms_thresh)
    img, boxes, scores, cls = img[keep], boxes[keep], scores[keep], cls[keep]
    # keep is sorted by score; a stable sort by image keeps that order within each image.
    order = torch.sort(img, stable=True).indices
    img, boxes, scores, cls = img[order], boxes[order], scores[order], cls[order]
    counts = torch.bincount(img, minlength=batch).tolist()
    out = []
    for b_boxes, b_scores, b_cls in zip(boxes.split(counts), scores.split(counts), cls.split(counts)):
        out.append(Detections(b_boxes[:max_det], b_scores[:max_det], b_cls[:max_det].long()))
    return out
