"""``python -m salnet.metrics score --pred DIR --fixations DIR --maps DIR ...``: score saved predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from salnet.metrics import METRICS, VARIANTS
from salnet.metrics.files import ScoreInputError
from salnet.metrics.score import score_folders


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m salnet.metrics", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a folder of predictions (files matched by stem)")
    s.add_argument("--pred", type=Path, required=True, help="predicted maps (.npy/.png/.jpg)")
    s.add_argument("--fixations", type=Path, help="fixations: binary maps (.npy/.png/.jpg/.mat 'fixations') "
                   "or .npy (N,2) int (y, x) points")
    s.add_argument("--maps", type=Path, help="continuous ground-truth maps (.npy/.png/.jpg)")
    s.add_argument("--baseline", type=Path, help="baseline map for IG (default: a centre-bias Gaussian)")
    s.add_argument("--metrics", nargs="+", metavar="NAME", help=f"subset of: {' '.join(METRICS)}")
    s.add_argument("--variant", choices=VARIANTS, default="mit",
                   help="conventions where MIT and pysaliency differ (sAUC, NSS, SIM, IG); default mit")
    s.add_argument("--seed", type=int, default=0, help="seed of the random metrics (per image, batch-independent)")
    s.add_argument("--n-splits", type=int, default=100, help="random splits of AUC-Borji and sAUC (MIT: 100)")
    s.add_argument("--step", type=float, default=0.1, help="threshold step of AUC-Borji and sAUC (MIT: 0.1)")
    s.add_argument("--n-other", type=int, default=10, help="other images whose fixations are sAUC's negatives")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s.add_argument("--only-matched", action="store_true", help="score only the files that have a partner in every "
                   "folder and say how many were left out (default: a file without a partner is an error)")
    s.add_argument("--json", type=Path, help="write summary + per-image values as JSON")
    s.add_argument("--csv", type=Path, help="write per-image values as CSV")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = score_folders(args.pred, args.fixations, args.maps, baseline=args.baseline, metrics=args.metrics,
                               variant=args.variant, seed=args.seed, n_splits=args.n_splits, step=args.step,
                               n_other=args.n_other, batch_size=args.batch_size, device=args.device,
                               only_matched=args.only_matched)
    except (ScoreInputError, ValueError, FileNotFoundError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    print(f"{len(result.values)} images scored ({args.variant} conventions)")
    for what, stems in result.left_out.items():
        print(f"left out: {len(stems)} {what} file(s) without a partner ({', '.join(stems[:5])}"
              f"{' …' if len(stems) > 5 else ''})")
    print(result.table())
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.csv:
        result.write_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
