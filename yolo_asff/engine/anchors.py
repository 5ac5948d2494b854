"""Anchors and the config: the fit for a config's data, the recall check at the start of training,
and ``model.anchors: auto``.

The algorithm and the definitions (shape IoU, the recall threshold, best-possible recall) are in
:mod:`yolo_asff.data.anchors`; this module reads what they need from a config: the anchors in use,
the model's levels and strides, the training size and the box filter.

``model.anchors: auto`` is resolved when a run starts, before its ``config.yaml`` is written and
its model built, so that the run's config and every checkpoint's carry the fitted numbers (eval,
demo and export rebuild the model from the checkpoint's config). Under torch.distributed rank 0
fits and broadcasts the anchors, so every process builds the same model (the fit is deterministic
for ``runtime.seed`` as well). A config saying ``auto`` read together with a checkpoint (a resume,
or a tool given ``--config`` and ``--weights``) means the checkpoint's anchors.
"""
from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..config import AUTO_ANCHORS, Config, output_levels
from ..data.anchors import (
    GOOD_RECALL, AnchorFit, AnchorStats, BoxShapes, anchor_stats, box_shapes, fit_anchors, recall_threshold,
)
from ..data.build import load_split
from ..data.records import Annotations, DatasetError, ImageRecord
from ..errors import YoloAsffError
from ..models.build import default_anchors
from ..models.pyramid import TinyPyramid, YoloV3Pyramid
from ..utils.logging import get_logger
from . import dist

__all__ = [
    "anchor_source", "check_anchor_recall", "checkpoint_anchors", "current_anchors", "fit_auto_anchors",
    "fit_for_config", "level_strides", "one_anchor_note", "training_shapes",
]


def current_anchors(cfg: Config) -> np.ndarray:
    """``(K, 2)`` the anchors ``cfg`` builds its model with: ``model.anchors``, or the arch's default
    (also for ``auto`` before it is fitted)."""
    m = cfg.model
    return np.asarray(m.anchors if isinstance(m.anchors, list) else default_anchors(m.arch, m.head), np.float64)


def anchor_source(cfg: Config) -> str:
    """Where :func:`current_anchors` come from, in words for reports."""
    anchors = cfg.model.anchors
    if isinstance(anchors, list):
        return "configured"
    return "default until auto fits" if anchors == AUTO_ANCHORS else "default"


def level_strides(cfg: Config) -> Tuple[int, ...]:
    """The strides of the model's output levels, finest first."""
    return tuple(TinyPyramid.strides if cfg.model.arch == "yolov3_tiny" else YoloV3Pyramid.strides)


def training_shapes(cfg: Config, records: Sequence[ImageRecord]) -> BoxShapes:
    """The training boxes' (w, h) at ``data.img_size`` as the loader resizes them (letterbox or stretch),
    without the boxes the training transform drops (a side at or below ``data.aug.min_box_size``)."""
    d = cfg.data
    return box_shapes(records, d.img_size, d.letterbox, d.aug.min_box_size, d.use_difficult)


def fit_for_config(cfg: Config, records: Sequence[ImageRecord], seed: Optional[int] = None, **options: Any) -> AnchorFit:
    """Anchors fitted to ``records`` for ``cfg``'s model: as many levels and anchors per level as it has,
    at its training size, with its recall threshold; "before" are :func:`current_anchors`.

    ``seed`` defaults to ``runtime.seed``; ``options`` go to :func:`~yolo_asff.data.anchors.fit_anchors`
    (``sample``, ``generations``).

    Raises:
        DatasetError: fewer usable boxes than anchors.
    """
    current = current_anchors(cfg)
    levels = output_levels(cfg.model.arch)
    return fit_anchors(training_shapes(cfg, records), levels, len(current) // levels,
                       recall_threshold(cfg.train.anchor_thresh), current,
                       cfg.runtime.seed if seed is None else seed, **options)


def one_anchor_note(cfg: Config) -> Optional[str]:
    """What to know about fitted anchors when ``train.anchor_thresh`` is null, or None when it is set.

    Measured on the thin-object set (README): the default anchors sent 69 % of the boxes to one anchor,
    the fitted ones spread them over all nine, and with one anchor per box a 10-epoch run then scored
    AP50 0.36 (fitted) against 0.69 (default); with train.anchor_thresh 0.25, 0.80 against 0.78.
    """
    if cfg.train.anchor_thresh is not None:
        return None
    return ("train.anchor_thresh is null, so each box trains only its best anchor: fitted anchors share the boxes "
            "among all the anchors, and each learns from fewer of them than the one or two that the default "
            "anchors may give most boxes to. In a short run on little data that can cost more than the closer fit "
            "gains; set train.anchor_thresh (e.g. 0.25, as configs/builtin.yaml does) so that every anchor close "
            "to a box learns it")


def _fit_command(cfg: Config) -> str:
    return f"yolo-asff anchors --config {cfg.source or 'YOUR_CONFIG.yaml'}"


def check_anchor_recall(cfg: Config, records: Sequence[ImageRecord], log: Any) -> Optional[AnchorStats]:
    """Log the best-possible recall of ``cfg``'s anchors on the training boxes, and warn with the command
    that fits them when it is below :data:`~yolo_asff.data.anchors.GOOD_RECALL`.

    ``log`` has ``info`` and ``warning`` (a logger or the trainer's monitor). Returns the figures, or
    None when no box is usable.
    """
    shapes = training_shapes(cfg, records)
    if not len(shapes.shapes):
        return None
    stats = anchor_stats(shapes.shapes, current_anchors(cfg), recall_threshold(cfg.train.anchor_thresh))
    log.info("anchors (%s): best-possible recall %.3f on %d training boxes at data.img_size (shape IoU > %.2f), "
             "%.2f anchors above it per box, mean best IoU %.3f", anchor_source(cfg), stats.bpr, len(shapes.shapes),
             stats.threshold, stats.anchors_per_box, stats.mean_iou)
    if shapes.skipped:
        total = shapes.skipped + len(shapes.shapes)
        log.warning("%d of the %d training boxes (%.1f%%) have a side of data.aug.min_box_size=%g px or less at "
                    "data.img_size %s: training drops them (evaluation keeps them, so they count as misses). Raise "
                    "data.img_size or lower data.aug.min_box_size if they matter", shapes.skipped, total,
                    100 * shapes.skipped / total, cfg.data.aug.min_box_size, cfg.data.img_size)
    if stats.bpr < GOOD_RECALL:
        log.warning("the anchors fit this data poorly: %.1f%% of the training boxes have no anchor with shape IoU "
                    "> %.2f (best-possible recall %.3f < %.2f). Fit anchors to the data with `%s` and paste its "
                    "model.anchors block into the config, or set model.anchors: auto",
                    100 * (1 - stats.bpr), stats.threshold, stats.bpr, GOOD_RECALL, _fit_command(cfg))
    return stats


def fit_auto_anchors(cfg: Config, log: Optional[logging.Logger] = None) -> Optional[Annotations]:
    """Resolve ``model.anchors: auto``: fit anchors to the training split and set them in ``cfg``.

    Does nothing (returns None) for any other ``model.anchors``. Otherwise reads the training split
    (returned, so that the caller builds its dataset without reading it again), fits on rank 0,
    broadcasts, sets ``cfg.model.anchors`` on every rank, and logs the anchors with their figures.

    Raises:
        DatasetError: the split cannot be read, or holds fewer usable boxes than anchors (on every rank).
    """
    if cfg.model.anchors != AUTO_ANCHORS:
        return None
    log = log or get_logger("train")
    annotations = load_split(cfg, "train")
    anchors, problem = None, None
    if dist.is_main_process():
        try:
            fit = fit_for_config(cfg, annotations.records)
            anchors = fit.anchor_list()
            _log_fit(log, fit)
            if one_anchor_note(cfg):
                log.warning("model.anchors: auto: %s", one_anchor_note(cfg))
        except YoloAsffError as exc:
            problem = f"model.anchors: auto: {exc}"
    anchors, problem = dist.broadcast_object((anchors, problem))
    if problem is not None:
        raise DatasetError(problem)
    cfg.model.anchors = anchors
    return annotations


def _log_fit(log: Any, fit: AnchorFit) -> None:
    before = fit.before
    log.info("model.anchors: auto: fitted to %d training boxes in %.1f s (seed %d): %s; best-possible recall "
             "%.3f -> %.3f, mean best IoU %.3f -> %.3f (default anchors -> fitted)", fit.boxes, fit.seconds, fit.seed,
             fit.anchor_list(), before.bpr, fit.after.bpr, before.mean_iou, fit.after.mean_iou)


def checkpoint_anchors(cfg: Config, saved_model: Mapping[str, Any]) -> List[str]:
    """A config saying ``auto`` read with a checkpoint: take the checkpoint's anchors (its saved
    ``model`` section), the ones its run fitted. Returns a note to show, or none."""
    if cfg.model.anchors != AUTO_ANCHORS or "anchors" not in saved_model:
        return []
    cfg.model.anchors = saved_model["anchors"]
    return [f"model.anchors: the checkpoint's {saved_model['anchors']} (the config says auto: fitted by its run)"]
