"""jobs/demo.py's two steps: the centre-bias baseline, then SalGAN's two stages on synthetic data on this machine.

``baseline(args)`` scores the centre bias (the MIT benchmark sample in ../shared when it is there, else generated
data); ``salgan(args)`` packs synthetic shards, runs the BCE/4 bootstrap (:func:`salnet.run.launch.launch_train`)
and from it the ``salgan_gan`` sweep (:func:`salnet.run.launch.launch_sweep`), printing its summary.md and each GAN
point's CC, NSS and AUC-J difference to BCE/4 with its interval (:func:`comparison_note`).
``args``: jobs/demo.py's parsed flags (out, data, n, bootstrap_epochs, epochs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salnet.logs import get_logger
from salnet.metrics.files import read_map
from salnet.metrics.score import score_folders
from salnet.recipes.baselines import write_center_bias

log = get_logger(__name__)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared next to the repository


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
DEMO_SETUP = ["model.width=0.125", "model.weights=random", "model.freeze=[]", "model.decoder_init=he",
              "data.input_size=[64, 96]", "data.batch_size=4", "data.workers=0", "data.val_subset=40",
              "train.bf16=false",
              "train.bootstrap_optimizer=adam", "train.bootstrap_lr=1e-3", "train.optimizer=adam", "train.lr=1e-4",
              "train.lr_d=1e-4"]
SETUP_NOTE = ("tiny network (1/8 width, 64×96) from random weights: Adam (lr 1e-3 bootstrap, 1e-4 adversarial) and a "
              "He-initialised decoder instead of the released Nesterov/AdaGrad and Glorot init, which need a "
              "pretrained encoder and thousands of steps; the presets keep the released recipe")


def salgan(args) -> int:
    """Step 2: the bootstrap run, then the salgan_gan sweep from it, on synthetic shards on this machine."""
    from salnet.data.synthetic_shards import ensure_synthetic_shards
    from salnet.run.launch import LaunchOptions, launch_sweep, launch_train

    shards = ensure_synthetic_shards(args.out / "data" / "synthetic", {"train": args.n, "val": 40, "test": 40},
                                     size=(64, 96)).resolve()
    setup = [*DEMO_SETUP, f"data.shards={shards}"]
    log.info(f"\n== SalGAN on {args.n} synthetic training images: {SETUP_NOTE} ==")
    log.info(f"-- bootstrap: BCE/4 for {args.bootstrap_epochs} epochs "
             f"(= python jobs/launch.py --backend local --train salgan train.adversarial=false ...)")
    boot = launch_train("salgan", [*setup, "train.adversarial=false", f"train.epochs={args.bootstrap_epochs}",
                                   f"train.bootstrap_epochs={args.bootstrap_epochs}"],
                        LaunchOptions(backend="local", out=args.out / "runs", gpus_per_node=0, cpus_per_task=2))
    log.info(f"-- from {boot}: BCE/4 alone vs the adversarial stage at α = 0.005, 0.05, 0.5, {args.epochs} epochs each "
             "(= python jobs/launch.py --backend local --sweep salgan_gan ...)")
    folder = launch_sweep("salgan_gan", [*setup, f"train.init_from={boot}", "train.bootstrap_epochs=0",
                                         f"train.epochs={args.epochs}"],
                          LaunchOptions(backend="local", out=args.out, cpus_per_task=1, gpus_per_node=0,
                                        max_concurrent=2))
    log.info(folder.summary_md.read_text())
    log.info(comparison_note(json.loads(folder.evaluation_json.read_text())))
    log.info(f"sweep folder: {folder.path}\n  tensorboard --logdir {folder.tb_dir}   (trials side by side)\n"
             f"  python jobs/status.py {folder.path}")
    return 0


DEMO_COMPARED = ["cc", "nss", "auc_judd"]


def comparison_note(result: dict) -> str:
    """The demo's comparison: each point's CC, NSS and AUC-J difference to the control (BCE/4) with its 95 % paired
    bootstrap interval and mark (summarize_sweep's ``result``), and what the intervals cover."""
    from salnet.sweeps.tables import comparison_table

    control = (result.get("control") or {}).get("point")
    table = comparison_table(result, DEMO_COMPARED)
    if not table:
        return f"no comparison with a control ({(result.get('control') or {}).get('how', 'no point scored')})"
    seeds = max(len(p["scored"]) for p in result["points"])
    images = max(t["images"] or 0 for t in result["trials"])
    cover = (f"one seed per point: each interval is over the {images} test images only (images resampled), the "
             "variation between training seeds is not in it" if seeds == 1 else
             f"{seeds} seeds per point: each image's value averaged over them, ± the seed spread of Δ")
    return "\n".join([f"Against the control {control} (Δ = point − control; 95 % paired bootstrap interval; marks "
                      f"Holm-adjusted over the points; {cover}):", "", *table])


def baseline(args) -> int:
    """Step 1: the centre bias scored on the MIT sample (or generated data)."""
    demo = SHARED_DATA / "mit-benchmark-demo"
    use_shared = args.data == "shared" or (args.data == "auto" and demo.is_dir())
    if use_shared:
        if not demo.is_dir():
            log.error(f"{demo} not found; use --data synthetic")
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
    log.info(f"centre-bias baseline on {source}: {len(result.values)} images")
    log.info(result.table())
    log.info(f"per-image values: {args.out / 'scores.csv'}, summary: {args.out / 'scores.json'}")
    return 0
