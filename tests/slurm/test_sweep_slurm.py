"""Sweeps on the real local Slurm, driven the way a user does: ``jobs/launch.py`` submits the Ray Tune
driver as a job, every trial is its own Slurm job, ``jobs/status.py`` / ``jobs/cancel.py`` read the folder.

- a 3-trial grid: one good trial runs to the end, one (lr 1e-12, no learning) is stopped early by ASHA and its
  Slurm job cancelled, one (lr 1e30, NaN loss) fails, is retried once and marked failed while the sweep goes
  on; the final evaluation job scores the trials with a checkpoint (summary.csv, TensorBoard).
- the driver job is killed half-way; relaunching the same sweep restores it (Tuner.restore) without
  rerunning the finished trial and re-attaches to the running trial's job.
"""

import csv
import json
import subprocess
import sys
import time

import pytest
from helpers import synthetic_shards
from sweep_helpers import REPO, SLURM, TINY, launch, sacct_state, state, sweep_dir_of, sweep_file, trial, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("sweepdata"), {"train": 40, "val": 6, "test": 6}, (32, 48), 0.05)


def test_sweep_early_stop_failure_and_final_evaluation(slurm, shards, tmp_path):
    spec = sweep_file(tmp_path, "three", "[0.003, 1.0e-12, 1.0e+30]",
                      "{name: asha, grace_period: 1, reduction_factor: 2}",
                      "{trials: 1, max_concurrent: 1, retries: 1}")
    args = ["--sweep", str(spec), "--out", str(tmp_path / "runs"), *SLURM, *TINY, f"data.shards={shards}",
            "train.epochs=30"]  # enough epochs (~0.2 s each) that ASHA's cancel lands before the end
    dry = launch(*args, "--dry-run", "--verbose").stdout
    planned = [json.loads(ln.split(": ", 1)[1].replace("'", '"')) for ln in dry.splitlines()
               if ln.startswith("--- trial")]
    assert planned == [{"train.lr": 0.003}, {"train.lr": 1e-12}, {"train.lr": 1e30}]
    assert not (tmp_path / "runs" / "sweeps").exists()  # a dry run submits and writes nothing

    out = launch(*args).stdout
    assert "driver job" in out and "tensorboard --logdir" in out
    sweep = sweep_dir_of(out)
    wait_for(lambda: state(sweep).get("status") == "done", 600, "the sweep and its evaluation", sweep)

    good, stopped, failed = (trial(sweep, t) for t in ("t00000", "t00001", "t00002"))
    assert [good["params"], stopped["params"], failed["params"]] == planned
    assert good["status"] == "done" and len(good["jobs"]) == 1
    assert (sweep / "trials/t00000/metrics.jsonl").read_text().count("\n") == 30
    # ASHA stopped lr=1e-12 at its first rung; its job was cancelled before the 30 epochs
    assert stopped["status"] == "stopped"
    assert (sweep / "trials/t00001/metrics.jsonl").read_text().count("\n") < 30
    # (a job's result file is read before Slurm has finished the job: wait for the accounting state)
    wait_for(lambda: sacct_state(stopped["jobs"][-1]["id"]) == "CANCELLED", 60, "the stopped trial's job", sweep)
    # the NaN trial: two attempts (retries: 1), then failed; the sweep went on
    assert failed["status"] == "failed" and failed["attempts"] == 2 and len(failed["jobs"]) == 2
    assert "FloatingPointError" in failed["error"] and "non-finite" in failed["error"]
    wait_for(lambda: all(sacct_state(j["id"]) == "FAILED" for j in failed["jobs"]), 60, "FAILED jobs", sweep)

    # the final evaluation job: both trials with a checkpoint scored on the test split, the failed one empty
    st = state(sweep)
    wait_for(lambda: sacct_state(st["evaluation"]["id"]) == "COMPLETED", 60, "the evaluation job", sweep)
    rows = {r["trial"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert set(rows) == {"t00000", "t00001", "t00002"}
    assert float(rows["t00000"]["cc"]) > float(rows["t00001"]["cc"]) and rows["t00002"]["cc"] == ""
    evaluation = json.loads((sweep / "evaluation.json").read_text())
    assert evaluation["best"]["trial"] == "t00000" and evaluation["split"] == "test"
    assert list((sweep / "tb" / "t00000").glob("events.out.tfevents.*"))

    status = subprocess.run([sys.executable, "jobs/status.py", str(sweep)], cwd=REPO, capture_output=True,
                            text=True, timeout=120).stdout
    assert "stopped" in status and "failed" in status and "FloatingPointError" in status
    assert "best so far: t00000" in status


def test_killed_driver_resumes_without_rerunning_finished_trials(slurm, shards, tmp_path):
    spec = sweep_file(tmp_path, "restore", "[0.003, 0.001]", "{name: fifo}",
                      "{trials: 1, max_concurrent: 1, retries: 0}")
    args = ["--sweep", str(spec), "--out", str(tmp_path / "runs"), "--no-evaluate", *SLURM, *TINY,
            f"data.shards={shards}", "train.epochs=12"]
    sweep = sweep_dir_of(launch(*args).stdout)
    driver = state(sweep)["driver"]["id"]
    second = sweep / "trials" / "t00001"
    wait_for(lambda: (second / "metrics.jsonl").exists(), 400, "the second trial's first epoch", sweep)
    # the driver dies (Ray with it: cgroup); trial jobs live on
    subprocess.run(["scancel", driver], check=True, timeout=60)
    wait_for(lambda: sacct_state(driver) == "CANCELLED", 60, "the driver to be cancelled", sweep)
    assert trial(sweep, "t00001")["status"] == "running"

    again = launch(*args).stdout  # the same sweep: same folder, Tuner.restore
    assert sweep_dir_of(again) == sweep and state(sweep)["driver"]["id"] != driver
    wait_for(lambda: state(sweep).get("status") == "done", 400, "the restored sweep", sweep)
    first, second_rec = trial(sweep, "t00000"), trial(sweep, "t00001")
    assert first["status"] == "done" and len(first["jobs"]) == 1  # not rerun
    assert second_rec["status"] == "done" and len(second_rec["jobs"]) == 1  # followed, not resubmitted
    rows = [json.loads(ln) for ln in (second / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    log = (sweep / "jobs").glob("*_0_log.out")
    assert any("re-attached to job" in p.read_text() for p in log)


def test_cancel_stops_every_job(slurm, shards, tmp_path):
    # one trial at a time: the node has 2 CPUs, the driver holds one
    spec = sweep_file(tmp_path, "cancel", "[0.003, 0.001]", "{name: fifo}",
                      "{trials: 1, max_concurrent: 1, retries: 0}")
    args = ["--sweep", str(spec), "--out", str(tmp_path / "runs"), "--no-evaluate", *SLURM, *TINY,
            f"data.shards={shards}", "train.epochs=200"]
    sweep = sweep_dir_of(launch(*args).stdout)
    wait_for(lambda: (sweep / "trials" / "t00000" / "metrics.jsonl").exists(), 400, "a trial training", sweep)
    out = subprocess.run([sys.executable, "jobs/cancel.py", str(sweep)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    ids = [state(sweep)["driver"]["id"], trial(sweep, "t00000")["jobs"][-1]["id"]]
    assert all(i in out.stdout for i in ids), out.stdout
    wait_for(lambda: all(sacct_state(i) == "CANCELLED" for i in ids), 90, "every job cancelled", sweep)
    assert trial(sweep, "t00000")["status"] in ("cancelled", "stopped")
    assert state(sweep)["status"] == "cancelled"
    assert (sweep / "trials" / "t00000" / "latest.pt").exists()  # the run folder stays: relaunching resumes


def test_alpha_sweep_on_the_gpu_partition_as_documented(slurm, shards, tmp_path):
    """`jobs/launch.py --partition gpu --sweep alpha` (tiny, 2 samples and the fixed α = 0.05): --dry-run prints and
    submits nothing; an unknown partition is refused before anything is submitted; the real launch returns at once,
    the shared bootstrap and the trials run on the gpu partition with one (fake) GPU each, then the final
    evaluation."""
    out_dir = tmp_path / "runs"
    common = ["--sweep", "alpha", "--out", str(out_dir), "--tiny", "--trials", "2", "--driver-cpus", "1",
              "--cpus-per-task", "1", "--mem", "2", f"data.shards={shards}", "data.input_size=[32, 48]",
              "train.epochs=2", "train.bootstrap_epochs=1"]
    bad = subprocess.run([sys.executable, "jobs/launch.py", "--partition", "gpux", *common], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'gpux' is not a partition" in bad.stderr and "cpu, gpu" in bad.stderr
    assert not out_dir.exists()

    res = launch("--partition", "gpu", *common, "--dry-run", "--verbose")
    dry = res.stdout + res.stderr
    assert "partition gpu, 1 node(s) × 1 GPU(s)" in dry and dry.count("--- trial") == 3
    assert "1 stage job(s) then 3 trial job(s)" in dry and not (out_dir / "sweeps").exists()

    t0 = time.time()
    out = launch("--partition", "gpu", *common).stdout
    assert time.time() - t0 < 60  # it submits and returns
    sweep = sweep_dir_of(out)
    wait_for(lambda: state(sweep).get("status") == "done", 600, "the alpha sweep", sweep)
    for t in ("t00000", "t00001", "t00002"):
        rec = trial(sweep, t)
        assert rec["status"] == "done"
        acct = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "Partition,AllocTRES", "-j", rec["jobs"][-1]["id"]],
                              capture_output=True, text=True, timeout=60).stdout
        assert acct.startswith("gpu|") and "gres/gpu=1" in acct, acct
    assert (sweep / "summary.md").read_text().count("| done |") == 3
