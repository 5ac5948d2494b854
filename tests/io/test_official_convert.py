"""Converting the official ASFF checkpoints: every key lands, variants are recognised, bad files are refused."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_tiny_coco
from yolo_asff.io.checkpoint import load_checkpoint
from yolo_asff.io.official import (
    OfficialCheckpointError,
    build_official_model,
    convert_official_checkpoint,
    convert_official_state_dict,
    official_key_map,
)

from ..conftest import make_model
from .official_layout import official_state_dict

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("baseline", "asff", "asff_rfb")


def run(tool: str, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=env)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_released_layout_converts_and_loads_with_nothing_missing_or_left_over(variant):
    official = official_state_dict(variant)  # fp16, as the --half releases are
    assert len(official) == {"baseline": 462, "asff": 558, "asff_rfb": 612}[variant]
    cfg, model = build_official_model(variant)
    ours = model.state_dict()
    converted = convert_official_state_dict(official, expected_shapes={k: v.shape for k, v in ours.items()})
    assert converted.variant == variant and converted.num_classes == 80
    assert converted.source_dtype == torch.float16
    assert set(converted.state_dict) == set(ours)
    result = model.load_state_dict(converted.state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Values arrive unchanged (fp16 -> fp32 is exact), at the right names.
    table = official_key_map(variant)
    for key in ("module_list.0.conv.weight", "module_list.10.module_list.3.1.batch_norm.running_var",
                list(table)[-1]):
        assert torch.equal(model.state_dict()[table[key]], official[key].float())
    assert all(t.dtype == torch.float32 for t in converted.state_dict.values() if t.is_floating_point())


def test_wrappers_prefixes_fp32_and_other_class_counts_are_accepted():
    official = official_state_dict("asff", num_classes=20, dtype=torch.float32)
    wrapped = {"model": {f"module.{k}": v for k, v in official.items()}}
    converted = convert_official_state_dict(wrapped)
    assert (converted.variant, converted.num_classes, converted.source_dtype) == ("asff", 20, torch.float32)
    _, model = build_official_model("asff", 20)
    model.load_state_dict(converted.state_dict, strict=True)


def test_wrong_files_are_refused_naming_the_first_bad_key():
    official = official_state_dict("baseline")
    shapes = {k: v.shape for k, v in build_official_model("baseline")[1].state_dict().items()}

    extra = {**official, "module_list.99.conv.weight": torch.zeros(1)}
    with pytest.raises(OfficialCheckpointError, match=r"unexpected key 'module_list\.99\.conv\.weight'"):
        convert_official_state_dict(extra)

    missing = dict(official)
    del missing["module_list.5.batch_norm.running_mean"]
    with pytest.raises(OfficialCheckpointError, match=r"lacks 1 tensors, first 'module_list\.5\.batch_norm"):
        convert_official_state_dict(missing)

    bad_shape = {**official, "module_list.14.conv.weight": torch.zeros(512, 1024, 1, 1)}
    with pytest.raises(OfficialCheckpointError, match=r"module_list\.14\.conv\.weight has shape \(512, 1024, 1, 1\)"):
        convert_official_state_dict(bad_shape, expected_shapes=shapes)

    ours = build_official_model("baseline")[1].state_dict()
    with pytest.raises(OfficialCheckpointError, match=r"not an official ASFF checkpoint: its first key is 'backbone"):
        convert_official_state_dict(ours)

    yolov3_only = {k: v for k, v in official.items() if int(k.split(".")[1]) < 19}
    with pytest.raises(OfficialCheckpointError, match="not like any of its three released models"):
        convert_official_state_dict(yolov3_only)


@pytest.mark.slow
def test_convert_tool_writes_a_checkpoint_and_config_that_eval_uses(tmp_path):
    src = tmp_path / "yolov3_asff_official.pth"
    torch.save(official_state_dict("asff", num_classes=3), src)
    dst = tmp_path / "converted" / "asff.pth"
    out = run("convert_official.py", str(src), str(dst))
    assert out.returncode == 0, out.stderr
    assert "official ASFF asff, 3 classes" in out.stdout and "float16" in out.stdout
    ckpt = load_checkpoint(dst)
    assert ckpt["extra"]["official_variant"] == "asff" and ckpt["config"]["model"]["head"] == "guided"
    assert dst.with_suffix(".yaml").is_file()
    again = run("convert_official.py", str(src), str(dst))
    assert again.returncode == 2 and "--force" in again.stderr

    write_tiny_coco(tmp_path)
    data = [f"data.root={tmp_path}", "data.val.ann_file=ann.json", "data.val.img_dir=images", "data.num_workers=0"]
    for weights, config in ((dst, dst.with_suffix(".yaml")), (src, REPO / "configs/official/yolov3_asff_coco.yaml")):
        out = run("eval.py", "--config", str(config), "--weights", str(weights), "--size", "64", "--device", "cpu",
                  "--opts", "model.num_classes=3", *data)
        assert out.returncode == 0, out.stderr
        assert "Average Precision  (AP) @[ IoU=0.50:0.95" in out.stdout

    # The official file given with a config of another model: the error says which config to use.
    out = run("eval.py", "--config", str(REPO / "configs/yolov3_asff_coco.yaml"), "--weights", str(src),
              "--size", "64", "--device", "cpu", "--opts", "model.num_classes=3", *data)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "official ASFF asff checkpoint: use --config configs/official/yolov3_asff_coco.yaml" in out.stderr
    assert "--opts model.num_classes=3" in out.stderr


@pytest.mark.slow
def test_convert_tool_refuses_what_it_cannot_convert(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    out = run("convert_official.py", str(text), str(tmp_path / "out.pth"))
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr
    ours = tmp_path / "ours.pth"
    torch.save(make_model("yolov3_asff", width=0.125).state_dict(), ours)  # one of our own state_dicts
    out = run("convert_official.py", str(ours), str(tmp_path / "out.pth"))
    assert out.returncode == 2 and "not an official ASFF checkpoint" in out.stderr
    assert not (tmp_path / "out.pth").exists()
    with pytest.raises(OfficialCheckpointError, match="file not found"):
        convert_official_checkpoint(tmp_path / "missing.pth", tmp_path / "out.pth")
