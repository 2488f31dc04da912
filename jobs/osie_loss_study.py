"""Bruckert et al.'s loss study on OSIE's real eye tracking, from the feature cache (salnet/run/osie_loss_study.py).

    python jobs/osie_loss_study.py --out runs/osie-loss-study                  # 8 points x 2 seeds, to convergence
    python jobs/osie_loss_study.py --out runs/osie-smoke --points MSE KLD --seeds 1 --epochs 1 --readout-epochs 1 \
        --input-size 128x96 data.batch_size=8                                # a smoke run of every step

Packs ../shared/data/osie (or --shards FOLDER), writes the cache of the encoder's taps at 300x400, fits the readout
baseline, trains each point of sweeps/loss_study.yaml (--points, labels; MSE, the control, always) with the
loss_study preset from the cache, and writes OUT/sweep/summary.md: every point against MSE with 95 % paired
bootstrap intervals over the validation images (and seeds), the centre bias and the readout as rows. Dotted
overrides apply to every run. Reruns resume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salnet.data.records import parse_input_size
from salnet.logs import setup_logging
from salnet.run.osie_loss_study import POINTS, osie_loss_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="dotted config overrides for every run, e.g. data.workers=1")
    ap.add_argument("--out", type=Path, required=True, help="output folder (shards, cache, runs, sweep/summary.md)")
    ap.add_argument("--shards", type=Path, help="OSIE packed already (default: pack ../shared/data/osie into OUT)")
    ap.add_argument("--data", type=Path, help="OSIE release root (default ../shared/data/osie)")
    ap.add_argument("--weights", help="VGG-16 encoder weights file (default ../shared/weights's HED VGG-16)")
    ap.add_argument("--points", nargs="+", default=list(POINTS), help="labels of sweeps/loss_study.yaml's points")
    ap.add_argument("--seeds", type=int, default=2, help="train.seed 0 … N-1 per point (default 2)")
    ap.add_argument("--epochs", type=int, default=200, help="cap (the preset's 200)")
    ap.add_argument("--patience", type=int, default=10, help="epochs without a better validation CC (preset: 10)")
    ap.add_argument("--readout-epochs", type=int, default=40)
    ap.add_argument("--input-size", default="400x300", help="WxH of the network, cache and readout (default the "
                    "paper's 400x300; smaller for a smoke run)")
    ap.add_argument("--device", help="device of the final scoring (default: cuda when available)")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        size = parse_input_size(args.input_size)
        summary = osie_loss_study(args.out, shards=args.shards, data=args.data, weights=args.weights,
                                  points=args.points, seeds=args.seeds, epochs=args.epochs, patience=args.patience,
                                  readout_epochs=args.readout_epochs, input_size=size, overrides=args.overrides,
                                  device=args.device)
    except (FileNotFoundError, ValueError) as exn:
        print(f"osie_loss_study: error: {exn}", file=sys.stderr)
        return 2
    print(f"{summary['sweep_dir']}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
