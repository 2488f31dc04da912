"""The embedded default: the whole pipeline on this machine, in about 90 s on 2 CPU cores.

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

from salnet.logs import setup_logging
from salnet.run.demo import baseline, salgan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--data", choices=["auto", "shared", "synthetic"], default="auto", help="step 1's ground truth")
    ap.add_argument("--n", type=int, default=160, help="training images of the synthetic dataset (val, test: 40)")
    ap.add_argument("--bootstrap-epochs", type=int, default=6, help="epochs of the BCE/4 bootstrap")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each trial after the bootstrap")
    ap.add_argument("--baseline-only", action="store_true", help="only step 1 (seconds)")
    args = ap.parse_args(argv)
    setup_logging()
    code = baseline(args)
    if code or args.baseline_only:
        return code
    return salgan(args)


if __name__ == "__main__":
    sys.exit(main())
