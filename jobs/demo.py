"""The embedded default: the whole pipeline on this machine, in about three minutes on 2 CPU cores.

    python jobs/demo.py [--out runs/demo] [--n 160] [--bootstrap-epochs 6] [--epochs 3] [--baseline-only]

1. the centre-bias baseline scored with the nine metrics (on the real MIT benchmark sample in ../shared/data
   when it is there, else on generated data whose true fixation density is known: ``--data``);
2. synthetic data → WebDataset shards → SalGAN's two stages on a tiny network: the BCE/4 bootstrap (one run,
   ``jobs/launch.py --backend local --train salgan``), then from it the ``salgan_gan`` sweep — BCE/4 alone
   (the control) and the adversarial stage at three α (Ray Tune, trials as local processes) → the final
   evaluation on the test split, with the centre bias as a row of the table → TensorBoard and summary.md.
On a cluster the same sweep is ``python jobs/launch.py --partition gpu --sweep salgan_gan``.
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


# The demo trains a tiny network from random weights in a few hundred steps. The released recipe (Nesterov SGD
# lr 1e-3 for the bootstrap, AdaGrad lr 3e-4 after, a Glorot-initialised decoder) assumes a pretrained encoder and
# thousands of steps; here it stays at chance. So the demo uses Adam and a He-initialised decoder; the presets
# (`--train salgan`, every sweep file) keep the released recipe.
DEMO_SETUP = ["model.width=0.125", "model.freeze=[]", "model.decoder_init=he", "data.input_size=[64, 96]",
              "data.batch_size=4", "data.workers=0", "data.val_subset=40", "train.bf16=false",
              "train.bootstrap_optimizer=adam", "train.bootstrap_lr=1e-3", "train.optimizer=adam", "train.lr=1e-4",
              "train.lr_d=1e-4"]
SETUP_NOTE = ("tiny network (1/8 width, 64×96) from random weights: Adam (lr 1e-3 bootstrap, 1e-4 adversarial) and a "
              "He-initialised decoder instead of the released Nesterov/AdaGrad and Glorot init, which need a "
              "pretrained encoder and thousands of steps; the presets keep the released recipe")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--data", choices=["auto", "shared", "synthetic"], default="auto")
    ap.add_argument("--n", type=int, default=160, help="training images of the synthetic dataset (val, test: 40)")
    ap.add_argument("--bootstrap-epochs", type=int, default=6, help="epochs of the BCE/4 bootstrap")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each trial after the bootstrap")
    ap.add_argument("--baseline-only", action="store_true", help="only step 1 (seconds)")
    args = ap.parse_args(argv)
    code = baseline(args)
    if code or args.baseline_only:
        return code
    return salgan(args)


def salgan(args) -> int:
    """Step 2: the bootstrap run, then the salgan_gan sweep from it, on synthetic shards on this machine."""
    from salnet.data.synthetic import ensure_synthetic_shards
    from salnet.run.launch import LaunchOptions, launch_sweep, launch_train

    shards = ensure_synthetic_shards(args.out / "data" / "synthetic", {"train": args.n, "val": 40, "test": 40},
                                     size=(64, 96)).resolve()
    setup = [*DEMO_SETUP, f"data.shards={shards}"]
    print(f"\n== SalGAN on {args.n} synthetic training images: {SETUP_NOTE} ==", flush=True)
    print(f"-- bootstrap: BCE/4 for {args.bootstrap_epochs} epochs "
          f"(= python jobs/launch.py --backend local --train salgan train.adversarial=false ...)", flush=True)
    boot = launch_train("salgan", [*setup, "train.adversarial=false", f"train.epochs={args.bootstrap_epochs}",
                                   f"train.bootstrap_epochs={args.bootstrap_epochs}"],
                        LaunchOptions(backend="local", out=args.out / "runs", gpus_per_node=0, cpus_per_task=2))
    print(f"-- from {boot}: BCE/4 alone vs the adversarial stage at α = 0.005, 0.05, 0.5, {args.epochs} epochs each "
          "(= python jobs/launch.py --backend local --sweep salgan_gan ...)", flush=True)
    folder = launch_sweep("salgan_gan", [*setup, f"train.init_from={boot}", "train.bootstrap_epochs=0",
                                         f"train.epochs={args.epochs}"],
                          LaunchOptions(backend="local", out=args.out, cpus_per_task=1, gpus_per_node=0,
                                        max_concurrent=2))
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
