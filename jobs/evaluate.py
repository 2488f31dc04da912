"""The final evaluation of a sweep: every trial's best checkpoint on the test split with the nine metrics,
into TensorBoard (hparams table, per-metric curves, the best trial's predictions) and summary.md/.csv.

    python jobs/evaluate.py SWEEP [--split test]                       # here, now
    python jobs/evaluate.py SWEEP --backend slurm --partition gpu      # as a job (one GPU)

The sweep driver runs it by itself once the sweep ends (unless launched with --no-evaluate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from status import find_sweep  # noqa: E402


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
    try:
        sweep_dir = find_sweep(args.sweep, args.out).resolve()
        if args.backend == "here":
            from salnet.summary import summarize_sweep

            result = summarize_sweep(sweep_dir, split=args.split)
        else:
            from submission import EvaluateJob, job_record, make_executor, submit
            from sweep_folder import update_state

            if args.backend == "slurm":
                from launch import check_partition, slurm_partitions

                check_partition(args.partition, slurm_partitions()[0], "--partition")
            ex = make_executor(sweep_dir / "jobs", args.backend, partition=args.partition, gpus_per_node=args.gpus,
                               tasks_per_node=1, cpus_per_task=4, time_min=args.time, name=f"{sweep_dir.name}-evaluate")
            job = submit(ex, EvaluateJob(), str(sweep_dir), args.split)
            update_state(sweep_dir, evaluation=job_record(job, args.backend))
            print(f"evaluation job {job.job_id} ({args.backend})")
            if args.backend == "slurm":
                return 0
            result = job.result()
    except (FileNotFoundError, ValueError, RuntimeError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    best = result.get("best") or {}
    print(f"{len(result['trials'])} trial(s) on {args.split}; best {best.get('trial')} "
          f"({result['metric']} {best.get('value')})")
    print(f"summary: {sweep_dir / 'summary.md'}\ntensorboard --logdir {sweep_dir / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
