"""Evaluate weights on a validation set: COCO AP (pycocotools) or VOC mAP.

    yolo-asff eval --weights runs/builtin/best.pth              # the config the checkpoint holds
    yolo-asff eval --config builtin --weights runs/builtin/best.pth
        [--size 608] [--conf 0.001] [--nms 0.65] [--batch 8] [--half] [--device cpu|cuda]
        [--json metrics.json] [--dets detections.json] [--plots DIR] [--testdev] [--opts key=value ...]

``--weights`` is a yolo-asff checkpoint (its EMA weights when it has them), a Darknet ``.weights``
file (then ``--config`` is needed) or an official ASFF release. A checkpoint's own config gives the
model, the validation set, and the input size and normalisation it was trained with; a ``--config``
given as well must build the same model. Prints the COCO table and the per-class table (images,
instances, precision and recall at the best-F1 confidence, AP50, AP); ``--json`` writes the numbers
(fractions 0-1, null where the data has nothing of that kind), ``--dets`` the detections in COCO
results format, ``--plots`` (default: the folder of ``--json``) the precision-recall and F1 curves
and the confusion matrices as ``PR_curve.png``, ``F1_curve.png``, ``confusion_matrix.png`` and
``confusion_matrix_normalized.png``. ``--testdev`` (or an annotation file without annotations)
only writes the detections, e.g. for the COCO test-dev server. ``--opts test.coco_backend=faster`` scores
with faster-coco-eval instead of pycocotools: the same numbers, in a fraction of the time on large sets.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
import yaml
from torch import nn


from ..engine.checkpoint import load_weights_file
from ..engine.loading import model_for_weights
from ..engine.evaluator import METRIC_KEYS, Evaluator, format_report
from ..engine.plots import write_evaluation_plots
from ..engine.predictor import resolve_device
from ..utils.cli import UserError, tool_main
from ..utils.files import check_writable, write_json
from ..utils.logging import get_logger, setup_logging


def config_opts(args: argparse.Namespace) -> List[str]:
    """The command-line shortcuts as config overrides (checked like any other ``--opts``)."""
    opts = list(args.opts)
    for value, key in ((args.size, "test.img_size"), (args.conf, "test.conf_thresh"), (args.nms, "test.nms_thresh"),
                       (args.batch, "test.batch_size")):
        if value is not None:
            # Written the way YAML reads it back: a bare 1e-05 would be read as a string.
            opts.append(f"{key}={yaml.safe_dump([value], default_flow_style=True).strip()[1:-1]}")
    return opts


def pick_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a user error otherwise."""
    try:
        return resolve_device(name)
    except ValueError as exc:
        raise UserError(f"--device: {exc}") from exc


def load_weights(model: nn.Module, path: Path) -> str:
    """Load ``path`` into ``model``, all of it (evaluating half-initialised weights means nothing); returns
    what was loaded: ``darknet``, ``ema``, ``model`` or ``official <variant>``."""
    return load_weights_file(model, path, strict=True).source


def metrics_json(metrics: Mapping[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """The numbers worth keeping (no text tables); NaN becomes null when written."""
    keep = [*METRIC_KEYS, "per_class", "per_class_AP50", "num_images", "num_detections", "metric", "coco_backend",
            "voc", "testdev", "dets_path", "best_f1_conf", "precision", "recall", "F1", "per_class_table",
            "confusion_matrix"]
    return {**{k: metrics[k] for k in keep if k in metrics}, **extra}


def evaluate(args: argparse.Namespace) -> int:
    weights = Path(args.weights)
    if not weights.is_file():
        raise UserError(f"weights file not found: {weights} (--weights: a yolo-asff checkpoint or a Darknet .weights)")
    for path, what in ((args.json, "--json file"), (args.dets, "--dets file")):
        if path:
            check_writable(path, what)
    plots = args.plots or (str(Path(args.json).parent) if args.json else None)
    if plots:
        check_writable(plots, "--plots folder", folder=True)
    setup_logging()
    get_logger("eval").setLevel(logging.WARNING)  # the report is printed below, not logged twice
    ready = model_for_weights(weights, args.config, config_opts(args))
    cfg, model = ready.cfg, ready.model
    for note in ready.notes:
        print(f"note: {note}")
    loaded = ready.weights.source
    device = pick_device(args.device or cfg.runtime.device)
    model.to(device).eval()
    evaluator = Evaluator(cfg, testdev=args.testdev)
    metrics = evaluator.evaluate(model, half=args.half, progress=True, dets_path=args.dets)
    size = cfg.test.img_size
    print(f"{weights} ({loaded} weights), {metrics['num_images']} images at "
          f"{size if isinstance(size, int) else 'x'.join(map(str, size))}, {metrics['num_detections']} detections")
    print(format_report(metrics))
    if args.dets or metrics.get("testdev"):
        print(f"detections (COCO results format): {metrics['dets_path']}")
    if args.json:
        out = metrics_json(metrics, {"weights": str(weights), "weights_used": loaded, "config": args.config})
        write_json(args.json, out)
        print(f"metrics: {args.json}")
    if plots and metrics.get("curves") is not None:
        written = write_evaluation_plots(metrics["curves"], plots)
        print(f"plots: {', '.join(f'{name}.png' for name in written)} in {plots}")
    return 0


@tool_main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config YAML or shipped config name (model and data.val); default: the "
                        "one the checkpoint holds")
    parser.add_argument("--weights", required=True, help="yolo-asff checkpoint (.pth) or Darknet .weights")
    parser.add_argument("--size", type=int, help="input size (default: test.img_size)")
    parser.add_argument("--conf", type=float, help="score threshold (default: test.conf_thresh)")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default: test.nms_thresh)")
    parser.add_argument("--batch", type=int, help="images per batch (default: test.batch_size)")
    parser.add_argument("--half", action="store_true", help="float16 autocast (GPU only)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: runtime.device)")
    parser.add_argument("--json", help="write the metrics here as JSON")
    parser.add_argument("--dets", help="write the detections here (COCO results JSON)")
    parser.add_argument("--plots", help="write the PR and F1 curves and the confusion matrices (PNG) in this folder "
                        "(default: the folder of --json)")
    parser.add_argument("--testdev", action="store_true", help="no ground truth: write the detections only")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. data.root=/data/coco")
    return evaluate(parser.parse_args(argv))
