"""The benchmarks' own code paths on tiny inputs (their figures are in docs/benchmarks.md, not checked here): the
loader benchmark's table, the GPU check's dry run and its summary table, its time caps, the DDP model's arithmetic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from benchmarks import ddp_scaling, gpu_check, loader_bench

REPO = Path(__file__).resolve().parents[1]


def test_loader_bench_reports_every_path_per_core(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["loader_bench", "--n", "64", "--size", "40", "60", "--model-size", "16", "24",
                                      "--batches", "4", "--warmup", "1", "--pack-workers", "1"])
    threads = torch.get_num_threads()
    try:
        loader_bench.main()
    finally:  # the benchmark runs on one thread; later tests' numerics must not depend on this one having run
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = {m[0].strip(): (float(m[1]), float(m[2]), float(m[3]))
            for m in re.findall(r"^(.{34})\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d\d)", out, re.M)}
    assert set(rows) == {"full-size shards, exact (today)", "full-size shards, fast_decode",
                         "full-size, .npy maps, exact", "model-size shards", "decode-only, full-size (floor)"}
    for rate, cores, vs_exact in rows.values():
        assert rate > 0 and cores == pytest.approx(2000 / rate, abs=0.06)
        assert vs_exact == pytest.approx(rate / rows["full-size shards, exact (today)"][0], abs=0.006)
    assert re.search(r"model-size shards: \d+ img/s per core, target >= 1000: (met|NOT met)", out)


@pytest.mark.slow
def test_gpu_check_dry_run_fills_the_summary_table(tmp_path):
    """gpu_check.sh --dry where ../shared is absent (GPU_CHECK_SHARED points nowhere), as on a lent machine: every
    step on the CPU at tiny sizes, the plan fits, the OSIE row says why it did not run, every other step is ok and
    the exit status is 0 (a recipe that fails: tests/test_gpu_check_plan.py)."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_CHECK_SHARED": str(tmp_path / "nowhere")}
    env.pop("OSIE_RECIPE", None)
    env.pop("GPU_CHECK_STEPS", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["id"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert list(rows) == ["env", "adversarial", "loss_study", "loader_step", "metrics", "pytest_gpu", "compiled",
                          "osie"]
    assert {k: r["status"] for k, r in rows.items() if k != "osie"} == dict.fromkeys(list(rows)[:-1], "ok")
    assert rows["osie"]["status"] == "skipped" and rows["osie"]["summary"].startswith("skipped: no ../shared")
    assert "fits, every step gets at least its minimum" in (out / "gpu_check.log").read_text()
    assert rows["env"]["values"]["torch"] == torch.__version__
    for k in ("adversarial", "compiled", "loss_study"):
        v = rows[k]["values"]
        assert v["img_s"] > 0 and v["fraction_of_matmul"] > 0 and v["gflop_per_img"] > 0
        assert v["step"] == ("loss_study" if k == "loss_study" else "adversarial")
    assert rows["compiled"]["values"]["compile"] == "eager" and rows["adversarial"]["values"]["compile"] is False
    adv = rows["adversarial"]["values"]
    assert adv["loop_img_s"] == 2 * adv["img_s"]
    assert "the loop (D, G on alternate batches) consumes" in rows["adversarial"]["summary"]
    v = rows["loader_step"]["values"]
    assert v["img_s"] > 0 and 0 <= v["gpu_idle_fraction"] <= 1 and v["loader_alone_img_s"] > 0
    v = rows["metrics"]["values"]
    assert max(v["agree_max_abs"].values()) == 0.0  # CPU against itself: identical
    cpu = v["validation_s"]["cpu"]
    assert 0 < cpu["emd_simplex"] < cpu["batched"] and cpu["per_image"] > 0
    assert re.fullmatch(r"0 passed, 0 failed, \d+ skipped", rows["pytest_gpu"]["summary"])
    table = (out / "summary.txt").read_text().splitlines()
    assert len(table) == 9 and table[-1].startswith("SalGAN recipe on OSIE") and "skipped" in table[-1]
    log = (out / "gpu_check.log").read_text()
    assert "gpu_check: done in" in log and "exit 0" in log
    with tarfile.open(out / "steps.tar.gz") as tar:
        assert {"steps/adversarial.json", "steps/metrics.log", "steps/pytest.xml"} <= set(tar.getnames())
    assert not (out / "steps").exists()


def test_a_step_past_its_cap_is_stopped_and_reported(tmp_path):
    (tmp_path / "steps").mkdir()
    step = gpu_check.Step("sleepy", "sleeps", 60, ["-c", "import time; print('started', flush=True); time.sleep(60)"])
    t = time.perf_counter()
    row = gpu_check.run_step(step, 6.0, tmp_path)
    assert time.perf_counter() - t < 20
    assert row["status"] == "TIMEOUT" and row["summary"] == "stopped after 6 s; started"
    crash = gpu_check.Step("crash", "crashes", 60, ["-c", "raise SystemExit('no GPU')"])
    crash = gpu_check.run_step(crash, 30, tmp_path)
    assert crash["status"] == "FAILED" and crash["summary"] == "exit 1: no GPU"
    assert gpu_check.run_step(step, 3.0, tmp_path)["status"] == "skipped"  # under 5 s left: not started


def test_missing_recipe_is_reported_as_skipped():
    assert gpu_check.osie_skip(REPO / "jobs" / "no_such_recipe.py") == "skipped: jobs/no_such_recipe.py missing"
    assert gpu_check.osie_skip(None) == "skipped: dry run (no --osie-recipe)"
    steps = gpu_check.steps(False, Path("/tmp/o"), REPO / "jobs" / "no_such_recipe.py")
    assert steps[-1].skip == "skipped: jobs/no_such_recipe.py missing"


def test_ddp_scaling_arithmetic(tmp_path):
    """Volume = trainable parameters x 4 bytes; ring time 2(n-1)/n S / B plus hops; efficiency step/(step + comm)."""
    import warnings

    from salnet.models import Discriminator, Generator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainable = sum(p.numel() for m in (Generator(), Discriminator()) for p in m.parameters() if p.requires_grad)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"rows": [{"values": {"step": "adversarial", "world_size": 1, "img_s": 1600.0}},
                                            {"values": {"step": "loss_study", "img_s": 9.0}}]}))
    res = ddp_scaling.main(["--measured", str(summary), "--latency-us", "0", "--json", str(tmp_path / "d.json")])
    assert res["img_s"] == 1600.0 and sum(res["count"]["trainable"].values()) == trainable
    step = 32 / 1600.0
    rows = {(r["gradients"], r["gpus"]): r for r in res["rows"]}
    s = trainable * 4
    assert rows["fp32", 8]["mb"] == pytest.approx(s / 1e6)
    assert rows["fp32", 8]["allreduce_ms"] == pytest.approx(2 * 7 / 8 * s / 450e9 * 1e3)
    assert rows["fp32", 64]["allreduce_ms"] == pytest.approx((2 * 7 / 8 * s / 450e9 + 2 * 7 / 8 * s / 100e9) * 1e3)
    assert rows["fp32", 64]["efficiency_no_overlap"] == pytest.approx(step / (step + rows["fp32", 64]["allreduce_ms"]
                                                                              / 1e3))
    assert rows["bf16", 8]["allreduce_ms"] == pytest.approx(rows["fp32", 8]["allreduce_ms"] / 2)
    assert all(r["efficiency_no_overlap"] <= r["efficiency_overlapped"] <= 1 for r in res["rows"])
    assert json.loads((tmp_path / "d.json").read_text())["rows"] == res["rows"]


def test_recipe_reads_the_shared_copy_inside_the_checkout(tmp_path, monkeypatch):
    """On a device machine ../shared is absent; a copy in the checkout's shared/ is passed to the recipe."""
    import salnet.recipes.osie as recipe

    away = tmp_path / "nowhere"
    monkeypatch.setattr(recipe, "SHARED", away)
    monkeypatch.setattr(recipe, "DEFAULT_DATA", away / "data" / "osie")
    monkeypatch.setattr(recipe, "DEFAULT_WEIGHTS", away / "weights" / "vgg.pth")
    monkeypatch.setattr(gpu_check, "REPO", tmp_path / "checkout")
    (tmp_path / "checkout" / "shared" / "data" / "osie").mkdir(parents=True)
    assert gpu_check.in_checkout() == ["--data", str(tmp_path / "checkout" / "shared" / "data" / "osie")]


def test_gpu_osie_train_runs_the_recipe_and_returns_its_files(tmp_path):
    """benchmarks/gpu_osie.sh train --dry: the recipe on packed shards in STATE at tiny sizes, its summary and every
    stage's config and metrics back under OUT; a second call finds every stage done."""
    from helpers import synthetic_shards

    state, out = tmp_path / "state", tmp_path / "out"
    synthetic_shards(state, {"train": 8, "val": 4}, (32, 48), 0.05)
    env = {**os.environ, "STATE": str(state), "OUT": str(out), "OSIE_WEIGHTS": "none", "PYTHON": sys.executable}
    script = ["bash", str(REPO / "benchmarks" / "gpu_osie.sh"), "train", "--dry", "2"]
    proc = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    assert all(f"| {row}" in summary for row in ("bce4", "gan4", "centre bias", "readout"))
    result = json.loads((out / "evaluation.json").read_text())
    assert [t["params"]["point"] for t in result["trials"]] == ["BCE/4", "GAN/4 α=0.05"]
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    for stage in ("bootstrap", "sweep/trials/bce4", "sweep/trials/gan4"):
        assert {f"./{stage}/config.yaml", f"./{stage}/metrics.jsonl", f"./{stage}/final.json"} <= names
    boot = [json.loads(line) for line in (state / "run" / "bootstrap" / "metrics.jsonl").read_text().splitlines()]
    assert boot[-1]["step"] == 4  # one epoch of two passes over 8 images, batch 4
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("done already") == 4, again.stdout[-3000:]
    assert "gpu_osie: finished in" in (out / "osie.log").read_text()


def test_gpu_osie_probe_times_steps_and_says_what_fits(tmp_path):
    """benchmarks/gpu_osie.sh probe --dry: a timed step (train_bench) and, from it, the passes that fit a budget."""
    env = {**os.environ, "STATE": str(tmp_path / "state"), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_osie.sh"), "probe", "--dry"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    speed = json.loads((tmp_path / "state" / "speed.json").read_text())
    rate = speed["loop_img_s"] / 2  # updates per second at the dry batch of 2
    for budget in (300, 480):
        passes = min(21, int((budget - 150) * rate / 675))
        fits = f"fits PASSES={passes}" if passes >= 1 else "does not fit PASSES=1"
        assert f"BUDGET={budget} {fits}" in proc.stdout, proc.stdout
