"""A sweep's driver: a private Ray head, Ray Tune over the trials (:mod:`salnet.run.tuner`), then the final
evaluation as a job. It runs as a Slurm job (:class:`DriverJob`, requeueable) or in the launching process.

    run_sweep(SweepFolder("runs/sweeps/alpha-1a2b3c4d5e6f"))   # run or resume the sweep of a folder

A driver that dies is simply run again (relaunch the same sweep): Tune restores the experiment from the
folder, finished trials are not rerun and running trial jobs are followed again.
"""

from __future__ import annotations

import dataclasses
import socket

import submitit

from salnet.logs import get_logger, setup_logging
from salnet.run.evaluate import submit_evaluation
from salnet.run.ray_head import RayHead, use_ray_env
from salnet.run.stages import run_stages
from salnet.run.submission import error_line
from salnet.sweeps.folder import SweepFolder, SweepPlan

log = get_logger(__name__)


class DriverJob(submitit.helpers.Checkpointable):
    """``DriverJob()(sweep_dir)``: :func:`run_sweep` as a (requeueable) CPU job; a requeued or resubmitted
    driver restores the sweep from its folder."""

    def __call__(self, sweep_dir: str) -> dict:
        setup_logging()
        return run_sweep(SweepFolder(sweep_dir))


def run_sweep(folder: SweepFolder) -> dict:
    """Run (or resume) the sweep of a folder written by the launcher, then its final evaluation (unless the
    plan says not to). Returns {"trials": {status: count}, "best", "summary": evaluated?, "state"}."""
    use_ray_env()  # before this process imports Ray
    folder = SweepFolder(folder.path.resolve())
    plan = folder.read_plan()
    spec = plan.spec
    folder.update_state(status="running", driver_host=socket.gethostname())
    run_stages(folder, plan, planned_trials(spec))  # the trials' shared first stages, each once, before them
    with RayHead(folder.ray_dir, num_cpus=spec.budget.max_concurrent + 1, key=folder.path.name):
        from salnet.run.tuner import best_result, build_tuner

        results = build_tuner(folder, plan).fit()
        best = best_result(results, spec)
    counts: dict[str, int] = {}
    records, unreadable = folder.read_trials()
    for status in [r.status for r in records] + ["unreadable"] * len(unreadable):
        counts[status] = counts.get(status, 0) + 1
    for error in unreadable.values():
        log.warning(error)
    log.info("attempts per trial: " + ", ".join(
        f"{r.trial} {r.attempts}" + (f"+{r.requeues} requeued" if r.requeues else "") for r in records))
    folder.update_state(status="evaluating" if plan.evaluate else "done", trials=counts, best=best)
    log.info(f"sweep {spec.name} done: {counts}; best {best}")
    summary = None
    if plan.evaluate:
        try:
            summary = final_evaluation(folder, plan)
        except Exception as exn:  # noqa: BLE001 — the sweep itself is done; say how to redo the evaluation
            msg = error_line(exn)
            folder.update_state(status="evaluation failed", error=msg)
            log.error(f"the final evaluation failed: {msg}\nrerun it with `python jobs/evaluate.py {folder.path}`")
            return {"trials": counts, "best": best, "summary": False, "state": "evaluation failed"}
    state = folder.update_state(status="done")
    return {"trials": counts, "best": best, "summary": bool(summary), "state": state.status}


def planned_trials(spec) -> list[dict]:
    """The values Tune will give the sweep's trials, in order (:func:`salnet.run.tuner.planned_trials`); sets
    Ray's environment first, as this process may go on to drive the sweep."""
    use_ray_env()
    from salnet.run.tuner import planned_trials

    return planned_trials(spec)


def final_evaluation(folder: SweepFolder, plan: SweepPlan) -> dict:
    """The final evaluation as a job (at most one GPU, one task) on the trials' backend; waits for its result."""
    res = dataclasses.replace(plan.resources, gpus_per_node=min(plan.resources.gpus_per_node, 1))
    folder.update_state(status="evaluating")
    job = submit_evaluation(folder, res, plan.split)
    log.info(f"final evaluation: job {job.job_id}")
    return job.result()
