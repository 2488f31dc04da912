"""The Ray Tune side of a sweep: Tune picks each trial's values and stops bad trials early (ASHA); every trial
is its own submitit training job, followed through its metrics.jsonl on the shared file system.

- A trial = one Tune ``Trainable`` (:class:`TrialRunner`) that submits a :class:`salnet.run.jobs.TrainJob` and
  turns each new epoch line of the run's metrics.jsonl into one Tune result (``training_iteration`` = epochs).
- ASHA stops a trial → ``cleanup`` cancels its job (and :class:`TrialJobs` cancels it again from the driver
  process, in case the trial's actor died first).
- A failed job (an error, a rank lost, ``scancel --signal=KILL``) is resubmitted up to ``budget.retries`` times
  (it resumes from its latest checkpoint); then the trial errors and the sweep goes on without it. A job that
  Slurm requeues by itself (its node failed) is followed, not resubmitted; trial.json counts its requeues.
- A restored driver (``Tuner.restore``) resumes unfinished trials: a trial's job still running on Slurm is
  re-attached, not resubmitted; finished trials are not rerun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path

import submitit
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from salnet.config import ConfigError, to_dict
from salnet.logs import get_logger, setup_logging
from salnet.metric_names import METRIC_NAMES
from salnet.run.jobs import TrainJob
from salnet.run.slurm import ACTIVE, slurm_alive, slurm_runs, slurm_states
from salnet.run.submission import attach, cancel_record, error_line, job_record, make_executor, submit
from salnet.sweeps.folder import OPEN_TRIAL_STATES, SweepFolder, SweepPlan
from salnet.sweeps.load import grid_size, samples, search_space, trial_run_config

log = get_logger(__name__)
POLL_S = 1.0  # metrics.jsonl polling
SACCT_EVERY_S = 10.0  # Slurm state polling (a job killed without a result file is only seen by sacct)


class TrialFailed(RuntimeError):
    pass


def result_of(row: dict, final: bool = False) -> dict:
    """A metrics.jsonl row → a Tune result: every metric (NaN where undefined), the epoch, the stage."""
    val = row.get("val", {})
    out = {m: float(val.get(m, math.nan)) for m in METRIC_NAMES}
    out.update(epoch=row["epoch"], stage=row.get("stage", ""), images=val.get("images", 0))
    if final:  # "final" marks a trial that ran to its end (Tune also sets "done" on trials it stops)
        out.update(done=True, final=1)
    return out


class TrialRunner(tune.Trainable):
    """One trial: a training job on the sweep's backend, reported epoch by epoch."""

    def setup(self, config: dict, sweep_dir: str = ""):
        setup_logging()  # a Ray actor's own process: its lines reach the driver's log through Ray
        logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per Tune checkpoint in the driver's log
        self.folder = SweepFolder(sweep_dir)
        self.plan = self.folder.read_plan()
        self.params = dict(config)
        self.cfg = trial_run_config(self.plan.spec, self.params, self.plan.overrides, self.folder.stages_dir)
        self.name = self.trial_name
        self.epochs = self.cfg.train.epochs
        self.start = first_epoch(self.cfg)  # Tune's iterations count the trial's own epochs (ASHA's rungs)
        self.reported = self.start
        self.job: submitit.Job | None = None
        self.folder.update_trial(self.name, params=self.params, status="running")
        self.last_sacct = 0.0

    # -------------------------------------------------------------- the job

    def _submit(self) -> None:
        res = self.plan.resources
        ex = make_executor(self.folder.jobs_dir, res, f"{self.plan.spec.name}-{self.name}")
        self.job = submit(ex, TrainJob(), to_dict(self.cfg), str(self.folder.trial_dir(self.name)))
        rec = self.folder.read_trial(self.name)
        self.folder.update_trial(self.name, jobs=[*rec.jobs, job_record(self.job, res.backend)],
                                 attempts=rec.attempts + 1, status="running")
        log.info(f"[{self.name}] submitted job {self.job.job_id} ({res.backend}) for {self.params}")

    def _ensure_job(self) -> None:
        if self.job is not None:
            return
        jobs = self.folder.read_trial(self.name).jobs
        if jobs:  # a restored driver: follow the trial's job if it is still alive, else make sure it is gone
            last = jobs[-1]
            job = attach(last)
            # alive, or finished cleanly while the driver was away: follow it rather than run it again
            if job is not None and slurm_states([last.id]).get(last.id, "UNKNOWN") in (*ACTIVE, "COMPLETED"):
                self.job = job
                log.info(f"[{self.name}] re-attached to job {last.id}")
                return
            if job is None:
                cancel_record(last)
        self._submit()

    def _job_outcome(self) -> tuple[bool, str | None]:
        """(finished, error): error None = finished cleanly. Polls cheaply; sacct every SACCT_EVERY_S."""
        job = self.job
        assert job is not None
        force = time.monotonic() - self.last_sacct > SACCT_EVERY_S
        if force:
            self.last_sacct = time.monotonic()
        try:
            if not job.done(force_check=force):  # the debug backend runs the job right here
                return False, None
            results = job.results()
        except Exception as exn:  # noqa: BLE001 — a failed job: submitit re-raises the remote error
            if self._requeued():
                return False, None
            self._count_requeues()
            return True, error_line(exn)
        self._count_requeues()
        status = results[0].get("status") if results and isinstance(results[0], dict) else None
        if status == "preempted":  # stopped without a requeue (local backend): run on from the checkpoint
            return True, "preempted"
        return True, None

    def _requeued(self) -> bool:
        """A Slurm job that looked ended but that Slurm requeued (node failure): follow it again, do not retry."""
        job = self.job
        assert job is not None
        if self.plan.resources.backend != "slurm" or not slurm_alive(str(job.job_id)):
            return False
        job.watcher.clear()  # submitit caches the ended state it saw
        log.info(f"[{self.name}] job {job.job_id} was requeued by Slurm; following it")
        return True

    def _count_requeues(self) -> None:
        """Record in trial.json how often Slurm ran the trial's last job (sacct --duplicates)."""
        job = self.job
        assert job is not None
        if self.plan.resources.backend != "slurm":
            return
        jid = str(job.job_id)
        runs = len(slurm_runs([jid]).get(jid, []))
        rec = self.folder.read_trial(self.name)
        if rec.jobs and rec.jobs[-1].id == jid and runs - 1 > rec.jobs[-1].requeues:
            last = dataclasses.replace(rec.jobs[-1], requeues=runs - 1)
            self.folder.update_trial(self.name, jobs=[*rec.jobs[:-1], last])
            log.info(f"[{self.name}] job {jid} ran {runs} times (Slurm requeued it)")

    # -------------------------------------------------------------- Tune's interface

    def step(self) -> dict:
        self._ensure_job()
        while True:
            rows = self.folder.epochs(self.name)
            if self.reported + 1 in rows:  # epochs count from 1: ``reported`` is the last one reported
                row = rows[self.reported + 1]
                self.reported += 1
                if self.reported < self.epochs:
                    return result_of(row)
                self._wait_for_job()  # the last epoch: the job still scores the best checkpoint
                return result_of(row, final=True)
            finished, error = self._job_outcome()
            if finished:
                rows = self.folder.epochs(self.name)
                if self.reported + 1 in rows:
                    continue
                if error is None:  # ended cleanly with no new epoch: a max_steps run, nothing more to come
                    self.folder.update_trial(self.name, status="done")
                    return result_of(rows[max(rows)], final=True) if rows else {"done": True, "final": 1}
                self._retry(error)
            time.sleep(POLL_S)

    def _wait_for_job(self) -> None:
        while True:
            finished, error = self._job_outcome()
            if finished and error is None:
                self.folder.update_trial(self.name, status="done")
                return
            if error is not None:  # finished with an error
                self._retry(error)
            time.sleep(POLL_S)

    def _retry(self, error: str) -> None:
        attempts = self.folder.read_trial(self.name).attempts
        retries = self.plan.spec.budget.retries
        if error != "preempted" and attempts > retries:
            self.folder.update_trial(self.name, status="failed", error=error)
            raise TrialFailed(f"trial {self.name} failed {attempts} time(s); last error: {error}")
        job_id = self.job.job_id if self.job is not None else "?"
        log.info(f"[{self.name}] job {job_id} ended with {error.splitlines()[0][:200]}; resubmitting "
                 f"(attempt {attempts + 1} of {retries + 1})")
        rec = self.folder.update_trial(self.name, error=error)
        if rec.jobs:
            cancel_record(rec.jobs[-1])  # never two jobs on one run folder: the old one is surely gone
        self._submit()

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        return {"reported": self.reported}  # the training state itself lives in the run folder

    def load_checkpoint(self, checkpoint: dict | None) -> None:
        self.reported = int(checkpoint["reported"]) if checkpoint else self.start

    def cleanup(self) -> None:
        if self.folder.read_trial(self.name).status == "running":  # stopped by the scheduler before its end
            if self.job is not None and not self.job.done():
                self.job.cancel(check=False)
            self.folder.update_trial(self.name, status="stopped")
        self.job = None  # released now: submitit's LocalJob.__del__ would run inside Ray's SIGTERM handler


class TrialJobs(tune.Callback):
    """Driver-side bookkeeping: a trial that ends or errors has no job left running, and its status says so."""

    def __init__(self, folder: SweepFolder):
        self.folder = folder

    def _close(self, trial, status: str) -> None:
        try:
            rec = self.folder.read_trial(str(trial))
        except ConfigError as exn:  # trial.json damaged by hand: say so, the sweep goes on
            log.warning(f"[{trial}] {exn}")
            return
        if rec.status in OPEN_TRIAL_STATES:  # the trial did not close itself (its actor died)
            if rec.jobs:
                cancel_record(rec.jobs[-1])
            self.folder.update_trial(str(trial), status=status)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        log.info(f"[{trial}] epoch {result.get('epoch')} ({result.get('stage')}): "
                 + " ".join(f"{m}={result[m]:.4f}" for m in METRIC_NAMES if m in result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = "done" if (trial.last_result or {}).get("final") else "stopped"
        log.info(f"[{trial}] {status} after {(trial.last_result or {}).get('epoch')} epoch(s)")
        self._close(trial, status)

    def on_trial_error(self, iteration, trials, trial, **info):
        with contextlib.suppress(ConfigError):
            log.info(f"[{trial}] failed: {self.folder.read_trial(str(trial)).error}")
        self._close(trial, "failed")


def first_epoch(cfg) -> int:
    """The epoch a trial's own training starts at: after its shared first stage (``train.init_from`` naming one),
    else 0."""
    from salnet.train.stages import stage_of

    stage = stage_of(cfg)
    return stage.train.epochs if stage is not None else 0


def tune_space(spec) -> dict:
    """The spec's distributions (:func:`salnet.sweeps.load.search_space`) as Tune's search space."""
    make = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": lambda lo, hi: tune.randint(lo, hi + 1),
            "choice": lambda *v: tune.choice(list(v)), "grid": lambda *v: tune.grid_search(list(v))}
    return {key: make[kind](*args) for key, dist in search_space(spec).items() for kind, args in dist.items()}


def search_algorithm(spec, max_concurrent: int) -> BasicVariantGenerator:
    # constant_grid_search: a random sample keeps its values over the grid's values (the seeds repeat a sample)
    # points_to_evaluate: a random search's fixed trials, first (they do not shift the samples drawn after them)
    return BasicVariantGenerator(random_state=spec.search.seed, max_concurrent=max_concurrent,
                                 constant_grid_search=True, points_to_evaluate=[dict(v) for v in spec.fixed] or None)


def planned_trials(spec) -> list[dict]:
    """The values Tune will give the trials, in order (the same seeded generator, run offline): what
    ``launch.py --dry-run`` prints."""
    from ray.tune.experiment import Experiment

    gen = search_algorithm(spec, 0)
    gen.add_configurations([Experiment(spec.name, run=TrialRunner, config=tune_space(spec),
                                       num_samples=samples(spec))])
    out = []
    while (trial := gen.next_trial()) is not None:
        out.append(dict(trial.config))
    return out


def build_tuner(folder: SweepFolder, plan: SweepPlan) -> tune.Tuner:
    """The sweep's Tuner: restored from ``ray/tune`` when a previous driver left one, else new."""
    spec = plan.spec
    trainable = tune.with_resources(tune.with_parameters(TrialRunner, sweep_dir=str(folder.path)), {"cpu": 1})
    if tune.Tuner.can_restore(str(folder.tune_dir)):
        log.info(f"restoring the sweep from {folder.tune_dir}")
        return tune.Tuner.restore(str(folder.tune_dir), trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    first = trial_run_config(spec, planned_trials(spec)[0], plan.overrides, folder.stages_dir)
    epochs = first.train.epochs - first_epoch(first)  # the trials' own epochs: a shared stage's are not theirs
    scheduler: TrialScheduler
    if spec.scheduler.name == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                  grace_period=min(spec.scheduler.grace_period, epochs),
                                  reduction_factor=spec.scheduler.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    grid = spec.search.algorithm in ("grid", "points")
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, scheduler=scheduler,
        search_alg=search_algorithm(spec, spec.budget.max_concurrent),
        num_samples=samples(spec), max_concurrent_trials=spec.budget.max_concurrent,
        trial_name_creator=lambda t: f"t{t.trial_id.rsplit('_', 1)[-1]}",
        trial_dirname_creator=lambda t: f"t{t.trial_id.rsplit('_', 1)[-1]}")
    run_config = tune.RunConfig(
        name=folder.tune_dir.name, storage_path=str(folder.tune_dir.parent),
        verbose=0,  # progress: TrialJobs prints a line per epoch
        # every Tune checkpoint is kept (each is one small dict: the trial's epochs reported). With num_to_keep=1
        # Tune deletes the previous one before its experiment state, saved every few seconds, names the new one:
        # a driver killed in between is restored onto a deleted checkpoint and the trial errors.
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=None),
        failure_config=tune.FailureConfig(max_failures=0), callbacks=[TrialJobs(folder)])
    log.info(f"sweep {spec.name}: {grid_size(spec) if grid else samples(spec)} trial(s), {spec.metric} "
             f"({spec.mode}), {spec.scheduler.name}")
    return tune.Tuner(trainable, param_space=tune_space(spec), tune_config=tune_config, run_config=run_config)


def best_result(results, spec) -> dict | None:
    """{"trial", "params", <metric>: value} of the best trial by its last result; None when none reported."""
    try:
        r = results.get_best_result(spec.metric, spec.mode, scope="last")
    except (RuntimeError, ValueError):
        return None
    return {"trial": Path(r.path).name, "params": r.config, spec.metric: r.metrics.get(spec.metric)}
