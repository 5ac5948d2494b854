"""docs/CONFIG.md is generated from the typed config and kept up to date (scripts/config_reference.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from yolo_asff.config import Config, iter_config_fields

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "CONFIG.md"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_md_is_up_to_date(reference):
    assert DOC.is_file(), "docs/CONFIG.md is missing: run .venv/bin/python scripts/config_reference.py"
    assert DOC.read_text(encoding="utf-8") == reference.render(), (
        "docs/CONFIG.md is out of date with yolo_asff/config.py: run .venv/bin/python scripts/config_reference.py"
    )


def test_every_key_has_one_row_in_its_section():
    text = DOC.read_text(encoding="utf-8")
    keys = [key for key, *_ in iter_config_fields()]
    assert len(keys) == len(set(keys)) > 80
    for section in ("model", "data", "data.train", "data.val", "data.aug", "train", "test", "runtime"):
        assert f"\n## {section}\n" in text
    for key in keys:
        assert text.count(f"| `{key}` |") == 1, key
        section = key.rpartition(".")[0]
        body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert f"| `{key}` |" in body, f"{key} is not in the table of section {section}"


def test_defaults_are_the_ones_a_config_gets(reference):
    text = DOC.read_text(encoding="utf-8")
    cfg = Config()
    # nested sections with their own defaults: COCO's paths, not SplitConfig's empty ones
    assert f"| `data.train.ann_file` | str | `{cfg.data.train.ann_file}` |" in text
    assert "| `model.arch` | one of yolov3, yolov3_asff, yolov3_tiny | `yolov3_asff` |" in text
    assert "| `model.anchors` | list of list of float or 'auto' or null | `null` |" in text
    assert reference.format_value(1e-5) == "1e-05" and reference.format_value([[2007, "test"]]) == "[[2007, test]]"


def test_check_fails_on_a_stale_or_missing_file(reference, tmp_path, capsys):
    out = tmp_path / "CONFIG.md"
    assert reference.main(["--check", "--output", str(out)]) == 1
    assert "is missing" in capsys.readouterr().err
    assert reference.main(["--output", str(out)]) == 0
    assert reference.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text().replace("| `train.lr` |", "| `train.learning_rate` |"))
    assert reference.main(["--check", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "scripts/config_reference.py" in err and "train.learning_rate" in err
