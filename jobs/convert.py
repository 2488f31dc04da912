"""Convert published weights into a salnet checkpoint that jobs/predict.py and jobs/evaluate.py load.

    python jobs/convert.py salgan-released gen_modelWeights0090.npz [discrim_modelWeights0090.npz] --out OUT

salgan-released: the authors' Lasagne files (imatge-upc/salgan README: gen_modelWeights0090.npz, the
discriminator discrim_modelWeights0090.npz; the training script names it disrim_…), told apart by content.
OUT ending in .pt: that checkpoint plus its config as OUT.yaml beside it; any other OUT: a run folder
(config.yaml, best.pt). Exit code 2: bad input (missing or foreign file, wrong shapes), said on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salnet.logs import setup_logging

CONVERTERS = ("salgan-released",)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=CONVERTERS, help="what the files are")
    ap.add_argument("files", nargs="+", type=Path, help="the generator .npz and optionally the discriminator .npz")
    ap.add_argument("--out", type=Path, required=True, help="NAME.pt (checkpoint + NAME.yaml) or a run folder")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from salnet.interop.released_salgan import convert_released

    try:
        ckpt = convert_released(args.files, args.out)
    except (FileNotFoundError, ValueError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    print(f"wrote {ckpt}; predict with: python jobs/predict.py {args.out} IMAGES... --out DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
