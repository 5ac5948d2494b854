"""Every tool meets a bad input of each family (config, data, weights, output folder) with one line and exit 2.

The tools' ``main`` is called in-process (the same wrapper runs as from the shell, without the cost of a
new interpreter each time); one case per family also runs as a real process.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_asff import build_model, load_config
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.io.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "builtin.yaml")
SMALL = ["model.width=0.125", "test.img_size=64", "data.num_workers=0"]


def tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in a tool look their module up there
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    data = generate_builtin(root / "data", train=2, val=2, seed=0)
    (root / "garbage.pth").write_bytes(b"this is not a checkpoint" * 10)
    (root / "a_file").write_text("a file where a folder is expected")
    (root / "existing").mkdir()
    model = build_model(load_config(CONFIG, SMALL))
    save_checkpoint(root / "small.pth", model, config=load_config(CONFIG, SMALL).to_dict())
    return {"root": root, "data": str(data), "garbage": str(root / "garbage.pth"), "file": str(root / "a_file"),
            "missing_cfg": str(root / "missing.yaml"), "existing": str(root / "existing"),
            "weights": str(root / "small.pth")}


def cases(f):
    data = ["--opts", f"data.root={f['data']}", *SMALL]
    no_data = ["--opts", f"data.root={f['root']}/nowhere", "data.builtin=false", *SMALL]
    under_file = f"{f['file']}/out"
    return {
        "train": {
            "config": ["--config", f["missing_cfg"]],
            "data": ["--config", CONFIG, "--out", f"{f['root']}/t1", *no_data],
            "weights": ["--config", CONFIG, "--out", f"{f['root']}/t2", "--weights", f["garbage"], *data,
                        "train.batch_size=2"],
            "output": ["--config", CONFIG, "--out", f["file"], *data],
        },
        "eval": {
            "config": ["--config", CONFIG, "--weights", f["garbage"], "--opts", "model.widht=2"],
            "data": ["--config", CONFIG, "--weights", f["weights"], *no_data],
            "weights": ["--config", CONFIG, "--weights", f["garbage"], *data],
            "output": ["--config", CONFIG, "--weights", f["weights"], "--json", f"{under_file}.json", *data],
        },
        "demo": {
            "config": ["--config", f["missing_cfg"], "--source", f["data"]],
            "data": ["--config", CONFIG, "--source", f"{f['root']}/no_such_picture.jpg", *data],
            "weights": ["--config", CONFIG, "--source", f"{f['data']}/images/val", "--weights", f["garbage"], *data],
            "output": ["--config", CONFIG, "--source", f"{f['data']}/images/val", "--out", f["file"], *data],
        },
        "export": {
            "config": ["--config", CONFIG, "--out", f"{f['root']}/m.onnx", "--opts", "test.img_size=65"],
            "weights": ["--config", CONFIG, "--out", f"{f['root']}/m.onnx", "--weights", f["garbage"], *data],
            "output": ["--config", CONFIG, "--out", f"{under_file}.onnx", *data],
        },
        "benchmark": {
            "config": ["infer", "--config", f["missing_cfg"]],
            "data": ["data", "--config", CONFIG, "--size", "64", "--samples", "2", *no_data],
            "weights": ["infer", "--config", CONFIG, "--size", "64", "--weights", f["garbage"], *data],
            "output": ["infer", "--config", CONFIG, "--size", "64", "--json", f"{under_file}.json", *data],
        },
        "browse_dataset": {
            "config": ["--config", f["missing_cfg"]],
            "data": ["--config", CONFIG, *no_data],
            "output": ["--config", CONFIG, "--out", f["file"], *data],
        },
        "check_dataset": {"config": ["--config", CONFIG, "--opts", "data.formt=coco"]},
        "fit_anchors": {
            "config": ["--config", f["missing_cfg"]],
            "data": ["--config", CONFIG, *no_data],
            "output": ["--config", CONFIG, "--yaml", f"{under_file}.yaml", *data],
        },
        "convert_dataset": {
            "config": ["--config", f["missing_cfg"], "--to", "yolo", "--out", f"{f['root']}/c1"],
            "data": ["--config", CONFIG, "--to", "yolo", "--out", f"{f['root']}/c2", *no_data],
            "output": ["--config", CONFIG, "--to", "voc", "--out", f["existing"], *data],
        },
        "model_info": {
            "config": ["--config", f["missing_cfg"]],
            "data": ["--config", CONFIG, "--image", f["garbage"], *data],
        },
        "convert_official": {
            "weights": [f["garbage"], f"{f['root']}/converted.pth"],
            "output": [f["garbage"], f["garbage"]],
        },
    }


ALL = [(name, family) for name, families in cases({k: "" for k in ("root", "data", "garbage", "file", "missing_cfg",
                                                                    "existing", "weights")}).items()
       for family in families]


@pytest.mark.parametrize("name, family", ALL, ids=[f"{n}-{f}" for n, f in ALL])
def test_bad_input_is_one_line_and_exit_2(files, capsys, name, family):
    argv = cases(files)[name][family]
    status = tool(name)(argv)
    err = capsys.readouterr().err
    assert status == 2, (name, family, err)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert len(errors[0]) < 1500, errors[0]


def test_unusable_data_is_exit_1_for_the_dataset_check(files, capsys):
    status = tool("check_dataset")(["--config", CONFIG, "--opts", f"data.root={files['root']}/nowhere",
                                    "data.builtin=false"])
    out = capsys.readouterr()
    assert status == 1 and "train: UNUSABLE" in out.out and "Traceback" not in out.err


@pytest.mark.slow
@pytest.mark.parametrize("name, family", [("train", "weights"), ("eval", "data"), ("export", "output")])
def test_as_a_process_too(files, name, family):
    argv = cases(files)[name][family]
    result = subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *argv], capture_output=True,
                            text=True, cwd=REPO, timeout=300, env={"NO_ALBUMENTATIONS_UPDATE": "1", "PATH": ""})
    assert result.returncode == 2 and result.stderr.count("error: ") == 1, result.stderr
    assert "Traceback" not in result.stderr
