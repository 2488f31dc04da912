"""The Ray Tune driver of a sweep: Tune picks each trial's values and stops bad trials early (ASHA); every
trial is its own submitit training job, followed through its metrics.jsonl on the shared file system.

    python jobs/sweep_driver.py SWEEP_DIR      # what launch.py runs in-process (local, debug) or as a job

- A trial = one Tune ``Trainable`` (:class:`TrialRunner`) that submits a :class:`submission.TrainJob` and turns
  each new epoch line of the run's metrics.jsonl into one Tune result (``training_iteration`` = epochs).
- ASHA stops a trial → ``cleanup`` cancels its job (and :class:`TrialJobs` cancels it again from the driver
  process, in case the trial's actor died first).
- A failed job is resubmitted up to ``budget.retries`` times (it resumes from its latest checkpoint); then the
  trial errors and the sweep goes on without it.
- The driver dies → rerun it (relaunch the same sweep): ``Tuner.restore`` resumes unfinished trials; a trial's
  job still running on Slurm is re-attached, not resubmitted; finished trials are not rerun.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import time
from pathlib import Path

from ray_head import RAY_ENV

os.environ.update(RAY_ENV)  # before Ray is imported: it reads them at import time (loopback only, no usage stats)
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from submission import (
    EvaluateJob,
    TrainJob,
    attach,
    cancel_record,
    job_record,
    make_executor,
    slurm_states,
    submit,
)
from sweep_folder import epoch_rows, read_plan, read_trial, update_state, update_trial

from salnet.config import to_dict
from salnet.metrics import METRICS
from salnet.sweep import grid_size, search_space, sweep_id, trial_config

POLL_S = 1.0  # metrics.jsonl polling
SACCT_EVERY_S = 10.0  # Slurm state polling (a job killed without a result file is only seen by sacct)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


class TrialFailed(RuntimeError):
    pass


def executor_for(plan: dict, name: str, *, gpus: int | None = None, tasks: int | None = None):
    """The submitit executor of the sweep's trials (or, with ``gpus``/``tasks`` given, of another job)."""
    launch = plan["launch"]
    gpus = launch["gpus_per_node"] if gpus is None else gpus
    return make_executor(Path(plan["sweep_dir"]) / "jobs", launch["backend"], partition=launch["partition"],
                         nodes=launch["nodes"], tasks_per_node=tasks or max(gpus, 1), gpus_per_node=gpus,
                         cpus_per_task=launch["cpus_per_task"], time_min=launch["time_min"],
                         mem_gb=launch["mem_gb"], account=launch["account"], qos=launch["qos"],
                         constraint=launch["constraint"], name=name, max_num_timeout=launch["max_num_timeout"])


def error_line(exn: BaseException) -> str:
    """The remote exception's own line (``FloatingPointError: ...``) out of submitit's error, which wraps
    the whole traceback and log paths; the type and message of ``exn`` when there is none."""
    text = str(exn)
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception|Interrupt)\b.*:", ln)]
    return lines[-1][:1000] if lines else f"{type(exn).__name__}: {text[-1000:]}"


def result_of(row: dict, final: bool = False) -> dict:
    """A metrics.jsonl row → a Tune result: every metric (NaN where undefined), the epoch, the stage."""
    val = row.get("val", {})
    out = {m: float(val.get(m, math.nan)) for m in METRICS}
    out.update(epoch=row["epoch"] + 1, stage=row.get("stage", ""), images=val.get("images", 0))
    if final:  # "final" marks a trial that ran to its end (Tune also sets "done" on trials it stops)
        out.update(done=True, final=1)
    return out


class TrialRunner(tune.Trainable):
    """One trial: a training job on the sweep's backend, reported epoch by epoch."""

    def setup(self, config: dict, sweep_dir: str = ""):
        logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per Tune checkpoint in the driver's log
        self.sweep_dir = Path(sweep_dir)
        self.plan = {**read_plan(self.sweep_dir), "sweep_dir": str(self.sweep_dir)}
        self.params = dict(config)
        self.cfg = trial_config(self.plan["spec"], self.params, self.plan["overrides"])
        self.run_dir = self.sweep_dir / "trials" / self.trial_name
        self.epochs = self.cfg.train.epochs
        self.reported = 0
        self.job = None
        self.record = update_trial(self.run_dir, trial=self.trial_name, params=self.params, status="running")
        self.last_sacct = 0.0

    # -------------------------------------------------------------- the job

    def _submit(self) -> None:
        backend = self.plan["launch"]["backend"]
        ex = executor_for(self.plan, f"{self.plan['spec'].name}-{self.trial_name}")
        self.job = submit(ex, TrainJob(), to_dict(self.cfg), str(self.run_dir))
        rec = read_trial(self.run_dir)
        self.record = update_trial(self.run_dir, jobs=[*rec.get("jobs", []), job_record(self.job, backend)],
                                   attempts=rec.get("attempts", 0) + 1, status="running")
        print(f"[{self.trial_name}] submitted job {self.job.job_id} ({backend}) for {self.params}", flush=True)

    def _ensure_job(self) -> None:
        if self.job is not None:
            return
        jobs = read_trial(self.run_dir).get("jobs", [])
        if jobs:  # a restored driver: follow the trial's job if it is still alive, else make sure it is gone
            last = jobs[-1]
            job = attach(last)
            # alive, or finished cleanly while the driver was away: follow it rather than run it again
            if job is not None and slurm_states([last["id"]]).get(last["id"], "UNKNOWN") in (*ACTIVE, "COMPLETED"):
                self.job = job
                print(f"[{self.trial_name}] re-attached to job {last['id']}", flush=True)
                return
            if job is None:
                cancel_record(last)
        self._submit()

    def _job_outcome(self) -> tuple[bool, str | None]:
        """(finished, error): error None = finished cleanly. Polls cheaply; sacct every SACCT_EVERY_S."""
        force = time.monotonic() - self.last_sacct > SACCT_EVERY_S
        if force:
            self.last_sacct = time.monotonic()
        try:
            if not self.job.done(force_check=force):  # the debug backend runs the job right here
                return False, None
            results = self.job.results()
        except Exception as exn:  # noqa: BLE001 — a failed job: submitit re-raises the remote error
            return True, error_line(exn)
        status = results[0].get("status") if results and isinstance(results[0], dict) else None
        if status == "preempted":  # stopped without a requeue (local backend): run on from the checkpoint
            return True, "preempted"
        return True, None

    # -------------------------------------------------------------- Tune's interface

    def step(self) -> dict:
        self._ensure_job()
        while True:
            rows = epoch_rows(self.run_dir)
            if self.reported in rows:
                row = rows[self.reported]
                self.reported += 1
                if self.reported < self.epochs:
                    return result_of(row)
                self._wait_for_job()  # the last epoch: the job still scores the best checkpoint
                return result_of(row, final=True)
            finished, error = self._job_outcome()
            if finished:
                rows = epoch_rows(self.run_dir)
                if self.reported in rows:
                    continue
                if error is None:  # ended cleanly with no new epoch: a max_steps run, nothing more to come
                    update_trial(self.run_dir, status="done")
                    return result_of(rows[max(rows)], final=True) if rows else {"done": True, "final": 1}
                self._retry(error)
            time.sleep(POLL_S)

    def _wait_for_job(self) -> None:
        while True:
            finished, error = self._job_outcome()
            if finished and error is None:
                update_trial(self.run_dir, status="done")
                return
            if finished:
                self._retry(error)
            time.sleep(POLL_S)

    def _retry(self, error: str) -> None:
        rec = read_trial(self.run_dir)
        retries = self.plan["spec"].budget.retries
        if error != "preempted" and rec.get("attempts", 1) > retries:
            update_trial(self.run_dir, status="failed", error=error)
            raise TrialFailed(f"trial {self.trial_name} failed {rec.get('attempts')} time(s); last error: {error}")
        print(f"[{self.trial_name}] job {self.job.job_id} ended with {error.splitlines()[0][:200]}; resubmitting "
              f"(attempt {rec.get('attempts', 1) + 1} of {retries + 1})", flush=True)
        update_trial(self.run_dir, error=error)
        self._submit()

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        return {"reported": self.reported}  # the training state itself lives in the run folder

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.reported = int(checkpoint["reported"])

    def cleanup(self) -> None:
        rec = read_trial(self.run_dir)
        if rec.get("status") == "running":  # stopped by the scheduler (or the sweep) before its end
            if self.job is not None and not self.job.done():
                self.job.cancel(check=False)
            update_trial(self.run_dir, status="stopped")
        self.job = None  # released now: submitit's LocalJob.__del__ would run inside Ray's SIGTERM handler


class TrialJobs(tune.Callback):
    """Driver-side bookkeeping: a trial that ends or errors has no job left running, and its status says so."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = Path(sweep_dir)

    def _close(self, trial, status: str) -> None:
        run_dir = self.sweep_dir / "trials" / str(trial)
        rec = read_trial(run_dir)
        if rec.get("status") in ("running", "pending"):  # the trial did not close itself (its actor died)
            if rec.get("jobs"):
                cancel_record(rec["jobs"][-1])
            update_trial(run_dir, status=status)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        print(f"[{trial}] epoch {result.get('epoch')} ({result.get('stage')}): "
              + " ".join(f"{m}={result[m]:.4f}" for m in METRICS if m in result), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = "done" if (trial.last_result or {}).get("final") else "stopped"
        print(f"[{trial}] {status} after {(trial.last_result or {}).get('epoch')} epoch(s)", flush=True)
        self._close(trial, status)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{trial}] failed: {read_trial(self.sweep_dir / 'trials' / str(trial)).get('error')}", flush=True)
        self._close(trial, "failed")


def tune_space(spec) -> dict:
    """The spec's distributions as Tune's search space."""
    make = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": lambda lo, hi: tune.randint(lo, hi + 1),
            "choice": lambda *v: tune.choice(list(v)), "grid": lambda *v: tune.grid_search(list(v))}
    return {key: make[kind](*args) for key, dist in search_space(spec).items() for kind, args in dist.items()}


def search_algorithm(spec, max_concurrent: int) -> BasicVariantGenerator:
    return BasicVariantGenerator(random_state=spec.search.seed, max_concurrent=max_concurrent)


def planned_trials(spec) -> list[dict]:
    """The values Tune will give the trials, in order (the same seeded generator, run offline): what
    ``launch.py --dry-run`` prints."""
    from ray.tune.experiment import Experiment

    gen = search_algorithm(spec, 0)
    gen.add_configurations([Experiment(spec.name, run=TrialRunner, config=tune_space(spec),
                                       num_samples=spec.budget.trials)])
    out = []
    while (trial := gen.next_trial()) is not None:
        out.append(dict(trial.config))
    return out


def build_tuner(sweep_dir: Path, plan: dict) -> tune.Tuner:
    spec = plan["spec"]
    trainable = tune.with_resources(tune.with_parameters(TrialRunner, sweep_dir=str(sweep_dir)), {"cpu": 1})
    storage = sweep_dir / "ray" / "tune"
    if tune.Tuner.can_restore(str(storage)):
        print(f"restoring the sweep from {storage}", flush=True)
        return tune.Tuner.restore(str(storage), trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    epochs = trial_config(spec, {}, plan["overrides"]).train.epochs
    if spec.scheduler.name == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                  grace_period=min(spec.scheduler.grace_period, epochs),
                                  reduction_factor=spec.scheduler.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    grid = spec.search.algorithm in ("grid", "points")
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, scheduler=scheduler,
        search_alg=search_algorithm(spec, plan["launch"]["max_concurrent"]),
        num_samples=spec.budget.trials, max_concurrent_trials=plan["launch"]["max_concurrent"],
        trial_name_creator=lambda t: f"t{t.trial_id.rsplit('_', 1)[-1]}",
        trial_dirname_creator=lambda t: f"t{t.trial_id.rsplit('_', 1)[-1]}")
    run_config = tune.RunConfig(
        name="tune", storage_path=str(sweep_dir / "ray"), verbose=0,  # progress: TrialJobs prints a line per epoch
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0), callbacks=[TrialJobs(sweep_dir)])
    print(f"sweep {spec.name}: {grid_size(spec) if grid else spec.budget.trials} trial(s), {spec.metric} "
          f"({spec.mode}), {spec.scheduler.name}", flush=True)
    return tune.Tuner(trainable, param_space=tune_space(spec), tune_config=tune_config, run_config=run_config)


def evaluate(sweep_dir: Path, plan: dict) -> dict:
    """Submit the final evaluation as a job (one GPU, one task) on the trials' backend and wait for it."""
    ex = executor_for(plan, f"{plan['spec'].name}-evaluate", gpus=min(plan["launch"]["gpus_per_node"], 1), tasks=1)
    job = submit(ex, EvaluateJob(), str(sweep_dir), plan["launch"].get("split", "test"))
    update_state(sweep_dir, status="evaluating", evaluation=job_record(job, plan["launch"]["backend"]))
    print(f"final evaluation: job {job.job_id}", flush=True)
    return job.result()


def run_sweep(sweep_dir: Path) -> dict:
    """Run (or resume) the sweep of a folder written by launch.py, then its final evaluation."""
    sweep_dir = Path(sweep_dir).resolve()
    plan = read_plan(sweep_dir)
    plan["sweep_dir"] = str(sweep_dir)
    spec = plan["spec"]
    update_state(sweep_dir, status="running", driver_host=socket.gethostname())
    from ray_head import RayHead

    with RayHead(sweep_dir / "ray", num_cpus=plan["launch"]["max_concurrent"] + 1,
                 key=sweep_id(spec, plan["overrides"]), pythonpath=[str(Path(__file__).resolve().parent)]):
        results = build_tuner(sweep_dir, plan).fit()
    counts: dict[str, int] = {}
    for rec in (read_trial(p.parent) for p in (sweep_dir / "trials").glob("*/trial.json")):
        counts[rec.get("status", "?")] = counts.get(rec.get("status", "?"), 0) + 1
    best = None
    try:
        r = results.get_best_result(spec.metric, spec.mode, scope="last")
        best = {"trial": Path(r.path).name, "params": r.config, spec.metric: r.metrics.get(spec.metric)}
    except (RuntimeError, ValueError):
        pass
    update_state(sweep_dir, status="evaluating" if plan["launch"].get("evaluate", True) else "done",
                 trials=counts, best=best)
    print(f"sweep {spec.name} done: {counts}; best {best}", flush=True)
    summary = None
    if plan["launch"].get("evaluate", True):
        try:
            summary = evaluate(sweep_dir, plan)
        except Exception as exn:  # noqa: BLE001 — the sweep itself is done; say how to redo the evaluation
            msg = error_line(exn)
            update_state(sweep_dir, status="evaluation failed", error=msg)
            print(f"the final evaluation failed: {msg}\nrerun it with `python jobs/evaluate.py {sweep_dir}`",
                  flush=True)
            return {"trials": counts, "best": best, "summary": False, "state": "evaluation failed"}
    state = update_state(sweep_dir, status="done")
    return {"trials": counts, "best": best, "summary": bool(summary), "state": state["status"]}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python jobs/sweep_driver.py SWEEP_DIR")
    run_sweep(Path(sys.argv[1]))
