"""Checkpoints that carry their config and class names: tools from --weights alone, one rule for weights that
do not fit, the demo's outputs (mirrored folders, nothing overwritten, detections saved), and the ONNX file's
metadata used by the README's onnxruntime example."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolo_asff import build_model, load_config
from yolo_asff.assets import sample_image_path
from yolo_asff.cli import benchmark, demo, evaluate, export
from yolo_asff.data.builtin import CLASSES, generate_builtin
from yolo_asff.io.checkpoint import save_checkpoint
from yolo_asff.engine.predictor import Predictor

REPO = Path(__file__).resolve().parents[2]
SMALL = ["model.width=0.125", "test.img_size=96", "test.batch_size=4", "data.num_workers=0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _confident(model):
    """Weights that make some predictions score high: zero output convs, a large objectness/class bias."""
    with torch.no_grad():
        for conv in model.head.convs:
            conv.weight.zero_()
            conv.bias.view(model.head.num_anchors, -1)[:, 4:] = 3.0
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint as the trainer writes it: config and class names inside (builtin data, width 0.125, 96 px)."""
    root = tmp_path_factory.mktemp("self_contained")
    data = generate_builtin(root / "data", train=2, val=3, seed=1)
    cfg = load_config("builtin", [f"data.root={data}", *SMALL])
    model = _confident(build_model(cfg))
    save_checkpoint(root / "best.pth", model, ema=model, config=cfg.to_dict(), class_names=list(CLASSES),
                    category_ids=list(range(1, 7)))
    other = build_model(load_config("builtin", [f"data.root={data}", *SMALL, "model.num_classes=3"]))
    save_checkpoint(root / "three.pth", other, config=load_config("builtin", [*SMALL, "model.num_classes=3"]).to_dict())
    return root, data, cfg


def test_eval_works_from_the_weights_alone_at_the_trained_size(trained, capsys, tmp_path):
    root, data, _ = trained
    assert evaluate.main(["--weights", str(root / "best.pth"), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "3 images at 96" in out  # the size the checkpoint holds, not the shipped config's 320
    # with the shipped config by name: the model agrees, the trained size is used unless told otherwise
    assert evaluate.main(["--config", "builtin", "--weights", str(root / "best.pth"),
                          "--opts", f"data.root={data}", "data.num_workers=0"]) == 0
    out = capsys.readouterr().out
    assert "test.img_size: 96 as the checkpoint was trained" in out and "3 images at 96" in out
    assert evaluate.main(["--config", "builtin", "--weights", str(root / "best.pth"), "--size", "128",
                          "--opts", f"data.root={data}", "data.num_workers=0"]) == 0
    assert "3 images at 128" in capsys.readouterr().out


@pytest.mark.parametrize("tool, argv", [
    (evaluate, ["--config", "builtin"]),
    (demo, ["--config", "builtin", "--source", sample_image_path()]),
    (export, ["--config", "builtin", "--out", "{tmp}/m.onnx"]),
    (benchmark, ["infer", "--config", "builtin", "--size", "64", "--warmup", "0", "--iters", "1"]),
])
def test_weights_that_do_not_fit_are_refused_briefly(trained, capsys, tmp_path, tool, argv):
    root, data, _ = trained
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    opts = ["--opts", f"data.root={data}", "model.width=0.125", "data.num_workers=0"]
    # another class count, stated in the checkpoint's own config: refused naming both models
    assert tool.main([*argv, "--weights", str(root / "three.pth"), *opts]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(lines[0]) < 600 and "Traceback" not in err, err
    assert "model.num_classes: 3 in the checkpoint, 6 in the config" in lines[0]
    # a state_dict without a config (another width): refused by the tensors that stay unloaded
    wide = build_model(load_config("builtin", ["model.width=0.25"]))
    torch.save(wide.state_dict(), tmp_path / "bare.pth")
    assert tool.main([*argv, "--weights", str(tmp_path / "bare.pth"), *opts]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(lines[0]) < 600 and "does not fit the model" in lines[0]
    assert re.search(r"\d+ of \d+ tensors would stay unloaded", lines[0]) and "more)" in lines[0]


def test_demo_outputs_mirror_folders_and_never_overwrite(trained, capsys, tmp_path):
    root, _, _ = trained
    for sub in ("cam1", "cam2"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(sample_image_path(), tmp_path / "in" / sub / "0001.jpg")
    out = tmp_path / "out"
    code = demo.main(["--weights", str(root / "best.pth"), "--source", str(tmp_path / "in" / "*" / "0001.jpg"),
                      "--out", str(out), "--conf", "0.05", "--save-txt", "--save-json"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["cam1/0001.jpg", "cam2/0001.jpg", "detections.json", "labels/cam1/0001.txt",
                       "labels/cam2/0001.txt"]
    assert "annotated images: 2 in" in printed and "summary: 2 images" in printed
    photo = cv2.imread(sample_image_path())
    results = json.loads((out / "detections.json").read_text())
    lines = (out / "labels" / "cam1" / "0001.txt").read_text().splitlines()
    assert results and {r["image_id"] for r in results} == {"cam1/0001.jpg", "cam2/0001.jpg"}
    assert len(lines) == sum(r["image_id"] == "cam1/0001.jpg" for r in results)
    first = next(r for r in results if r["image_id"] == "cam1/0001.jpg")
    cls, cx, cy, w, h, score = (float(v) for v in lines[0].split())
    x, y, bw, bh = first["bbox"]
    assert int(cls) + 1 == first["category_id"]  # the dataset's own id (1-6), as the checkpoint records it
    assert first["category_name"] == CLASSES[int(cls)] and score == pytest.approx(first["score"], abs=1e-4)
    np.testing.assert_allclose([cx * photo.shape[1], cy * photo.shape[0]], [x + bw / 2, y + bh / 2], atol=0.1)
    # run again into the same folder: a numbered one, nothing replaced
    assert demo.main(["--weights", str(root / "best.pth"), "--source", str(tmp_path / "in" / "cam1"),
                      "--out", str(out)]) == 0
    assert (tmp_path / "out-2" / "0001.jpg").is_file() and "already holds files" in capsys.readouterr().out


def test_onnx_metadata_and_the_readme_onnxruntime_example(trained, capsys, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    root, _, cfg = trained
    onnx_file = tmp_path / "asff_nms.onnx"
    assert export.main(["--weights", str(root / "best.pth"), "--out", str(onnx_file), "--nms", "--conf", "0.3"]) == 0
    capsys.readouterr()
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert json.loads(meta["class_names"]) == list(CLASSES) and json.loads(meta["input_size"]) == [96, 96]
    assert json.loads(meta["mean"]) == cfg.data.mean and meta["letterbox"] == "true"
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- onnxruntime example -->\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    shutil.copy(sample_image_path(), tmp_path / "photo.jpg")
    scope: dict = {}
    exec(compile(code, "README onnxruntime example", "exec"), scope)  # noqa: S102 - our own README
    printed = capsys.readouterr().out.strip().splitlines()
    model = build_model(cfg)
    from yolo_asff.engine.checkpoint import load_weights_file

    load_weights_file(model, root / "best.pth")
    det = Predictor(model.eval(), img_size=96, conf_thresh=0.3)([cv2.imread(sample_image_path())])[0]
    assert len(printed) == len(det.boxes) > 0
    for line, box, label in zip(printed, det.boxes.tolist(), det.labels.tolist()):
        name, _score, *coords = line.split()
        assert name == CLASSES[label]
        np.testing.assert_allclose([float(v) for v in coords], box, atol=1.0)


@pytest.mark.slow
def test_the_packaged_command_line(trained, tmp_path):
    """`python -m yolo_asff` (what the `yolo-asff` entry point runs) from a folder that is not the clone."""
    root, data, _ = trained
    run = lambda *a: subprocess.run([sys.executable, "-m", "yolo_asff", *a], capture_output=True, text=True,  # noqa
                                    cwd=tmp_path, timeout=300, env={"NO_ALBUMENTATIONS_UPDATE": "1", "PATH": ""})
    listed = run("--help")
    assert listed.returncode == 0 and "train" in listed.stdout and "convert" in listed.stdout
    wrong = run("trian")
    assert wrong.returncode == 2 and "did you mean 'train'" in wrong.stderr
    done = run("eval", "--weights", str(root / "best.pth"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AP" in done.stdout


@pytest.mark.slow
def test_the_wheel_in_a_fresh_virtual_environment(trained, tmp_path):
    """pip install of the built wheel (torch and the rest reused from this environment, nothing downloaded):
    the `yolo-asff` command trains one tiny epoch and evaluates, each from an empty folder."""
    import sysconfig

    _, data, _ = trained
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    skip = {".venv", ".git", "runs", "data", "build", "yolo_asff.egg-info"}  # (only at the top: yolo_asff/data stays)
    shutil.copytree(REPO, source, ignore=lambda folder, names: [n for n in names if Path(folder) == REPO and n in skip
                                                                or n == "__pycache__"])
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the packages this environment has (torch, OpenCV, ...), but not its editable yolo_asff
    Path(site, "reuse_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                                *map(str, wheels.glob("*.whl"))], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    command = venv / "bin" / "yolo-asff"
    env = {"NO_ALBUMENTATIONS_UPDATE": "1", "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    empty = tmp_path / "empty"
    empty.mkdir()
    train = subprocess.run([str(command), "train", "--config", "builtin", "--no-progress", "--opts",
                            f"data.root={data}", "data.builtin=false", "model.width=0.125", "data.img_size=64",
                            "data.multiscale_range=null", "test.img_size=64", "train.epochs=1", "train.batch_size=2",
                            "train.nominal_batch_size=2", "data.num_workers=0"],
                           capture_output=True, text=True, cwd=empty, env=env, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = empty / "runs" / "builtin" / "last.pth"
    where = subprocess.run([str(python), "-c", "import yolo_asff; print(yolo_asff.__file__)"], capture_output=True,
                           text=True, cwd=empty, env=env)
    assert str(venv) in where.stdout  # the wheel's package, not the clone's
    other = tmp_path / "other"
    other.mkdir()
    evaluated = subprocess.run([str(command), "eval", "--weights", str(checkpoint)], capture_output=True, text=True,
                               cwd=other, env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "COCO bbox (pycocotools)" in evaluated.stdout and not list(other.iterdir())


def test_a_relative_data_root_means_where_the_run_was_trained(trained, tmp_path, monkeypatch, capsys):
    root, data, cfg = trained
    relative = load_config("builtin", [f"data.root={data.name}", "data.builtin=false", *SMALL])
    model = build_model(relative)
    save_checkpoint(tmp_path / "rel.pth", model, ema=model, config=relative.to_dict(),
                    extra={"workdir": str(data.parent)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert evaluate.main(["--weights", str(tmp_path / "rel.pth")]) == 0
    assert f"data.root: {data}" in capsys.readouterr().out and not list(elsewhere.iterdir())
