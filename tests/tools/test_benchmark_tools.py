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
from yolo_asff.engine.benchmark import RunSettings, benchmark_training, summarize_results, synthetic_targets, time_call

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
                               "compile": False, "warmup": 0, "iters": 1, "weights": None, "graphed": False}
    assert rec["model"]["parameters"] > 0 and rec["model"]["gflops"] > 0
    r = rec["results"]
    assert set(r["latency_ms"]) == {"forward", "forward_postprocess", "end_to_end"}
    for timing in [*r["latency_ms"].values(), r["throughput"]["batch_ms"]]:
        assert timing["median_ms"] > 0 and timing["iters"] == 1 and timing["first_call_s"] > 0
    assert r["throughput"]["batch"] == 2 and r["throughput"]["images_per_s"] > 0
    assert r["peak_memory_mb"] == {"batch_1": None, "batch_2": None}  # CPU: no GPU memory to report
    assert r["detections"]["kept"] <= r["detections"]["candidates"]
    assert r["peak_rss_mb"] > 50  # the process's peak resident set on the CPU
    assert r["compile_s"] == {"forward": None, "graphed": None}
    # postprocess: nonzero, bincount, tolist (and nms with candidates); end to end adds the boxes' copy to the host.
    assert r["host_syncs"]["forward_postprocess"] >= 3
    assert r["host_syncs"]["end_to_end"] == r["host_syncs"]["forward_postprocess"] + 1
    assert "host sync" in printed and "process peak RSS" in printed


def test_infer_graphed_reports_its_latency_compile_time_and_one_sync(tmp_path, capsys):
    # Compiled functions run eagerly: the wiring is tested here, compiled detections in tests/engine/test_predictor.py.
    out = tmp_path / "infer.json"
    with torch.compiler.set_stance("force_eager"):
        assert benchmark_main(["infer", *TINY, "--graphed", "--json", str(out), "--opts", *OPTS]) == 0
    printed = capsys.readouterr().out
    assert "graphed @1" in printed and "graphed end to end @1" in printed and "graphed compile" in printed
    r = json.loads(out.read_text())["results"]
    assert r["latency_ms"]["graphed"]["median_ms"] > 0 and r["latency_ms"]["end_to_end_graphed"]["median_ms"] > 0
    assert r["host_syncs"]["graphed"] == 1 and r["host_syncs"]["end_to_end_graphed"] == 1  # one copy to the host
    assert r["compile_s"]["graphed"] > 0


def test_train_step_updates_the_weights_and_reports_the_loss():
    cfg = load_config(CONFIG, OPTS)
    model = build_model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    record = benchmark_training(model, cfg, RunSettings(torch.device("cpu"), size=64, batch=2, precision="bf16",
                                                        warmup=0, iters=1))
    r = record["results"]
    assert r["images_per_s"] > 0 and r["step_ms"]["median_ms"] > 0 and r["batch"] == 2
    assert r["loss_finite"] and set(r["last_loss"]) == {"total", "xy", "wh", "iou", "obj", "cls"}
    assert r["last_loss"]["total"] > 0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > len(before) // 2  # two SGD steps (first call + timed call) moved the weights
    assert record["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    syncs = r["host_syncs_per_step"]
    assert syncs["total"] >= 1 and syncs["total"] == syncs["reads"] + syncs["shapes"]
    assert syncs["by_op"].get("aten._local_scalar_dense", 0) >= 1  # the finite check reads the loss
    assert r["compile_s"] is None and r["peak_memory_mb"] is None and r["peak_rss_mb"] > 50


def test_train_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert benchmark_main(["train", *TINY, "--json", str(out), "--opts", *OPTS]) == 0
    printed = capsys.readouterr().out
    assert "train step @2" in printed and "host syncs" in printed and "per step" in printed
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


@pytest.mark.slow
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


def bench_gpu(*args, **env):
    return subprocess.run(["bash", str(REPO / "scripts" / "bench_gpu.sh"), *args],
                          env={**os.environ, "PYTHON": sys.executable, **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_bench_gpu_help_prints_usage_and_makes_no_folder(flag, tmp_path):
    out = bench_gpu(flag)
    assert out.returncode == 0 and "bash scripts/bench_gpu.sh [OUT_DIR]" in out.stdout
    assert not (REPO / flag).exists()


def test_bench_gpu_refuses_an_option_as_its_folder():
    out = bench_gpu("--out", "x")
    assert out.returncode == 2 and "unknown option '--out'" in out.stderr and "Usage" not in out.stderr
    assert "bash scripts/bench_gpu.sh [OUT_DIR]" in out.stderr and not (REPO / "--out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_bench_gpu_without_cuda_stops_first_with_one_line(tmp_path):
    out = bench_gpu(str(tmp_path / "bench"))
    assert out.returncode == 2 and "sees no CUDA GPU" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == "" and not (tmp_path / "bench").exists()


def test_summary_compares_the_best_runs_with_the_targets(tmp_path):
    def record(bench, precision, compiled, results, batch=32):
        settings = {"size": [608, 608], "batch": batch, "precision": precision, "channels_last": True,
                    "compile": compiled, "warmup": 1, "iters": 1}
        env = {"device_name": "H200", "device": "cuda", "torch": "2.x", "cuda": "13", "git": "abc"}
        name = f"{bench}_{precision}_{compiled}.json"
        (tmp_path / name).write_text(json.dumps({"benchmark": bench, "config": "c.yaml", "settings": settings,
                                                 "env": env, "results": results}))

    timing = {"median_ms": 2.5, "min_ms": 2.0, "max_ms": 3.0, "iters": 1}
    record("train", "fp16", True, {"step_ms": timing, "images_per_s": 360.0, "batch": 32, "peak_memory_mb": 20000.0,
                                   "host_syncs_per_step": {"total": 1}})
    record("train", "fp16", False, {"step_ms": timing, "images_per_s": 290.0, "batch": 32,
                                    "peak_memory_mb": 23000.0})
    lat = {"forward": timing, "forward_postprocess": {**timing, "median_ms": 4.0},
           "end_to_end": {**timing, "median_ms": 5.0}, "graphed": timing, "end_to_end_graphed": timing}
    record("infer", "fp16", False, {"latency_ms": lat, "throughput": {"batch": 32, "images_per_s": 1200.0},
                                    "peak_memory_mb": {"batch_32": 900.0}, "host_syncs": {"graphed": 1}})
    summary = summarize_results(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in summary.splitlines() if line.startswith("| ")}
    assert "360.00 images/s | yes | train_fp16_True.json" in rows["train step, batch 32, AMP, compiled"]
    assert "290.00 images/s | NO" in rows["train step, batch 32, AMP, eager"]
    assert "23,000.00 MB | NO" in rows["train step, batch 32, AMP: peak memory (largest run)"]
    latency = rows["batch 1: forward + decode + NMS from a loaded tensor"]
    assert "2.50 ms | yes | infer_fp16_False.json (graphed)" in latency
    assert "1,200.00 images/s | yes" in rows["batch 32: half-precision inference forward"]
    assert "graphed 2.50 / 2.50 ms @1" in summary and "1 host syncs/step" in summary
