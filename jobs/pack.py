"""Pack a raw dataset release into WebDataset shards + manifest.json.

    python jobs/pack.py DATASET --root RAW --out shards/DATASET [--splits train val] [--workers N]
        [--shard-size MB] [--input-size 256x192 | --map-codec npy] [--verify]
        [--backend debug|local|slurm] [--partition P --time 1:00:00 --mem 16 ...]
    python jobs/pack.py folder --root DIR --out shards/mine [--sigma PX] [--val-fraction 0.1]   # your own data
    python jobs/pack.py features --shards shards/mit1003 [--input-size 400x300 --weights imagenet]  # taps cache

DATASET folder is a lab's own folder: images/ with maps/ and/or fixations/ matched by file stem, splits from
splits.json or train.txt/val.txt/test.txt or a seeded --val-fraction (docs/own-data.md).

Resumable (finished shards are skipped), byte-identical for the same input. --backend slurm submits a
submitit array job, one task per range of shards, then writes the manifest when all tasks are done;
--backend local does the same with real local processes (submitit's local executor).
"""

import argparse
import sys
from pathlib import Path

from salnet.data import READERS
from salnet.data.records import MAP_CODECS
from salnet.logs import setup_logging
from salnet.run import LaunchError
from salnet.run.launch import parse_time
from salnet.run.pack import PackOptions, pack_dataset


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["features"]:  # the loss study's feature cache: salnet/run/features.py
        from salnet.run.features import main as features_main

        return features_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help=f"one of {', '.join(sorted(READERS))}")
    p.add_argument("--root", required=True, type=Path, help="folder of the raw release")
    p.add_argument("--out", type=Path, help="output folder (default shards/DATASET)")
    p.add_argument("--splits", nargs="+", help="splits to pack (default: all the root holds)")
    p.add_argument("--workers", type=int, help="parallel processes (in-process backend; default 4)")
    p.add_argument("--shard-size", type=float, help="target shard size in MB (approximate; default 256)")
    p.add_argument("--input-size", help="WxH, e.g. 256x192: store each sample resized to the model input (the "
                   "loader's exact INTER_AREA; original-size map and fixations kept for validation)")
    p.add_argument("--map-codec", choices=MAP_CODECS, help="full-size map: PNG (default), or raw .npy (decoded "
                   "~250x faster, ~1.7x the bytes)")
    p.add_argument("--verify", action="store_true", help="after packing, re-read every shard and compare "
                   "every sample with the raw release")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument("--backend", choices=("debug", "inprocess", "local", "slurm"),
                   help="debug: this process and its pool (default; 'inprocess' is the same), local: submitit "
                   "processes, slurm: a Slurm array job")
    p.add_argument("--array-tasks", type=int, help="submitit array size (local/slurm backends; default 16)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--time", "--time-min", dest="time", help="time limit per task: minutes, H:M:S or D-H:M:S "
                   "(default 120 minutes)")
    p.add_argument("--cpus-per-task", type=int, help="default 4")
    p.add_argument("--mem", "--mem-gb", dest="mem_gb", type=float, help="memory per task in GB (default 16)")
    p.add_argument("--log-dir", type=Path, help="submitit logs (default OUT/.pack/submitit)")
    p.add_argument("--synthetic", nargs=2, type=int, metavar=("TRAIN", "VAL"),
                   help="dataset 'synthetic' only: first write a raw synthetic release of this many images")
    g = p.add_argument_group("dataset 'folder' only")
    g.add_argument("--sigma", type=float, help="Gaussian σ in pixels of the maps made from fixations where an image "
                   "has no map (required then)")
    g.add_argument("--val-fraction", type=float, help="without split lists: the seeded share of images in val "
                   "(default 0.1)")
    g.add_argument("--test-fraction", type=float, help="... and in test (default 0)")
    g.add_argument("--split-seed", type=int, help="seed of that partition (default 0)")
    args = vars(p.parse_args(argv))
    setup_logging()
    dataset, root = args.pop("dataset"), args.pop("root")
    out = args.pop("out") or Path("shards") / dataset
    folder = {k: args.pop(a) for k, a in (("sigma", "sigma"), ("val_fraction", "val_fraction"),
                                          ("test_fraction", "test_fraction"), ("seed", "split_seed"))}
    try:
        if args.get("time") is not None:
            args["time_min"] = parse_time(args.pop("time"))
        args.pop("time", None)
        if args.get("backend") == "inprocess":
            args["backend"] = "debug"
        manifest, report = pack_dataset(dataset, root, out,
                                        PackOptions(**{k: v for k, v in args.items() if v is not None},
                                                    reader_options={k: v for k, v in folder.items() if v is not None}))
    except (FileNotFoundError, ValueError, LaunchError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {v['count']}" for s, v in manifest["splits"].items())
    print(f"packed {manifest['dataset']}: {counts} in {len(manifest['shards'])} shard(s) -> {out}")
    if report is not None:
        for e in report["errors"][:20]:
            print(f"verify: {e}", file=sys.stderr)
        print(f"verified {report['samples']} samples in {report['shards']} shards: "
              f"{'OK' if not report['errors'] else str(len(report['errors'])) + ' error(s)'}")
    return 1 if report and report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
