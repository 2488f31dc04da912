"""The embedded default job: score a model-free baseline (the centre bias) with the nine metrics.

    python jobs/demo.py [--out runs/demo] [--data auto|shared|synthetic] [--n 40]

``auto`` uses the real MIT benchmark sample in ../shared/data when it is there, otherwise a generated
(synthetic) dataset whose true fixation density is known. Later stages of the suite grow this into the
full local pipeline (shards → training sweep → evaluation).
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
    args = ap.parse_args(argv)
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
    print(f"per-image values: {args.out / 'scores.csv'}, summary: {args.out / 'scores.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
