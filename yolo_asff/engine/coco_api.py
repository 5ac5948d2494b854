"""The COCO bbox scorer behind ``test.coco_backend``: pycocotools (the reference) or faster-coco-eval.

The faster-coco-eval package (PyPI ``faster-coco-eval``, the ``.[fast]`` extra) re-implements
pycocotools' ``COCOeval.evaluateImg`` and ``accumulate`` in C++; its ``COCO`` and ``COCOeval_faster``
take the same inputs and fill the same ``stats`` (the 12 numbers of ``summarize()``, in pycocotools'
order; two more AR figures after them, left out here) and ``eval['precision']`` ``(T, R, K, A, M)``
array. Tests check that both give the same 12 numbers and per-class AP / AP50 to 1e-4 on the test
fixtures (tests/engine/test_evaluator.py, tests/data/test_coco_quirks.py) and a generated case
(tests/engine/test_coco_backends.py); ``scripts/bench_coco_eval.py`` times them on 5,000 images.
pycocotools stays the default.

Each backend scores ground truth of its own ``COCO`` class; :func:`as_backend` rebuilds one made by
the other (from a copy of its ``dataset`` dict). pycocotools is never replaced globally (no
``init_as_pycocotools``): the backend is a per-call choice.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..config import ConfigError

__all__ = ["COCO_BACKENDS", "CocoScores", "as_backend", "build_coco", "check_backend", "evaluate_bbox",
           "load_results"]

COCO_BACKENDS = ("pycocotools", "faster")


def _classes(backend: str) -> Tuple[Any, Any]:
    """``(COCO, COCOeval)`` of ``backend``, or an error saying what to install."""
    if backend == "pycocotools":
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError as exc:
            raise RuntimeError("evaluation needs pycocotools: .venv/bin/pip install pycocotools") from exc
        return COCO, COCOeval
    if backend == "faster":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as exc:
            raise ConfigError(
                "test.coco_backend=faster needs the faster-coco-eval package: pip install faster-coco-eval (or "
                "pip install -e '.[fast]' in the repository); or set test.coco_backend=pycocotools") from exc
        return COCO, COCOeval_faster
    raise ConfigError(f"test.coco_backend must be one of {', '.join(COCO_BACKENDS)}, got {backend!r}")


def check_backend(backend: str) -> None:
    """Raise now (ConfigError, saying what to install) if ``backend`` cannot be used, rather than at the
    first evaluation of a run."""
    _classes(backend)


def build_coco(dataset: Mapping[str, Any], backend: str = "pycocotools") -> Any:
    """A ``COCO`` of ``backend`` over ``dataset`` (``images``, ``annotations``, ``categories``), indexed
    quietly. The dict is used as it is, not copied."""
    COCO, _ = _classes(backend)
    coco = COCO()
    coco.dataset = dict(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def as_backend(coco: Any, backend: str) -> Any:
    """``coco`` itself when it is ``backend``'s ``COCO``, else that backend's ``COCO`` over a deep copy of
    its ``dataset`` (both libraries write keys such as ``ignore`` into the annotations they score)."""
    COCO, _ = _classes(backend)
    if isinstance(coco, COCO):
        return coco
    return build_coco(copy.deepcopy(coco.dataset), backend)


def load_results(coco_gt: Any, results: List[Dict[str, Any]], backend: str = "pycocotools") -> Any:
    """COCO results (``[{image_id, category_id, bbox [x, y, w, h], score}]``) as a detections ``COCO`` of
    ``coco_gt``'s images and categories. The dicts are copied (``loadRes`` adds ``area``, ``id`` and
    ``iscrowd`` to what it is given). An empty list gives an empty ``COCO`` (pycocotools' ``loadRes``
    fails on one)."""
    if not results:
        return build_coco({"images": list(coco_gt.dataset["images"]), "annotations": [],
                           "categories": list(coco_gt.dataset.get("categories", []))}, backend)
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_gt.loadRes([dict(r) for r in results])


@dataclass
class CocoScores:
    """What one bbox evaluation gives.

    Attributes:
        stats: the 12 numbers of ``COCOeval.summarize()`` in its order (AP, AP50, AP75, APs, APm, APl,
            AR1, AR10, AR100, ARs, ARm, ARl); -1 where the ground truth has nothing of that kind.
        precision: ``(T, R, K, A, M)`` precision (IoU thresholds 0.50:0.95, 101 recall points,
            categories in ``cat_ids`` order, areas all/small/medium/large, max dets 1/10/100); -1: none.
        cat_ids: the category ids of axis K.
        summary: the 12-line table pycocotools prints.
        evaluation: the COCOeval object itself, whose ``evalImgs`` (per-image matches) give the curves.
    """

    stats: np.ndarray
    precision: np.ndarray
    cat_ids: List[int]
    summary: str
    evaluation: Any = None


def evaluate_bbox(coco_gt: Any, coco_dt: Any, cat_ids: Sequence[int], img_ids: Optional[Sequence[int]] = None,
                  backend: str = "pycocotools") -> CocoScores:
    """Run COCOeval (bbox) of ``backend`` on ``coco_gt`` (converted with :func:`as_backend` if needed) and
    ``coco_dt`` (made by :func:`load_results` from that same ground truth), over ``cat_ids`` and
    ``img_ids`` (default: every image of ``coco_gt``)."""
    _, COCOeval = _classes(backend)
    lines: List[str] = []
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        if backend == "faster":
            # Its tables go through print_function (a logger by default), not stdout.
            evaluation = COCOeval(coco_gt, coco_dt, "bbox", print_function=lines.append)
        else:
            evaluation = COCOeval(coco_gt, coco_dt, "bbox")
        evaluation.params.catIds = sorted(int(c) for c in cat_ids)
        if img_ids is not None:
            evaluation.params.imgIds = sorted(int(i) for i in img_ids)
        evaluation.evaluate()
        evaluation.accumulate()
    lines.clear()  # evaluate/accumulate's timing lines
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        evaluation.summarize()
    # faster-coco-eval adds AR at IoU 0.50 and 0.75 after pycocotools' 12 lines: the same table without them.
    summary = "\n".join(lines[:12]) if backend == "faster" else table.getvalue()
    return CocoScores(stats=np.asarray(evaluation.stats[:12], np.float64),
                      precision=np.asarray(evaluation.eval["precision"]),
                      cat_ids=[int(c) for c in evaluation.params.catIds], summary=summary.rstrip(),
                      evaluation=evaluation)


def matches_at(coco_gt: Any, results: List[Dict[str, Any]], cat_ids: Sequence[int],
               img_ids: Optional[Sequence[int]] = None, iou: float = 0.5) -> Any:
    """A pycocotools ``COCOeval`` (bbox) after ``evaluate()`` at one IoU threshold, area ``all`` and
    100 detections per image: its ``evalImgs`` hold the per-image matches the AP50 is made of.

    For the curves when ``test.coco_backend=faster``, whose COCOeval keeps its matches in C++:
    pycocotools' own matching, at about a fortieth of a full evaluation's matching work (one IoU
    threshold and one area range of the ten and four).
    """
    gt = as_backend(coco_gt, "pycocotools")
    _, COCOeval = _classes("pycocotools")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(gt, load_results(gt, results), "bbox")
        p = evaluation.params
        p.catIds = sorted(int(c) for c in cat_ids)
        if img_ids is not None:
            p.imgIds = sorted(int(i) for i in img_ids)
        p.iouThrs = np.array([iou])
        p.areaRng, p.areaRngLbl, p.maxDets = [p.areaRng[0]], [p.areaRngLbl[0]], [100]
        evaluation.evaluate()
    return evaluation

