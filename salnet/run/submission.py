"""submitit glue shared by the job scripts: executors for the slurm/local/debug backends and the
checkpointable training job. (The library in salnet/ knows nothing of Slurm; this module is where the two
meet.)

Preemption: Slurm sends SIGUSR2 before it stops a job (submitit asks for it ``signal_delay_s`` ahead). The
training loop catches it, finishes the current step, writes an atomic checkpoint and returns
``preempted``; only then does :class:`TrainJob` hand over to submitit's own handler, which requeues the
job. The requeued job builds the same Trainer on the same run folder and resumes from ``latest.pt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import submitit

BACKENDS = ("slurm", "local", "debug")


def make_executor(
    folder: Path,
    backend: str = "slurm",
    *,
    partition: str | None = None,
    nodes: int = 1,
    tasks_per_node: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int = 4,
    time_min: int = 60,
    mem_gb: float | None = None,
    account: str | None = None,
    qos: str | None = None,
    constraint: str | None = None,
    name: str = "salnet",
    max_num_timeout: int = 3,
) -> submitit.AutoExecutor:
    """An AutoExecutor for ``backend`` (slurm | local processes | debug = in this process).

    One task per GPU (``tasks_per_node`` = ``gpus_per_node`` when GPUs are asked for); ``max_num_timeout``
    bounds how often a job is requeued after timing out.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=backend, slurm_max_num_timeout=max_num_timeout)
    params = {"timeout_min": time_min, "nodes": nodes, "tasks_per_node": max(tasks_per_node, gpus_per_node or 1),
              "cpus_per_task": cpus_per_task, "name": name}
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if mem_gb:
        params["mem_gb"] = mem_gb
    if backend == "slurm":
        params.update(slurm_partition=partition, slurm_account=account, slurm_qos=qos,
                      slurm_constraint=constraint, slurm_signal_delay_s=120)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


class TrainJob(submitit.helpers.Checkpointable):
    """``TrainJob()(config_dict, run_dir)``: one (DDP) training run as a requeueable submitit job."""

    def __call__(self, config: dict, run_dir: str) -> dict:
        from salnet.config import Config, from_dict
        from salnet.train.loop import Trainer

        # inside a submitit job: RANK/WORLD_SIZE/MASTER_ADDR for the process group (the debug backend runs
        # in this process, without a job environment)
        with contextlib.suppress(RuntimeError):
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        trainer = Trainer(from_dict(Config, config), run_dir=Path(run_dir))
        result = trainer.fit()
        if result["status"] == "preempted" and trainer.env.is_main and self._requeue_asked(trainer.stop):
            handler = trainer.stop.previous.get(signal.SIGUSR2)
            if callable(handler):  # submitit's: requeues the job (the run folder holds the state)
                handler(signal.SIGUSR2, None)
        return result

    @staticmethod
    def _requeue_asked(stop, wait_s: float = 5.0) -> bool:
        """USR2 = a timeout or preemption notice (Slurm sends SIGTERM first on preemption): requeue. SIGTERM
        alone = scancel: the checkpoint is written and nothing is requeued. Waits briefly for a USR2 that
        follows a SIGTERM."""
        deadline = time.monotonic() + wait_s
        while "SIGUSR2" not in stop.seen and "SIGTERM" in stop.seen and time.monotonic() < deadline:
            time.sleep(0.1)
        return "SIGUSR2" in stop.seen


class DriverJob(submitit.helpers.Checkpointable):
    """``DriverJob()(jobs_dir, sweep_dir)``: the Ray Tune driver of a sweep as a (requeueable) CPU job; a
    requeued or resubmitted driver restores the sweep from its folder."""

    def __call__(self, jobs_dir: str, sweep_dir: str) -> dict:
        sys.path.insert(0, jobs_dir)
        from sweep_driver import run_sweep

        return run_sweep(Path(sweep_dir))


class EvaluateJob:
    """``EvaluateJob()(sweep_dir, split)``: the final evaluation of a sweep (salnet.summary) as a job."""

    def __call__(self, sweep_dir: str, split: str = "test") -> dict:
        from salnet.summary import summarize_sweep

        return summarize_sweep(Path(sweep_dir), split=split)


# ---------------------------------------------------------------------------- job records

# the client's configuration, not the enclosing job's allocation: kept when submitting from inside a job
KEEP_ENV = ("SLURM_CONF",)


@contextlib.contextmanager
def outside_job_env():
    """The SLURM_*/SUBMITIT_* variables of an enclosing job removed for the duration (a driver job that
    submits trials must not pass its own allocation on to them); unlike submitit's ``clean_env`` it keeps
    SLURM_CONF, which sbatch needs to find the cluster."""
    saved = {k: v for k, v in os.environ.items()
             if k.startswith(("SLURM_", "SUBMITIT_")) and k not in KEEP_ENV}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def submit(ex: submitit.Executor, fn, *args) -> submitit.Job:
    """``ex.submit`` outside the enclosing job's environment (see :func:`outside_job_env`)."""
    with outside_job_env():
        return ex.submit(fn, *args)


def job_record(job: submitit.Job, backend: str) -> dict:
    """What a later process needs to find, query or cancel a job: {"id", "backend", "folder", "submitted"}."""
    return {"id": str(job.job_id), "backend": backend, "folder": str(job.paths.folder), "submitted": time.time()}


def attach(record: dict) -> submitit.Job | None:
    """The submitit job of a record, from any process (Slurm); local and in-process jobs can only be
    followed by the process that started them (None)."""
    if record.get("backend") == "slurm":
        return submitit.SlurmJob(folder=record["folder"], job_id=record["id"])
    return None


def _is_local_job(pid: int) -> bool:
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cancel_record(record: dict) -> bool:
    """Cancel the job of a record (scancel; SIGTERM to a local job's controller, checked to be submitit's);
    returns whether a cancel was sent."""
    backend, job_id = record.get("backend"), str(record.get("id", ""))
    if backend == "slurm" and job_id:
        return subprocess.run(["scancel", job_id], capture_output=True, timeout=60).returncode == 0
    if backend == "local" and job_id.isdigit() and _is_local_job(int(job_id)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(job_id), signal.SIGTERM)
            return True
    return False


def slurm_states(ids: list[str]) -> dict[str, str]:
    """Job id → Slurm state (sacct; the allocation's state, not its steps'). Unknown ids are left out."""
    if not ids:
        return {}
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=60)
    states = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        states[jid.split("_")[0]] = state.split()[0] if state else "UNKNOWN"
    return states


def local_state(record: dict) -> str:
    """RUNNING while a local job's controller lives; else FINISHED/FAILED from submitit's result file."""
    job_id = str(record.get("id", ""))
    if record.get("backend") == "local" and job_id.isdigit() and _is_local_job(int(job_id)):
        return "RUNNING"
    result = Path(record.get("folder", ".")) / f"{job_id}_0_result.pkl"
    if not result.exists():
        return "UNKNOWN"
    try:
        import pickle

        with open(result, "rb") as f:  # our own job's result file, written by submitit in our folder
            kind = pickle.load(f)[0]
    except Exception:  # noqa: BLE001 — unreadable means we cannot tell
        return "UNKNOWN"
    return "COMPLETED" if kind == "success" else "FAILED"


def write_json(path: Path, doc: dict) -> None:
    """Atomic JSON write (tmp + rename): a reader never sees half a file."""
    from salnet.atomic import atomic_write

    atomic_write(path, json.dumps(doc, indent=2, default=str))


# the job classes travel by value: the worker needs salnet installed, not this folder on its path
cloudpickle.register_pickle_by_value(sys.modules[__name__])
