"""The embedded default: the whole pipeline on this machine, in a few minutes on 2 CPU cores.

    python jobs/demo.py [--out runs/demo] [--trials 3] [--epochs 4] [--baseline-only]

1. the centre-bias baseline scored with the nine metrics (on the real MIT benchmark sample in ../shared/data
   when it is there, else on generated data whose true fixation density is known: ``--data``);
2. synthetic data → WebDataset shards → a small SalGAN α sweep (Ray Tune, ASHA, tiny network, trials as
   local processes: ``jobs/launch.py --backend local --sweep alpha --tiny``) → the final evaluation of
   every trial on the test split → TensorBoard (hparams, curves, predictions) and summary.md / summary.csv.
On a cluster the same sweep is ``python jobs/launch.py --partition gpu --sweep alpha``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from salnet.baselines import write_center_bias
from salnet.metrics.files import read_map
from salnet.metrics.score import score_folders

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def synthetic_ground_truth(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``n`` synthetic validation images' true densities (maps/*.npy) and fixations (fixations/*.npy)."""
    from salnet.data.synthetic import make_synthetic, true_density

    maps, fix = root / "maps", root / "fixations"
    maps.mkdir(parents=True, exist_ok=True)
    fix.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(make_synthetic(n, seed=seed, split="val")):
        stem = f"synthetic_{i:04d}"
        np.save(maps / f"{stem}.npy", true_density(i, size=(s.height, s.width), seed=seed, split="val"))
        np.save(fix / f"{stem}.npy", s.fixations[:, :2].astype(np.int64))
    return fix, maps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--data", choices=["auto", "shared", "synthetic"], default="auto")
    ap.add_argument("--n", type=int, default=40, help="images of the synthetic dataset")
    ap.add_argument("--trials", type=int, default=3, help="trials of the α sweep")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial (adversarial from the start)")
    ap.add_argument("--baseline-only", action="store_true", help="only step 1 (seconds)")
    args = ap.parse_args(argv)
    code = baseline(args)
    if code or args.baseline_only:
        return code
    return sweep(args)


def sweep(args) -> int:
    """Step 2: the α sweep on synthetic shards, on this machine, then its final evaluation."""
    from salnet.run.launch import LaunchOptions, launch_sweep

    print("\n== SalGAN α sweep on synthetic data (tiny network, local processes) ==", flush=True)
    # = python jobs/launch.py --backend local --sweep alpha --tiny --trials N --out OUT --cpus-per-task 1 ...
    folder = launch_sweep("alpha", [f"train.epochs={args.epochs}", "train.bootstrap_epochs=0"],
                          # no bootstrap stage: on a tiny network the BCE-only epoch tends to stay the best
                          # checkpoint of every trial, and the table would not show α's effect
                          LaunchOptions(backend="local", tiny=True, trials=args.trials, out=args.out, cpus_per_task=1,
                                        gpus_per_node=0))
    print(folder.summary_md.read_text())
    print(f"sweep folder: {folder.path}\n  tensorboard --logdir {folder.tb_dir}   (trials side by side)\n"
          f"  python jobs/status.py {folder.path}")
    return 0


def baseline(args) -> int:
    """Step 1: the centre bias scored on the MIT sample (or generated data)."""
    demo = SHARED_DATA / "mit-benchmark-demo"
    use_shared = args.data == "shared" or (args.data == "auto" and demo.is_dir())
    if use_shared:
        if not demo.is_dir():
            print(f"error: {demo} not found; use --data synthetic", file=sys.stderr)
            return 2
        fix, maps = demo / "FIXATIONLOCS", demo / "FIXATIONMAPS"
        source = f"MIT benchmark sample ({demo})"
    else:
        fix, maps = synthetic_ground_truth(args.out / "synthetic", args.n)
        source = f"{args.n} synthetic images ({args.out / 'synthetic'})"
    sizes = {p.stem: read_map(p).shape for p in sorted(maps.iterdir())}
    pred = args.out / "center_bias"
    write_center_bias(sizes, pred)
    result = score_folders(pred, fix, maps)
    args.out.mkdir(parents=True, exist_ok=True)
    result.write_json(args.out / "scores.json")
    result.write_csv(args.out / "scores.csv")
    print(f"centre-bias baseline on {source}: {len(result.values)} images")
    print(result.table())
    print(f"per-image values: {args.out / 'scores.csv'}, summary: {args.out / 'scores.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
