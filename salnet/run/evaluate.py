"""A sweep's final evaluation (:func:`salnet.summary.summarize_sweep`) here or as a job: what the driver runs
when the search ends and what ``jobs/evaluate.py`` reruns by hand."""

from __future__ import annotations

import submitit

from salnet.logs import get_logger
from salnet.run.jobs import EvaluateJob
from salnet.run.slurm import check_partition, slurm_partitions
from salnet.run.submission import job_record, make_executor, submit
from salnet.sweep_folder import JobResources, SweepFolder

log = get_logger(__name__)


def submit_evaluation(folder: SweepFolder, resources: JobResources, split: str) -> submitit.Job:
    """Submit the evaluation of every trial on ``split`` as one task; its job record goes into state.json."""
    ex = make_executor(folder.jobs_dir, resources, f"{folder.path.name}-evaluate", tasks_per_node=1)
    job = submit(ex, EvaluateJob(), str(folder.path), split)
    folder.update_state(evaluation=job_record(job, resources.backend))
    return job


def evaluate_sweep(folder: SweepFolder, split: str = "test", backend: str = "here", partition: str | None = None,
                   gpus: int = 1, time_min: int = 120) -> dict | None:
    """Evaluate a sweep ``here`` (this process) or as a ``local`` or ``slurm`` job (``gpus``, ``time_min``).
    Returns the summary, or None for a Slurm job (submitted, not waited for)."""
    folder = SweepFolder(folder.path.resolve())
    if backend == "here":
        from salnet.summary import summarize_sweep

        return summarize_sweep(folder.path, split=split)
    if backend == "slurm":
        check_partition(partition, slurm_partitions()[0], "--partition")
    res = JobResources(backend=backend, partition=partition, gpus_per_node=gpus, cpus_per_task=4, time_min=time_min)
    job = submit_evaluation(folder, res, split)
    log.info(f"evaluation job {job.job_id} ({backend})")
    return None if backend == "slurm" else job.result()
