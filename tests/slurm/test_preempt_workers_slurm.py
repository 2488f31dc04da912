"""On the real local Slurm: a training job with two DataLoader workers per rank preempted by Slurm's signals, and the
CPUs each rank of a step gets.

- ``scancel --signal=TERM`` (what ``scancel`` and a preemption send first). Slurm with proctrack/pgid or
  linuxproc signals every process of the step's tasks, the loader workers too; this cluster's proctrack/cgroup
  sends a signal other than SIGKILL to the tasks alone. So after scancel the test sends the same signal to the
  rank's process group, as slurmstepd does there. Torch's worker handler kills a worker on a SIGTERM its parent did
  not send, and the main process raised "DataLoader worker ... killed by signal: Terminated" before its stop flag
  was read: no checkpoint, a FAILED job. Now the job checkpoints and returns ``preempted``; run again, it resumes
  and ends with the weights of an uninterrupted job.
- A preemption with requeue (SIGTERM then SIGUSR2, as submitit's ``_interrupt`` sends them, and to the rank's
  process group): checkpointed, requeued by Slurm, resumed, equal to the uninterrupted job.
- CPUs per rank: a 2-task job asking 2 CPUs per task. The local cluster runs srun 22.05 (which no longer takes
  ``--cpus-per-task`` from the allocation) with ``TaskPlugin=task/none``, which binds nothing: every rank sees the
  node's CPUs whatever srun asks, so the affinity count inside each rank equals the request (2, the cores this
  machine has) with or without the fix. What the old code lacked, and what binds a rank to one CPU on a cluster
  with task/affinity or task/cgroup, is ``--cpus-per-task`` on the srun line Slurm ran: read back from the job.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import synthetic_shards
from submitit.helpers import CommandFunction

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides, to_dict
from salnet.run.jobs import TrainJob
from salnet.run.submission import make_executor
from salnet.sweeps.folder import JobResources
from salnet.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")]
STEPS_PER_EPOCH = 20  # 40 training images, batches of 2


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("workers"), {"train": 40, "val": 6}, (32, 48), 0.02)


def cpu_job(cpus: int = 1) -> JobResources:
    return JobResources(backend="slurm", partition="cpu", gpus_per_node=0, cpus_per_task=cpus, time_min=10, mem_gb=2)


def config(shards) -> dict:
    return to_dict(apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                              "data.batch_size=2", "data.workers=2", "train.log_every=1",
                                              "train.epochs=3", "train.bootstrap_epochs=1"]))


def step_pids(job_id: str) -> list[int]:
    """The processes of a job's first step (``scontrol listpids``; not the batch script's): a rank and its loader
    workers."""
    out = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, timeout=60).stdout
    rows = [ln.split() for ln in out.splitlines()[1:]]
    return [int(r[0]) for r in rows if len(r) >= 3 and r[0].isdigit() and r[2] == "0"]


def signal_rank_group(job_id: str, sig: int) -> None:
    """``sig`` to the process group of the job's rank 0, its loader workers included: what slurmstepd does under
    proctrack/pgid or linuxproc."""
    out = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, timeout=60).stdout
    rank = next(int(r[0]) for r in (ln.split() for ln in out.splitlines()[1:]) if r[2:5] == ["0", "0", "0"])
    os.killpg(os.getpgid(rank), sig)


def wait_mid_training(job, run: Path) -> None:
    """Until the job has finished its first epoch and its rank runs with its two loader workers."""
    deadline = time.time() + 400
    while not ((run / "metrics.jsonl").exists() and len(step_pids(job.job_id)) >= 3):
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.1)


def weights(run: Path) -> dict:
    state = load_checkpoint(run / "latest.pt")
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items()}


def assert_equal_runs(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def runs(slurm, shards, tmp_path_factory):
    """An uninterrupted job, one cancelled with ``scancel --signal=TERM`` and one preempted with a requeue, all with
    two loader workers, side by side. Returns (folder, {name: job})."""
    tmp = tmp_path_factory.mktemp("preempt")
    ex = make_executor(tmp / "logs", cpu_job(), "workers")  # same resources: same float results
    cfg = config(shards)
    jobs = {name: ex.submit(TrainJob(), cfg, str(tmp / name)) for name in ("full", "term")}
    wait_mid_training(jobs["term"], tmp / "term")
    subprocess.run(["scancel", "--signal=TERM", jobs["term"].job_id], check=True, timeout=60)
    signal_rank_group(jobs["term"].job_id, signal.SIGTERM)
    # submitted only now: on an idle machine a job started with the others could finish before its turn to be cut
    jobs["requeue"] = ex.submit(TrainJob(), cfg, str(tmp / "requeue"))
    wait_mid_training(jobs["requeue"], tmp / "requeue")
    jobs["requeue"]._interrupt()  # scancel: SIGTERM then SIGUSR2, as a preemption with requeue
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal_rank_group(jobs["requeue"].job_id, sig)
    return tmp, jobs


def test_scancel_term_with_loader_workers_checkpoints_and_the_rerun_equals_an_uninterrupted_run(runs, shards):
    tmp, jobs = runs
    cut = jobs["term"].result()  # raised before: DataLoader worker (pid ...) is killed by signal: Terminated
    assert cut["status"] == "preempted" and cut["step"] > STEPS_PER_EPOCH, cut
    assert load_checkpoint(tmp / "term" / "latest.pt")["step"] == cut["step"]  # written at the stop
    log = jobs["term"].stdout() + jobs["term"].stderr()
    assert "killed by signal" not in log and "Requeued" not in log, log[-2000:]
    again = make_executor(tmp / "logs", cpu_job(), "workers").submit(TrainJob(), config(shards), str(tmp / "term"))
    assert again.result()["status"] == "done"
    assert jobs["full"].result()["status"] == "done"
    assert load_checkpoint(tmp / "term" / "latest.pt")["step"] == 3 * STEPS_PER_EPOCH
    assert_equal_runs(tmp / "full", tmp / "term")


def test_a_preemption_with_requeue_and_loader_workers_resumes_equal_to_an_uninterrupted_run(runs):
    tmp, jobs = runs
    result = jobs["requeue"].result()
    assert result["status"] == "done" and result["step"] == 3 * STEPS_PER_EPOCH, result
    log = jobs["requeue"].stdout() + jobs["requeue"].stderr()
    assert "killed by signal" not in log, log[-2000:]
    starts = [int(m) for m in re.findall(r"training \S+: epoch \d+ of 3, step (\d+)", log)]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] > STEPS_PER_EPOCH, log[-3000:]  # resumed mid-run
    assert jobs["full"].result()["status"] == "done"
    assert_equal_runs(tmp / "full", tmp / "requeue")


# what a rank sees, run as a command (a function of this test module would not unpickle in the job): its CPU
# affinity, Slurm's CPUs per task, and the step's record
RANK_CPUS = """import json, os, subprocess
sid = os.environ["SLURM_JOB_ID"] + "." + os.environ["SLURM_STEP_ID"]
step = subprocess.run(["scontrol", "show", "step", sid], capture_output=True, text=True, timeout=60).stdout
print(json.dumps({"rank": int(os.environ["SLURM_PROCID"]), "affinity": len(os.sched_getaffinity(0)),
                  "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"), "step": " ".join(step.split())}))
"""


def test_each_rank_of_a_step_gets_the_cpus_per_task_asked_for(slurm, tmp_path):
    ex = make_executor(tmp_path / "logs", cpu_job(cpus=2), "cpus", tasks_per_node=2)
    job = ex.submit(CommandFunction([sys.executable, "-c", RANK_CPUS]))
    seen = sorted((json.loads(out) for out in job.results()), key=lambda r: r["rank"])
    assert [(r["rank"], r["affinity"], r["cpus_per_task"]) for r in seen] == [(0, 2, "2"), (1, 2, "2")], seen
    assert "CPUs=4 Tasks=2" in seen[0]["step"], seen[0]["step"]
    script = subprocess.run(["scontrol", "write", "batch_script", job.job_id, "-"], capture_output=True, text=True,
                            timeout=60).stdout or job.paths.submission_file.read_text()
    srun = next(ln for ln in script.splitlines() if ln.startswith("srun "))
    assert "--cpus-per-task=2" in srun.split(), srun
