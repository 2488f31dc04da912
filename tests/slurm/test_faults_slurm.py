"""Faults on the real local Slurm, made for real: a rank's process killed with SIGKILL, ports taken by another
program, ``scancel --signal=KILL`` of a trial's job, and the node set DOWN mid-trial then resumed.

- A sweep whose trial is a 2-task DDP job (two fake GPUs): rank 1 is killed mid-training → the job ends within
  seconds (srun ends the step, rank 0 names itself and the port), the sweep counts a failed attempt and the
  retry resumes from the last checkpoint, ending with the weights of an uninterrupted run.
- That uninterrupted run is a 2-task DDP job held until the ports an old-style rendezvous would use (submitit's
  MASTER_PORT, 20000 + job id % 20000, the Slurm fallback) are taken by another program: it runs to the end
  (before: rank 0 failed with EADDRINUSE and rank 1 waited forever).
- ``srun -n 2 python jobs/train.py`` meets the same way, through the run folder.
- A 2-trial sweep: the first trial's job is killed by Slurm (``scancel --signal=KILL``) → retried, resumed; during
  the second the node goes DOWN (every job on it ends NODE_FAIL, the driver's too) and is resumed → Slurm
  requeues both, the driver restores the sweep and follows the requeued trial job. The sweep finishes; status
  and summary.md state each trial's attempts.
"""

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import synthetic_shards
from sweep_helpers import (
    REPO,
    SLURM,
    TINY,
    job_log,
    launch,
    sacct_state,
    start_steps,
    state,
    sweep_dir_of,
    sweep_file,
    trial,
    wait_for,
)

from salnet.config import to_dict
from salnet.run.slurm import slurm_runs
from salnet.run.submission import make_executor
from salnet.sweeps.folder import SweepFolder
from salnet.sweeps.load import trial_config
from salnet.train.checkpoint import load_checkpoint
from salnet.train.distributed import job_port

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]
TIMEOUT_S = 60  # SALNET_DIST_TIMEOUT_S of every job here: a lost peer must end a job well within it


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("faultdata"), {"train": 40, "val": 6, "test": 6}, (32, 48), 0.05)


def job_env() -> dict:
    return {**os.environ, "SALNET_DIST_TIMEOUT_S": str(TIMEOUT_S)}  # sbatch passes it on to the jobs


def task_pids(job_id: str, rank: int) -> list[int]:
    """The processes of one task of a job's first step (``scontrol listpids``)."""
    out = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, timeout=60).stdout
    rows = [ln.split() for ln in out.splitlines()[1:]]
    return [int(r[0]) for r in rows if len(r) >= 5 and r[2] == "0" and r[4] == str(rank)]


def epochs_written(run_dir: Path) -> int:
    p = run_dir / "metrics.jsonl"
    return p.read_text().count("\n") if p.exists() else 0


def epochs_of(run_dir: Path) -> list[int]:
    """The epochs of a run's metrics.jsonl (an epoch redone after a resume counts once)."""
    return sorted({json.loads(ln)["epoch"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln})


def assert_resumed(run_dir: Path, epochs: int, logs: Path, retried_job: str) -> None:
    """A retried run resumed, not restarted: every epoch reported, at most one of them twice (killed after its
    metrics.jsonl line, before its checkpoint) — a restart from scratch writes every epoch before the fault
    again — and the retried job's training started at a step > 0 (the step of the checkpoint it resumed)."""
    assert epochs_of(run_dir) == list(range(1, epochs + 1))
    assert epochs <= epochs_written(run_dir) <= epochs + 1, f"{epochs_written(run_dir)} lines for {epochs} epochs"
    steps = start_steps(job_log(logs, retried_job))
    assert steps and steps[-1] > 0, f"job {retried_job} started its training at steps {steps}"


def g_and_d(run_dir: Path) -> dict:
    state_ = load_checkpoint(run_dir / "latest.pt")
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state_[net].items()}


@pytest.fixture(scope="module")
def ddp_sweep(slurm, shards, tmp_path_factory):
    """A one-trial sweep of 2-task DDP jobs whose first job loses rank 1 (SIGKILL) after its first epoch.
    Returns (sweep folder, the killed job's id, seconds from the kill to that job's end)."""
    tmp = tmp_path_factory.mktemp("ddp")
    spec = sweep_file(tmp, "ddp", "[0.003]", "{name: fifo}", "{trials: 1, max_concurrent: 1, retries: 1}",
                      "{gpus_per_trial: 2, cpus_per_task: 1, time_min: 15}")
    args = ["--sweep", str(spec), "--out", str(tmp / "runs"), "--no-evaluate", *SLURM, "--partition", "gpu",
            "--gpus-per-node", "2", *TINY, f"data.shards={shards}", "train.epochs=8"]
    sweep = sweep_dir_of(launch(*args, env=job_env()).stdout)
    run = sweep / "trials" / "t00000"
    wait_for(lambda: epochs_written(run) >= 1 and (run / "latest.pt").exists(), 400, "the first epoch", sweep, 0.2)
    job = trial(sweep, "t00000")["jobs"][-1]["id"]
    pids = task_pids(job, 1)
    assert pids, "rank 1's processes not found"
    for pid in pids:
        os.kill(pid, 9)  # rank 1 dies mid-training, as on a node that runs out of memory
    killed = time.time()
    wait_for(lambda: sacct_state(job) not in ("RUNNING", "COMPLETING", "?"), TIMEOUT_S, "the job to end", sweep, 0.2)
    ended = time.time() - killed
    wait_for(lambda: state(sweep).get("status") == "done", 600, "the sweep", sweep)
    return sweep, job, ended


def test_a_killed_rank_ends_the_job_and_the_retry_resumes(ddp_sweep):
    sweep, killed_job, ended = ddp_sweep
    assert ended < TIMEOUT_S / 2  # srun ends the step as soon as a task dies; nobody waits for the timeout
    assert sacct_state(killed_job) == "FAILED"
    rec = trial(sweep, "t00000")
    assert rec["status"] == "done" and rec["attempts"] == 2 and rec["jobs"][0]["id"] == killed_job
    assert rec["error"].startswith("salnet.train.distributed.LostPeerError: rank 0 of 2 (process group at "), rec
    assert_resumed(sweep / "trials" / "t00000", 8, sweep / "jobs", rec["jobs"][1]["id"])
    log = job_log(sweep / "jobs", killed_job)
    assert "LostPeerError: rank 0 of 2 (process group at " in log, log[-3000:]
    assert start_steps(log) == [0]


def taken_ports(job_id: str) -> list[socket.socket]:
    """Listen, as another program would, on every port an old-style rendezvous of ``job_id`` would use."""
    ports = {random.Random(job_id).randint(20000, 60000), 20000 + int(job_id) % 20000, job_port(int(job_id))}
    held = []
    for port in ports:
        s = socket.socket()
        try:
            s.bind(("", port))
            s.listen()
            held.append(s)
        except OSError:  # already taken by something else: as good
            s.close()
    return held


def test_a_ddp_job_runs_with_its_ports_taken_and_equals_the_retried_trial(ddp_sweep, tmp_path, monkeypatch):
    sweep, _, _ = ddp_sweep
    folder = SweepFolder(sweep)
    plan = folder.read_plan()
    cfg = trial_config(plan.spec, trial(sweep, "t00000")["params"], plan.overrides)
    monkeypatch.setenv("SALNET_DIST_TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as Ray sets it for the trial actor that submitted the trial's jobs
    ex = make_executor(tmp_path / "logs", plan.resources, "ports-taken")  # the trial's resources: 2 tasks
    ex.update_parameters(slurm_additional_parameters={"hold": True})
    from salnet.run.jobs import TrainJob

    job = ex.submit(TrainJob(), to_dict(cfg), str(tmp_path / "run"))
    held = taken_ports(job.job_id)
    try:
        assert held
        subprocess.run(["scontrol", "release", job.job_id], check=True, timeout=60)
        deadline = time.time() + 300
        while not job.done():  # it used to hang here: rank 1 waiting on another program's socket
            if time.time() > deadline:
                subprocess.run(["scancel", job.job_id], timeout=60)
                pytest.fail(f"the DDP job did not end\n{job.stderr()}")
            time.sleep(1)
        results = job.results()
    finally:
        for s in held:
            s.close()
    assert [r["status"] for r in results] == ["done", "done"] and results[0]["val"] == results[1]["val"]
    a, b = g_and_d(tmp_path / "run"), g_and_d(sweep / "trials" / "t00000")
    assert a.keys() == b.keys()
    for k in a:  # killed, retried from its checkpoint, and the same as never interrupted
        assert torch.equal(a[k], b[k]), k


def test_srun_tasks_of_jobs_train_meet_through_the_run_folder(slurm, shards, tmp_path):
    """``srun -n 2 python jobs/train.py``: the step's tasks meet through a rendezvous file (no fixed port) and
    leave none behind."""
    run = tmp_path / "run"
    out = subprocess.run(["srun", "-p", "cpu", "-n", "2", "-c", "1", "--mem=2G", "-t", "10", "--kill-on-bad-exit=1",
                          sys.executable, "jobs/train.py", "--run-dir", str(run), *TINY, f"data.shards={shards}",
                          "train.epochs=1", "train.bootstrap_epochs=1"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=job_env())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert epochs_written(run) == 1 and list((run / ".rendezvous").iterdir()) == []


def node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True, timeout=60).stdout.split()[0]


def node_state() -> str:
    return subprocess.run(["sinfo", "-h", "-n", node(), "-o", "%T"], capture_output=True, text=True,
                          timeout=60).stdout.strip()


def test_sweep_survives_scancel_kill_and_a_node_failure(slurm, shards, tmp_path):
    spec = sweep_file(tmp_path, "faults", "[0.003, 0.001]", "{name: fifo}",
                      "{trials: 1, max_concurrent: 1, retries: 1}")
    args = ["--sweep", str(spec), "--out", str(tmp_path / "runs"), *SLURM, *TINY, f"data.shards={shards}",
            "train.epochs=40"]
    sweep = sweep_dir_of(launch(*args, env=job_env()).stdout)
    first, second = sweep / "trials" / "t00000", sweep / "trials" / "t00001"

    # the first trial's job killed by Slurm mid-trial: no checkpoint on the way out (CANCELLED)
    wait_for(lambda: epochs_written(first) >= 2, 400, "the first trial's epochs", sweep, 0.2)
    killed = trial(sweep, "t00000")["jobs"][-1]["id"]
    subprocess.run(["scancel", "--signal=KILL", killed], check=True, timeout=60)
    wait_for(lambda: epochs_written(second) >= 2, 600, "the second trial's epochs", sweep, 0.2)

    # the node fails under the second trial (and under the driver): both jobs end NODE_FAIL and are requeued
    downed = trial(sweep, "t00001")["jobs"][-1]["id"]
    driver = state(sweep)["driver"]["id"]
    try:
        subprocess.run(["scontrol", "update", f"nodename={node()}", "state=down", "reason=salnet-fault-test"],
                       check=True, timeout=60)
        wait_for(lambda: "NODE_FAIL" in slurm_runs([downed]).get(downed, []), 60, "NODE_FAIL", sweep, 0.5)
        assert node_state().startswith("down")
        assert epochs_written(second) < 40  # it did fail mid-trial
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node()}", "state=resume"], timeout=60)
    wait_for(lambda: state(sweep).get("status") == "done", 800, "the sweep after the node came back", sweep)

    a, b = trial(sweep, "t00000"), trial(sweep, "t00001")
    assert a["status"] == b["status"] == "done"
    assert a["attempts"] == 2 and a["jobs"][0]["id"] == killed and sacct_state(killed) == "CANCELLED"
    assert b["attempts"] == 1 and b["jobs"][0]["id"] == downed and b["jobs"][0]["requeues"] == 1
    assert slurm_runs([downed])[downed] == ["NODE_FAIL", "COMPLETED"]
    assert slurm_runs([driver])[driver][0] == "NODE_FAIL"  # the driver was requeued too and resumed the sweep
    assert_resumed(first, 40, sweep / "jobs", a["jobs"][1]["id"])  # retried after scancel
    assert_resumed(second, 40, sweep / "jobs", downed)  # requeued by Slurm under the same id
    summary = (sweep / "summary.md").read_text()
    assert "Attempts per trial (jobs; + times Slurm requeued one): t00000 2, t00001 1+1." in summary
    status = subprocess.run([sys.executable, "jobs/status.py", str(sweep)], cwd=REPO, capture_output=True,
                            text=True, timeout=120).stdout
    assert "1+1 requeued" in status
