"""postprocess: score threshold, class-aware NMS, max_det, and images of a batch kept apart."""
from __future__ import annotations

import pytest
import torch

from yolo_asff.engine.postprocess import Detections, postprocess


def rows(*preds, num_classes=3):
    """(N, 5 + C) decoded rows from (box, objectness, class, class probability)."""
    out = torch.zeros(len(preds), 5 + num_classes)
    for i, (box, obj, cls, prob) in enumerate(preds):
        out[i, :4] = torch.tensor(box, dtype=torch.float32)
        out[i, 4] = obj
        out[i, 5 + cls] = prob
    return out


A = [10, 10, 50, 50]
A_NEAR = [12, 10, 52, 50]  # IoU with A: 38·40 / (2·1600 − 1520) = 0.905
B = [100, 100, 140, 140]  # far from A


def test_overlapping_boxes_of_one_class_are_suppressed():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 0, 0.8), (B, 1.0, 0, 0.7))[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65)
    assert isinstance(det, Detections)
    torch.testing.assert_close(det.boxes, torch.tensor([A, B], dtype=torch.float32))
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.7]))
    assert det.labels.dtype == torch.int64 and det.labels.tolist() == [0, 0]


def test_overlapping_boxes_of_different_classes_are_both_kept():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 2, 0.8))[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65)
    assert det.labels.tolist() == [0, 2] and det.scores.tolist() == pytest.approx([0.9, 0.8])


def test_nms_threshold_decides():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 0, 0.8))[None]
    assert len(postprocess(decoded, 0.01, nms_thresh=0.95)[0].scores) == 2  # IoU 0.905 is below 0.95
    assert len(postprocess(decoded, 0.01, nms_thresh=0.9)[0].scores) == 1


def test_score_is_objectness_times_class_probability_above_the_threshold():
    decoded = rows((A, 0.5, 1, 0.5), (B, 0.5, 1, 0.7))[None]  # scores 0.25 and 0.35
    (det,) = postprocess(decoded, conf_thresh=0.3, nms_thresh=0.65)
    assert det.scores.tolist() == pytest.approx([0.35]) and det.boxes.tolist() == [B]
    assert len(postprocess(decoded, conf_thresh=0.4)[0].scores) == 0


def test_the_best_class_of_a_box_is_its_label():
    decoded = rows((A, 1.0, 0, 0.3))
    decoded[0, 5 + 2] = 0.6
    (det,) = postprocess(decoded[None], conf_thresh=0.01)
    assert det.labels.tolist() == [2] and det.scores.tolist() == pytest.approx([0.6])


def test_max_det_keeps_the_highest_scores_in_order():
    boxes = [[50 * i, 0, 50 * i + 40, 40] for i in range(10)]  # no overlaps
    scores = torch.linspace(0.1, 0.9, 10)
    decoded = rows(*[(b, 1.0, 0, float(s)) for b, s in zip(boxes, scores)])[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, max_det=3)
    assert det.scores.tolist() == pytest.approx([0.9, scores[8].item(), scores[7].item()])
    assert det.boxes.tolist() == [boxes[9], boxes[8], boxes[7]]


def test_images_of_a_batch_never_suppress_each_other():
    first = rows((A, 1.0, 0, 0.9), (B, 1.0, 1, 0.5))
    second = rows((A_NEAR, 1.0, 0, 0.8), (B, 0.001, 1, 0.5))  # same class, IoU 0.9 with first's A
    empty = rows((A, 0.0, 0, 0.9), (B, 0.0, 0, 0.9))
    out = postprocess(torch.stack([first, empty, second]), conf_thresh=0.01, nms_thresh=0.65)
    assert len(out) == 3
    assert out[0].boxes.tolist() == [A, B] and out[0].labels.tolist() == [0, 1]
    assert out[1].boxes.shape == (0, 4) and out[1].scores.shape == (0,) and out[1].labels.shape == (0,)
    assert out[2].boxes.tolist() == [A_NEAR] and out[2].scores.tolist() == pytest.approx([0.8])


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(B, N, 5 \+ C\)"):
        postprocess(torch.zeros(10, 8))
