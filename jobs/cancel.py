"""Cancel everything a sweep started: its driver job, every trial's job, the final evaluation.

    python jobs/cancel.py SWEEP          # a sweep folder or a sweep name (its newest folder)

Trials still running are marked ``cancelled``; their run folders (checkpoints, metrics) stay, and launching
the same sweep again resumes it.
"""

import argparse
import sys
from pathlib import Path

from salnet.logs import setup_logging
from salnet.run.cancel import cancel_sweep
from salnet.sweeps.folder import SweepFolder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep folder or a sweep name")
    ap.add_argument("--out", type=Path, default=Path("runs"))
    args = ap.parse_args(argv)
    setup_logging()
    try:
        folder = SweepFolder.find(args.sweep, args.out)
    except FileNotFoundError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    sent = cancel_sweep(folder)
    print(f"{folder.path}: cancelled {len(sent)} job(s){': ' + ' '.join(sent) if sent else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
