"""ONNX export of a detector with its box decoding, optionally with NMS in the graph.

Two layouts, both taking ``images`` ``(B, 3, H, W)`` float32, pre-processed exactly as for the
PyTorch model: RGB, ``(x / 255 − mean) / std``, letterboxed to H×W (multiples of 32).

**Precision.** The file's precision is that of its weights and input: float32, or with ``half``
float16 weights and a float16 ``images`` input (for GPU runtimes), outputs float32 either way; the
metadata's ``precision`` key says which. The float16 weights are made on a copy: the model given is
never converted (nor moved). Unlike the PyTorch predictor and evaluator, whose ``half`` is float16
autocast (:func:`~yolo_asff.utils.device.fp16_autocast`), an ONNX graph has no autocast: its
tensors have one type each.

- without NMS: ``predictions`` ``(B, N, 5 + C)``, the model's eval output: ``x1, y1, x2, y2``
  in input pixels, objectness, class probabilities (float32);
- with NMS (:class:`DetectorWithNms`): the detections of the whole batch, flat, ``K`` rows
  grouped by image (ascending ``batch_index``) and by descending score within an image,
  at most ``max_det`` per image: ``boxes`` ``(K, 4)`` float32 ``x1, y1, x2, y2`` in input
  pixels, ``scores`` ``(K,)`` float32, ``labels`` ``(K,)`` int64, ``batch_index`` ``(K,)``
  int64. These are the rows of :func:`~yolo_asff.engine.postprocess.postprocess`
  concatenated over the images.

The export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
the newer torch.export-based one needs the ``onnxscript`` package, which is not a
dependency, and gives nothing more for a graph of convolutions and one NMS.

Models with deformable convolutions (the guided-anchor head, ``model.head: guided``) need
opset 19, where ONNX has ``DeformConv``; torchvision registers no ONNX symbolic for its
``deform_conv2d``, so this module maps it to ``DeformConv`` for the time of the export.
onnxruntime runs ``DeformConv`` on CPU from version 1.25 on; with an older one
:func:`check_onnx` raises :class:`OnnxRuntimeUnsupportedError` instead of comparing.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.onnx.symbolic_helper import parse_args
from torchvision.ops import DeformConv2d, nms

from ..config import TestConfig
from ..errors import YoloAsffError
from ..utils.device import resolve_device
from ..utils.files import atomic_write, check_writable
from ..utils.sizes import Size, parse_size
from .loading import model_for_weights
from .postprocess import postprocess

__all__ = [
    "DEFAULT_OPSET",
    "SUPPORTED_OPSETS",
    "DEFORM_CONV_OPSET",
    "DEFORM_CONV_ONNXRUNTIME",
    "INSTALL_HINT",
    "ExportError",
    "OnnxRuntimeUnsupportedError",
    "DetectorWithNms",
    "CheckReport",
    "uses_deform_conv",
    "resolve_opset",
    "export_onnx",
    "export_weights",
    "check_onnx",
    "onnx_metadata",
    "onnx_output_names",
]

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = (17, 18, 19)
DEFORM_CONV_OPSET = 19  # the first opset with ONNX DeformConv
DEFORM_CONV_ONNXRUNTIME = "1.25"  # the first onnxruntime with a (CPU) DeformConv kernel
INSTALL_HINT = "pip install -e .[export]"
PathLike = Union[str, os.PathLike]


class ExportError(YoloAsffError, RuntimeError):
    """An export or check that cannot be done as asked (bad size, opset, missing onnxruntime...)."""


class OnnxRuntimeUnsupportedError(ExportError):
    """:func:`check_onnx` on a valid graph that the installed onnxruntime cannot run (``DeformConv``)."""


class DetectorWithNms(nn.Module):
    """A detector followed by score threshold, class-aware NMS and the per-image cap, in a traceable form.

    ``forward(images)`` returns ``(boxes (K, 4), scores (K,), labels (K,), batch_index (K,))``
    as described in the module docstring: the same rules as
    :func:`~yolo_asff.engine.postprocess.postprocess` (score = objectness × best class
    probability, kept above ``conf_thresh``; boxes of different images or classes never
    suppress each other; ``max_det`` per image), written without Python branches on data
    so that one trace holds for every input. ``torchvision.ops.nms`` becomes ONNX
    ``NonMaxSuppression``.

    The groups are separated by shifting their boxes apart (torchvision's own trick for
    batched NMS), up to ``B·C`` times the candidates' extent: float32 keeps the shifted
    coordinates to about ``B·C·extent / 2^24`` pixels, 0.003 px for one 608 image and 80
    classes, 0.1 px at batch 32. Only an IoU within that of ``nms_thresh`` can be decided
    differently from :func:`~yolo_asff.engine.postprocess.postprocess`.
    """

    def __init__(self, model: nn.Module, conf_thresh: float = TestConfig.show_thresh,
                 nms_thresh: float = TestConfig.nms_thresh, max_det: int = TestConfig.max_det):
        super().__init__()
        self.model = model
        self.conf_thresh = float(conf_thresh)
        self.nms_thresh = float(nms_thresh)
        self.max_det = int(max_det)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        decoded = self.model(images).float()  # (B, N, 5 + C)
        batch, num_classes = decoded.shape[0], decoded.shape[2] - 5
        best, labels = (decoded[..., 4:5] * decoded[..., 5:]).max(dim=-1)  # (B, N)
        img, box = torch.nonzero(best > self.conf_thresh).unbind(1)
        boxes, scores, labels = decoded[img, box, :4], best[img, box], labels[img, box]
        # One NMS for all (image, class) groups: each group is moved into its own square of
        # side `span`, so boxes of two groups never overlap. A zero joins the coordinates so
        # that min/max never see an empty set: the graph needs no branch for "no candidates".
        coords = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)])
        low = coords.min()
        span = coords.max() - low + 1.0
        group = (img * num_classes + labels).to(boxes.dtype)
        keep = nms(boxes - low + (group * span)[:, None], scores, self.nms_thresh)
        img, boxes, scores, labels = img[keep], boxes[keep], scores[keep], labels[keep]
        # Descending score (ONNX NMS does not promise an order), then a stable regroup by
        # image: key = image · K + position, unique integers.
        order = scores.argsort(descending=True)
        img, boxes, scores, labels = img[order], boxes[order], scores[order], labels[order]
        position = torch.arange(img.shape[0], device=img.device)
        order = (img * img.shape[0] + position).argsort()
        img, boxes, scores, labels = img[order], boxes[order], scores[order], labels[order]
        # Rank within the image = position − first position of that image.
        counts = (img[:, None] == torch.arange(batch, device=img.device)[None]).sum(0)  # (B,)
        first = counts.cumsum(0) - counts
        keep = (position - first[img]) < self.max_det
        return boxes[keep], scores[keep], labels[keep], img[keep]


def onnx_output_names(with_nms: bool) -> List[str]:
    """Names of the exported graph's outputs."""
    return ["boxes", "scores", "labels", "batch_index"] if with_nms else ["predictions"]


def uses_deform_conv(model: nn.Module) -> bool:
    """Whether ``model`` has deformable convolutions (the guided-anchor head), which need opset 19."""
    return any(isinstance(m, DeformConv2d) for m in model.modules())


def resolve_opset(model: nn.Module, opset: Optional[int] = None) -> int:
    """The opset to export ``model`` with: ``opset`` when given, else :data:`DEFAULT_OPSET`,
    or :data:`DEFORM_CONV_OPSET` for a model with deformable convolutions.

    Raises:
        ExportError: ``opset`` is not supported, or is below 19 for a model with deformable convolutions.
    """
    deform = uses_deform_conv(model)
    if opset is None:
        return DEFORM_CONV_OPSET if deform else DEFAULT_OPSET
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset must be one of {SUPPORTED_OPSETS}, got {opset}")
    if deform and opset < DEFORM_CONV_OPSET:
        raise ExportError(
            f"this model has deformable convolutions (guided-anchor head): ONNX DeformConv needs opset "
            f"{DEFORM_CONV_OPSET}, got opset {opset}; pass --opset {DEFORM_CONV_OPSET} (opset={DEFORM_CONV_OPSET}), "
            "or leave the opset out to get it")
    return opset


@parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d_symbolic(g, input, weight, offset, mask, bias, stride_h: int, stride_w: int, pad_h: int,
                            pad_w: int, dil_h: int, dil_w: int, groups: int, offset_groups: int, use_mask: bool):
    """``torchvision::deform_conv2d`` → ONNX ``DeformConv(X, W, offset, B[, mask])``.

    torchvision's offset layout ``(N, offset_groups · kH · kW · 2, H, W)`` with ``(dy, dx)``
    pairs and its mask layout are those of ONNX; without a mask ONNX takes ones, as
    torchvision does. torchvision always passes a bias (zeros when the layer has none).
    """
    attrs = dict(dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups,
                 pads_i=[pad_h, pad_w, pad_h, pad_w], strides_i=[stride_h, stride_w])
    sizes = weight.type().sizes() if isinstance(weight.type(), torch._C.TensorType) else None
    if sizes and len(sizes) == 4:  # else ONNX infers the kernel shape from W
        attrs["kernel_shape_i"] = list(sizes[2:])
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op("DeformConv", *inputs, **attrs)


@contextlib.contextmanager
def _deform_conv_symbolic(enabled: bool) -> Iterator[None]:
    """Map ``torchvision::deform_conv2d`` to ONNX ``DeformConv`` (opset 19+) inside the block only."""
    if not enabled:
        yield
        return
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, DEFORM_CONV_OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("torchvision::deform_conv2d", DEFORM_CONV_OPSET)


def export_onnx(
    model: nn.Module,
    path: PathLike,
    size: Sequence[int] = (608, 608),
    batch: int = 1,
    *,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    with_nms: bool = False,
    conf_thresh: float = TestConfig.show_thresh,
    nms_thresh: float = TestConfig.nms_thresh,
    max_det: int = TestConfig.max_det,
    half: bool = False,
    opset: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    metadata: Optional[Mapping[str, str]] = None,
) -> Path:
    """Export ``model`` (a :class:`~yolo_asff.models.YoloDetector`) to ONNX with its decoding.

    Args:
        model: the detector; a copy of it is exported, in eval mode on ``device`` (``model`` itself is
            left as it was: device, dtype and mode).
        path: the ``.onnx`` file to write (its folder is created).
        size: the example input's size, an int or ``(height, width)``, multiples of 32.
        batch: batch size of the example input (the fixed batch unless ``dynamic_batch``).
        dynamic_batch, dynamic_size: make the batch / height and width dynamic axes.
        with_nms: append :class:`DetectorWithNms` (thresholds and ``max_det`` are fixed in the graph;
            the defaults are the config's ``test.show_thresh``, ``test.nms_thresh``, ``test.max_det``).
        half: the file's precision: float16 weights and input (outputs stay float32), for GPU
            runtimes; the weights are converted on the copy.
        opset: ONNX opset, 17 to 19; default :data:`DEFAULT_OPSET`, or 19 for a model with
            deformable convolutions (guided-anchor head), whose ``DeformConv`` needs 19
            (a lower one raises :class:`ExportError`). :func:`resolve_opset` tells which.
        metadata: ``{key: text}`` stored in the file's ``metadata_props`` (:func:`onnx_metadata`);
            needs the ``onnx`` package.

    Returns:
        the path written.
    """
    h, w = parse_size(size, "size")
    opset = resolve_opset(model, opset)
    if metadata:
        try:  # before the file is written: never a file without the metadata asked for
            import onnx  # noqa: F401
        except ImportError as exc:
            raise ExportError(f"writing the metadata needs the onnx package: {INSTALL_HINT}") from exc
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    device = resolve_device(device)
    dtype = torch.float16 if half else torch.float32
    model = copy.deepcopy(model).to(device, dtype).eval()
    module = DetectorWithNms(model, conf_thresh, nms_thresh, max_det).eval() if with_nms else model
    images = torch.zeros(batch, 3, h, w, device=device, dtype=dtype)
    outputs = onnx_output_names(with_nms)
    axes: Dict[str, Dict[int, str]] = {"images": {}}
    if dynamic_batch:
        axes["images"][0] = "batch"
    if dynamic_size:
        axes["images"].update({2: "height", 3: "width"})
    if not with_nms and (dynamic_batch or dynamic_size):
        axes["predictions"] = {**({0: "batch"} if dynamic_batch else {}), **({1: "anchors"} if dynamic_size else {})}
    if with_nms:
        axes.update({name: {0: "detections"} for name in outputs})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), _deform_conv_symbolic(uses_deform_conv(model)):
        # The legacy exporter announces its deprecation, and the tracer flags the detector's
        # input-size check (a Python bool on the traced size); neither affects the graph,
        # which the tests run at other sizes and batches than the traced ones.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # It also warns that advanced indexing goes wrong with negative indices; ours come
        # from nonzero and NMS, never negative.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            module,
            (images,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes={k: v for k, v in axes.items() if v} or None,
            do_constant_folding=True,
        )
    if metadata:
        _store_metadata(path, metadata)
    return path


def _store_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise ExportError(f"writing the metadata needs the onnx package: {INSTALL_HINT}") from exc
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, str(value)
    atomic_write(path, lambda f: f.write(graph.SerializeToString()))


def onnx_metadata(cfg: Any, class_names: Sequence[str], size: Sequence[int], with_nms: bool,
                  half: bool = False) -> Dict[str, str]:
    """What a runtime needs to use an exported detector, as ONNX ``metadata_props`` (text; lists in JSON).

    Keys: ``class_names``, ``input_size`` ``[h, w]``, ``input`` (layout, in words), ``mean`` and ``std``
    (RGB, after /255), ``letterbox`` (``true``: keep the aspect ratio, pad centred; ``false``: stretch),
    ``pad_value_bgr`` (the padding colour, BGR 0-255), ``outputs`` (layout, in words), ``precision``
    (``float16`` with ``half``: weights and input; else ``float32``), ``model``, ``producer``.
    """
    from ..version import __version__
    from ..data.transforms import MEAN_BGR

    outputs = ("boxes (K, 4) x1 y1 x2 y2 in input pixels, scores (K,), labels (K,) class index, batch_index (K,)"
               if with_nms else "predictions (B, N, 5 + C): x1 y1 x2 y2 in input pixels, objectness, class "
               "probabilities (score = objectness x class probability)")
    m = cfg.model
    return {
        "class_names": json.dumps(list(class_names)), "input_size": json.dumps([int(v) for v in size]),
        "input": f"images (B, 3, H, W) {'float16' if half else 'float32'}: RGB, (pixel / 255 - mean) / std",
        "precision": "float16" if half else "float32",
        "mean": json.dumps(list(cfg.data.mean)), "std": json.dumps(list(cfg.data.std)),
        "letterbox": "true" if cfg.data.letterbox else "false", "pad_value_bgr": json.dumps(list(MEAN_BGR)),
        "outputs": outputs, "model": f"{m.arch} head {m.head}, {m.num_classes} classes, width {m.width:g}",
        "producer": f"yolo-asff {__version__}",
    }


@dataclass
class CheckReport:
    """What :func:`check_onnx` compared. ``ok`` is the verdict; the rest says by how much.

    ``box_error`` is the largest coordinate difference divided by the larger of the input
    side and the coordinate's size (boxes of an untrained model reach far outside the
    image, and float error grows with them); ``box_error_px`` is the same in pixels.
    """

    ok: bool
    batch: int
    size: Tuple[int, int]
    box_error: float = 0.0
    box_error_px: float = 0.0
    prob_error: float = 0.0
    detections: int = -1  # with NMS: rows from onnxruntime (−1 without NMS)
    reference_detections: int = -1
    messages: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: verdict, shapes, errors and any notes."""
        verdict = "OK" if self.ok else "MISMATCH"
        head = f"{verdict}: onnxruntime vs PyTorch at batch {self.batch}, {self.size[0]}x{self.size[1]}"
        detail = (f"box error {self.box_error:.1e} relative to the larger of the input side and the coordinate "
                  f"({self.box_error_px:.1e} px), probability/score error {self.prob_error:.1e}")
        if self.detections >= 0:
            detail += f", {self.detections} detections (PyTorch postprocess: {self.reference_detections})"
        return "; ".join([head, detail, *self.messages])


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError(f"onnxruntime is not installed; install the export extra: {INSTALL_HINT}") from exc
    return onnxruntime


def _onnx_validity(path: PathLike) -> str:
    """``onnx.checker``'s verdict on the file, in words (for messages)."""
    try:
        import onnx
    except ImportError:
        return "not checked for validity (the onnx package is not installed)"
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises its own error types; the message is all we need
        return f"INVALID according to onnx.checker: {exc}"
    return "valid ONNX (onnx.checker)"


def _inference_session(ort, path: PathLike):
    """A CPU onnxruntime session for ``path``; a clear error when onnxruntime cannot run ``DeformConv``."""
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises pybind11 types, which vary between versions
        if "DeformConv" not in str(exc):
            raise
        raise OnnxRuntimeUnsupportedError(
            f"{path} was written and is {_onnx_validity(path)}, but onnxruntime {ort.__version__} cannot run "
            f"it: it has no CPU implementation of DeformConv (ONNX opset {DEFORM_CONV_OPSET}, the guided-anchor "
            f"head's deformable convolution), so it was not compared with PyTorch. onnxruntime >= "
            f"{DEFORM_CONV_ONNXRUNTIME} has one: pip install -U 'onnxruntime>={DEFORM_CONV_ONNXRUNTIME}'"
        ) from exc


def _box_errors(got: np.ndarray, want: np.ndarray, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-row largest coordinate difference: scaled (see :class:`CheckReport`) and in pixels."""
    diff = np.abs(got - want)
    scaled = diff / np.maximum(np.abs(want), side)
    return scaled.max(-1, initial=0.0), diff.max(-1, initial=0.0)


def check_onnx(
    path: PathLike,
    model: nn.Module,
    size: Optional[Sequence[int]] = None,
    batch: int = 1,
    *,
    with_nms: bool = False,
    conf_thresh: float = TestConfig.show_thresh,
    nms_thresh: float = TestConfig.nms_thresh,
    max_det: int = TestConfig.max_det,
    half: bool = False,
    seed: int = 0,
    box_tol: Optional[float] = None,
    prob_tol: Optional[float] = None,
    images: Optional[Tensor] = None,
) -> CheckReport:
    """Run the exported graph with onnxruntime (CPU) on an input and compare with PyTorch.

    ``images`` ``(batch, 3, H, W)``: the input, normalised as the model expects (a real picture is
    the telling test: on noise an undertrained model predicts boxes far outside any image, where
    float32 rounding alone makes the two runtimes differ); default: random noise from ``seed``.

    Without NMS the decoded predictions must agree: box coordinates within ``box_tol``
    (default 1e-4) of the larger of the input side and the coordinate (0.06 px for a box
    inside a 608 input), probabilities within ``prob_tol`` (default 1e-4). With NMS the
    detections must be those of :func:`~yolo_asff.engine.postprocess.postprocess` on the
    PyTorch output: the same count, each matched one-to-one to a PyTorch detection of the
    same image and label with box and score within the same tolerances (in any order among
    equal scores), grouped by image in descending score order. float16 graphs (``half``) get 100×
    looser tolerances and are compared with a float16 copy of ``model``. ``model`` must hold the
    exported weights.

    Raises:
        ExportError: onnxruntime is not installed.
        OnnxRuntimeUnsupportedError: the graph has ``DeformConv`` (guided-anchor head) and the
            installed onnxruntime cannot run it (before 1.25); the message says so, with
            ``onnx.checker``'s verdict on the file.
    """
    ort = _import_onnxruntime()
    h, w = parse_size(size if size is not None else TestConfig.img_size, "size")
    side = max(h, w)
    tol_scale = 100.0 if half else 1.0
    box_tol = box_tol if box_tol is not None else 1e-4 * tol_scale
    prob_tol = prob_tol if prob_tol is not None else 1e-4 * tol_scale
    if images is None:
        images = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
    session = _inference_session(ort, path)
    feed = images.numpy().astype(np.float16 if half else np.float32)
    onnx_out = session.run(None, {session.get_inputs()[0].name: feed})
    model = (copy.deepcopy(model).half() if half else model).eval()  # the exported graph's precision
    param = next(model.parameters())
    with torch.no_grad():
        reference = model(torch.from_numpy(feed).to(param.device, param.dtype)).float().cpu()
    report = CheckReport(False, batch, (h, w))
    if not with_nms:
        pred, ref = onnx_out[0], reference.numpy()
        if pred.shape != ref.shape:
            report.messages.append(f"shape {pred.shape} != PyTorch {ref.shape}")
            return report
        scaled, px = _box_errors(pred[..., :4], ref[..., :4], side)
        # Boxes 100 input sides away (an undertrained model's, exp() of large logits) are no detection any
        # image could hold; there float32 rounding of exp alone separates the runtimes. Said, not compared.
        sane = np.abs(ref[..., :4]).max(-1) <= 100 * side
        if not sane.all():
            report.messages.append(f"{int((~sane).sum())} predictions with boxes beyond 100x the input side not "
                                   "compared (an undertrained model's)")
        scaled, px = np.where(sane, scaled, 0.0), np.where(sane, px, 0.0)
        report.box_error, report.box_error_px = float(scaled.max(initial=0.0)), float(px.max(initial=0.0))
        report.prob_error = float(np.abs(pred[..., 4:] - ref[..., 4:]).max(initial=0.0))
        report.ok = report.box_error <= box_tol and report.prob_error <= prob_tol
        return report
    dets = postprocess(reference, conf_thresh, nms_thresh, max_det)
    ref_boxes = torch.cat([d.boxes for d in dets]).numpy()
    ref_scores = torch.cat([d.scores for d in dets]).numpy()
    ref_labels = torch.cat([d.labels for d in dets]).numpy()
    ref_index = np.concatenate([np.full(len(d.scores), i) for i, d in enumerate(dets)]).astype(np.int64)
    boxes, scores, labels, index = onnx_out
    report.detections, report.reference_detections = len(scores), len(ref_scores)
    if not len(ref_scores):
        report.messages.append("no detections on this input, so NMS was not exercised (random weights?)")
    if len(scores) != len(ref_scores):
        report.messages.append("different numbers of detections")
        return report
    grouped = bool(np.all(np.diff(index) >= 0)) and all(
        np.all(np.diff(scores[index == i]) <= prob_tol) for i in range(batch))
    if not grouped:
        report.messages.append("detections not grouped by image in descending score order")
    # Equal scores may come out in either order: match each ONNX detection to an unused
    # PyTorch one of the same image and label, the nearest box. Where an image was cut at max_det,
    # detections tied with its lowest kept score may differ between the two (either may be kept):
    # they are matched last and not held to the tolerance.
    lowest = {i: scores[index == i].min() for i in range(batch) if (index == i).sum() >= max_det}
    tied = np.array([int(index[k]) in lowest and scores[k] <= lowest[int(index[k])] + prob_tol
                     for k in range(len(scores))], bool)
    used = np.zeros(len(ref_scores), bool)
    for k in [*np.flatnonzero(~tied), *np.flatnonzero(tied)]:
        candidates = np.flatnonzero(~used & (ref_index == index[k]) & (ref_labels == labels[k]))
        if tied[k] and not len(candidates):
            continue
        if not len(candidates):
            report.messages.append(f"detection {k} (image {index[k]}, class {labels[k]}) has no PyTorch match")
            return report
        scaled, px = _box_errors(boxes[k][None], ref_boxes[candidates], side)
        if tied[k] and scaled.min() > box_tol:
            continue
        j = candidates[scaled.argmin()]
        used[j] = True
        report.box_error = max(report.box_error, float(scaled.min()))
        report.box_error_px = max(report.box_error_px, float(px[scaled.argmin()]))
        report.prob_error = max(report.prob_error, float(abs(ref_scores[j] - scores[k])))
    if tied.any():
        report.messages.append(f"{int(tied.sum())} detection(s) tied at the max_det cut-off (either may be kept)")
    report.ok = grouped and report.box_error <= box_tol and report.prob_error <= prob_tol
    return report


# ----------------------------------------------------------------------------- yolo-asff export


def _print_layout(cfg: Any, model: nn.Module, path: Path, opset: int, size: Tuple[int, int], batch: str,
                  dynamic_size: bool, half: bool, nms: Optional[Tuple[float, float, int]]) -> None:
    """What was written, its input and its outputs, as the export tool prints them."""
    h, w = size
    precision = "float16" if half else "float32"
    print(f"wrote       {path} ({path.stat().st_size / 1e6:.1f} MB, opset {opset}, {precision} weights)")
    print(f"input       images ({batch}, 3, {'H, W' if dynamic_size else f'{h}, {w}'}) {precision}: "
          f"RGB, (x/255 - mean)/std, {'letterboxed' if cfg.data.letterbox else 'stretched (no letterbox)'}")
    if nms is not None:
        print(f"outputs     {', '.join(onnx_output_names(True))}: (K, 4), (K,), (K,) int64, (K,) int64; "
              f"score > {nms[0]}, NMS IoU {nms[1]}, at most {nms[2]} per image")
    else:
        cells = sum((h // s) * (w // s) for s in model.strides)
        rows = "N" if dynamic_size else str(model.head.num_anchors * cells)
        print(f"outputs     predictions ({batch}, {rows}, {5 + cfg.model.num_classes}): x1, y1, x2, y2 (input pixels), "
              "objectness, class probabilities")


def export_weights(
    out: PathLike, weights: Optional[PathLike] = None, config: Optional[str] = None, opts: Sequence[str] = (), *,
    size: Optional[Size] = None, batch: int = 1, dynamic_batch: bool = False, dynamic_size: bool = False,
    nms: bool = False, conf: Optional[float] = None, iou: Optional[float] = None, max_det: Optional[int] = None,
    half: bool = False, opset: Optional[int] = None, check: bool = False,
) -> bool:
    """``yolo-asff export``: the model of ``weights`` (random weights when None) to the ONNX file ``out``, with the
    metadata a runtime needs (:func:`onnx_metadata`); prints what was written.

    ``size`` (default ``test.img_size``), ``batch``, ``dynamic_batch``, ``dynamic_size``, ``half`` and ``opset``
    as in :func:`export_onnx`; ``nms``: NMS in the graph with ``conf``, ``iou`` and ``max_det`` (defaults
    ``test.show_thresh``, ``test.nms_thresh``, ``test.max_det``). ``check``: run the file with onnxruntime and
    compare with PyTorch at the exported size and batch (and at another batch and size where dynamic). With
    ``half`` the export (and its check) runs on the GPU when there is one.

    Returns:
        whether every check agreed (True without ``check``).

    Raises:
        ExportError: onnxruntime missing for ``check``, a bad size, batch or opset; OnnxRuntimeUnsupportedError
            (see :func:`check_onnx`). OutputError: ``out`` cannot be written. ConfigError, CheckpointError: see
            :func:`~yolo_asff.engine.loading.model_for_weights`. Nothing is written when these are found first.
    """
    if check:
        try:
            _import_onnxruntime()
        except ExportError:
            raise ExportError(f"--check needs onnxruntime, which is not installed; install it with: {INSTALL_HINT}") \
                from None
    check_writable(out, "--out file")
    if batch < 1 or (max_det is not None and max_det < 1):
        raise ExportError("--batch and --max-det must be at least 1")
    ready = model_for_weights(weights, config, opts)
    cfg, model = ready.cfg, ready.model
    h, w = parse_size(size if size is not None else cfg.test.img_size, "--size" if size is not None else
                      "test.img_size")
    opset = resolve_opset(model, opset)
    if ready.weights is not None:
        print(f"weights     {weights} ({ready.weights.source}): {ready.weights.summary()}")
    else:
        print("weights     none (random initialisation): pass --weights for a useful model")
    for note in ready.notes:
        print(f"note        {note}")
    names = ready.class_names or [f"class {i}" for i in range(cfg.model.num_classes)]
    device = resolve_device("auto" if half else "cpu")  # a float16 graph is traced and checked on a GPU, if any
    thresholds = dict(conf_thresh=cfg.test.show_thresh if conf is None else conf,
                      nms_thresh=cfg.test.nms_thresh if iou is None else iou,
                      max_det=cfg.test.max_det if max_det is None else max_det)
    path = export_onnx(model, out, (h, w), batch, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size,
                       with_nms=nms, half=half, opset=opset, device=device,
                       metadata=onnx_metadata(cfg, names, (h, w), nms, half), **thresholds)
    _print_layout(cfg, model, path, opset, (h, w), "B" if dynamic_batch else str(batch), dynamic_size, half,
                  tuple(thresholds.values()) if nms else None)
    if not check:
        return True
    shapes = [(batch, (h, w))] + ([(batch + 1, (h, w))] if dynamic_batch else []) + (
        [(batch, (h + 32, w + 64))] if dynamic_size else [])
    ok = True
    for batch_size, shape in shapes:
        report = check_onnx(path, model.to(device), shape, batch_size, with_nms=nms, half=half, **thresholds)
        print(f"check       {report.summary()}")
        ok &= report.ok
    return ok
