"""test.coco_backend: faster-coco-eval gives pycocotools' numbers on a generated case, and says what to
install when it is missing. The fixtures' cases are in test_evaluator.py and data/test_coco_quirks.py."""
from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from yolo_asff.config import ConfigError, load_config
from yolo_asff.engine.coco_api import check_backend
from yolo_asff.engine.evaluator import Evaluator

REPO = Path(__file__).resolve().parents[2]


def bench_script():
    spec = importlib.util.spec_from_file_location("bench_coco_eval", REPO / "scripts" / "bench_coco_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_faster_coco_eval_agrees_with_pycocotools_on_a_generated_case():
    """400 pictures (scripts/bench_coco_eval.py times the same on 5,000): crowd boxes, empty pictures, areas on
    the small/medium/large edges, pictures with more than 100 detections, tied scores, wrong classes."""
    bench = bench_script()
    data, results = bench.synthetic_case(images=400, classes=20, seed=1)
    per_image = Counter(r["image_id"] for r in results)
    assert max(per_image.values()) > 100 and len(per_image) < len(data["images"])
    assert sum(a["iscrowd"] for a in data["annotations"]) > 10
    assert len({r["score"] for r in results}) < len(results) / 2  # many ties
    out = bench.compare(data, results)
    reference = out["scores"]["pycocotools"]
    assert 0.1 < reference["AP"] < 0.9 and 0.1 < reference["APs"] < 0.9 and reference["AR1"] < reference["AR100"]
    assert out["stats_diff"] <= 1e-4 and out["per_class_diff"] <= 1e-4 and out["per_class50_diff"] <= 1e-4, out


def test_a_missing_faster_coco_eval_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # what `import faster_coco_eval` meets when absent
    with pytest.raises(ConfigError, match=r"test.coco_backend=faster.*pip install faster-coco-eval.*\.\[fast\]"):
        check_backend("faster")
    check_backend("pycocotools")
    cfg = load_config(REPO / "configs" / "builtin.yaml", [f"data.root={tmp_path / 'nothing here'}",
                                                            "test.coco_backend=faster"])
    with pytest.raises(ConfigError, match="pip install faster-coco-eval"):  # before looking for the dataset
        Evaluator(cfg)


def test_an_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"test.coco_backend.*pycocotools, faster.*did you mean 'faster'"):
        load_config(REPO / "configs" / "builtin.yaml", ["test.coco_backend=fast"])


def test_the_faster_backend_keeps_the_curves_and_their_area_is_its_ap50():
    """faster-coco-eval keeps its matches in C++: the curves come from pycocotools' matching at IoU 0.5,
    the same as the full evaluation's, so each class's PR area is still the AP50 reported."""
    from yolo_asff.engine.coco_api import build_coco
    from yolo_asff.engine.evaluator import score_coco

    data, results = bench_script().synthetic_case(images=120, classes=5, seed=2)
    cats = [c["id"] for c in data["categories"]]
    names = [c["name"] for c in data["categories"]]
    fast = score_coco(build_coco(data), results, cats, names, backend="faster")
    curves = fast["curves"]
    assert curves is not None and curves.precision.shape == (len(names), 101)
    checked = 0
    for k, name in enumerate(names):
        if fast["per_class_AP50"][name] == fast["per_class_AP50"][name]:  # a class with ground truth
            assert abs(float(curves.precision[k].mean()) - fast["per_class_AP50"][name]) <= 0.01, name
            checked += 1
    assert checked >= 3
