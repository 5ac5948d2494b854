"""tools/benchmark.py infer and train, and the measuring library behind them (numbers are checked
for presence and sense, never against a time budget)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolo_asff import build_model, load_config
from yolo_asff.engine.benchmark import benchmark_training, synthetic_targets, time_call

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "builtin.yaml")
OPTS = ["model.width=0.125"]
TINY = ["--config", CONFIG, "--device", "cpu", "--size", "64", "--batch", "2", "--warmup", "0", "--iters", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def benchmark_main(argv):
    spec = importlib.util.spec_from_file_location("tool_benchmark", REPO / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_time_call_counts_first_warmup_and_timed_calls():
    calls = []
    timing = time_call(lambda: calls.append(1), torch.device("cpu"), warmup=2, iters=3)
    assert len(calls) == 1 + 2 + 3
    assert timing.iters == 3 and 0 <= timing.min_ms <= timing.median_ms <= timing.max_ms
    with pytest.raises(ValueError, match="iters"):
        time_call(lambda: None, torch.device("cpu"), iters=0)


def test_synthetic_targets_lie_inside_the_image():
    t = synthetic_targets(3, (64, 96), num_classes=6, boxes_per_image=20)
    assert t.shape == (60, 7)
    assert t[:, 0].tolist() == [i for i in range(3) for _ in range(20)]
    assert ((t[:, 1] >= 0) & (t[:, 1] < 6)).all() and (t[:, 6] == 1).all()
    assert (t[:, 2:4] >= 0).all() and (t[:, 4] <= 96).all() and (t[:, 5] <= 64).all()
    assert ((t[:, 4:6] - t[:, 2:4]) >= 8 - 1e-4).all()


def test_infer_writes_every_number_to_json(tmp_path, capsys):
    out = tmp_path / "infer.json"
    assert benchmark_main(["infer", *TINY, "--json", str(out), "--opts", *OPTS]) == 0
    printed = capsys.readouterr().out
    for row in ("forward @1", "+ postprocess @1", "end to end @1", "throughput @2", "GFLOPs"):
        assert row in printed
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "infer" and rec["command"].startswith("tools/benchmark.py infer --config")
    assert rec["env"]["device"] == "cpu" and rec["env"]["device_name"] and rec["env"]["torch"] == torch.__version__
    assert rec["settings"] == {"size": [64, 64], "batch": 2, "precision": "fp32", "channels_last": False,
                               "compile": False, "warmup": 0, "iters": 1, "weights": None}
    assert rec["model"]["parameters"] > 0 and rec["model"]["gflops"] > 0
    r = rec["results"]
    assert set(r["latency_ms"]) == {"forward", "forward_postprocess", "end_to_end"}
    for timing in [*r["latency_ms"].values(), r["throughput"]["batch_ms"]]:
        assert timing["median_ms"] > 0 and timing["iters"] == 1 and timing["first_call_s"] > 0
    assert r["throughput"]["batch"] == 2 and r["throughput"]["images_per_s"] > 0
    assert r["peak_memory_mb"] == {"batch_1": None, "batch_2": None}  # CPU: no GPU memory to report
    assert r["detections"]["kept"] <= r["detections"]["candidates"]


def test_train_step_updates_the_weights_and_reports_the_loss():
    cfg = load_config(CONFIG, OPTS)
    model = build_model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    record = benchmark_training(model, cfg, device=torch.device("cpu"), size=64, batch=2, precision="bf16",
                                warmup=0, iters=1)
    r = record["results"]
    assert r["images_per_s"] > 0 and r["step_ms"]["median_ms"] > 0 and r["batch"] == 2
    assert r["loss_finite"] and set(r["last_loss"]) == {"total", "xy", "wh", "iou", "obj", "cls"}
    assert r["last_loss"]["total"] > 0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > len(before) // 2  # two SGD steps (first call + timed call) moved the weights
    assert record["model"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_train_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert benchmark_main(["train", *TINY, "--json", str(out), "--opts", *OPTS]) == 0
    assert "train step @2" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "train" and rec["settings"]["batch"] == 2
    assert rec["results"]["images_per_s"] > 0 and rec["results"]["loss_finite"]


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16"], "bf16"),  # fp16 autocast is CUDA-only
    (["--size", "70"], "multiples of 32"),
    (["--opts", "model.widht=0.5"], "widht"),
])
def test_bad_arguments_exit_2(capsys, args, message):
    rc = benchmark_main(["infer", *TINY, *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_without_a_gpu_exits_2(capsys):
    assert benchmark_main(["train", *TINY, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_bench_gpu_script_runs_on_cpu_and_reports_failures(tmp_path):
    """The GPU script's wiring at toy scale: one infer run, one refused (fp16 on CPU) run, a summary."""
    env = {**os.environ, "DEVICE": "cpu", "SIZE": "64", "INFER_BATCH": "2", "WARMUP": "0", "ITERS": "1",
           "BENCHES": "infer", "PRECISIONS": "fp32 fp16", "LAYOUTS": "channels_last", "COMPILE": "eager",
           "CONFIG": CONFIG, "OPTS": " ".join(OPTS), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "bench_gpu.sh"), str(tmp_path / "bench")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 of 2 runs succeeded" in out.stdout and "failed: infer_fp16_channels_last_eager" in out.stdout
    rec = json.loads((tmp_path / "bench" / "infer_fp32_channels_last_eager.json").read_text())
    assert rec["settings"]["channels_last"] is True and rec["settings"]["size"] == [64, 64]
    assert rec["results"]["throughput"]["images_per_s"] > 0
    summary = (tmp_path / "bench" / "summary.md").read_text()
    assert "| infer | fp32 | channels_last |" in summary and "fp16" not in summary
