"""Files the project writes: atomic, strict JSON (never NaN or Infinity), clear errors where they cannot go."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from yolo_asff.errors import OutputError, YoloAsffError
from yolo_asff.utils.files import check_writable, make_dir, write_json


def strict(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


def test_write_json_has_no_nan_or_infinity(tmp_path):
    write_json(tmp_path / "m.json", {"AP": float("nan"), "APs": np.float32("inf"), "per_class": {"a": -math.inf},
                                     "history": [{"AP": np.float64(0.5)}, float("nan")], "t": torch.tensor(2.0),
                                     "ok": True, "n": 3})
    data = strict((tmp_path / "m.json").read_text())
    assert data == {"AP": None, "APs": None, "per_class": {"a": None}, "history": [{"AP": 0.5}, None], "t": 2.0,
                    "ok": True, "n": 3}


def test_outputs_where_a_file_is_in_the_way_are_user_errors(tmp_path):
    (tmp_path / "f").write_text("x")
    for call in (lambda: write_json(tmp_path / "f" / "m.json", {}), lambda: make_dir(tmp_path / "f" / "d"),
                 lambda: check_writable(tmp_path / "f" / "m.json"), lambda: check_writable(tmp_path / "f", folder=True),
                 lambda: write_json(tmp_path, {})):
        with pytest.raises(OutputError, match="is a file, not a folder|is a folder") as info:
            call()
        assert isinstance(info.value, YoloAsffError)
    assert check_writable(tmp_path / "new" / "deeper" / "m.json") == tmp_path / "new" / "deeper" / "m.json"
    assert not (tmp_path / "new").exists()  # the check creates nothing
