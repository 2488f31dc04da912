"""Cancel everything a sweep started: its driver job, every trial's job, the final evaluation.

    python jobs/cancel.py SWEEP          # a sweep folder or a sweep name (its newest folder)

Trials still running are marked ``cancelled``; their run folders (checkpoints, metrics) stay, and launching
the same sweep again resumes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from status import find_sweep  # noqa: E402
from submission import cancel_record  # noqa: E402
from sweep_folder import read_state, read_trial, trial_dirs, update_state, update_trial  # noqa: E402


def cancel_sweep(sweep_dir: Path) -> list[str]:
    """Cancel the driver first (so it submits nothing more), then every trial job and the evaluation.
    Returns the ids a cancel was sent to."""
    state = read_state(sweep_dir)
    sent = []
    if isinstance(state.get("driver"), dict) and cancel_record(state["driver"]):
        sent.append(state["driver"]["id"])
    for d in trial_dirs(sweep_dir):
        rec = read_trial(d)
        for job in rec.get("jobs", []):
            if rec.get("status") in ("running", "pending") and cancel_record(job):
                sent.append(job["id"])
        if rec.get("status") in ("running", "pending"):
            update_trial(d, status="cancelled")
    if isinstance(state.get("evaluation"), dict) and cancel_record(state["evaluation"]):
        sent.append(state["evaluation"]["id"])
    update_state(sweep_dir, status="cancelled")
    return sent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep folder or a sweep name")
    ap.add_argument("--out", type=Path, default=Path("runs"))
    args = ap.parse_args(argv)
    try:
        sweep_dir = find_sweep(args.sweep, args.out)
    except FileNotFoundError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    sent = cancel_sweep(sweep_dir)
    print(f"{sweep_dir}: cancelled {len(sent)} job(s){': ' + ' '.join(sent) if sent else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
