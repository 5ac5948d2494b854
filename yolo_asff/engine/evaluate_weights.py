"""``yolo-asff eval``: the metrics of a weights file on its config's validation set, printed and written.

    metrics = evaluate_weights("runs/builtin/best.pth", json_path="runs/builtin/eval.json")

The weights bring their config when they can (:func:`~yolo_asff.engine.loading.model_for_weights`);
the :class:`~yolo_asff.engine.evaluator.Evaluator` scores them; the report is printed, and the
numbers (:func:`~yolo_asff.engine.evaluator.metrics_json`), detections and plots are written where
asked.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from ..errors import MissingFileError
from ..utils.device import resolve_device
from ..utils.files import check_writable, write_json
from ..utils.logging import get_logger, setup_logging
from ..utils.sizes import Size, parse_size
from .evaluator import Evaluator, format_report, metrics_json
from .loading import model_for_weights
from .plots import write_evaluation_plots

__all__ = ["eval_opts", "evaluate_weights"]

PathLike = Union[str, os.PathLike]


def eval_opts(opts: Sequence[str], size: Optional[Size] = None, conf: Optional[float] = None,
              nms: Optional[float] = None, batch: Optional[int] = None) -> List[str]:
    """``opts`` plus the tool's shortcuts as config overrides (``test.img_size``, ``test.conf_thresh``,
    ``test.nms_thresh``, ``test.batch_size``), so that the config checks them like any other ``--opts``
    and they win over what a checkpoint was trained with."""
    out = list(opts)
    for value, key in ((size, "test.img_size"), (conf, "test.conf_thresh"), (nms, "test.nms_thresh"),
                       (batch, "test.batch_size")):
        if value is not None:
            # Written the way YAML reads it back: a bare 1e-05 would be read as a string.
            out.append(f"{key}={yaml.safe_dump([value], default_flow_style=True).strip()[1:-1]}")
    return out


def _check_outputs(json_path: Optional[PathLike], dets: Optional[PathLike], plots: Optional[PathLike]) -> None:
    """Refuse unusable output paths before the model is even built."""
    for path, what in ((json_path, "--json file"), (dets, "--dets file")):
        if path:
            check_writable(path, what)
    if plots:
        check_writable(plots, "--plots folder", folder=True)


def evaluate_weights(
    weights: PathLike, config: Optional[str] = None, opts: Sequence[str] = (), *, size: Optional[Size] = None,
    conf: Optional[float] = None, nms: Optional[float] = None, batch: Optional[int] = None,
    device: Optional[str] = None, half: bool = False, json_path: Optional[PathLike] = None,
    dets: Optional[PathLike] = None, plots: Optional[PathLike] = None, testdev: bool = False,
) -> Dict[str, Any]:
    """Evaluate ``weights`` on the validation set of its config (or ``config``) and report.

    Args:
        weights: a yolo-asff checkpoint (its EMA weights when it has them), a Darknet file (then
            ``config`` is needed) or an official ASFF release; all of it must load.
        config, opts: as :func:`~yolo_asff.engine.loading.model_for_weights` takes them.
        size, conf, nms, batch: ``test.img_size``, ``test.conf_thresh``, ``test.nms_thresh`` and
            ``test.batch_size`` (:func:`eval_opts`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (default ``runtime.device``).
        half: float16 autocast on a GPU (:func:`~yolo_asff.utils.device.fp16_autocast`).
        json_path: write :func:`~yolo_asff.engine.evaluator.metrics_json` there.
        dets: write the detections there (COCO results JSON).
        plots: write the PR and F1 curves and confusion matrices there (default: the folder of ``json_path``).
        testdev: no ground truth: write the detections only.

    Returns:
        the metrics of :meth:`~yolo_asff.engine.evaluator.Evaluator.evaluate`.

    Raises:
        MissingFileError: no file at ``weights``.
        OutputError: an output path that cannot be written (checked before anything runs).
        ConfigError, CheckpointError, InvalidInputError: a bad config, weights that do not fit, a bad device.
    """
    weights = Path(weights)
    if weights.is_dir():
        raise MissingFileError(f"--weights {weights} is a folder: pass a checkpoint in it, e.g. {weights / 'best.pth'}")
    if not weights.is_file():
        raise MissingFileError(f"weights file not found: {weights} (--weights: a yolo-asff checkpoint or a Darknet "
                               ".weights)")
    if size is not None:
        parse_size(size, "--size (test.img_size)")  # named as the user typed it, before the model is built
    plots = plots or (str(Path(json_path).parent) if json_path else None)
    _check_outputs(json_path, dets, plots)
    setup_logging()
    get_logger("eval").setLevel(logging.WARNING)  # the report is printed below, not logged twice
    ready = model_for_weights(weights, config, eval_opts(opts, size, conf, nms, batch))
    cfg, model = ready.cfg, ready.model
    for note in ready.notes:
        print(f"note: {note}")
    model.to(resolve_device(device or cfg.runtime.device, "--device" if device else "runtime.device")).eval()
    metrics = Evaluator(cfg, testdev=testdev).evaluate(model, half=half, progress=True, dets_path=dets)
    loaded, shown = ready.weights.source, cfg.test.img_size
    print(f"{weights} ({loaded} weights), {metrics['num_images']} images at "
          f"{shown if isinstance(shown, int) else 'x'.join(map(str, shown))}, {metrics['num_detections']} detections")
    print(format_report(metrics))
    if dets or metrics.get("testdev"):
        print(f"detections (COCO results format): {metrics['dets_path']}")
    if json_path:
        what = {"weights": str(weights), "weights_used": loaded, "config": config}
        write_json(json_path, metrics_json(metrics, what))
        print(f"metrics: {json_path}")
    if plots and metrics.get("curves") is not None:
        written = write_evaluation_plots(metrics["curves"], plots)
        print(f"plots: {', '.join(f'{name}.png' for name in written)} in {plots}")
    return metrics
