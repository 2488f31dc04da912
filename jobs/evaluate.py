"""Score trained models with the nine benchmark metrics, the centre bias as a row.

    python jobs/evaluate.py --run RUN --shards S [--split test] [--per-image]  # one run, here, now
    python jobs/evaluate.py SWEEP [--split test]                                # a sweep's final evaluation
    python jobs/evaluate.py SWEEP --backend slurm --partition gpu --time 2:00:00  # ... as a job (one GPU)

--run writes RUN/evaluation-SPLIT/ (or --results DIR): summary.md (the table), summary.json (the means, the
checkpoint and its epoch, what the split lacks) and with --per-image per_image.csv. --shards defaults to the
run's data.shards. A sweep's evaluation writes the sweep folder's summary.md/.csv and TensorBoard views; the
sweep driver runs it by itself once the sweep ends (unless launched with --no-evaluate).
"""

import argparse
import sys
from pathlib import Path

from salnet.logs import setup_logging
from salnet.run import LaunchError
from salnet.run.evaluate import evaluate_one_run, evaluate_sweep
from salnet.run.launch import parse_time
from salnet.sweeps.folder import SweepFolder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", nargs="?", help="a sweep folder or a sweep name (or give --run)")
    ap.add_argument("--run", type=Path, help="one run folder (or a checkpoint file in one) to score in this process")
    ap.add_argument("--shards", type=Path, help="--run: packed dataset folder (default the run's data.shards)")
    ap.add_argument("--split", default="test", help="split to score (default test)")
    ap.add_argument("--per-image", action="store_true", help="--run: also write per_image.csv")
    ap.add_argument("--results", type=Path, help="--run: output folder (default RUN/evaluation-SPLIT)")
    ap.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="--run: which checkpoint")
    ap.add_argument("--device", help="--run: torch device (default cuda when there is one)")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="where sweep folders are (default runs)")
    ap.add_argument("--backend", choices=("debug", "here", "slurm", "local"), default="debug",
                    help="sweeps: debug (this process; 'here' is the same), local or slurm (a job)")
    ap.add_argument("--partition", help="Slurm partition (--backend slurm)")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--time", default="120", help="time limit of the job: minutes, H:M:S or D-H:M:S (default 120)")
    ap.add_argument("--mem", type=float, help="memory of the job in GB (default: the partition's)")
    args = ap.parse_args(argv)
    setup_logging()
    if args.sweep and (Path(args.sweep) / "config.yaml").is_file() and not SweepFolder(Path(args.sweep)).is_sweep():
        args.run, args.sweep = Path(args.sweep), None  # a run folder given where a sweep goes
    try:
        time_min = parse_time(args.time)
        if (args.run is None) == (args.sweep is None):
            raise LaunchError("give a sweep (folder or name) or --run RUN, not both")
        if args.run is not None:
            if args.backend not in ("debug", "here"):
                raise LaunchError("--run scores in this process; --backend local/slurm apply to sweeps")
            scored = evaluate_one_run(args.run, args.shards, args.split, args.results, args.per_image,
                                      args.checkpoint, args.device)
            print(scored["table"], end="")
            print(f"wrote {scored['results']}")
            return 0
        folder = SweepFolder.find(args.sweep, args.out)
        result = evaluate_sweep(folder, args.split, args.backend, args.partition, args.gpus, time_min, args.mem)
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
