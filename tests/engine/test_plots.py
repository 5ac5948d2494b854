"""The run folder's plots: results.csv / results.png from the history, labels.jpg, the evaluation plots,
their TensorBoard images, and the validation loss, through a short training run and its resume."""
from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest

from tests.engine.conftest import write_config, write_shapes_dataset
from yolo_asff.config import load_config
from yolo_asff.io.checkpoint import load_checkpoint
from yolo_asff.engine.plots import EVALUATION_PLOTS, results_table, write_labels_plot, write_results
from yolo_asff.engine.trainer import Trainer
from yolo_asff.utils.plots import CONFUSION_SIZE, CURVE_SIZE, LABELS_SIZE, results_size

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {"PR_curve": CURVE_SIZE, "F1_curve": CURVE_SIZE, "confusion_matrix": CONFUSION_SIZE,
         "confusion_matrix_normalized": CONFUSION_SIZE}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_results_table_has_one_row_per_epoch_and_blanks_between_evaluations(tmp_path):
    losses = [{"epoch": e, "total": 10.0 - e, "xy": 1.0, "obj": 9.0 - e, "lr": 0.01 * e} for e in (1, 2, 3)]
    evals = [{"epoch": 2, "AP": 0.1, "AP50": 0.3, "AP75": 0.05, "precision": 0.4, "recall": 0.5,
              "val_loss": {"total": 7.5, "xy": 1.5, "obj": 6.0}}]
    columns, rows = results_table(losses, evals)
    assert columns == ["epoch", "lr", "train/total", "train/xy", "train/obj", "val/total", "val/xy", "val/obj",
                       "metrics/precision", "metrics/recall", "metrics/AP50", "metrics/AP", "metrics/AP75"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[1]["val/obj"] == 6.0 and math.isnan(rows[0]["val/obj"])
    write_results(tmp_path, losses, evals)
    written = read_csv(tmp_path / "results.csv")
    assert [r["epoch"] for r in written] == ["1", "2", "3"] and list(written[0]) == columns
    assert written[0]["metrics/AP"] == "" and written[1]["metrics/AP"] == "0.1" and written[2]["lr"] == "0.03"
    panels = 3 + 1 + 5  # total, xy, obj (training and validation together), lr, the five metrics
    assert cv2.imread(str(tmp_path / "results.png")).shape == (results_size(panels)[1], results_size(panels)[0], 3)
    # a run from before validation losses and lr were recorded: no val columns, blank lr
    columns, rows = results_table([{"epoch": 1, "total": 3.0}], [{"epoch": 1, "AP": 0.2}])
    assert "val/total" not in columns and math.isnan(rows[0]["lr"]) and rows[0]["metrics/AP"] == 0.2


def test_labels_picture_counts_the_training_boxes(tmp_path):
    from yolo_asff.data.records import ImageRecord
    from yolo_asff.engine.plots import label_boxes

    record = ImageRecord(image_id=1, path=str(tmp_path / "a.png"), width=200, height=100,
                         boxes=np.array([[0, 0, 100, 50], [50, 25, 150, 75]], np.float32), labels=np.array([0, 1]),
                         ignore=np.array([False, True]))
    labels, boxes = label_boxes([record])
    np.testing.assert_allclose(boxes, [[0.25, 0.25, 0.5, 0.5]])  # the ignored box is not a training target
    assert labels.tolist() == [0] and len(label_boxes([record], use_ignored=True)[0]) == 2
    picture = write_labels_plot([record], ["a", "b"], tmp_path)
    assert cv2.imread(str(tmp_path / "labels.jpg")).shape == picture.shape == (LABELS_SIZE[1], LABELS_SIZE[0], 3)


def tensorboard_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events.Tags()


@pytest.mark.slow
def test_a_run_writes_its_plots_and_results_csv_survives_a_resume(tmp_path, shapes):
    cfg_path = write_config(tmp_path, shapes, epochs=2, eval_interval=1)
    out = tmp_path / "run"
    first = Trainer(load_config(cfg_path), out, progress=False)
    first.cfg.train.epochs = 1  # stopped after one epoch, as a killed run would be
    first.train()
    assert len(read_csv(out / "results.csv")) == 1
    resumed = Trainer(load_config(cfg_path), out, resume=out / "last.pth", progress=False)
    metrics = resumed.train()

    rows = read_csv(out / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]  # the first epoch's row came back from the checkpoint
    terms = ["total", "xy", "wh", "iou", "obj", "cls"]
    assert list(rows[0]) == ["epoch", "lr", *(f"train/{t}" for t in terms), *(f"val/{t}" for t in terms),
                             "metrics/precision", "metrics/recall", "metrics/AP50", "metrics/AP", "metrics/AP75"]
    for row in rows:
        assert all(row[c] != "" and math.isfinite(float(row[c])) for c in row), row
        assert float(row["val/total"]) == pytest.approx(sum(float(row[f"val/{t}"]) for t in terms[1:]), rel=1e-4)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [set(h["val_loss"]) for h in history] == [set(terms)] * 2
    assert float(rows[1]["val/obj"]) == pytest.approx(history[1]["val_loss"]["obj"], rel=1e-5)

    for name, (w, h) in SIZES.items():
        assert cv2.imread(str(out / f"{name}.png")).shape == (h, w, 3), name
    assert cv2.imread(str(out / "labels.jpg")).shape == (LABELS_SIZE[1], LABELS_SIZE[0], 3)
    assert cv2.imread(str(out / "results.png")).shape[1] == results_size(1)[0]
    table = metrics["per_class_table"]
    assert [r["class"] for r in table] == ["all", "square", "disc"] and table[0]["instances"] == 8
    assert load_checkpoint(out / "last.pth")["extra"]["per_class_table"] == table

    assert "could not" not in (out / "train.log").read_text()  # no plot failed quietly
    tags = tensorboard_tags(out / "tensorboard")
    assert {f"plots/{name}" for name in (*EVALUATION_PLOTS, "labels")} | {"val/predictions"} <= set(tags["images"])
    assert {"val_loss/total", "val_loss/obj", "val/AP50", "val/precision"} <= set(tags["scalars"])
