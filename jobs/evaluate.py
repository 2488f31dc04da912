"""The final evaluation of a sweep: every trial's best checkpoint on the test split with the nine metrics,
into TensorBoard (hparams table, per-metric curves, the best trial's predictions) and summary.md/.csv.

    python jobs/evaluate.py SWEEP [--split test]                       # here, now
    python jobs/evaluate.py SWEEP --backend slurm --partition gpu      # as a job (one GPU)

The sweep driver runs it by itself once the sweep ends (unless launched with --no-evaluate).
"""

import argparse
import sys
from pathlib import Path

from salnet.logs import setup_logging
from salnet.run import LaunchError
from salnet.run.evaluate import evaluate_sweep
from salnet.sweep_folder import SweepFolder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep folder or a sweep name")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=Path("runs"))
    ap.add_argument("--backend", choices=("here", "slurm", "local"), default="here")
    ap.add_argument("--partition", help="Slurm partition (--backend slurm)")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--time", type=int, default=120, help="minutes")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        folder = SweepFolder.find(args.sweep, args.out)
        result = evaluate_sweep(folder, args.split, args.backend, args.partition, args.gpus, args.time)
    except (FileNotFoundError, ValueError, RuntimeError, LaunchError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    if result is not None:
        best = result.get("best") or {}
        print(f"{len(result['trials'])} trial(s) on {args.split}; best {best.get('trial')} "
              f"({result['metric']} {best.get('value')})")
        print(f"summary: {folder.summary_md}\ntensorboard --logdir {folder.tb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
