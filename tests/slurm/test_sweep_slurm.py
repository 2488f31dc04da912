"""Sweeps on the real local Slurm, driven the way a user does: ``jobs/launch.py`` submits the Ray Tune
driver as a job, every trial is its own Slurm job, ``jobs/status.py`` / ``jobs/cancel.py`` read the folder.

- a 3-trial grid: one good trial runs to the end, one (lr 1e-12, no learning) is stopped early by ASHA and its
  Slurm job cancelled, one (lr 1e30, NaN loss) fails, is retried once and marked failed while the sweep goes
  on; the final evaluation job scores the trials with a checkpoint (summary.csv, TensorBoard).
- the driver job is killed half-way; relaunching the same sweep restores it (Tuner.restore) without
  rerunning the finished trial and re-attaches to the running trial's job.
- ``jobs/cancel.py`` cancels a running sweep's every job.
- the README's ``--partition gpu --sweep alpha``, and a sweep whose trials share one bootstrap job, both launched
  before the first test and running beside the others (each job waits in Slurm's queue for the node's CPUs).
"""

import csv
import json
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers import synthetic_shards
from sweep_helpers import REPO, SLURM, TINY, launch, sacct_state, state, sweep_dir_of, sweep_file, trial, wait_for

from salnet.config import Config, from_dict
from salnet.train.loop import Trainer

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

SWEEP = """name: stg
base: salgan
overrides: {train.epochs: 3, train.bootstrap_epochs: 2}
search: {algorithm: points}
points:
  - {label: BCE/4, train.adversarial: false}
  - {label: "GAN/4 α=0.05", train.alpha: 0.05}
  - {label: "GAN/4 α=0.5", train.alpha: 0.5}
metric: cc
mode: max
scheduler: {name: fifo}
budget: {trials: 1, max_concurrent: 3, retries: 0}
resources: {gpus_per_trial: 0, cpus_per_task: 1, time_min: 15}
"""


def job_names(sweep) -> list[str]:
    """The Slurm job names of every job this sweep submitted (its submitit folder holds one log per job)."""
    ids = sorted({p.name.split("_")[0] for p in (sweep / "jobs").glob("*_log.out")})
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobName"], capture_output=True,
                         text=True, timeout=60)
    return out.stdout.split()


def job_threads() -> int:
    """torch's thread count inside a 1-CPU job on the cpu partition (what the trial jobs trained with)."""
    out = subprocess.run(["srun", "-p", "cpu", "-c", "1", "-t", "2", sys.executable, "-c",
                          "import torch; print(torch.get_num_threads())"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


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


@pytest.fixture(scope="module", autouse=True)
def alpha_sweep(slurm, shards, tmp_path_factory):
    """`jobs/launch.py --partition gpu --sweep alpha` (tiny, 2 samples and the fixed α = 0.05), launched before this
    module's first test so that it runs on the gpu partition beside the other sweeps here (each waits in Slurm's
    queue for the node's CPUs, as on a shared cluster): --dry-run prints and submits nothing; an unknown partition
    is refused before anything is submitted; the real launch returns at once. Returns the sweep folder."""
    out_dir = tmp_path_factory.mktemp("alpha") / "runs"
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
    return sweep_dir_of(out)


@pytest.fixture(scope="module", autouse=True)
def stages_sweep(slurm, tmp_path_factory):
    """The shared-bootstrap sweep (SWEEP), launched before this module's first test (it runs beside the others).
    Returns the sweep folder."""
    tmp = tmp_path_factory.mktemp("stages")
    shards = synthetic_shards(tmp / "data", {"train": 16, "val": 6}, (32, 48), 0.05)
    spec = tmp / "stg.yaml"
    spec.write_text(SWEEP)
    out = launch("--sweep", str(spec), "--out", str(tmp / "runs"), "--no-evaluate", *SLURM, *TINY,
                 f"data.shards={shards}").stdout
    return sweep_dir_of(out)


def test_alpha_sweep_on_the_gpu_partition_as_documented(alpha_sweep):
    """The alpha sweep (:func:`alpha_sweep`): the shared bootstrap and the trials ran on the gpu partition with one
    (fake) GPU each, then the final evaluation."""
    sweep = alpha_sweep
    wait_for(lambda: state(sweep).get("status") == "done", 600, "the alpha sweep", sweep)
    for t in ("t00000", "t00001", "t00002"):
        rec = trial(sweep, t)
        assert rec["status"] == "done"
        acct = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "Partition,AllocTRES", "-j", rec["jobs"][-1]["id"]],
                              capture_output=True, text=True, timeout=60).stdout
        assert acct.startswith("gpu|") and "gres/gpu=1" in acct, acct
    assert (sweep / "summary.md").read_text().count("| done |") == 3


def test_the_trials_share_one_bootstrap_job_and_equal_trials_with_their_own(stages_sweep, tmp_path):
    """One bootstrap per sweep: salgan_gan's shape (BCE/4 alone and GAN/4 at two α) at tiny scale. The driver
    trained the shared bootstrap once, as one Slurm job in one run folder; every trial started from its checkpoint
    and ends equal (to float32 rounding across processes) to the same trial trained with a bootstrap of its own
    (same seed ⇒ same bootstrap)."""
    sweep = stages_sweep
    wait_for(lambda: state(sweep).get("status") in ("done", "failed"), 600, "the sweep", sweep)
    assert state(sweep)["status"] == "done", state(sweep)

    (stage,) = sorted((sweep / "stages").iterdir())  # one bootstrap run folder
    assert state(sweep)["stages"] == {stage.name: "done"}
    names = job_names(sweep)
    assert names.count("stg-salgan-bootstrap") == 1 and len(names) == 5, names  # driver, 1 bootstrap, 3 trials
    assert [json.loads(r)["epoch"] for r in (stage / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    for name in ("t00000", "t00001", "t00002"):
        assert trial(sweep, name)["status"] == "done"
        run = sweep / "trials" / name
        doc = yaml.safe_load((run / "config.yaml").read_text())
        assert doc["config"]["train"]["init_from"] == str(stage)  # every trial starts from the bootstrap
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # the stage's 2 epochs, then its own
        cfg = from_dict(Config, doc["config"])
        own = from_dict(Config, {**doc["config"], "train": {**doc["config"]["train"], "init_from": None}})
        threads = torch.get_num_threads()
        torch.set_num_threads(job_threads())  # as in the jobs: a float sum's order depends on the thread count
        try:
            alone = Trainer(own, run_dir=tmp_path / "alone" / name)  # the same trial, bootstrap included
            assert alone.fit()["status"] == "done"
        finally:
            torch.set_num_threads(threads)
        shared = torch.load(run / "latest.pt", weights_only=True)  # each run's last step (fit() ends on the best)
        mine = torch.load(tmp_path / "alone" / name / "latest.pt", weights_only=True)
        assert shared["step"] == mine["step"] == alone.step and cfg.train.epochs == 3
        for net in ("G", "D"):  # equal up to float32 rounding: another process may take other CPU kernel paths,
            # and 12 steps grow a last-bit difference to ~5e-6 (in one process the two are bit-equal:
            # tests/test_stages.py); another α's trial from the same bootstrap differs by ~3e-3
            worst = max((shared[net][k] - mine[net][k]).abs().max().item() for k in mine[net])
            assert worst <= 1e-4, (name, net, worst)
