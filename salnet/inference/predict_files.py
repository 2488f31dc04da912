"""What jobs/predict.py does with a trained run: maps for image files, folders and globs, or a benchmark upload.

    n_written, skipped = predict_files(model, cfg, expand_inputs(["photos/"]), Path("maps"), overlays=True)
    print(predict_benchmark(model, cfg, checkpoint, Path("MIT300"), "mit300", Path("upload")))

Bad input raises :class:`UsageError` (a missing file, two inputs writing the same name, a benchmark folder that is
not the test set); an unreadable image is skipped with a warning and counted.
"""

from __future__ import annotations

import glob
from pathlib import Path

from salnet.logs import get_logger

log = get_logger(__name__)
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
                log.warning(f"{arg}: folder holds no images ({' '.join(IMAGE_SUFFIXES)})")
        elif p.is_file():
            matched = [p]
        elif GLOB_CHARS & set(arg):
            matched = sorted(Path(q) for q in glob.glob(arg, recursive=True) if Path(q).is_file())
            if not matched:
                log.warning(f"{arg}: pattern matched no files")
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


def predict_files(model, cfg, paths: list[Path], out: Path, *, overlays: bool = False, batch_size: int = 8,
                  device=None) -> tuple[int, list[Path]]:
    """Write ``out/<stem>.png`` (8-bit map at the image's size, released post-processing) and with ``overlays``
    ``out/<stem>_overlay.png`` for every path. Returns (maps written, unreadable paths skipped)."""
    from PIL.Image import DecompressionBombError

    from salnet.inference.predict import map_png, overlay_png, predict_maps

    stems = output_names(paths, overlays)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for start in range(0, len(paths), batch_size):
        batch, images = [], []
        for p in paths[start:start + batch_size]:
            try:
                images.append(read_rgb(p))
                batch.append(p)
            except (OSError, SyntaxError, ValueError, DecompressionBombError) as exn:  # PIL's decode failures
                log.warning(f"skipping {p}: unreadable image ({exn})")
                skipped.append(p)
        maps = predict_maps(model, images, tuple(cfg.data.input_size), device, batch_size)
        for p, image, m in zip(batch, images, maps):
            (out / f"{stems[p]}.png").write_bytes(map_png(m))
            if overlays:
                (out / f"{stems[p]}_overlay.png").write_bytes(overlay_png(image, m))
            written += 1
    return written, skipped


def predict_benchmark(model, cfg, checkpoint: Path, stimuli: Path, benchmark: str, out: Path, *,
                      dataset: str | None = None, name: str | None = None, partial: bool = False,
                      batch_size: int = 8, device=None) -> str:
    """One stimulus folder → ``out/NAME/`` (a map per stimulus as ``benchmark`` asks), ``out/NAME.zip`` and
    ``out/manifest.json`` (:func:`salnet.inference.benchmark_formats.write_benchmark`); returns a line saying what was
    written. NAME: ``name``, else the run's folder name (or the checkpoint file's stem)."""
    from salnet.inference.benchmark_formats import benchmark_format, run_record, write_benchmark
    from salnet.inference.predict import predict_maps, resolve_checkpoint

    ckpt, config = resolve_checkpoint(checkpoint)
    name = name or (checkpoint.stem if checkpoint.is_file() else checkpoint.resolve().name)
    fmt = benchmark_format(benchmark, dataset, stimuli)

    def predict(images):
        return [m[0].numpy() for m in predict_maps(model, images, tuple(cfg.data.input_size), device, batch_size)]

    manifest = write_benchmark(predict, stimuli, fmt, out, name, run_record(ckpt, config), partial, batch_size)
    return (f"wrote {manifest['count']} {fmt.name} maps ({manifest['dataset']}, {fmt.bit_depth}-bit {fmt.ext}) to "
            f"{out / name}; upload {out / manifest['zip']['file']}; manifest {out / 'manifest.json'}")
