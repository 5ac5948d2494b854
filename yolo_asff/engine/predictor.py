"""Inference on pictures: letterbox, batched forward, decode, NMS, boxes back in original-image pixels.

    predictor = Predictor.from_config(cfg, model)       # thresholds: test.show_thresh, test.nms_thresh
    dets = predictor(["a.jpg", image_bgr])            # one Detections per picture, original pixels
    dets, maps = predictor(images, return_fusion=True)  # plus the ASFF weight maps, one per level

The pixels go in the way training batches do (:func:`~yolo_asff.data.transforms.letterbox`,
then BGR→RGB, /255, ``(x − mean) / std`` by :func:`~yolo_asff.data.dataset.normalize_images`,
as in :func:`~yolo_asff.data.dataset.collate`), and the detections come out of the one NMS
path, :func:`~yolo_asff.engine.postprocess.postprocess`.

    predictor = Predictor.from_config(cfg, model, graphed=True)  # forward + decode + NMS as one graph

``graphed=True`` runs each picture (batch 1) through a
:class:`~yolo_asff.engine.graphed.GraphedDetector`: one CUDA graph on a GPU, one compiled
function on the CPU, the same detections.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from ..config import TestConfig
from ..data.dataset import normalize_images
from ..data.images import decode_picture
from ..data.transforms import LetterboxInfo, letterbox, unletterbox_boxes
from ..errors import InvalidInputError, MissingFileError
from ..utils.device import fp16_autocast, resolve_device
from ..utils.sizes import parse_size
from .graphed import GraphedDetector
from .postprocess import DEFAULT_PRE_NMS_TOPK, Detections, postprocess

__all__ = ["Predictor", "read_image", "ImageInput"]

ImageInput = Union[str, os.PathLike, np.ndarray]
Size = Union[int, Sequence[int]]
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """The picture at ``path`` as ``(H, W, 3)`` uint8 BGR (grey and alpha images converted).

    Raises:
        MissingFileError: (a FileNotFoundError) no such file.
        InvalidInputError: (a ValueError) a file OpenCV cannot decode.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path} (check the path)")
    image = decode_picture(path)
    if image is None:
        raise InvalidInputError(f"cannot read image {path}: the file is empty, corrupt or not an image OpenCV can decode")
    return image


def _as_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """Check an in-memory picture and bring grey / BGRA ones to ``(H, W, 3)`` uint8 BGR."""
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: expected a uint8 BGR image (H, W, 3), got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"{where}: expected a BGR image of shape (H, W, 3), got {image.shape}")
    return image


class Predictor:
    """Run a detector on pictures and return detections in the pictures' own pixels.

    Args:
        model: a :class:`~yolo_asff.models.detector.YoloDetector` (or anything with its eval
            contract: ``(B, 3, H, W)`` → ``(B, N, 5 + C)`` decoded rows). It is put in eval mode and
            moved to ``device``; its weights keep their dtype (``half`` never converts them).
        img_size: network input size, an int or ``(h, w)``, multiples of 32.
        conf_thresh, nms_thresh, max_det: as in :func:`~yolo_asff.engine.postprocess.postprocess`;
            the defaults are the config's (``test.show_thresh``, ``test.nms_thresh``, ``test.max_det``).
        letterbox: keep the aspect ratio and pad (True) or stretch (False), as in training.
        mean, std: RGB normalisation after /255 (the config's ``data.mean`` / ``data.std``).
        device: where to run; None = where the model's parameters are.
        half: float16 autocast around the forward pass
            (:func:`~yolo_asff.utils.device.fp16_autocast`); inputs and weights stay float32, detections
            come out float32. CUDA only: on the CPU it warns and runs fp32.
        batch_size: pictures per forward pass when a list is given.
        graphed: capture forward + decode + NMS for the input size as one graph
            (:class:`~yolo_asff.engine.graphed.GraphedDetector`: CUDA graphs on a GPU, a
            ``torch.compile`` on the CPU; a one-line warning and eager execution where
            unsupported). Pictures then go one at a time (batch 1, the captured shape); the
            first call compiles. ``return_fusion`` calls run eagerly.
        pre_nms_topk: graphed only: the most candidates per picture its NMS considers
            (:func:`~yolo_asff.engine.postprocess.postprocess_fixed`); with more above
            ``conf_thresh`` the lowest-scoring are dropped, with a warning.
    """

    def __init__(
        self,
        model: nn.Module,
        img_size: Size = 608,
        conf_thresh: float = TestConfig.show_thresh,
        nms_thresh: float = TestConfig.nms_thresh,
        max_det: int = TestConfig.max_det,
        letterbox: bool = True,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        device: Union[str, torch.device, None] = None,
        half: bool = False,
        batch_size: int = 8,
        graphed: bool = False,
        pre_nms_topk: int = DEFAULT_PRE_NMS_TOPK,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = resolve_device(device)
        if half and self.device.type != "cuda":
            warnings.warn(f"half precision needs a CUDA device; running in fp32 on {self.device}", RuntimeWarning,
                          stacklevel=2)
            half = False
        self.half = half
        self.model = model.to(self.device).eval()
        self.input_size = parse_size(img_size, "img_size")
        self.conf_thresh = conf_thresh
        self.nms_thresh = nms_thresh
        self.max_det = max_det
        self.keep_ratio = letterbox
        self.batch_size = batch_size
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.graphed: Optional[GraphedDetector] = None
        if graphed:
            self.graphed = GraphedDetector(self.model, conf_thresh, nms_thresh, max_det, pre_nms_topk,
                                           device=self.device)
            self.batch_size = 1

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, **overrides: Any) -> "Predictor":
        """A predictor with the config's test size, thresholds, letterbox, mean/std and device.

        The score threshold is ``test.show_thresh`` (detections to look at), not ``test.conf_thresh``
        (0.001, right for mAP, not for pictures). ``overrides`` replace any constructor argument.
        """
        kwargs = dict(
            img_size=cfg.test.img_size, conf_thresh=cfg.test.show_thresh, nms_thresh=cfg.test.nms_thresh,
            max_det=cfg.test.max_det, letterbox=cfg.data.letterbox, mean=cfg.data.mean, std=cfg.data.std,
            device=cfg.runtime.device, batch_size=cfg.test.batch_size,
        )
        kwargs.update(overrides)
        return cls(model, **kwargs)

    def preprocess(self, images: Sequence[np.ndarray]) -> Tuple[Tensor, List[LetterboxInfo]]:
        """BGR pictures → the normalised input batch ``(B, 3, h, w)`` on the device, and each mapping."""
        boxed, infos = [], []
        for image in images:
            out, _, info = letterbox(image, self.input_size, self.keep_ratio)
            boxed.append(out)
            infos.append(info)
        # The uint8 pixels go to the device (a quarter of the bytes of floats) and are normalised there.
        batch = torch.from_numpy(np.stack(boxed)).to(self.device, non_blocking=True)  # (B, h, w, 3) uint8 BGR
        batch = normalize_images(batch, self._mean, self._std)
        return batch.contiguous(), infos

    def __call__(
        self,
        images: Union[ImageInput, Sequence[ImageInput], Tensor],
        return_fusion: bool = False,
        infos: Optional[Sequence[LetterboxInfo]] = None,
    ) -> Union[List[Detections], Tuple[List[Detections], List[Tensor]]]:
        """Detect objects.

        Args:
            images: a path, a ``(H, W, 3)`` uint8 BGR array, a list of those, or an already
                normalised batch ``(B, 3, H, W)`` (H, W multiples of 32).
            return_fusion: also return the ASFF weight maps.
            infos: only for a tensor batch: how each of its pictures was letterboxed, to map the
                boxes back (without it, boxes stay in the tensor's pixels, clipped to it).

        Returns:
            one :class:`Detections` per picture, on the CPU, boxes ``(N, 4)`` float32 x1, y1, x2, y2
            in the picture's pixels, clipped to it. With ``return_fusion``, also the weight maps:
            one ``(B, 3, H_l, W_l)`` float32 CPU tensor per level, stride-ascending (channel k is
            the weight of the level at stride 32, 16, 8 for k = 0, 1, 2); ``[]`` for models
            without ASFF fusion. Map pixels cover the network input, padding included.
        """
        if isinstance(images, Tensor):
            batch = images.unsqueeze(0) if images.dim() == 3 else images
            if batch.dim() != 4 or batch.shape[1] != 3:
                raise ValueError(f"a tensor input must be a normalised batch (B, 3, H, W), got {tuple(images.shape)}")
            if infos is None:
                h, w = batch.shape[-2:]
                infos = [LetterboxInfo(1.0, 1.0, 0.0, 0.0, int(w), int(h))] * len(batch)
            elif len(infos) != len(batch):
                raise ValueError(f"{len(infos)} letterbox infos for a batch of {len(batch)}")
            dets, maps = self._run(batch.to(self.device, torch.float32), list(infos), return_fusion)
        else:
            pictures = self._load(images)
            dets, per_chunk = [], []
            for start in range(0, len(pictures), self.batch_size):
                chunk = pictures[start:start + self.batch_size]
                batch, chunk_infos = self.preprocess(chunk)
                chunk_dets, chunk_maps = self._run(batch, chunk_infos, return_fusion)
                dets.extend(chunk_dets)
                per_chunk.append(chunk_maps)
            maps = [torch.cat(level) for level in zip(*per_chunk)] if per_chunk and per_chunk[0] else []
        return (dets, maps) if return_fusion else dets

    def _load(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[np.ndarray]:
        """Paths and arrays (one or a list) → BGR arrays; a clear error names a bad one."""
        items = [images] if isinstance(images, (str, os.PathLike, np.ndarray)) else list(images)
        if not items:
            raise ValueError("no images given")
        out = []
        for k, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                out.append(read_image(item))
            elif isinstance(item, np.ndarray):
                out.append(_as_bgr(item, f"image {k}"))
            else:
                raise TypeError(f"image {k}: expected a path or a (H, W, 3) uint8 BGR array, got {type(item).__name__}")
        return out

    @torch.inference_mode()
    def _run(
        self, batch: Tensor, infos: List[LetterboxInfo], return_fusion: bool
    ) -> Tuple[List[Detections], List[Tensor]]:
        """Forward, NMS on the device, then boxes to the CPU and back into original pixels."""
        if self.model.training:
            self.model.eval()
        if self.graphed is not None and not return_fusion:
            # One picture per call, the captured shape; each comes back on the CPU in one host copy.
            with fp16_autocast(self.device, self.half):
                dets, maps = [det for one in batch.split(1) for det in self.graphed(one)], []
        else:
            with fp16_autocast(self.device, self.half):
                if return_fusion:
                    decoded, maps = self.model(batch, return_fusion=True)
                    maps = [m.float().cpu() for m in maps]
                else:
                    decoded, maps = self.model(batch), []
            decoded = decoded.float()  # float16 under autocast: scores and boxes are compared and sorted in float32
            dets = postprocess(decoded, self.conf_thresh, self.nms_thresh, self.max_det)
        # One device→host copy per batch, not three per picture: rows x1, y1, x2, y2, score, label
        # (float32 holds class indices exactly), split per picture on the host.
        rows = torch.cat([torch.cat([d.boxes.float(), d.scores.float()[:, None], d.labels[:, None].float()], 1)
                          for d in dets]).cpu().numpy()  # (sum N, 6) float32
        splits = np.cumsum([len(d.scores) for d in dets])[:-1]
        out = []
        for part, info in zip(np.split(rows, splits), infos):
            boxes = unletterbox_boxes(part[:, :4], info)  # a new (N, 4) float32 array
            scores = torch.from_numpy(np.ascontiguousarray(part[:, 4]))
            out.append(Detections(torch.from_numpy(boxes), scores, torch.from_numpy(part[:, 5].astype(np.int64))))
        return out, maps
