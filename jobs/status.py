"""Show a sweep: its state, every trial's values, state, epochs, latest and best metric, and its jobs.

    python jobs/status.py SWEEP            # a sweep folder (runs/sweeps/alpha-1a2b...) or a sweep name
    python jobs/status.py SWEEP --json     # the same as JSON

A sweep name (``alpha``) picks the newest folder of that sweep under --out (default runs/sweeps).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submission import local_state, slurm_states  # noqa: E402
from sweep_folder import epoch_rows, read_plan, read_state, read_trial, trial_dirs  # noqa: E402


def find_sweep(name_or_dir: str, out: Path = Path("runs")) -> Path:
    """A sweep folder, or the newest ``<out>/sweeps/<name>-*`` folder; a clear error when there is none."""
    p = Path(name_or_dir)
    if (p / "sweep.yaml").is_file():
        return p
    if "/" in name_or_dir or p.exists():
        raise FileNotFoundError(f"no sweep folder {name_or_dir!r} (no sweep.yaml there); launch one with "
                                "`python jobs/launch.py --sweep NAME`")
    cands = sorted((out / "sweeps").glob(f"{name_or_dir}-*"), key=lambda d: d.stat().st_mtime)
    cands = [c for c in cands if (c / "sweep.yaml").is_file()]
    if not cands:
        raise FileNotFoundError(f"no sweep folder {name_or_dir!r} (and none named {out / 'sweeps' / name_or_dir}-*); "
                                "launch one with `python jobs/launch.py --sweep NAME`")
    return cands[-1]


def sweep_status(sweep_dir: Path) -> dict:
    """{"sweep", "state", "metric", "mode", "trials": [{trial, params, status, epochs, last, best, jobs}], "best"}.
    Slurm job states come from sacct (one call for all jobs)."""
    plan, state = read_plan(sweep_dir), read_state(sweep_dir)
    spec = plan["spec"]
    sign = 1 if spec.mode == "max" else -1
    records = [(d, read_trial(d)) for d in trial_dirs(sweep_dir)]
    slurm_ids = [j["id"] for _, r in records for j in r.get("jobs", [])[-1:] if j.get("backend") == "slurm"]
    for key in ("driver", "evaluation"):
        if state.get(key, {}).get("backend") == "slurm":
            slurm_ids.append(state[key]["id"])
    states = slurm_states(slurm_ids) if slurm_ids else {}

    def job_state(rec: dict) -> str:
        return states.get(rec["id"], "UNKNOWN") if rec.get("backend") == "slurm" else local_state(rec)

    trials = []
    for d, r in records:
        rows = epoch_rows(d)
        values = [rows[e]["val"].get(spec.metric, math.nan) for e in sorted(rows)]
        finite = [v for v in values if not math.isnan(v)]
        job = r.get("jobs", [])[-1:] or [None]
        trials.append({"trial": d.name, "params": r.get("params", {}), "status": r.get("status"),
                       "attempts": r.get("attempts", 0), "epochs": len(rows),
                       "last": values[-1] if values else None,
                       "best": max(finite, key=lambda v: sign * v) if finite else None,
                       "job": {**job[0], "state": job_state(job[0])} if job[0] else None,
                       "error": (r.get("error") or "")[-300:] or None})
    scored = [t for t in trials if t["best"] is not None]
    best = max(scored, key=lambda t: sign * t["best"]) if scored else None
    jobs = {k: {**state[k], "state": job_state(state[k]) if state[k].get("backend") != "process" else "-"}
            for k in ("driver", "evaluation") if isinstance(state.get(k), dict)}
    return {"sweep": str(sweep_dir), "state": state.get("status"), "metric": spec.metric, "mode": spec.mode,
            "jobs": jobs, "trials": trials, "best": best and {"trial": best["trial"], spec.metric: best["best"],
                                                              "params": best["params"]}}


def table(status: dict) -> str:
    m = status["metric"]
    lines = [f"sweep {status['sweep']}: {status['state']}  ({m} {status['mode']})"]
    for k, j in status["jobs"].items():
        lines.append(f"  {k}: job {j['id']} ({j['backend']}) {j['state']}")
    params = sorted({k for t in status["trials"] for k in t["params"]})
    head = ["trial", *params, "status", "epochs", f"last {m}", f"best {m}", "job", "job state"]
    rows = [[t["trial"], *(_fmt(t["params"].get(p)) for p in params), t["status"], str(t["epochs"]), _fmt(t["last"]),
             _fmt(t["best"]), (t["job"] or {}).get("id", "-"), (t["job"] or {}).get("state", "-")]
            for t in status["trials"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [head, *rows]]
    for t in status["trials"]:
        if t["status"] == "failed" and t["error"]:
            lines.append(f"{t['trial']} failed after {t['attempts']} attempt(s): {t['error'].splitlines()[-1]}")
    if status["best"]:
        lines.append(f"best so far: {status['best']['trial']} {m}={status['best'][m]:.4f} {status['best']['params']}")
    summary = Path(status["sweep"]) / "summary.md"
    if summary.is_file():
        lines.append(f"final evaluation: {summary}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep folder or a sweep name")
    ap.add_argument("--out", type=Path, default=Path("runs"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        status = sweep_status(find_sweep(args.sweep, args.out))
    except FileNotFoundError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2, default=str) if args.json else table(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
