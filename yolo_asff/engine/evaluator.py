"""Evaluation of a detector on the validation set: COCO AP with pycocotools, VOC mAP with ``voc_eval``.

    evaluator = Evaluator(cfg)               # builds the val dataset and loader once
    metrics = evaluator.evaluate(model)      # {"AP": 0.41, "AP50": 0.62, ..., "per_class": {...}}

Predictions go through the one NMS path (:func:`~yolo_asff.engine.postprocess.postprocess`),
are mapped back to original-image pixels and written in COCO results format with the
dataset's own category ids. ``data.format: coco`` is scored by pycocotools against the
annotation file itself; ``data.format: voc`` by the VOC protocol (:mod:`.voc_eval`), with
pycocotools on an in-memory copy of the ground truth for the size and recall breakdown.
``test.coco_backend: faster`` scores with faster-coco-eval instead, to the same numbers
(:mod:`.coco_api`). Under torch.distributed every rank runs its share of the images, rank 0 scores, and
every rank returns the same numbers.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..config import Config
from ..data import DetectionDataset, ImageRecord, build_dataloader, build_dataset
from ..data.transforms import unletterbox_boxes
from ..utils.device import fp16_autocast
from ..utils.files import atomic_write
from ..utils.logging import get_logger
from ..utils.modules import unwrap_model
from .coco_api import as_backend, build_coco, check_backend, evaluate_bbox, load_results, matches_at
from .curves import EvaluationCurves, coco_matches, confusion_matrix, evaluation_curves, per_class_table
from .dist import all_gather_objects, broadcast_object, is_distributed, is_main_process
from .postprocess import postprocess
from .voc_eval import VocMetrics, voc_evaluate

__all__ = [
    "METRIC_KEYS", "Evaluator", "ValidationLoss", "coco_gt_from_records", "coco_results", "detections_to_coco",
    "format_per_class", "format_per_class_table", "format_report", "load_coco_gt", "metrics_json", "score_coco",
    "score_voc", "with_source_ids", "write_coco_results",
]

# The 12 numbers of COCOeval.summarize(), in its order.
METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# How reports name each test.coco_backend.
BACKEND_NAMES = {"pycocotools": "pycocotools", "faster": "faster-coco-eval"}

# Detections of one image as rows x1, y1, x2, y2 (original pixels), score, class index: (n, 6) float32.
ImageDetections = np.ndarray


# ----------------------------------------------------------------------------- COCO results format


def detections_to_coco(
    image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, category_ids: Sequence[int]
) -> List[Dict[str, Any]]:
    """One image's detections as COCO results: ``[{image_id, category_id, bbox [x, y, w, h], score}]``.

    Args:
        boxes_xyxy: ``(n, 4)`` in original-image pixels.
        scores: ``(n,)``.
        labels: ``(n,)`` contiguous class indices, mapped through ``category_ids`` (the
            dataset's own ids, gaps and all).
    """
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)  # JSON has no NaN; a NaN box scores nothing
    boxes, scores, labels = boxes[finite], scores[finite], labels[finite]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).round(2).tolist()
    cats = np.asarray(category_ids, np.int64)[labels].tolist()
    scores = scores.round(5).tolist()
    return [{"image_id": int(image_id), "category_id": c, "bbox": b, "score": s} for b, c, s in zip(xywh, cats, scores)]


def coco_results(detections: Mapping[int, ImageDetections], category_ids: Sequence[int]) -> List[Dict[str, Any]]:
    """All images' detections (``{image_id: (n, 6) rows}``) as one COCO results list, by image id."""
    results: List[Dict[str, Any]] = []
    for image_id in sorted(detections):
        rows = detections[image_id]
        results += detections_to_coco(image_id, rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64), category_ids)
    return results


def write_coco_results(results: List[Dict[str, Any]], path: os.PathLike | str) -> None:
    """Write a COCO results list as JSON (atomically: never half a file; never NaN or Infinity)."""
    atomic_write(path, lambda f: f.write(json.dumps(results, allow_nan=False).encode("utf-8")))


# ----------------------------------------------------------------------------- scoring


def coco_gt_from_records(
    records: Sequence[ImageRecord], class_names: Sequence[str], category_ids: Sequence[int],
    backend: str = "pycocotools",
) -> Any:
    """An in-memory ``COCO`` ground truth (of ``backend``, see :mod:`.coco_api`) built from image records.

    Built so that pycocotools' assumptions hold whatever the annotation files held: int image
    and category ids (the records'), annotation ids 1..M (``COCOeval`` takes a matched id of 0 for
    "unmatched", and ``COCO.createIndex`` keys annotations by id), ``iscrowd`` 0 or 1, float
    areas. Boxes and areas are the records' scoring ones (:meth:`ImageRecord.scoring_boxes`: a
    COCO file's boxes unclipped, with its own areas). Ignored boxes (VOC ``difficult``) become
    ``iscrowd: 1``, pycocotools' only ignore flag.
    """
    images, annotations = [], []
    for r in records:
        images.append({"id": int(r.image_id), "width": int(r.width), "height": int(r.height), "file_name": r.name})
        boxes, areas = r.scoring_boxes()
        for box, area, label, ignore in zip(boxes.tolist(), areas.tolist(), r.labels.tolist(), r.ignore.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": int(r.image_id),
                                "category_id": int(category_ids[label]), "bbox": [box[0], box[1], w, h],
                                "area": float(area), "iscrowd": int(ignore)})
    return build_coco({"images": images, "annotations": annotations,
                       "categories": [{"id": int(i), "name": n} for i, n in zip(category_ids, class_names)]}, backend)


def with_source_ids(
    results: List[Dict[str, Any]], image_ids: Mapping[int, Any], category_ids: Mapping[int, Any],
    record_category_ids: Sequence[int], scales: Optional[Mapping[int, Tuple[float, float]]] = None,
) -> List[Dict[str, Any]]:
    """COCO results as the annotation file names and measures things, for the user's own tools.

    ``image_ids``: record id → the file's id (where they differ); ``category_ids``: class
    index → the file's category id (where they differ); ``record_category_ids``: class index →
    the int id the results carry; ``scales``: record id → ``(sx, sy)`` for pictures resized after
    annotation (boxes are divided by it, back into the file's coordinates).
    """
    scales = scales or {}
    if not image_ids and not category_ids and not scales:
        return results
    by_int = {int(record_category_ids[k]): v for k, v in category_ids.items()}
    out = []
    for r in results:
        sx, sy = scales.get(r["image_id"], (1.0, 1.0))
        x, y, w, h = r["bbox"]
        out.append({**r, "image_id": image_ids.get(r["image_id"], r["image_id"]),
                    "category_id": by_int.get(r["category_id"], r["category_id"]),
                    "bbox": [round(x / sx, 2), round(y / sy, 2), round(w / sx, 2), round(h / sy, 2)]
                    if (sx, sy) != (1.0, 1.0) else r["bbox"]})
    return out


def load_coco_gt(ann_file: os.PathLike | str, backend: str = "pycocotools") -> Any:
    """A COCO annotation file as a ``COCO`` of ``backend`` (see :mod:`.coco_api`), quietly.

    Annotations without ``area`` get the box area and those without ``iscrowd`` get 0
    (COCOeval needs both; files written by other tools often leave them out).
    """
    with open(ann_file, "rb") as f:
        dataset = json.load(f)
    patched = 0
    for ann in dataset.get("annotations", []):
        if "area" not in ann or "iscrowd" not in ann:
            ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
            ann.setdefault("iscrowd", 0)
            patched += 1
    if patched:
        get_logger("eval").info("%s: %d annotations without area/iscrowd: used the box area and iscrowd 0",
                                ann_file, patched)
    return build_coco(dataset, backend)


def _nan(value: float) -> float:
    """pycocotools' -1 ("no ground truth of that kind") as NaN."""
    return float("nan") if value < 0 else float(value)


def score_coco(
    coco_gt: Any,
    results: List[Dict[str, Any]],
    category_ids: Sequence[int],
    class_names: Sequence[str],
    image_ids: Optional[Sequence[int]] = None,
    backend: str = "pycocotools",
) -> Dict[str, Any]:
    """Score COCO results (bbox) with COCOeval: pycocotools' (the reference) or faster-coco-eval's.

    Args:
        coco_gt: a ``COCO`` ground truth (:func:`load_coco_gt` of the annotation file, or
            :func:`coco_gt_from_records`); one of the other backend is converted.
        results: COCO results list (may be empty: every AP is then 0).
        category_ids, class_names: the classes evaluated, contiguous index order.
        image_ids: the images evaluated (default: all in ``coco_gt``).
        backend: ``pycocotools`` or ``faster`` (``test.coco_backend``; :mod:`.coco_api`).

    Returns:
        the 12 COCO numbers (``METRIC_KEYS``, fractions; NaN where the ground truth has
        nothing of that kind), ``per_class`` / ``per_class_AP50`` ``{name: AP}``,
        ``summary``, pycocotools' printed table (the same text from either backend), and ``curves``,
        the :class:`~yolo_asff.engine.curves.EvaluationCurves` of COCOeval's own matching at IoU 0.5
        (no confusion matrix: that needs the detections, see :meth:`Evaluator.score`; None,
        with a warning, where the matches cannot be read).
    """
    coco_gt = as_backend(coco_gt, backend)
    scores = evaluate_bbox(coco_gt, load_results(coco_gt, results, backend), category_ids, image_ids, backend)
    metrics: Dict[str, Any] = {key: _nan(v) for key, v in zip(METRIC_KEYS, scores.stats)}
    precision = scores.precision  # (T, R, K, A, M): IoU, recall, class, area, max dets
    k_of = {c: k for k, c in enumerate(scores.cat_ids)}
    per_class, per_class50 = {}, {}
    for name, cat in zip(class_names, category_ids):
        p = precision[:, :, k_of[int(cat)], 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        p50 = p[0]
        per_class50[name] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
    metrics.update(per_class=per_class, per_class_AP50=per_class50, summary=scores.summary, coco_backend=backend,
                   curves=_curves(scores.evaluation if backend == "pycocotools" else
                                  matches_at(coco_gt, results, category_ids, image_ids), category_ids, class_names))
    return metrics


def _curves(evaluation: Any, category_ids: Sequence[int], class_names: Sequence[str]) -> Optional[EvaluationCurves]:
    """The curves of ``evaluation``'s matches; None (and a warning) when they cannot be read: the AP stands alone."""
    try:
        matches = coco_matches(evaluation)
    except ValueError as exc:
        get_logger("eval").warning("no precision-recall curves, per-class table or plots: %s", exc)
        return None
    return evaluation_curves([matches[int(c)] for c in category_ids], class_names, evaluation.params.recThrs)


def score_voc(
    records: Sequence[ImageRecord], detections: Mapping[int, ImageDetections], num_classes: int
) -> VocMetrics:
    """VOC-protocol AP (:func:`~yolo_asff.engine.voc_eval.voc_evaluate`) of ``{image_id: (n, 6) rows}``."""
    gt_ids = np.concatenate([np.full(len(r.labels), r.image_id) for r in records] + [np.zeros(0, np.int64)])
    order = sorted(detections)
    rows = np.concatenate([detections[i] for i in order] + [np.zeros((0, 6), np.float32)])
    det_ids = np.concatenate([np.full(len(detections[i]), i) for i in order] + [np.zeros(0, np.int64)])
    return voc_evaluate(
        det_ids, rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64),
        gt_ids, np.concatenate([r.boxes for r in records] + [np.zeros((0, 4), np.float32)]),
        np.concatenate([r.labels for r in records] + [np.zeros(0, np.int64)]),
        np.concatenate([r.ignore for r in records] + [np.zeros(0, bool)]), num_classes,
    )


# ----------------------------------------------------------------------------- tables


def format_per_class(per_class: Mapping[str, float], per_class50: Mapping[str, float], columns: int = 3) -> str:
    """A per-class table, ``columns`` classes per line: ``name  AP  AP50`` (percent; ``-`` without ground truth)."""
    if not per_class:
        return ""
    width = max(8, max(len(n) for n in per_class))

    def pct(v: float) -> str:
        return f"{100 * v:5.1f}" if math.isfinite(v) else "    -"

    cells = [f"{name:<{width}} {pct(ap)} {pct(per_class50.get(name, float('nan')))}" for name, ap in per_class.items()]
    header = " | ".join([f"{'class':<{width}}    AP  AP50"] * min(columns, len(cells)))
    rows = [" | ".join(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    return "\n".join([header, "-" * len(header), *rows])


def _pct(v: Optional[float]) -> str:
    return f"{100 * v:6.1f}" if v is not None and math.isfinite(v) else "     -"


def format_per_class_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-class table (:func:`~yolo_asff.engine.curves.per_class_table` rows) as text, one class a line:
    ``class images instances P R AP50 AP`` (percent; ``-`` without ground truth)."""
    if not rows:
        return ""
    width = max(8, max(len(str(r["class"])) for r in rows))
    header = f"{'class':<{width}} {'images':>7} {'instances':>9} {'P':>6} {'R':>6} {'AP50':>6} {'AP':>6}"
    lines = [f"{str(r['class']):<{width}} {r['images']:>7d} {r['instances']:>9d} {_pct(r['precision'])} "
             f"{_pct(r['recall'])} {_pct(r['AP50'])} {_pct(r['AP'])}" for r in rows]
    return "\n".join([header, "-" * len(header), *lines])


def format_report(metrics: Mapping[str, Any]) -> str:
    """What an evaluation says, as text: pycocotools' 12-line table, the VOC figures (VOC), per-class AP."""
    if "summary" not in metrics:  # test-dev: nothing scored
        return f"{metrics.get('num_detections', 0)} detections of {metrics.get('num_images', 0)} images, not scored"
    parts = []
    if metrics.get("metric", "coco") == "coco":
        parts += [f"COCO bbox ({BACKEND_NAMES[metrics.get('coco_backend', 'pycocotools')]}):", metrics["summary"]]
    else:
        voc = metrics["voc"]
        parts += [
            f"{BACKEND_NAMES[metrics.get('coco_backend', 'pycocotools')]} on the same ground truth (difficult or crowd "
            "boxes ignored):", metrics["summary"],
            f"VOC mAP@0.5: {voc['mAP50_07']:.4f} (VOC2007 11-point), {voc['mAP50_area']:.4f} (area under the curve); "
            f"mAP@[0.5:0.95] with the VOC protocol: {voc['mAP_area']:.4f}",
            f"AP, AP50, AP75 and per-class AP below use the {'11-point' if metrics['metric'] == 'voc07' else 'area'} "
            "VOC metric",
        ]
    if metrics.get("per_class_table"):
        parts += [f"per-class AP (%), with precision P and recall R at confidence {metrics['best_f1_conf']:.3f} "
                  "(where the F1 averaged over the classes is highest):",
                  format_per_class_table(metrics["per_class_table"])]
    else:
        parts += ["per-class AP (%):", format_per_class(metrics["per_class"], metrics["per_class_AP50"])]
    return "\n".join(parts)


def metrics_json(metrics: Mapping[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """What ``yolo-asff eval --json`` writes: the numbers of :meth:`Evaluator.evaluate` worth keeping (no text
    tables, no curves), plus ``extra`` (what was evaluated). Fractions 0-1; NaN becomes null when written
    (:func:`~yolo_asff.utils.files.write_json`)."""
    keep = [*METRIC_KEYS, "per_class", "per_class_AP50", "num_images", "num_detections", "metric", "coco_backend",
            "voc", "testdev", "dets_path", "best_f1_conf", "precision", "recall", "F1", "per_class_table",
            "confusion_matrix"]
    return {**{k: metrics[k] for k in keep if k in metrics}, **extra}


# ----------------------------------------------------------------------------- validation loss


class ValidationLoss:
    """The training loss over the validation images: each term's mean per image, and their total.

    ``loss_fn`` is the trainer's (:func:`~yolo_asff.models.loss.build_loss`), fed with the head's
    raw outputs of the evaluation's own forward pass (the model in eval mode: BatchNorm statistics
    and no DropBlock) and the letterboxed validation boxes in input pixels, the training targets'
    format (``[batch index, class, x1, y1, x2, y2, 1]``; crowd or difficult boxes left out unless
    ``data.use_difficult``, as in training). Each batch's terms (per-image means) are weighted by
    its image count.
    """

    def __init__(self, loss_fn: Any) -> None:
        self.loss_fn = loss_fn
        self.sums: Dict[str, Any] = {}  # tensors on the model's device: no host sync per batch
        self.images = 0

    def add(self, raw: Any, targets: torch.Tensor, image_size: Tuple[int, int], batch_size: int,
            max_boxes: Optional[int] = None) -> None:
        """One batch: ``raw`` the head's outputs, ``targets`` ``(M, 7)`` (see the class docstring), ``max_boxes``
        an upper bound on one image's boxes (the collate's; the loss counts them itself without it)."""
        device_type = targets.device.type
        with torch.autocast(device_type, enabled=False):  # as in training: the loss runs in float32
            _, terms = self.loss_fn(raw, targets, image_size, max_boxes)
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float() * batch_size
        self.images += batch_size

    def state(self) -> Tuple[Dict[str, float], int]:
        """``({term: sum over images}, images)`` in plain floats (for an exchange between processes)."""
        return {k: float(v) for k, v in self.sums.items()}, self.images

    @staticmethod
    def means(states: Sequence[Tuple[Dict[str, float], int]]) -> Dict[str, float]:
        """``{total, <term>: mean per image}`` over the states of all processes (empty without images)."""
        images = sum(n for _, n in states)
        if not images:
            return {}
        sums: Dict[str, float] = {}
        for part, _ in states:
            for k, v in part.items():
                sums[k] = sums.get(k, 0.0) + v
        means = {k: v / images for k, v in sums.items()}
        return {"total": sum(means.values()), **means}


# ----------------------------------------------------------------------------- the evaluator


class Evaluator:
    """Runs a model over the validation set and scores it.

    Args:
        cfg: the config (``data`` for the dataset, ``test`` for size, thresholds and batch).
        dataset: a validation :class:`DetectionDataset` (default: ``build_dataset(cfg, "val")``).
        distributed: shard the images over torch.distributed ranks (default: when a process
            group is initialised).
        testdev: no ground truth (e.g. COCO test-dev): write the results JSON only. Also
            implied by a COCO annotation file without an ``annotations`` list.
        voc07: with the VOC protocol, report the VOC2007 11-point metric as AP (default: as
            ``test.metric`` says; ``auto`` on VOC data: when every validation split is a 2007 one).

    The metric is ``test.metric``: ``auto`` scores COCO and YOLO txt data with pycocotools and
    VOC data with the VOC protocol. pycocotools scores against ground truth built in memory
    from the dataset's records (:func:`coco_gt_from_records`), so ids of any form in the files
    give the same numbers. ``test.coco_backend`` picks pycocotools or faster-coco-eval (same numbers,
    :mod:`.coco_api`). The loader is built once: call :meth:`evaluate` as often as needed.
    """

    def __init__(
        self,
        cfg: Config,
        dataset: Optional[DetectionDataset] = None,
        distributed: Optional[bool] = None,
        testdev: bool = False,
        voc07: Optional[bool] = None,
    ) -> None:
        self.cfg = cfg
        self.backend = cfg.test.coco_backend
        check_backend(self.backend)  # a missing package is said now, not after reading the dataset
        self.dataset = dataset if dataset is not None else build_dataset(cfg, "val")
        self.distributed = is_distributed() if distributed is None else distributed
        self.loader = build_dataloader(cfg, "val", dataset=self.dataset, distributed=self.distributed)
        self.testdev = testdev
        self.metric = self._metric(cfg, voc07)
        self.voc07 = self.metric == "voc07"
        self._coco_gt: Any = None
        self._records_by_id: Optional[Dict[int, ImageRecord]] = None
        self.log = get_logger("eval")

    @staticmethod
    def _metric(cfg: Config, voc07: Optional[bool]) -> str:
        """``coco``, ``voc`` or ``voc07``: from ``test.metric`` (``auto``: by the data format), or ``voc07`` forced."""
        metric = cfg.test.metric
        if metric == "auto":
            splits = cfg.data.val.splits
            all_2007 = bool(splits) and all(str(s[0]) == "2007" for s in splits)
            metric = "coco" if cfg.data.format != "voc" else ("voc07" if all_2007 else "voc")
        if voc07 is not None and metric != "coco":
            metric = "voc07" if voc07 else "voc"
        return metric

    # -- inference

    def predict(
        self, model: nn.Module, half: bool = False, progress: bool = True, loss: Optional[ValidationLoss] = None,
    ) -> Dict[int, Optional[ImageDetections]]:
        """This rank's detections: ``{image_id: (n, 6) float32}`` rows x1, y1, x2, y2 (original pixels), score,
        class; ``None`` for a picture that could not be read (left out of the score).

        Runs ``model`` in eval mode under ``torch.no_grad`` on its own device (its training
        mode is restored afterwards). ``half``: float16 autocast on a GPU (ignored on a CPU).
        ``loss``: also add each batch's training loss to it, from the raw outputs of ``model.head``
        in the same forward pass (caught by a forward hook: no second pass; a model without a
        ``head`` gets no loss). A batch holding an unreadable picture is left out of the loss.
        """
        model = unwrap_model(model)
        head = getattr(model, "head", None) if loss is not None else None
        if loss is not None and head is None:
            self.log.warning("%s has no head: no validation loss", type(model).__name__)
        raw: List[Any] = []
        hook = head.register_forward_hook(lambda module, inputs, output: raw.append(output)) if head else None
        device = next(model.parameters()).device
        if half and device.type != "cuda":
            self.log.warning("half precision needs a GPU; evaluating in float32 on %s", device)
        t = self.cfg.test
        show = progress and sys.stderr.isatty() and is_main_process()
        out: Dict[int, ImageDetections] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), fp16_autocast(device, half):
                for batch in tqdm(self.loader, desc="eval", unit="batch", disable=not show, leave=False):
                    images = batch["images"].to(device, non_blocking=True)
                    raw.clear()
                    decoded = model(images)
                    if hook is not None and raw and all(batch["readable"]):
                        targets = batch["targets"][torch.from_numpy(self._counted_targets(batch["image_ids"]))]
                        loss.add(raw[-1], targets.to(device), tuple(images.shape[-2:]), len(images),
                                 batch.get("max_boxes"))
                    dets = postprocess(decoded, t.conf_thresh, t.nms_thresh, t.max_det)
                    rows = torch.cat([torch.cat([d.boxes, d.scores[:, None], d.labels[:, None].float()], 1)
                                      for d in dets]).cpu().numpy()  # one device→host copy per batch
                    splits = np.cumsum([len(d.scores) for d in dets])[:-1]
                    # rows is float32 already (postprocess works in float32) and a fresh array: the parts,
                    # views of it, are written in place; copy=False only guards against another dtype.
                    for image_id, info, readable, part in zip(batch["image_ids"], batch["infos"],
                                                              batch["readable"], np.split(rows, splits)):
                        if not readable:  # left out of the score (the dataset said so once)
                            out[int(image_id)] = None
                            continue
                        part = part.astype(np.float32, copy=False)
                        part[:, :4] = unletterbox_boxes(part[:, :4], info)
                        out[int(image_id)] = part
        finally:
            if hook is not None:
                hook.remove()
            model.train(was_training)
        return out

    def _counted_targets(self, image_ids: Sequence[int]) -> np.ndarray:
        """Which rows of a batch's targets (every box of each record, in order) training would use."""
        if self._records_by_id is None:
            self._records_by_id = {r.image_id: r for r in self.dataset.records}
        use_ignored = getattr(self.dataset, "use_ignored", False)
        records = [self._records_by_id[int(i)] for i in image_ids]
        return np.concatenate([np.ones(len(r.labels), bool) if use_ignored else ~r.ignore for r in records]
                              + [np.zeros(0, bool)])

    def gather(self, local: Dict[int, ImageDetections], error: Optional[str] = None) -> Dict[int, ImageDetections]:
        """Every rank's detections merged (DistributedSampler repeats a few images: kept once).

        ``error``: this rank's prediction failed. Every rank still takes part in the exchange, and
        every rank then raises the same error, so that all of them leave the evaluation together
        (a rank that left alone would pair its next collective with the others' gather).
        """
        if not self.distributed:
            return local
        merged: Dict[int, ImageDetections] = {}
        errors = []
        for rank, (part, failed) in enumerate(all_gather_objects((local, error))):
            merged.update(part)
            if failed:
                errors.append(f"rank {rank}: {failed}")
        if errors:
            raise RuntimeError(f"evaluation failed on {'; '.join(errors)}")
        return merged

    # -- scoring

    def _ground_truth(self) -> Any:
        """The ``COCO`` ground truth (of ``test.coco_backend``), built once from the dataset's records."""
        if self._coco_gt is None:
            ds = self.dataset
            self._coco_gt = coco_gt_from_records(ds.records, ds.class_names, ds.category_ids, self.backend)
        return self._coco_gt

    def _is_testdev(self) -> bool:
        return self.testdev or not getattr(self.dataset, "has_ground_truth", True)

    def score(
        self, detections: Mapping[int, ImageDetections], dets_path: Optional[os.PathLike | str] = None
    ) -> Dict[str, Any]:
        """Score merged detections (see :meth:`evaluate` for the dict); writes ``dets_path`` if given."""
        ds = self.dataset
        unreadable = {i for i, rows in detections.items() if rows is None}
        detections = {i: rows for i, rows in detections.items() if rows is not None}
        results = coco_results(detections, ds.category_ids)
        base = {"num_images": len(ds) - len(unreadable), "num_detections": len(results)}
        if unreadable:
            base["unreadable_images"] = len(unreadable)
            self.log.warning("%d validation pictures could not be read and were left out of the score", len(unreadable))
        scales = {r.image_id: r.annotation_scale for r in ds.records if r.annotation_scale != (1.0, 1.0)}
        as_written = lambda: with_source_ids(results, getattr(ds, "source_image_ids", {}),  # noqa: E731
                                             getattr(ds, "source_category_ids", {}), ds.category_ids, scales)
        if self._is_testdev():
            path = Path(dets_path) if dets_path else Path(self.cfg.runtime.output_dir) / "detections_testdev.json"
            write_coco_results(as_written(), path)
            self.log.info("test-dev: no ground truth; wrote %d detections of %d images to %s",
                          len(results), len(ds), path)
            return {**base, "testdev": True, "dets_path": str(path)}
        if dets_path:
            write_coco_results(as_written(), dets_path)
        image_ids = [r.image_id for r in ds.records if r.image_id not in unreadable]
        coco = score_coco(self._ground_truth(), results, ds.category_ids, ds.class_names, image_ids, self.backend)
        scored = [r for r in ds.records if r.image_id not in unreadable]
        if self.metric == "coco":
            metrics = {**coco, **base, "metric": "coco"}
        else:
            metrics = self._voc_metrics(scored, detections, coco, base)
        metrics["dets_path"] = str(dets_path) if dets_path else None
        if coco["curves"] is not None:
            try:
                metrics.update(self._curves_and_table(coco["curves"], metrics, scored, detections))
            except Exception as exc:  # noqa: BLE001 - the table and the plots are never worth the AP
                self.log.warning("no per-class table or confusion matrix (%s: %s); the AP stands",
                                 type(exc).__name__, exc, exc_info=True)
        return metrics

    def _curves_and_table(
        self, curves: EvaluationCurves, metrics: Mapping[str, Any], records: Sequence[ImageRecord],
        detections: Mapping[int, ImageDetections],
    ) -> Dict[str, Any]:
        """The confusion matrix (added to ``curves``) at the best-F1 confidence, and the per-class table."""
        empty = np.zeros((0, 6), np.float32)
        curves.confusion = confusion_matrix(
            ((detections.get(r.image_id, empty), r.scoring_boxes()[0], r.labels, r.ignore) for r in records),
            len(curves.class_names), curves.best_conf)
        table = per_class_table(curves, metrics["per_class"], metrics["per_class_AP50"], metrics["num_images"],
                                metrics)
        return {"curves": curves, "per_class_table": table, "best_f1_conf": curves.best_conf, **curves.mean_at_best(),
                "confusion_matrix": {"classes": [*curves.class_names, "background"],
                                     "counts": curves.confusion.tolist()}}

    def _voc_metrics(
        self, records: Sequence[ImageRecord], detections: Mapping[int, ImageDetections], coco: Dict[str, Any],
        base: Dict[str, Any],
    ) -> Dict[str, Any]:
        """VOC protocol for AP / AP50 / AP75 / per class; pycocotools (in ``coco``) for sizes and recall."""
        ds = self.dataset
        voc = score_voc(records, detections, len(ds.class_names))
        use07 = self.voc07
        coco_part = {k: v for k, v in coco.items() if k not in ("summary", "curves")}
        metrics = {**coco_part, **base, "metric": "voc07" if use07 else "voc", "coco": coco_part}
        metrics.update(
            AP=voc.map_coco(use07), AP50=voc.map_at(0.5, use07), AP75=voc.map_at(0.75, use07),
            per_class={n: float(v) for n, v in zip(ds.class_names, (voc.ap07 if use07 else voc.ap).mean(axis=1))},
            per_class_AP50={n: float(v) for n, v in zip(ds.class_names, voc.ap_at(0.5, use07))},
            voc={"mAP50_07": voc.map_at(0.5, True), "mAP50_area": voc.map_at(0.5), "mAP_area": voc.map_coco(),
                 "num_gt": {n: int(g) for n, g in zip(ds.class_names, voc.num_gt)}},
            summary=coco["summary"],
        )
        return metrics

    def evaluate(
        self, model: nn.Module, half: bool = False, progress: bool = True,
        dets_path: Optional[os.PathLike | str] = None, loss_fn: Optional[nn.Module] = None,
    ) -> Dict[str, Any]:
        """Run ``model`` over the validation set and score it.

        Args:
            model: a detector (eval output ``(B, N, 5 + C)``), possibly DDP-wrapped.
            half: float16 autocast on a GPU.
            progress: a tqdm bar (only on a terminal, only on rank 0).
            dets_path: also write the detections there as COCO results JSON.
            loss_fn: the training loss (:func:`~yolo_asff.models.loss.build_loss`): also
                return ``val_loss`` (see :class:`ValidationLoss`).

        Returns (the same on every rank):
            ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl`` (fractions,
            NaN where the ground truth has nothing of that kind), ``per_class`` and
            ``per_class_AP50`` ``{name: AP}``, ``num_images``, ``num_detections``,
            ``metric`` (``coco``, ``voc07`` or ``voc``), ``summary`` (pycocotools' table),
            ``dets_path``. VOC adds ``voc`` (both VOC metrics) and ``coco`` (pycocotools'
            numbers on the VOC ground truth, difficult = crowd); there AP, AP50, AP75 and
            the per-class numbers follow the VOC protocol.
            From pycocotools' matching at IoU 0.5 (:mod:`.curves`), whatever the metric:
            ``best_f1_conf`` (the confidence of the highest mean F1), ``precision``,
            ``recall``, ``F1`` there (means over the classes with ground truth),
            ``per_class_table`` (rows ``{class, images, instances, precision, recall, AP50,
            AP}``, ``all`` first), ``confusion_matrix`` ``{classes, counts}`` (rows the
            true class, columns the predicted one, background last) and ``curves`` (the
            :class:`~yolo_asff.engine.curves.EvaluationCurves` the plots are drawn from).
            With ``loss_fn``: ``val_loss`` ``{total, <term>: mean per image}``.
            Test-dev: ``testdev``, ``num_images``, ``num_detections`` and ``dets_path`` only.
        """
        start = time.perf_counter()
        meter = ValidationLoss(loss_fn) if loss_fn is not None and not self._is_testdev() else None
        try:
            local, error = self.predict(model, half, progress, meter), None
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks, then raised on all of them
            if not self.distributed:
                raise
            local, error = {}, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        detections = self.gather(local, error)
        losses = [meter.state()] if meter is not None else []
        if meter is not None and self.distributed:
            losses = all_gather_objects(meter.state())
        metrics: Dict[str, Any] = {}
        if is_main_process() or not self.distributed:
            self.log.info("evaluated %d images in %.1f s (%.1f images/s on this process)",
                          len(detections), elapsed, len(local) / max(elapsed, 1e-9))
            try:
                metrics = self.score(detections, dets_path)
                val_loss = ValidationLoss.means(losses)
                if val_loss:
                    metrics["val_loss"] = val_loss
            except Exception as exc:
                if not self.distributed:
                    raise
                metrics = {"error": f"{type(exc).__name__}: {exc}"}  # tell the other ranks instead of hanging them
            self._log(metrics)
        if self.distributed:
            metrics = broadcast_object(metrics)
        if "error" in metrics:
            raise RuntimeError(f"evaluation failed on rank 0: {metrics['error']}")
        return metrics

    def _log(self, metrics: Mapping[str, Any]) -> None:
        if "summary" in metrics:
            self.log.info("%s", format_report(metrics))
