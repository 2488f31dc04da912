"""submitit glue: an executor for a backend from a :class:`JobResources`, submitting from inside another job,
and job records — what a later process needs to follow, query or cancel a job.

Backends: ``slurm``; ``local`` (processes on this machine, submitit's local executor); ``debug`` (the job runs
in the calling process, so it can be stepped through in a debugger).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import subprocess
import time
from pathlib import Path

import submitit

from salnet.sweeps.folder import JobRecord, JobResources

BACKENDS = ("slurm", "local", "debug")


def make_executor(folder: Path, resources: JobResources, name: str,
                  tasks_per_node: int | None = None) -> submitit.AutoExecutor:
    """An AutoExecutor for ``resources.backend`` writing its logs to ``folder``. One task per GPU unless
    ``tasks_per_node`` is given; ``resources.max_num_timeout`` bounds the requeues after a timeout."""
    r = resources
    if r.backend not in BACKENDS:
        raise ValueError(f"unknown backend {r.backend!r}; choose one of {', '.join(BACKENDS)}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=r.backend, slurm_max_num_timeout=r.max_num_timeout)
    params = {"timeout_min": r.time_min, "nodes": r.nodes, "tasks_per_node": tasks_per_node or max(r.gpus_per_node, 1),
              "cpus_per_task": r.cpus_per_task, "name": name}
    if r.gpus_per_node and not (r.backend == "slurm" and gres_only()):
        params["gpus_per_node"] = r.gpus_per_node
    if r.mem_gb:
        params["mem_gb"] = r.mem_gb
    if r.backend == "slurm":
        # SIGUSR2 two minutes before a timeout: the training job checkpoints and asks to be requeued
        params.update(slurm_partition=r.partition, slurm_account=r.account, slurm_qos=r.qos,
                      slurm_constraint=r.constraint, slurm_signal_delay_s=120,
                      slurm_srun_args=srun_args(r))
        if r.gpus_per_node and gres_only():
            params["slurm_gres"] = f"gpu:{r.gpus_per_node}"
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def srun_args(resources: JobResources) -> list[str]:
    """The arguments of the job's ``srun`` line. ``--cpus-per-task``: from Slurm 22.05 srun no longer takes it from
    the allocation (submitit's srun line does not pass it), and a task bound to one CPU shares it with its loader
    workers. ``--kill-on-bad-exit``: a task that dies ends the step's other tasks at once."""
    return [f"--cpus-per-task={resources.cpus_per_task}", "--kill-on-bad-exit=1"]


def gres_only() -> bool:
    """Whether GPUs are asked for as ``--gres=gpu:N`` instead of ``--gpus-per-node=N`` (``SALNET_SLURM_GPUS=gres``
    where the job is submitted: clusters that schedule GPUs as generic resources only)."""
    choice = os.environ.get("SALNET_SLURM_GPUS", "gpus-per-node")
    if choice not in ("gres", "gpus-per-node"):
        raise ValueError(f"SALNET_SLURM_GPUS={choice!r}: choose gres or gpus-per-node")
    return choice == "gres"


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


def job_record(job: submitit.Job, backend: str) -> JobRecord:
    return JobRecord(id=str(job.job_id), backend=backend, folder=str(job.paths.folder), submitted=time.time())


def attach(record: JobRecord) -> submitit.Job | None:
    """The submitit job of a record, from any process (Slurm); local and in-process jobs can only be
    followed by the process that started them (None)."""
    if record.backend == "slurm":
        return submitit.SlurmJob(folder=record.folder, job_id=record.id)
    return None


def _is_local_job(pid: int) -> bool:
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cancel_record(record: JobRecord) -> bool:
    """Cancel the job of a record (scancel; SIGTERM to a local job's controller, checked to be submitit's);
    returns whether a cancel was sent."""
    if record.backend == "slurm" and record.id:
        return subprocess.run(["scancel", record.id], capture_output=True, timeout=60).returncode == 0
    if record.backend == "local" and record.id.isdigit() and _is_local_job(int(record.id)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(record.id), signal.SIGTERM)
            return True
    return False


def local_state(record: JobRecord) -> str:
    """RUNNING while a local job's controller lives; else COMPLETED/FAILED from submitit's result file
    (UNKNOWN without one)."""
    if record.backend == "local" and record.id.isdigit() and _is_local_job(int(record.id)):
        return "RUNNING"
    result = Path(record.folder or ".") / f"{record.id}_0_result.pkl"
    if not result.exists():
        return "UNKNOWN"
    try:
        with open(result, "rb") as f:  # our own job's result file, written by submitit in our folder
            kind = pickle.load(f)[0]
    except Exception:  # noqa: BLE001 — unreadable means we cannot tell
        return "UNKNOWN"
    return "COMPLETED" if kind == "success" else "FAILED"


def error_line(exn: BaseException) -> str:
    """The remote exception's own line (``FloatingPointError: ...``) out of submitit's error, which wraps
    the whole traceback and log paths; the type and message of ``exn`` when there is none."""
    text = str(exn)
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception|Interrupt)\b.*:", ln)]
    return lines[-1][:1000] if lines else f"{type(exn).__name__}: {text[-1000:]}"
