"""Saliency maps for images with a trained run (SalGAN's released post-processing: bicubic resize, 5×5 blur).

    python jobs/predict.py CHECKPOINT INPUT... --out DIR [--overlays] [--batch-size N] [--device D]
    python jobs/predict.py CHECKPOINT STIMULI --benchmark mit300|cat2000|tuebingen --out DIR [--name MODEL]

CHECKPOINT: a run folder (its best.pt, else latest.pt) or a checkpoint file inside one. INPUT: image
files, folders (their images, not recursive) or globs (quote them: "photos/**/*.jpg" is expanded here,
recursively). Writes DIR/<stem>.png (8-bit map at the image's size) and, with --overlays,
DIR/<stem>_overlay.png. Unreadable images are skipped with a warning; the exit code is then 1.
Exit code 2: bad arguments (no checkpoint, no images matched, two inputs with the same output name).

--benchmark: STIMULI is the benchmark's test-image folder (MIT300 BenchmarkIMAGES; CAT2000 testSet/Stimuli with
its category folders); writes DIR/MODEL/ (one map per stimulus, named, sized and encoded as the benchmark asks),
DIR/MODEL.zip to upload and DIR/manifest.json (the run, the checkpoint's sha256, every map). A stimulus set that
is not the benchmark's full test set is an error unless --partial (docs/interop.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salnet.inference.predict_files import UsageError, expand_inputs
from salnet.logs import setup_logging


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="run folder, or a checkpoint file (ckpt-*.pt) in one")
    ap.add_argument("inputs", nargs="+", help="image files, folders or quoted globs")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--overlays", action="store_true", help="also write <stem>_overlay.png heat-map overlays")
    ap.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    ap.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--benchmark", choices=("mit300", "cat2000", "tuebingen"),
                    help="write a benchmark upload from one stimulus folder")
    ap.add_argument("--dataset", choices=("mit300", "cat2000"),
                    help="--benchmark tuebingen: which test set (default: from the folder's layout)")
    ap.add_argument("--name", help="--benchmark: the model's name, the zip's folder (default: the run's folder name)")
    ap.add_argument("--partial", action="store_true", help="--benchmark: accept fewer stimuli than the test set")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.benchmark is None and (args.dataset or args.name or args.partial):
            raise UsageError("--dataset, --name and --partial go with --benchmark")
        if args.benchmark and (args.overlays or len(args.inputs) != 1):
            raise UsageError("--benchmark takes one stimulus folder and no --overlays (an upload holds maps only)")
        paths = [] if args.benchmark else expand_inputs(args.inputs)
        if not paths and not args.benchmark:
            raise UsageError(f"no images matched {' '.join(args.inputs)}")
        import torch

        from salnet.inference.predict import load_model
        from salnet.inference.predict_files import predict_benchmark, predict_files

        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
        model, cfg = load_model(args.checkpoint, device=device)
        if args.benchmark:
            print(predict_benchmark(model, cfg, args.checkpoint, Path(args.inputs[0]), args.benchmark, args.out,
                                    dataset=args.dataset, name=args.name, partial=args.partial,
                                    batch_size=args.batch_size, device=device))
            return 0
        written, skipped = predict_files(model, cfg, paths, args.out, overlays=args.overlays,
                                         batch_size=args.batch_size, device=device)
    except (UsageError, FileNotFoundError, ValueError, RuntimeError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    extra = f", skipped {len(skipped)} unreadable (see the warnings)" if skipped else ""
    what = f"saliency map{'' if written == 1 else 's'}{' and overlays' if args.overlays else ''}"
    print(f"wrote {written} {what} to {args.out}{extra}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
