"""A sweep's folder on the shared file system: every path in it and every file the launcher, the driver, the
trial jobs, status, cancel and the final evaluation read or write. The one place that knows the layout:

    SWEEP/sweep.yaml                 the plan (:class:`SweepPlan`): the sweep spec, the launcher's overrides,
                                     the trial jobs' resources (:class:`JobResources`), the evaluation's split
    SWEEP/state.json                 the sweep's state (:class:`SweepState`): status, driver and evaluation jobs
    SWEEP/trials/<t>/                a training run folder (config.yaml, checkpoints, tb/) with
                     trial.json      the trial's record (:class:`TrialRecord`): values, status, attempts, jobs
                     metrics.jsonl   one line per validated epoch (written by salnet.train.loop)
    SWEEP/stages/<name>-bootstrap-<id>/   a shared first stage's run folder: the trials that share it start there
    SWEEP/jobs/                      submitit's logs of every job (driver, stages, trials, evaluation)
    SWEEP/ray/                       Ray Tune's experiment state (ray/tune: restore), the Ray head's ports and log
    SWEEP/tb/, summary.md, summary.csv, summary.png, predictions.png, evaluation.json    the final evaluation

    folder = SweepFolder.find("alpha")                # the newest runs/sweeps/alpha-* folder
    plan = folder.read_plan()                         # plan.spec.metric, plan.resources.partition
    [folder.read_trial(t).status for t in folder.trials()]

Pure: files only, no Ray, no Slurm (salnet.run drives the jobs that fill the folder). JSON and YAML writes are
atomic; metrics.jsonl is read the same way everywhere (:func:`read_metrics`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from salnet.atomic import atomic_write
from salnet.config import ConfigError, from_dict, to_dict
from salnet.sweeps.load import SweepSpec, sweep_id

TRIAL_STATES = ("pending", "running", "done", "stopped", "failed", "cancelled")
OPEN_TRIAL_STATES = ("pending", "running")  # a trial in one of these may still have a job to cancel


@dataclass
class JobResources:
    """What each job asks its backend for: jobs/launch.py's flags over the sweep's ``resources``; saved in
    sweep.yaml for the trial jobs."""

    backend: str = "slurm"  # slurm | local (processes on this machine) | debug (in the calling process)
    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 1  # one DDP task per GPU
    cpus_per_task: int = 8
    time_min: int = 1440
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    max_num_timeout: int = 3  # requeues after a timeout or preemption


@dataclass
class SweepPlan:
    """sweep.yaml: what the launcher decided; the driver and every trial run from it."""

    spec: SweepSpec = field(default_factory=SweepSpec)
    overrides: dict[str, Any] = field(default_factory=dict)  # the launcher's dotted overrides (every trial)
    resources: JobResources = field(default_factory=JobResources)  # each trial's job
    driver_partition: str | None = None  # where the driver job runs (slurm backend)
    evaluate: bool = True  # the final evaluation job after the search
    split: str = "test"  # the split the final evaluation scores
    meta: dict[str, Any] = field(default_factory=dict)  # sweep_id, created, command, git_sha


@dataclass
class JobRecord:
    """What a later process needs to find, query or cancel a job."""

    id: str
    backend: str  # slurm | local | debug | process (the driver running in the launching process)
    folder: str = ""  # submitit's folder of the job (logs, result)
    submitted: float = 0.0
    requeues: int = 0  # times Slurm ran it again (node failure, preemption, timeout): sacct --duplicates


@dataclass
class TrialRecord:
    """trial.json: one trial of the search."""

    trial: str
    params: dict[str, Any] = field(default_factory=dict)  # the searched values (dotted keys, or ``point``)
    status: str = "pending"  # one of TRIAL_STATES
    attempts: int = 0  # jobs submitted for it
    jobs: list[JobRecord] = field(default_factory=list)
    error: str | None = None  # the last job's error line
    updated: float = 0.0

    @property
    def requeues(self) -> int:
        """Times Slurm restarted one of its jobs (each restart resumes from the checkpoint, like a retry)."""
        return sum(j.requeues for j in self.jobs)


@dataclass
class SweepState:
    """state.json: where the sweep stands."""

    status: str = "new"  # new | submitted | running | evaluating | evaluation failed | done | cancelled
    driver: JobRecord | None = None
    evaluation: JobRecord | None = None
    driver_host: str | None = None
    trials: dict[str, int] = field(default_factory=dict)  # trials by status once the search ended
    best: dict[str, Any] | None = None  # {"trial", "params", <metric>: value} by the last epoch's metric
    stages: dict[str, str] = field(default_factory=dict)  # shared first stage's run folder → running|done|failed
    error: str | None = None
    updated: float = 0.0


def read_metrics(run_dir: str | Path) -> dict[int, dict]:
    """A run folder's metrics.jsonl as ``{epoch: record}`` in epoch order ({} before the first epoch). Epochs
    count from 1, as on the console and in final.json's ``val_epoch``; a file from before that counted from 0 (its
    first record is epoch 0) is read with every epoch one higher.

    A job killed between an epoch's line and its checkpoint repeats that epoch when it resumes: the later line
    wins. A last line without its newline is being written (or its writer was killed): ignored. Any other line
    that is not a JSON record with an integer ``epoch`` is skipped with a warning naming the file and line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    lines = text.split("\n")  # the last item is "" when the file ends with its newline, else a torn line
    rows: dict[int, dict] = {}
    for i, line in enumerate(lines[:-1]):
        try:
            row = json.loads(line)
            epoch = row["epoch"]
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                raise TypeError(epoch)
        except (ValueError, KeyError, TypeError):
            warnings.warn(f"{path}:{i + 1}: not an epoch record, skipped", UserWarning, stacklevel=2)
            continue
        rows[epoch] = row
    if 0 in rows:  # written when records counted epochs from 0
        rows = {e + 1: {**row, "epoch": e + 1} for e, row in rows.items()}
    return {e: rows[e] for e in sorted(rows)}


MOVE_ASIDE = ("it is written atomically, so another program changed it: restore it, or move it aside and relaunch "
              "the sweep (run folders and checkpoints are kept and the sweep resumes from them)")


def _job(doc: dict | None, where: str) -> JobRecord | None:
    return None if doc is None else from_dict(JobRecord, doc, where)


def _record(cls, path: Path, default):
    """A record dataclass from its JSON file (``default`` when there is none); a file that does not fit the
    record is a ConfigError naming it."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exn:
        raise ConfigError(f"{path}: not valid JSON ({exn}); {MOVE_ASIDE}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    try:
        if cls is TrialRecord:
            jobs = [_job(j, f"jobs[{i}]") for i, j in enumerate(doc.pop("jobs", None) or [])]
            return replace(from_dict(TrialRecord, doc), jobs=jobs)
        sweep_jobs = {k: _job(doc.pop(k, None), k) for k in ("driver", "evaluation")}
        return replace(from_dict(SweepState, doc), **sweep_jobs)
    except (ConfigError, TypeError) as exn:
        raise ConfigError(f"{path}: {str(exn).replace('config key', 'key')}") from None


def _write_json(path: Path, record) -> None:
    atomic_write(path, json.dumps(to_dict(record), indent=2, default=str))


class SweepFolder:
    """One sweep's folder (see the module's docstring for the layout). Cheap to make: nothing is read until
    asked for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SweepFolder({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SweepFolder) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---------------------------------------------------------------- where sweeps live

    @classmethod
    def of(cls, spec: SweepSpec, overrides: dict[str, Any], out: str | Path = "runs") -> SweepFolder:
        """The folder of a sweep launched with ``overrides`` under ``out``: ``out/sweeps/<name>-<hash>``
        (absolute); the same spec and overrides give the same folder, so relaunching resumes."""
        return cls((Path(out) / "sweeps" / sweep_id(spec, overrides)).resolve())

    @classmethod
    def find(cls, name_or_dir: str | Path, out: str | Path = "runs") -> SweepFolder:
        """A sweep folder, or the newest ``out/sweeps/<name>-*`` folder; FileNotFoundError saying how to launch
        one when there is none."""
        p = Path(name_or_dir)
        if cls(p).is_sweep():
            return cls(p)
        hint = "launch one with `python jobs/launch.py --sweep NAME`"
        if "/" in str(name_or_dir) or p.exists():
            raise FileNotFoundError(f"no sweep folder {str(name_or_dir)!r} (no sweep.yaml there); {hint}")
        found = [d for d in (Path(out) / "sweeps").glob(f"{name_or_dir}-*") if cls(d).is_sweep()]
        if not found:
            raise FileNotFoundError(f"no sweep folder {str(name_or_dir)!r} (and none named "
                                    f"{Path(out) / 'sweeps' / str(name_or_dir)}-*); {hint}")
        return cls(max(found, key=lambda d: d.stat().st_mtime))

    # ---------------------------------------------------------------- paths

    @property
    def plan_file(self) -> Path:
        return self.path / "sweep.yaml"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def trials_dir(self) -> Path:
        return self.path / "trials"

    @property
    def stages_dir(self) -> Path:
        """Run folders of the shared first stages (salnet.train.stages), one per stage."""
        return self.path / "stages"

    @property
    def jobs_dir(self) -> Path:
        """submitit's folder: every job's logs and results."""
        return self.path / "jobs"

    @property
    def ray_dir(self) -> Path:
        """The private Ray head's ports.json and head.log; Tune's experiment in ``tune/``."""
        return self.path / "ray"

    @property
    def tune_dir(self) -> Path:
        return self.ray_dir / "tune"

    @property
    def tb_dir(self) -> Path:
        """The final evaluation's TensorBoard runs, one per trial."""
        return self.path / "tb"

    @property
    def summary_md(self) -> Path:
        return self.path / "summary.md"

    @property
    def summary_csv(self) -> Path:
        return self.path / "summary.csv"

    @property
    def summary_png(self) -> Path:
        return self.path / "summary.png"

    @property
    def predictions_png(self) -> Path:
        return self.path / "predictions.png"

    @property
    def evaluation_json(self) -> Path:
        return self.path / "evaluation.json"

    def trial_dir(self, trial: str) -> Path:
        """A trial's run folder (config.yaml, checkpoints, metrics.jsonl, trial.json)."""
        return self.trials_dir / trial

    # ---------------------------------------------------------------- sweep.yaml

    def is_sweep(self) -> bool:
        return self.plan_file.is_file()

    def read_plan(self) -> SweepPlan:
        """sweep.yaml as a :class:`SweepPlan`; FileNotFoundError when this is not a sweep folder."""
        if not self.is_sweep():
            raise FileNotFoundError(f"{self.path} is not a sweep folder (no sweep.yaml); launch one with "
                                    "`python jobs/launch.py --sweep NAME`")
        try:
            return from_dict(SweepPlan, yaml.safe_load(self.plan_file.read_text()) or {})
        except ConfigError as exn:
            raise ConfigError(f"{self.plan_file}: {str(exn).replace('config key', 'key')}") from None

    def plan_doc(self) -> dict:
        """sweep.yaml as written ({} when absent), for readers that accept a hand-written partial plan."""
        return (yaml.safe_load(self.plan_file.read_text()) or {}) if self.is_sweep() else {}

    def write_plan(self, plan: SweepPlan) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.plan_file, yaml.safe_dump(to_dict(plan), sort_keys=False))

    # ---------------------------------------------------------------- state.json

    def read_state(self) -> SweepState:
        return _record(SweepState, self.state_file, SweepState())

    def update_state(self, **changes) -> SweepState:
        """Set fields of state.json (unknown field names are a TypeError); returns the new state."""
        state = replace(self.read_state(), **changes, updated=time.time())
        _write_json(self.state_file, state)
        return state

    # ---------------------------------------------------------------- trials

    def trials(self) -> list[str]:
        """The names of the trials that have a trial.json, sorted."""
        return sorted(p.parent.name for p in self.trials_dir.glob("*/trial.json"))

    def read_trial(self, trial: str) -> TrialRecord:
        return _record(TrialRecord, self.trial_dir(trial) / "trial.json", TrialRecord(trial=trial))

    def read_trials(self) -> tuple[list[TrialRecord], dict[str, str]]:
        """Every readable trial's record in name order, and ``{trial: error}`` for each trial.json that cannot be
        read (left out, never changed or deleted): what status, cancel and the driver's counts go on with."""
        records, unreadable = [], {}
        for t in self.trials():
            try:
                records.append(self.read_trial(t))
            except ConfigError as exn:
                unreadable[t] = str(exn)
        return records, unreadable

    def update_trial(self, trial: str, **changes) -> TrialRecord:
        """Set fields of a trial's trial.json (made with its folder if new); returns the new record."""
        self.trial_dir(trial).mkdir(parents=True, exist_ok=True)
        rec = replace(self.read_trial(trial), **changes, updated=time.time())
        _write_json(self.trial_dir(trial) / "trial.json", rec)
        return rec

    def epochs(self, trial: str) -> dict[int, dict]:
        """A trial's metrics.jsonl as ``{epoch: record}`` (:func:`read_metrics`)."""
        return read_metrics(self.trial_dir(trial))
