"""A sweep at a glance: its state, every trial's values, state, epochs, latest and best metric, and the state
of its jobs and how often Slurm ran each again (one ``sacct`` call for all Slurm jobs)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from salnet.run.slurm import slurm_runs
from salnet.run.submission import local_state
from salnet.sweeps.folder import JobRecord, SweepFolder


def sweep_status(folder: SweepFolder) -> dict:
    """{"sweep", "state", "metric", "mode", "jobs": {"driver"|"evaluation": job}, "trials": [{trial, params,
    status, attempts, requeues, epochs, last, best, job, error}], "best"}; a trial.json that cannot be read is
    a row with status "unreadable" and the error naming the file; a job is its record plus its "state"."""
    plan, state = folder.read_plan(), folder.read_state()
    spec = plan.spec
    sign = 1 if spec.mode == "max" else -1
    records, unreadable = folder.read_trials()
    sweep_jobs = {k: j for k in ("driver", "evaluation") if (j := getattr(state, k)) is not None}
    jobs = [*(j for r in records for j in r.jobs), *sweep_jobs.values()]
    runs = slurm_runs(list(dict.fromkeys(j.id for j in jobs if j.backend == "slurm")))
    states = {jid: r[-1] for jid, r in runs.items()}  # the latest run's

    def with_state(job: JobRecord) -> dict:
        if job.backend == "process":  # the driver in the launching process: nothing to ask
            s = "-"
        else:
            s = states.get(job.id, "UNKNOWN") if job.backend == "slurm" else local_state(job)
        return {**dataclasses.asdict(job), "state": s}

    trials: list[dict[str, Any]] = []  # one row per trial (a JSON object of jobs/status.py --json)
    for r in records:
        rows = folder.epochs(r.trial)
        values = [row["val"].get(spec.metric, math.nan) for row in rows.values()]
        finite = [v for v in values if not math.isnan(v)]
        requeues = sum(max(len(runs.get(j.id, [])) - 1, j.requeues) for j in r.jobs)
        trials.append({"trial": r.trial, "params": r.params, "status": r.status, "attempts": r.attempts,
                       "requeues": requeues,
                       "epochs": len(rows), "last": values[-1] if values else None,
                       "best": max(finite, key=lambda v: sign * v) if finite else None,
                       "job": with_state(r.jobs[-1]) if r.jobs else None, "error": (r.error or "")[-300:] or None})
    for name, error in unreadable.items():  # listed with the error, not dropped silently
        trials.append({"trial": name, "params": {}, "status": "unreadable", "attempts": 0, "requeues": 0, "epochs":
                       len(folder.epochs(name)), "last": None, "best": None, "job": None, "error": error})
    trials.sort(key=lambda t: str(t["trial"]))
    scored = [t for t in trials if t["best"] is not None]
    best = max(scored, key=lambda t: sign * t["best"]) if scored else None
    return {"sweep": str(folder.path), "state": state.status, "metric": spec.metric, "mode": spec.mode,
            "jobs": {k: with_state(j) for k, j in sweep_jobs.items()}, "trials": trials,
            "best": best and {"trial": best["trial"], spec.metric: best["best"], "params": best["params"]}}


def table(status: dict) -> str:
    """:func:`sweep_status` as text: a header, the jobs, one row per trial, failures, the best so far."""
    m = status["metric"]
    lines = [f"sweep {status['sweep']}: {status['state']}  ({m} {status['mode']})"]
    for k, j in status["jobs"].items():
        lines.append(f"  {k}: job {j['id']} ({j['backend']}) {j['state']}")
    params = sorted({k for t in status["trials"] for k in t["params"]})
    head = ["trial", *params, "status", "attempts", "epochs", f"last {m}", f"best {m}", "job", "job state"]
    rows = [[t["trial"], *(_fmt(t["params"].get(p)) for p in params), t["status"], attempts_text(t),
             str(t["epochs"]), _fmt(t["last"]), _fmt(t["best"]), (t["job"] or {}).get("id", "-"),
             (t["job"] or {}).get("state", "-")]
            for t in status["trials"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [head, *rows]]
    for t in status["trials"]:
        if t["status"] == "failed" and t["error"]:
            lines.append(f"{t['trial']} failed after {t['attempts']} attempt(s): {t['error'].splitlines()[-1]}")
        if t["status"] == "unreadable":
            lines.append(f"{t['trial']}: {t['error']}")
    if status["best"]:
        lines.append(f"best so far: {status['best']['trial']} {m}={status['best'][m]:.4f} {status['best']['params']}")
    summary = SweepFolder(status["sweep"]).summary_md
    if summary.is_file():
        lines.append(f"final evaluation: {summary}")
    return "\n".join(lines)


def attempts_text(trial: dict) -> str:
    """``2`` jobs, or ``1+1 requeued`` when Slurm ran a job again (each run resumes from the checkpoint)."""
    n, rq = trial["attempts"], trial.get("requeues", 0)
    return f"{n}+{rq} requeued" if rq else str(n)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
