"""Show a sweep: its state, every trial's values, state, epochs, latest and best metric, and its jobs.

    python jobs/status.py SWEEP            # a sweep folder (runs/sweeps/alpha-1a2b...) or a sweep name
    python jobs/status.py SWEEP --json     # the same as JSON

A sweep name (``alpha``) picks the newest folder of that sweep under OUT/sweeps (--out, default runs).
"""

import argparse
import json
import sys
from pathlib import Path

from salnet.logs import setup_logging
from salnet.run.status import sweep_status, table
from salnet.sweeps.folder import SweepFolder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep folder or a sweep name")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="where sweep folders are: OUT/sweeps (default runs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        status = sweep_status(SweepFolder.find(args.sweep, args.out))
    except FileNotFoundError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2, default=str) if args.json else table(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
