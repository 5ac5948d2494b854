"""Graphed inference: forward + decode + NMS of one fixed input shape captured as one graph.

    graphed = GraphedDetector(model, conf_thresh=0.3, nms_thresh=0.65, max_det=100)
    dets = graphed(batch)          # batch (1, 3, h, w) normalised, on the model's device

On CUDA the function is compiled with ``torch.compile(mode="reduce-overhead")``: Inductor
fuses the network's and the NMS's elementwise work, and the whole call is replayed as one
CUDA graph (CUDA graph trees), so a batch-1 call costs one graph launch instead of hundreds
of kernel launches, the cost that dominates batch-1 latency on a GPU. We chose it over
capturing eager kernels with ``torch.cuda.graphs`` by hand: the same code then compiles on
the CPU too (where there are no CUDA graphs), the kernels are fused rather than only
replayed, and the static input/output buffers, warm-up and re-recording on a new shape are
handled by PyTorch. The price is a compile on the first call (reported as
:attr:`GraphedDetector.compile_time_s`).

The NMS inside is :func:`~yolo_asff.engine.postprocess.postprocess_fixed` (no data-dependent
shapes, no host synchronisation; the only host read is the one copy of the padded result in
:func:`~yolo_asff.engine.postprocess.unpad_detections`). The captured function is compiled
with ``fullgraph=True``: a graph break is an error, not a silent slowdown.

Where it cannot run (a device other than CPU and CUDA, no Dynamo on this Python, no Triton
for CUDA, no working compiler), it warns once in one line and runs the same fixed-shape
function eagerly, with the same detections.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from .postprocess import (
    DEFAULT_NMS_ITERATIONS, DEFAULT_PRE_NMS_TOPK, Detections, PaddedDetections, postprocess_fixed, unpad_detections,
)

__all__ = ["GraphedDetector", "graphed_unsupported_reason"]


def graphed_unsupported_reason(device: torch.device) -> Optional[str]:
    """Why graphed inference cannot run on ``device`` here, or None when it can."""
    if device.type not in ("cpu", "cuda"):
        return f"graphed inference runs on cpu and cuda, not {device.type}"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python or platform"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "CUDA graphs through torch.compile need Triton (pip install triton)"
    return None


class GraphedDetector:
    """A detector's forward, decode and fixed-shape NMS as one compiled (on CUDA: graphed) call.

    Args:
        model: a detector in eval mode, ``(B, 3, H, W)`` → ``(B, N, 5 + C)`` decoded rows
            (:class:`~yolo_asff.models.detector.YoloDetector`'s eval contract). Not modified.
        conf_thresh, nms_thresh, max_det: as in :func:`~yolo_asff.engine.postprocess.postprocess`.
        pre_nms_topk, nms_iterations: as in :func:`~yolo_asff.engine.postprocess.postprocess_fixed`.
        device: where it runs (decides CUDA graphs or a CPU compile).
        compile: False runs the same fixed-shape function eagerly (the fallback, and a reference).

    Calling it with a normalised batch ``(B, 3, H, W)`` on ``device`` returns one
    :class:`~yolo_asff.engine.postprocess.Detections` per image on the CPU, boxes in input
    pixels, equal to ``postprocess(model(batch), ...)`` (to float rounding of the compiled
    network) when no image has more than ``pre_nms_topk`` candidates. Every new input shape
    compiles (and on CUDA records) a graph of its own: keep the shape fixed.
    """

    def __init__(
        self,
        model: nn.Module,
        conf_thresh: float,
        nms_thresh: float,
        max_det: int,
        pre_nms_topk: int = DEFAULT_PRE_NMS_TOPK,
        nms_iterations: int = DEFAULT_NMS_ITERATIONS,
        device: Optional[torch.device] = None,
        compile: bool = True,
    ) -> None:
        if pre_nms_topk < 1 or nms_iterations < 0:
            raise ValueError(f"need pre_nms_topk >= 1 and nms_iterations >= 0, got {pre_nms_topk}, {nms_iterations}")
        self.model = model
        self.conf_thresh, self.nms_thresh, self.max_det = float(conf_thresh), float(nms_thresh), int(max_det)
        self.pre_nms_topk, self.nms_iterations = int(pre_nms_topk), int(nms_iterations)
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.compile_time_s: Optional[float] = None
        self.fallback_reason: Optional[str] = None
        self._cuda_graphs = False
        self._compiled: Optional[Callable[[Tensor], PaddedDetections]] = None
        if compile:
            reason = graphed_unsupported_reason(self.device)
            if reason is None:
                self._cuda_graphs = self.device.type == "cuda"
                # The CPU has no CUDA graphs: the default mode compiles the same function.
                mode = "reduce-overhead" if self._cuda_graphs else None
                self._compiled = torch.compile(self.detect_padded, mode=mode, fullgraph=True, dynamic=False)
            else:
                self._fall_back(reason)

    @property
    def compiled(self) -> bool:
        """Whether calls run compiled (False after a fallback or with ``compile=False``)."""
        return self._compiled is not None

    def detect_padded(self, images: Tensor) -> PaddedDetections:
        """The function that is captured: forward, decode and fixed-shape NMS, no host sync."""
        return postprocess_fixed(self.model(images), self.conf_thresh, self.nms_thresh, self.max_det,
                                 self.pre_nms_topk, self.nms_iterations)

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self._compiled = None
        self._cuda_graphs = False
        warnings.warn(f"graphed inference unavailable ({reason}); running eagerly", RuntimeWarning, stacklevel=3)

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> List[Detections]:
        if self._cuda_graphs:
            # Each call is a new inference step: the graph may reuse the previous outputs' memory,
            # which unpad_detections has already copied to the host.
            torch.compiler.cudagraph_mark_step_begin()
        if self._compiled is None:
            padded = self.detect_padded(images)
        elif self.compile_time_s is None:
            padded = self._first_compiled_call(images)
        else:
            padded = self._compiled(images)
        return unpad_detections(padded, self.nms_thresh)

    def _first_compiled_call(self, images: Tensor) -> PaddedDetections:
        """The call that compiles: timed, and where the compiler fails, the eager fallback."""
        start = time.perf_counter()
        try:
            padded = self._compiled(images)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            self._fall_back(f"the compiler failed: {str(exc).strip().splitlines()[0][:200]}")
            return self.detect_padded(images)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_time_s = time.perf_counter() - start
        return padded
