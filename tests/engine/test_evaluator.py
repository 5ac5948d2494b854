"""The evaluator on a tiny on-disk dataset with an oracle "model" that predicts the ground truth.

Each image is one uniform grey level, so the oracle can tell which image it is looking at
from the centre pixel of the letterboxed input and answer with that image's boxes mapped
into the input: what comes out of the evaluator is then known exactly.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import IMAGES, free_port, write_eval_config, write_tiny_coco
from tests.engine.conftest import OracleModel, oracle_for, write_tiny_voc
from yolo_asff import load_config
from yolo_asff.data import build_dataset
from yolo_asff.data.transforms import unletterbox_boxes
from yolo_asff.engine.evaluator import (
    METRIC_KEYS,
    Evaluator,
    coco_results,
    detections_to_coco,
    format_report,
    load_coco_gt,
    score_coco,
)


@pytest.fixture()
def coco_setup(tmp_path):
    write_tiny_coco(tmp_path)
    cfg = load_config(write_eval_config(tmp_path))
    return tmp_path, cfg, build_dataset(cfg, "val")


def gt_pairs(images=IMAGES):
    return sorted((i, c) for i, v in images.items() for c, _, crowd in v[3] if not crowd)


def test_perfect_predictions_give_ap_one_and_category_ids_round_trip(coco_setup):
    root, cfg, dataset = coco_setup
    assert dataset.category_ids == [3, 7, 42] and dataset.class_names == ["cat", "dog", "zebra"]
    model = oracle_for(cfg, dataset).train()
    metrics = Evaluator(cfg, dataset).evaluate(model, progress=False, dets_path=root / "dets.json")
    assert model.training  # the caller's mode is restored
    for key in METRIC_KEYS:
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0), "zebra": pytest.approx(1.0)}
    assert metrics["num_images"] == 5 and metrics["num_detections"] == 6 and metrics["metric"] == "coco"
    dets = json.loads((root / "dets.json").read_text())
    assert sorted((d["image_id"], d["category_id"]) for d in dets) == gt_pairs()
    truth = {(i, c): b for i, v in IMAGES.items() for c, b, crowd in v[3] if not crowd}
    for d in dets:  # back in original pixels, as [x, y, w, h], within a pixel
        np.testing.assert_allclose(d["bbox"], truth[(d["image_id"], d["category_id"])], atol=1.0)
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
    report = format_report(metrics)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in report
    assert "zebra" in report and "100.0" in report


def test_shifted_predictions_score_what_pycocotools_scores_on_the_same_files(coco_setup):
    root, cfg, dataset = coco_setup
    dets_path = root / "shifted.json"
    metrics = Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset, shift=3.0), progress=False,
                                               dets_path=dets_path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "ann.json"))
        e = COCOeval(gt, gt.loadRes(str(dets_path)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    for key, value in zip(METRIC_KEYS, e.stats):
        assert metrics[key] == pytest.approx(value, abs=1e-12) if value >= 0 else np.isnan(metrics[key]), key
    assert 0.05 < metrics["AP"] < 0.95 and metrics["AP50"] > metrics["AP75"]


def test_score_coco_known_answer(coco_setup):
    """Every box shifted right by 0.19 of its width: IoU = 0.81 / 1.19 = 0.68 with its own ground truth.

    That is a true positive at IoU 0.50, 0.55, 0.60, 0.65 and a false positive at 0.70 … 0.95
    (with precision 1 or 0 all along the curve), so AP = 4 / 10, AP50 = 1, AP75 = 0.
    """
    root, _, dataset = coco_setup
    results = [{"image_id": i, "category_id": c, "bbox": [b[0] + 0.19 * b[2], b[1], b[2], b[3]], "score": 0.9}
               for i, v in IMAGES.items() for c, b, crowd in v[3] if not crowd]
    m = score_coco(load_coco_gt(root / "ann.json"), results, dataset.category_ids, dataset.class_names)
    assert m["AP"] == pytest.approx(0.4) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(0.0)
    assert m["per_class"] == {"cat": pytest.approx(0.4), "dog": pytest.approx(0.4), "zebra": pytest.approx(0.4)}
    assert m["per_class_AP50"]["dog"] == pytest.approx(1.0)


def test_empty_detections_give_zero_without_crashing(coco_setup):
    root, cfg, dataset = coco_setup
    m = score_coco(load_coco_gt(root / "ann.json"), [], dataset.category_ids, dataset.class_names)
    assert all(m[k] == 0.0 for k in METRIC_KEYS) and set(m["per_class"].values()) == {0.0}
    blind = oracle_for(cfg, dataset)
    blind.table = {k: (v[0][:0], v[1][:0]) for k, v in blind.table.items()}
    metrics = Evaluator(cfg, dataset).evaluate(blind, progress=False, dets_path=root / "none.json")
    assert metrics["AP"] == 0.0 and metrics["num_detections"] == 0
    assert json.loads((root / "none.json").read_text()) == []


def test_detections_to_coco_maps_labels_to_the_files_ids():
    rows = detections_to_coco(7, np.array([[1.0, 2.0, 11.0, 22.0], [0, 0, 5, 5]]), np.array([0.5, 0.25]),
                              np.array([2, 0]), [3, 7, 42])
    assert rows == [{"image_id": 7, "category_id": 42, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.5},
                    {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.25}]
    grouped = coco_results({9: np.array([[0, 0, 4, 4, 0.5, 1]], np.float32), 2: np.zeros((0, 6), np.float32)},
                           [3, 7, 42])
    assert grouped == [{"image_id": 9, "category_id": 7, "bbox": [0.0, 0.0, 4.0, 4.0], "score": 0.5}]


@pytest.mark.parametrize("size", [64, 96])
def test_letterbox_round_trip_lands_within_a_pixel(coco_setup, size):
    _, cfg, _ = coco_setup
    cfg.test.img_size = size
    dataset = build_dataset(cfg, "val")
    for i in range(len(dataset)):
        item, record = dataset[i], dataset.records[i]
        assert item["image"].shape == (size, size, 3)
        assert (item["boxes"] >= 0).all() and (item["boxes"] <= size).all()
        np.testing.assert_allclose(unletterbox_boxes(item["boxes"], item["info"]), record.boxes, atol=1.0)


def test_testdev_writes_the_results_only(coco_setup, tmp_path):
    root, cfg, dataset = coco_setup
    out = Evaluator(cfg, dataset, testdev=True).evaluate(oracle_for(cfg, dataset), progress=False,
                                                         dets_path=root / "testdev.json")
    assert out["testdev"] and out["num_detections"] == 6 and "AP" not in out
    assert len(json.loads((root / "testdev.json").read_text())) == 6
    # an annotation file without an annotations list (image_info_test-dev2017.json) means test-dev too
    other = tmp_path / "info"
    write_tiny_coco(other, annotations=False)
    cfg.data.val.ann_file = str(other / "ann.json")
    cfg.runtime.output_dir = str(tmp_path / "runs")
    out = Evaluator(cfg).evaluate(oracle_for(cfg, dataset), progress=False)
    assert out["testdev"] and Path(out["dets_path"]) == tmp_path / "runs" / "detections_testdev.json"
    assert Path(out["dets_path"]).is_file()


def test_voc_format_scores_with_the_voc_protocol(tmp_path):
    greys = write_tiny_voc(tmp_path)
    cfg = load_config(write_eval_config(tmp_path, "voc", num_classes=2, extra="  class_names: [cat, dog]\n"))
    dataset = build_dataset(cfg, "val")
    model = OracleModel(dataset, greys, cfg.data.mean, cfg.data.std)
    metrics = Evaluator(cfg, dataset).evaluate(model, progress=False)
    assert metrics["metric"] == "voc07"  # a VOC2007 split: the 11-point metric
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP"] > 0.9
    assert metrics["voc"]["mAP50_07"] == pytest.approx(1.0) and metrics["voc"]["mAP50_area"] == pytest.approx(1.0)
    assert metrics["voc"]["num_gt"] == {"cat": 1, "dog": 1}  # the difficult cat is not counted
    assert metrics["coco"]["AP50"] == pytest.approx(1.0) and metrics["num_detections"] == 2
    assert set(metrics["per_class"]) == {"cat", "dog"}
    assert "VOC mAP@0.5: 1.0000 (VOC2007 11-point)" in format_report(metrics)


# ----------------------------------------------------------------------------- two processes


def _rank_main(rank: int, world: int, port: int, root: str, queue) -> None:
    torch.set_num_threads(1)  # a forked child, as in DataLoader workers
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cfg = load_config(Path(root) / "config.yaml")
        dataset = build_dataset(cfg, "val")
        evaluator = Evaluator(cfg, dataset)
        mine = len(list(iter(evaluator.loader.sampler)))
        metrics = evaluator.evaluate(oracle_for(cfg, dataset, shift=2.0), progress=False)
        queue.put((rank, mine, {k: metrics[k] for k in ("AP", "AP50", "num_images", "num_detections")}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_the_images_and_return_the_same_numbers(coco_setup):
    root, cfg, dataset = coco_setup
    single = Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset, shift=2.0), progress=False)
    # fork: the children start in a second instead of importing torch and the package again
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    mp.start_processes(_rank_main, args=(2, free_port(), str(root), queue), nprocs=2, join=True,
                       start_method="fork")
    results = sorted(queue.get(timeout=10) for _ in range(2))
    assert [mine for _, mine, _ in results] == [3, 3]  # 5 images, padded to 6 by the DistributedSampler
    for _, _, metrics in results:  # the padded image is counted once: same numbers as one process
        assert metrics["num_images"] == 5 and metrics["num_detections"] == single["num_detections"] == 6
        assert metrics["AP"] == pytest.approx(single["AP"]) and metrics["AP50"] == pytest.approx(single["AP50"])


def _failing_rank_main(rank: int, world: int, port: int, root: str, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cfg = load_config(Path(root) / "config.yaml")
        dataset = build_dataset(cfg, "val")
        evaluator = Evaluator(cfg, dataset)
        model = oracle_for(cfg, dataset)
        if rank == 1:  # this rank runs out of memory (say) in the middle of its images
            model.forward = lambda images: (_ for _ in ()).throw(RuntimeError("out of memory"))
        try:
            evaluator.evaluate(model, progress=False)
            queue.put((rank, "no error"))
        except RuntimeError as exc:
            queue.put((rank, str(exc)))
        # both ranks are still in step: a collective after the failure pairs up as it should
        flag = torch.tensor([rank + 1.0])
        dist.all_reduce(flag)
        queue.put((rank, float(flag)))
    finally:
        dist.destroy_process_group()


def test_a_rank_that_fails_to_predict_fails_every_rank_together(coco_setup):
    root, _, _ = coco_setup
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    mp.start_processes(_failing_rank_main, args=(2, free_port(), str(root), queue), nprocs=2, join=True,
                       start_method="fork")
    results = sorted((queue.get(timeout=10) for _ in range(4)), key=lambda r: (r[0], str(r[1])))
    messages = [m for _, m in results if isinstance(m, str)]
    assert messages == ["evaluation failed on rank 1: RuntimeError: out of memory"] * 2
    assert [m for _, m in results if isinstance(m, float)] == [3.0, 3.0]


def test_an_unreadable_picture_is_left_out_of_the_score_not_replaced(coco_setup):
    root, cfg, dataset = coco_setup
    (root / "images" / "12.png").write_bytes(b"broken")  # the large zebra's picture
    model = oracle_for(cfg, dataset)
    model.table[0] = (np.array([[1, 1, 60, 60]], np.float32), np.array([2]))  # whatever it sees in a blank picture
    metrics = Evaluator(cfg, dataset).evaluate(model, progress=False)
    assert metrics["unreadable_images"] == 1 and metrics["num_images"] == 4
    assert metrics["AP"] == pytest.approx(1.0)  # every picture scored was predicted perfectly


# ----------------------------------------------------------------------------- test.coco_backend


def assert_same_scores(reference, other, tol=1e-4):
    """The 12 numbers and the per-class AP and AP50 agree to ``tol`` (NaN where the other has NaN)."""
    for key in METRIC_KEYS:
        assert other[key] == pytest.approx(reference[key], abs=tol, nan_ok=True), key
    for key in ("per_class", "per_class_AP50"):
        assert other[key] == pytest.approx(reference[key], abs=tol, nan_ok=True), key


@pytest.mark.parametrize("shift", [0.0, 3.0, 7.5])
def test_faster_coco_eval_scores_the_fixture_as_pycocotools(coco_setup, shift):
    _, cfg, dataset = coco_setup
    reference = Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset, shift=shift), progress=False)
    cfg.test.coco_backend = "faster"
    faster = Evaluator(cfg, dataset).evaluate(oracle_for(cfg, dataset, shift=shift), progress=False)
    assert_same_scores(reference, faster)
    assert faster["summary"] == reference["summary"]  # the same table, line for line
    assert "COCO bbox (faster-coco-eval)" in format_report(faster)
    assert "COCO bbox (pycocotools)" in format_report(reference)


def test_faster_coco_eval_on_known_answers_empty_results_and_an_image_subset(coco_setup):
    """score_coco with either backend, on pycocotools' ground truth (converted for faster-coco-eval)."""
    root, _, dataset = coco_setup
    gt = load_coco_gt(root / "ann.json")
    shifted = [{"image_id": i, "category_id": c, "bbox": [b[0] + 0.19 * b[2], b[1], b[2], b[3]], "score": 0.9}
               for i, v in IMAGES.items() for c, b, crowd in v[3] if not crowd]
    for results, images in ((shifted, None), ([], None), (shifted, [11, 13, 14])):
        args = (results, dataset.category_ids, dataset.class_names, images)
        reference = score_coco(gt, *args)
        faster = score_coco(gt, *args, backend="faster")
        assert_same_scores(reference, faster)
    assert faster["AP"] == pytest.approx(0.4) and faster["coco_backend"] == "faster"
    own = score_coco(load_coco_gt(root / "ann.json", backend="faster"), shifted, dataset.category_ids,
                     dataset.class_names, backend="faster")
    assert own["AP"] == pytest.approx(0.4) and own["per_class_AP50"]["dog"] == pytest.approx(1.0)


def test_faster_coco_eval_on_voc_ground_truth_with_difficult_boxes(tmp_path):
    greys = write_tiny_voc(tmp_path)
    cfg = load_config(write_eval_config(tmp_path, "voc", num_classes=2, extra="  class_names: [cat, dog]\n"))
    dataset = build_dataset(cfg, "val")
    results = {}
    for backend in ("pycocotools", "faster"):
        cfg.test.coco_backend = backend
        model = OracleModel(dataset, greys, cfg.data.mean, cfg.data.std, shift=4.0)
        results[backend] = Evaluator(cfg, dataset).evaluate(model, progress=False)
    assert_same_scores(results["pycocotools"]["coco"], results["faster"]["coco"])
    assert results["faster"]["AP"] == results["pycocotools"]["AP"]  # the VOC protocol: ours, either way
