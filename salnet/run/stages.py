"""The shared first stages of a sweep, run by its driver before the search (:mod:`salnet.train.stages`).

Each stage is a training job on the trials' backend and resources, in its own resumable run folder
(``SWEEP/stages/<name>-bootstrap-<id>``); the trials that share it are submitted only once it has finished, and
start from its last checkpoint. A stage job that fails is resubmitted (it resumes from its checkpoint) up to the
sweep's ``budget.retries``; then the sweep fails with one message naming the stage's log. A stage already finished
(a relaunched sweep) is not run again.
"""

from __future__ import annotations

import time
from pathlib import Path

from salnet.config import to_dict
from salnet.logs import get_logger
from salnet.run import LaunchError
from salnet.run.jobs import TrainJob
from salnet.run.submission import error_line, make_executor, submit
from salnet.sweeps.folder import SweepFolder, SweepPlan
from salnet.sweeps.load import shared_stages

log = get_logger(__name__)
POLL_S = 2.0


class StageFailed(LaunchError):
    """A shared first stage failed every attempt: the sweep cannot run its trials."""


def run_stages(folder: SweepFolder, plan: SweepPlan, trials: list[dict]) -> dict[Path, str]:
    """Run every shared first stage of ``trials`` (their params) to its end, one after the other; returns run folder
    → "done". Raises :class:`StageFailed` naming the stage and its job's log when one fails every attempt."""
    stages = shared_stages(plan.spec, trials, plan.overrides, folder.stages_dir)
    done: dict[Path, str] = {}
    for run_dir, (cfg, users) in stages.items():
        if (run_dir / "final.json").is_file():
            log.info(f"shared first stage {run_dir.name}: finished already ({len(users)} trial(s) start from it)")
        else:
            log.info(f"shared first stage {run_dir.name}: {cfg.train.epochs} epoch(s), then {len(users)} trial(s) "
                     "start from it")
            _set_state(folder, run_dir, "running")
            _run_to_end(folder, plan, cfg, run_dir)
        _set_state(folder, run_dir, "done")
        done[run_dir] = "done"
    return done


def _set_state(folder: SweepFolder, run_dir: Path, status: str) -> None:
    stages = dict(folder.read_state().stages)
    stages[run_dir.name] = status
    folder.update_state(stages=stages)


def _run_to_end(folder: SweepFolder, plan: SweepPlan, cfg, run_dir: Path) -> None:
    retries = plan.spec.budget.retries
    name = f"{plan.spec.name}-{run_dir.name.rsplit('-', 1)[0]}"
    for attempt in range(1, retries + 2):
        job = submit(make_executor(folder.jobs_dir, plan.resources, name), TrainJob(), to_dict(cfg), str(run_dir))
        log.info(f"shared first stage {run_dir.name}: job {job.job_id} ({plan.resources.backend}), attempt "
                 f"{attempt} of {retries + 1}")
        while not job.done():
            time.sleep(POLL_S)
        try:
            result = job.results()[0]
        except Exception as exn:  # noqa: BLE001 — a failed job: submitit re-raises the remote error
            error = error_line(exn)
            logfile = job.paths.stderr
            if attempt > retries:
                _set_state(folder, run_dir, "failed")
                folder.update_state(status="failed", error=f"shared first stage {run_dir.name}: {error}")
                raise StageFailed(f"the shared first stage {run_dir} failed {attempt} time(s); last error: {error}; "
                                  f"its log: {logfile}") from None
            log.warning(f"shared first stage {run_dir.name}: job {job.job_id} failed ({error}); resubmitting")
            continue
        if (run_dir / "final.json").is_file():
            return
        status = result.get("status") if isinstance(result, dict) else None
        log.info(f"shared first stage {run_dir.name}: job {job.job_id} ended {status}; resubmitting to finish it")
    _set_state(folder, run_dir, "failed")
    raise StageFailed(f"the shared first stage {run_dir} did not finish in {retries + 1} job(s); its logs: "
                      f"{folder.jobs_dir}")
