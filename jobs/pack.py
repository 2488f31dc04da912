"""Pack a raw dataset release into WebDataset shards + manifest.json.

    python jobs/pack.py DATASET --root RAW --out shards/DATASET [--splits train val] [--workers N]
        [--shard-size MB] [--input-size 256x192 | --map-codec npy] [--verify]
        [--backend inprocess|local|slurm] [--partition P --time-min 60 ...]

Resumable (finished shards are skipped), byte-identical for the same input. --backend slurm submits a
submitit array job, one task per range of shards, then writes the manifest when all tasks are done;
--backend local does the same with real local processes (submitit's local executor).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salnet.data import READERS, get_reader
from salnet.data.records import MAP_CODECS, parse_input_size
from salnet.data.shards import finalize, pack, pack_named, pending, prepare, verify
from salnet.data.synthetic import write_synthetic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help=f"one of {', '.join(sorted(READERS))}")
    p.add_argument("--root", required=True, type=Path, help="folder of the raw release")
    p.add_argument("--out", type=Path, help="output folder (default shards/DATASET)")
    p.add_argument("--splits", nargs="+", help="splits to pack (default: all the root holds)")
    p.add_argument("--workers", type=int, default=4, help="parallel processes (in-process backend)")
    p.add_argument("--shard-size", type=float, default=256.0, help="target shard size in MB (approximate)")
    p.add_argument("--input-size", help="WxH, e.g. 256x192: store each sample resized to the model input (the "
                   "loader's exact INTER_AREA; original-size map and fixations kept for validation)")
    p.add_argument("--map-codec", choices=MAP_CODECS, default="png", help="full-size map: PNG, or raw .npy (decoded "
                   "~250x faster, ~1.7x the bytes)")
    p.add_argument("--verify", action="store_true", help="after packing, re-read every shard and compare "
                   "every sample with the raw release")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("inprocess", "local", "slurm"), default="inprocess")
    p.add_argument("--array-tasks", type=int, default=16, help="submitit array size (local/slurm backends)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--time-min", type=int, default=120, help="Slurm time limit per task, minutes")
    p.add_argument("--cpus-per-task", type=int, default=4)
    p.add_argument("--mem-gb", type=int, default=16)
    p.add_argument("--log-dir", type=Path, help="submitit logs (default OUT/.pack/submitit)")
    p.add_argument("--synthetic", nargs=2, type=int, metavar=("TRAIN", "VAL"),
                   help="dataset 'synthetic' only: first write a raw synthetic release of this many images")
    return p.parse_args(argv)


def run_submitit(args, reader, plans) -> None:
    import submitit

    folder = args.log_dir or args.out / ".pack" / "submitit"
    cluster = "local" if args.backend == "local" else "slurm"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": args.time_min, "cpus_per_task": args.cpus_per_task, "name": f"pack-{reader.name}"}
    if cluster == "slurm":
        params.update(slurm_partition=args.partition, mem_gb=args.mem_gb,
                      slurm_array_parallelism=args.array_tasks)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    names = [p.name for p in pending(args.out, plans)]  # resuming: finished shards are not resubmitted
    if not names:
        return
    n = min(args.array_tasks, len(names))
    chunks = [names[i * len(names) // n: (i + 1) * len(names) // n] for i in range(n)]  # contiguous ranges
    out = str(args.out.resolve())
    jobs = executor.map_array(pack_named, [reader.name] * n, [str(reader.root)] * n, [out] * n, chunks,
                              [args.cpus_per_task] * n)
    print(f"submitted {len(jobs)} {cluster} task(s): {jobs[0].job_id} ...; logs in {folder}", flush=True)
    for job in jobs:
        job.result()  # raises with the task's traceback if a task failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out or Path("shards") / args.dataset
    if args.synthetic:
        if args.dataset != "synthetic":
            raise SystemExit("--synthetic only applies to the dataset 'synthetic'")
        write_synthetic(args.root, {"train": args.synthetic[0], "val": args.synthetic[1]})
    try:
        reader = get_reader(args.dataset, args.root)
        size = parse_input_size(args.input_size) if args.input_size else None
        if args.backend == "inprocess":
            manifest = pack(reader, args.out, args.splits, args.shard_size, args.workers, not args.no_progress, size,
                            args.map_codec)
        else:
            plans = prepare(reader, args.out, args.splits, args.shard_size, size, args.map_codec)
            run_submitit(args, reader, plans)
            manifest = finalize(args.out)
    except (FileNotFoundError, ValueError) as exn:
        print(f"pack: error: {exn}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {v['count']}" for s, v in manifest["splits"].items())
    print(f"packed {reader.name}: {counts} in {len(manifest['shards'])} shard(s) -> {args.out}")
    if args.verify:
        report = verify(args.out, reader)
        for e in report["errors"][:20]:
            print(f"verify: {e}", file=sys.stderr)
        print(f"verified {report['samples']} samples in {report['shards']} shards: "
              f"{'OK' if not report['errors'] else str(len(report['errors'])) + ' error(s)'}")
        return 1 if report["errors"] else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
