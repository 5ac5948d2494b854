"""Precision-recall and F1 curves, the confusion matrix and the per-class table of an evaluation.

The curves must come from the same matching as the AP: on a generated case, the area under each
class's precision-recall curve at IoU 0.5 is pycocotools' AP50 of that class.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import write_eval_config, write_tiny_coco
from tests.engine.conftest import OracleModel, oracle_for, write_tiny_voc
from yolo_asff import load_config
from yolo_asff.data import build_dataset
from yolo_asff.engine.curves import ClassMatches, confusion_matrix, evaluation_curves, match_image
from yolo_asff.engine.evaluator import Evaluator, format_report, score_coco
from yolo_asff.models import build_model
from yolo_asff.models.loss import build_loss

NAMES = ["cat", "dog", "zebra"]
CATEGORY_IDS = [3, 7, 42]  # gapped, as COCO's


def generated_case(root: Path, images: int = 40, seed: int = 0):
    """A COCO file of random boxes (some crowd) and detections that find most of them, some with the wrong
    class, some twice, some far off, plus false positives; one image has 150 detections of one class (past
    pycocotools' 100 per image). Returns (annotation file, results)."""
    rng = np.random.default_rng(seed)
    data = {"images": [], "annotations": [], "categories": [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, NAMES)]}
    results = []
    for image_id in range(1, images + 1):
        data["images"].append({"id": image_id, "file_name": f"{image_id}.png", "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(20, 200, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            cat = int(rng.choice(CATEGORY_IDS))
            crowd = int(rng.random() < 0.05)
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": cat,
                                        "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})
            for _ in range(1 + int(rng.random() < 0.2)):  # sometimes a duplicate
                if rng.random() < 0.15:
                    continue  # missed
                jitter = rng.uniform(-0.2, 0.2, 4) * [w, h, w, h]
                wrong = rng.random() < 0.15
                results.append({"image_id": image_id, "bbox": list(np.array([x, y, w, h]) + jitter),
                                "category_id": int(rng.choice(CATEGORY_IDS)) if wrong else cat,
                                "score": float(rng.uniform(0.05, 1.0))})
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = rng.uniform(10, 100, 2)
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            results.append({"image_id": image_id, "bbox": [float(x), float(y), w, h],
                            "category_id": int(rng.choice(CATEGORY_IDS)), "score": float(rng.uniform(0.0, 0.7))})
    for _ in range(150):
        results.append({"image_id": 1, "bbox": list(rng.uniform(0, 300, 4)), "category_id": 3,
                        "score": float(rng.uniform(0, 1))})
    path = root / "generated.json"
    path.write_text(json.dumps(data))
    return path, results


def pycocotools_reference(ann_file: Path, results):
    """pycocotools on its own: per-class AP50 and recall at IoU 0.5 (area all, 100 detections)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        e = COCOeval(gt, gt.loadRes([dict(r) for r in results]), "bbox")
        e.evaluate()
        e.accumulate()
    k_of = {c: k for k, c in enumerate(e.params.catIds)}
    ap50 = [float(e.eval["precision"][0, :, k_of[c], 0, -1].mean()) for c in CATEGORY_IDS]
    recall = [float(e.eval["recall"][0, k_of[c], 0, -1]) for c in CATEGORY_IDS]
    return ap50, recall


def test_the_area_under_each_pr_curve_is_pycocotools_ap50(tmp_path):
    from yolo_asff.engine.evaluator import load_coco_gt

    ann_file, results = generated_case(tmp_path)
    metrics = score_coco(load_coco_gt(ann_file), results, CATEGORY_IDS, NAMES)
    curves = metrics["curves"]
    ap50, recall = pycocotools_reference(ann_file, results)
    assert 0.2 < min(ap50) and max(ap50) < 0.95  # a case with something to get wrong
    for k, name in enumerate(NAMES):
        area = float(np.mean(curves.precision[k]))  # COCO's area: the mean over its 101 recall points
        assert area == pytest.approx(ap50[k], abs=0.01), name
        assert curves.ap50[k] == pytest.approx(ap50[k], abs=0.01) and metrics["per_class_AP50"][name] == pytest.approx(
            ap50[k], abs=1e-12)
        # Every detection kept (threshold 0): the recall pycocotools reaches.
        assert curves.recall_at[k, 0] == pytest.approx(recall[k], abs=1e-9), name
    assert curves.precision.shape == (3, 101) and np.all(np.diff(curves.precision, axis=1) <= 1e-12)  # an envelope


def test_f1_against_confidence_and_the_best_threshold():
    # cat: 3 boxes; detections 0.9 hit, 0.8 hit, 0.6 miss, 0.3 hit, 0.2 and 0.1 miss. dog: 1 box, found at 0.7.
    # zebra: no box, one detection.
    matches = [ClassMatches(np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1]), np.array([1, 1, 0, 1, 0, 0], bool), 3, 2),
               ClassMatches(np.array([0.7]), np.array([True]), 1, 1),
               ClassMatches(np.array([0.5]), np.array([False]), 0, 0)]
    thresholds = np.array([0.0, 0.5, 0.65, 0.75, 0.95])
    curves = evaluation_curves(matches, NAMES, np.linspace(0, 1, 101), thresholds=thresholds)
    np.testing.assert_allclose(curves.precision_at[0], [0.5, 2 / 3, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(curves.recall_at[0], [1.0, 2 / 3, 2 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(curves.f1_at[1], [1.0, 1.0, 1.0, 0.0, 0.0])
    assert np.isnan(curves.recall_at[2]).all() and np.isnan(curves.ap50[2])  # no ground truth: out of the means
    np.testing.assert_allclose(curves.mean_f1(), [(2 / 3 + 1) / 2, (2 / 3 + 1) / 2, 0.9, 0.4, 0.0])
    assert curves.best_conf == 0.65
    assert curves.mean_at_best() == pytest.approx({"precision": 1.0, "recall": (2 / 3 + 1) / 2, "F1": 0.9})
    # cat's 101-point interpolated AP: precision 1 up to recall 2/3, then 0.75 up to 1
    assert curves.ap50[0] == pytest.approx((67 * 1.0 + 34 * 0.75) / 101)
    assert curves.ap50[1] == pytest.approx(1.0)


def test_confusion_matrix_on_a_hand_built_image():
    """cat at A, dog at B, cat at C (missed), a crowd box D. Detections: cat on A (right), cat on B (wrong
    class), dog on empty ground (spurious), dog on the crowd (not counted), dog twice on A (the second a
    false positive: A is taken), and a cat on C below the threshold (left out, so C is missed)."""
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 0, 100, 40]], np.float64)
    labels, ignore = np.array([0, 1, 0, 2]), np.array([False, False, False, True])
    dets = np.array([
        [0, 0, 10, 10.5, 0.9, 0],  # cat on A
        [20, 20, 30, 31, 0.8, 0],  # cat on B: wrong class
        [70, 60, 80, 70, 0.7, 1],  # dog on nothing
        [65, 5, 75, 15, 0.6, 1],  # dog inside the crowd box
        [1, 0, 10, 10, 0.5, 1],  # dog on A, already taken
        [40, 40, 50, 50, 0.1, 0],  # cat on C, below the threshold
    ])
    counts = confusion_matrix([(dets, gt, labels, ignore)], num_classes=3, conf=0.25)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = 1  # cat found
    expected[1, 0] = 1  # dog called cat: off the diagonal
    expected[0, 3] = 1  # cat at C missed: background column
    expected[3, 1] = 2  # spurious dog and the duplicate on A: background row
    np.testing.assert_array_equal(counts, expected)
    assert sorted(match_image(dets, gt, labels, ignore)) == sorted(
        [(0, 0), (1, 0), (-1, 1), (-1, 1), (0, 0)])  # all kept: C found too


def test_the_evaluator_reports_the_table_and_the_matrix_from_the_same_matching(tmp_path, make_oracle):
    from yolo_asff.data.builtin import CLASSES, generate_builtin

    root = generate_builtin(tmp_path / "data", train=1, val=12, seed=3)
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "configs" / "builtin.yaml", [f"data.root={root}", "data.builtin=false",
                                                          "data.num_workers=0", "test.img_size=256"])
    dataset = build_dataset(cfg, "val")
    metrics = Evaluator(cfg, dataset).evaluate(make_oracle(dataset, cfg.data.mean, cfg.data.std), progress=False)
    curves, table = metrics["curves"], metrics["per_class_table"]
    assert [r["class"] for r in table] == ["all", *CLASSES]
    assert table[0]["instances"] == sum(len(r.labels) for r in dataset.records) == curves.num_gt.sum()
    assert table[0]["AP50"] == metrics["AP50"] and table[0]["images"] == len(dataset)
    for row in table[1:]:
        name = row["class"]
        assert row["AP50"] == metrics["per_class_AP50"][name] and row["AP"] == metrics["per_class"][name]
        assert row["images"] == sum(name in [CLASSES[i] for i in r.labels] for r in dataset.records)
    counts = np.array(metrics["confusion_matrix"]["counts"])
    assert metrics["confusion_matrix"]["classes"] == [*CLASSES, "background"]
    # every object is in its row once: found (any class) or missed
    np.testing.assert_array_equal(counts[:-1].sum(axis=1), curves.num_gt)
    assert 0 < metrics["best_f1_conf"] < 1 and 0 < metrics["precision"] <= 1 and 0 < metrics["recall"] <= 1
    report = format_report(metrics)
    assert f"at confidence {metrics['best_f1_conf']:.3f}" in report and "instances" in report


def test_voc_data_gets_the_table_and_the_plots(tmp_path):
    from yolo_asff.engine.plots import EVALUATION_PLOTS, write_evaluation_plots

    greys = write_tiny_voc(tmp_path)
    cfg = load_config(write_eval_config(tmp_path, "voc", num_classes=2, extra="  class_names: [cat, dog]\n"))
    dataset = build_dataset(cfg, "val")
    metrics = Evaluator(cfg, dataset).evaluate(OracleModel(dataset, greys, cfg.data.mean, cfg.data.std),
                                               progress=False)
    table = {r["class"]: r for r in metrics["per_class_table"]}
    assert table["cat"]["instances"] == 1 and table["dog"]["instances"] == 1  # the difficult cat is not counted
    assert table["cat"]["AP50"] == metrics["per_class_AP50"]["cat"] == pytest.approx(1.0)  # the VOC number
    assert metrics["confusion_matrix"]["counts"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert set(write_evaluation_plots(metrics["curves"], tmp_path / "plots")) == set(EVALUATION_PLOTS)


def test_the_validation_loss_is_the_training_loss_of_the_eval_forward(tmp_path):
    write_tiny_coco(tmp_path)
    cfg = load_config(write_eval_config(tmp_path))
    cfg.test.batch_size = 5  # one batch: the whole set
    dataset = build_dataset(cfg, "val")
    model = build_model(cfg)
    loss_fn = build_loss(cfg, model)
    metrics = Evaluator(cfg, dataset).evaluate(model, progress=False, loss_fn=loss_fn)
    val = metrics["val_loss"]
    assert set(val) == {"total", "xy", "wh", "iou", "obj", "cls"} and all(np.isfinite(v) for v in val.values())
    # The same by hand: raw outputs with BatchNorm in eval mode, the training targets (the crowd box left out).
    from yolo_asff.data.dataset import collate

    samples = [dataset[i] for i in range(len(dataset))]
    batch = collate(samples, cfg.data.mean, cfg.data.std)
    rows = []
    for b, (sample, record) in enumerate(zip(samples, dataset.records)):
        boxes, labels = record.training_targets()
        info = sample["info"]
        boxes = boxes * np.array([info.scale_x, info.scale_y] * 2) + np.array([info.pad_x, info.pad_y] * 2)
        rows += [[b, label, *box, 1.0] for box, label in zip(boxes.tolist(), labels.tolist())]
    assert len(rows) == len(batch["targets"]) - 1
    model.eval()
    model.training = True  # the detector alone: raw outputs, its BatchNorm layers stay in eval mode
    with torch.no_grad():
        _, terms = loss_fn(model(batch["images"]), torch.tensor(rows, dtype=torch.float32), (64, 64))
    for name, value in terms.items():
        assert val[name] == pytest.approx(float(value), rel=1e-5), name
    assert val["total"] == pytest.approx(sum(float(v) for v in terms.values()), rel=1e-5)
    # a model without a head (the oracle) is scored all the same, without a loss
    assert "val_loss" not in Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset), progress=False, loss_fn=loss_fn)


def test_the_ap_stands_when_the_curves_cannot_be_made(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from yolo_asff.engine import evaluator as evaluator_module
    from yolo_asff.engine.curves import coco_matches

    # a COCOeval that keeps its per-image matches out of Python (faster-coco-eval's C++ one does)
    with pytest.raises(ValueError, match="no per-image matches"):
        coco_matches(SimpleNamespace(params=SimpleNamespace(iouThrs=np.array([0.5])), evalImgs=None))
    write_tiny_coco(tmp_path)
    cfg = load_config(write_eval_config(tmp_path))
    dataset = build_dataset(cfg, "val")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing board on fire")

    monkeypatch.setattr(evaluator_module, "confusion_matrix", broken)
    metrics = Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset), progress=False)
    assert metrics["AP"] == pytest.approx(1.0) and "per_class_table" not in metrics
    assert "per-class AP (%):" in format_report(metrics)
