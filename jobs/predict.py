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
import glob
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GLOB_CHARS = set("*?[")


class UsageError(Exception):
    """Bad command-line input: printed as ``error: ...``, exit code 2."""


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image paths from files, folders and globs, in argument order (folders and globs sorted), each once.
    A missing file is a UsageError; a folder or glob without images only warns (others may match)."""
    found: list[Path] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            matched = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not matched:
                print(f"warning: {arg}: folder holds no images ({' '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
        elif p.is_file():
            matched = [p]
        elif GLOB_CHARS & set(arg):
            matched = sorted(Path(q) for q in glob.glob(arg, recursive=True) if Path(q).is_file())
            if not matched:
                print(f"warning: {arg}: pattern matched no files", file=sys.stderr)
        else:
            raise UsageError(f"{arg}: no such file or folder")
        found += matched
    seen, unique = set(), []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_names(paths: list[Path], overlays: bool) -> dict[Path, str]:
    """path → output stem; two inputs that would write the same file are a UsageError naming both."""
    owner: dict[str, Path] = {}
    for p in paths:
        names = [f"{p.stem}.png"] + ([f"{p.stem}_overlay.png"] if overlays else [])
        for name in names:
            if name in owner:
                raise UsageError(f"{owner[name]} and {p} would both write {name}; rename one or predict them "
                                 "into separate --out folders")
            owner[name] = p
    return {p: p.stem for p in paths}


def read_rgb(path: Path):
    """uint8 (H, W, 3) of an image file (decoded in full, so a truncated file fails here)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


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


def benchmark(args, model, cfg, device) -> int:
    """The --benchmark mode: one stimulus folder → DIR/MODEL/, DIR/MODEL.zip, DIR/manifest.json."""
    from salnet.benchmark_formats import benchmark_format, run_record, write_benchmark
    from salnet.predict import predict_maps, resolve_checkpoint

    if len(args.inputs) != 1:
        raise UsageError(f"--benchmark takes one stimulus folder, got {len(args.inputs)} inputs")
    root = Path(args.inputs[0])
    ckpt, config = resolve_checkpoint(args.checkpoint)
    name = args.name or (args.checkpoint.stem if args.checkpoint.is_file() else args.checkpoint.resolve().name)
    fmt = benchmark_format(args.benchmark, args.dataset, root)

    def predict(images):
        return [m[0].numpy() for m in predict_maps(model, images, tuple(cfg.data.input_size), device, args.batch_size)]

    manifest = write_benchmark(predict, root, fmt, args.out, name, run_record(ckpt, config), args.partial,
                               args.batch_size)
    print(f"wrote {manifest['count']} {fmt.name} maps ({manifest['dataset']}, {fmt.bit_depth}-bit {fmt.ext}) to "
          f"{args.out / name}; upload {args.out / manifest['zip']['file']}; manifest {args.out / 'manifest.json'}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.benchmark is None and (args.dataset or args.name or args.partial):
            raise UsageError("--dataset, --name and --partial go with --benchmark")
        if args.benchmark and args.overlays:
            raise UsageError("--overlays does not go with --benchmark (an upload holds the maps only)")
        paths = [] if args.benchmark else expand_inputs(args.inputs)
        if not paths and not args.benchmark:
            raise UsageError(f"no images matched {' '.join(args.inputs)}")
        stems = output_names(paths, args.overlays)
        import torch

        from salnet.predict import load_model

        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
        model, cfg = load_model(args.checkpoint, device=device)
        if args.benchmark:
            return benchmark(args, model, cfg, device)
    except (UsageError, FileNotFoundError, ValueError, RuntimeError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    from PIL.Image import DecompressionBombError

    from salnet.predict import map_png, overlay_png, predict_maps

    args.out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for start in range(0, len(paths), args.batch_size):
        batch, images = [], []
        for p in paths[start:start + args.batch_size]:
            try:
                images.append(read_rgb(p))
                batch.append(p)
            except (OSError, SyntaxError, ValueError, DecompressionBombError) as exn:  # PIL's decode failures
                print(f"warning: skipping {p}: unreadable image ({exn})", file=sys.stderr)
                skipped.append(p)
        maps = predict_maps(model, images, tuple(cfg.data.input_size), device, args.batch_size)
        for p, image, m in zip(batch, images, maps):
            (args.out / f"{stems[p]}.png").write_bytes(map_png(m))
            if args.overlays:
                (args.out / f"{stems[p]}_overlay.png").write_bytes(overlay_png(image, m))
            written += 1
    extra = f", skipped {len(skipped)} unreadable (see the warnings)" if skipped else ""
    what = f"saliency map{'' if written == 1 else 's'}{' and overlays' if args.overlays else ''}"
    print(f"wrote {written} {what} to {args.out}{extra}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
