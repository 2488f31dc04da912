"""The released SalGAN recipe on OSIE's real eye tracking, against the centre bias and the readout baseline.

    python jobs/osie_recipe.py --out runs/osie                                   # 15 + 15 epochs (a GPU)
    python jobs/osie_recipe.py --out runs/osie --passes 1 --bootstrap-epochs 2 --epochs 1 train.cpu_bf16=true
                                                                      # the direction, on a CPU

Packs ../shared/data/osie (or --data ROOT; --shards FOLDER for a packed dataset), trains the readout baseline, the
salgan preset's BCE/4 bootstrap from the VGG-16 encoder weights (--weights), then BCE/4 alone and the adversarial
stage from that checkpoint (an epoch: --passes over the 480 training images, by default as many images as a
SALICON epoch), and writes OUT/sweep/summary.md: both models, the centre bias and the readout with the
nine metrics on the validation split. Dotted overrides (data.batch_size=16) apply to every run. Reruns resume;
SIGUSR2 or SIGTERM stops the stage in progress with a checkpoint (exit 3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salnet.logs import setup_logging
from salnet.recipes.osie import DEFAULT_DATA, DEFAULT_WEIGHTS, PASSES, Stopped, osie_recipe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="dotted config overrides for every run, e.g. data.batch_size=16")
    ap.add_argument("--out", type=Path, required=True, help="output folder (shards, runs, sweep/summary.md)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"OSIE release root (default {DEFAULT_DATA})")
    ap.add_argument("--shards", type=Path, help="a packed dataset with train and val splits (instead of --data)")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="VGG-16 encoder weights file, or 'none'")
    ap.add_argument("--bootstrap-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=15,
                    help="epochs of BCE/4 alone and of the adversarial stage (a larger one on a rerun continues them)")
    ap.add_argument("--passes", type=int, default=PASSES,
                    help=f"passes over the training images per epoch (default {PASSES}: an epoch as long as SALICON's, "
                         "for which the recipe's epoch counts were chosen; 1: OSIE's own epochs)")
    ap.add_argument("--readout-epochs", type=int, default=40)
    ap.add_argument("--device", help="device of the final scoring (default: cuda when available)")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        osie_recipe(args.out, data=args.data, shards=args.shards,
                    weights=None if args.weights.lower() == "none" else args.weights,
                    bootstrap_epochs=args.bootstrap_epochs, epochs=args.epochs, passes=args.passes,
                    readout_epochs=args.readout_epochs,
                    overrides=args.overrides, device=args.device)
    except (FileNotFoundError, ValueError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    except Stopped as exn:
        print(f"stopped: {exn}", file=sys.stderr)
        return 3
    print((args.out / "sweep" / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
