"""The sweep folder on the shared file system: the one place the launcher, the driver, the trial jobs,
status.py, cancel.py and the final evaluation meet.

    SWEEP/sweep.yaml             the plan: the sweep spec, the launcher's overrides and resources, git SHA
    SWEEP/state.json             {"status", "driver": job record, "evaluation": job record, "best": ...}
    SWEEP/trials/<trial>/        a training run folder (config.yaml, metrics.jsonl, checkpoints, tb/) and
                 trial.json      {"trial", "params", "status", "attempts", "jobs": [job records], "error"}
    SWEEP/jobs/                  submitit's logs of every job (driver, trials, evaluation)
    SWEEP/ray/                   Ray Tune's experiment state (restore) and the private Ray head's ports/log
    SWEEP/tb/, summary.md, summary.csv, evaluation.json     the final evaluation (salnet.summary)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from submission import write_json

from salnet.atomic import atomic_write
from salnet.config import from_dict
from salnet.sweep import SweepSpec

TRIAL_STATES = ("pending", "running", "done", "stopped", "failed", "cancelled")


def read_plan(sweep_dir: Path) -> dict:
    """The sweep.yaml of a sweep folder, with ``spec`` as a :class:`SweepSpec`."""
    path = Path(sweep_dir) / "sweep.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no sweep.yaml); launch one with "
                                "`python jobs/launch.py --sweep NAME`")
    plan = yaml.safe_load(path.read_text())
    plan["spec"] = from_dict(SweepSpec, plan["spec"])
    return plan


def write_plan(sweep_dir: Path, plan: dict) -> None:
    atomic_write(Path(sweep_dir) / "sweep.yaml", yaml.safe_dump(plan, sort_keys=False))


def read_json(path: Path, default: dict | None = None) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return dict(default or {})


def read_state(sweep_dir: Path) -> dict:
    return read_json(Path(sweep_dir) / "state.json", {"status": "new"})


def update_state(sweep_dir: Path, **changes) -> dict:
    state = {**read_state(sweep_dir), **changes, "updated": time.time()}
    write_json(Path(sweep_dir) / "state.json", state)
    return state


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in (Path(sweep_dir) / "trials").glob("*") if (p / "trial.json").is_file())


def read_trial(trial_dir: Path) -> dict:
    return read_json(Path(trial_dir) / "trial.json", {"trial": Path(trial_dir).name, "status": "pending",
                                                     "attempts": 0, "jobs": [], "params": {}, "error": None})


def update_trial(trial_dir: Path, **changes) -> dict:
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    doc = {**read_trial(trial_dir), **changes, "updated": time.time()}
    write_json(trial_dir / "trial.json", doc)
    return doc


def epoch_rows(run_dir: Path) -> dict[int, dict]:
    """metrics.jsonl as {epoch: row}; a line repeated after a crash between the write and the checkpoint is
    replaced by the later one, and a torn last line (a job killed mid-write) is ignored."""
    rows: dict[int, dict] = {}
    try:
        text = (Path(run_dir) / "metrics.jsonl").read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        rows[int(row["epoch"])] = row
    return rows
