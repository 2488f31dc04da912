"""Saliency maps laid out as the public benchmarks take them: one map per stimulus, a zip to upload, a manifest.

    fmt = benchmark_format("mit300")
    manifest = write_benchmark(predict, "MIT300/BenchmarkIMAGES", fmt, "out/mit300", name="salgan", run=...)

What each benchmark asks for (sources in docs/interop.md):

- ``mit300`` (MIT Saliency Benchmark, saliency.mit.edu "Submit MIT300"): .jpg maps of the same size and name as
  the 300 images, sent as a zip with the model's name as its folder: ``<name>/i1.jpg …``. 8-bit grayscale JPEG.
- ``cat2000`` (saliency.mit.edu "Submit CAT2000"): .jpg maps of the same size and name as the 2000 test images,
  keeping the release's folders (20 categories × 100): ``<name>/Action/001.jpg …``.
- ``tuebingen`` (MIT/Tübingen Saliency Benchmark, matthias-k/saliency-benchmarking): an archive whose files match
  each stimulus by the end of its path (``…/i1.png``, ``…/Action/001.png``); png, jpg, tiff, npy or mat are read
  and maps must have the image's size (it no longer rescales). Written here as 16-bit grayscale PNG: lossless,
  65,536 levels instead of JPEG's 256, so the near-zero tail the KL divergence and IG weigh survives.

A stimulus folder is checked before anything is predicted (the layout, the benchmark's count unless ``partial``),
and every written map is decoded again and compared with its stimulus's size.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from salnet.atomic import atomic_write
from salnet.data.base import image_files

CAT2000_CATEGORIES = 20
CAT2000_PER_CATEGORY = 100
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same maps give the same zip bytes


@dataclass(frozen=True)
class Format:
    """One benchmark's file format: map ``ext`` and ``bit_depth`` (8 or 16, grayscale), whether stimuli sit in
    category folders, and the stimulus count of the full test set."""

    name: str
    ext: str
    bit_depth: int
    categories: bool
    expected: int


FORMATS = {
    "mit300": Format("mit300", "jpg", 8, False, 300),
    "cat2000": Format("cat2000", "jpg", 8, True, CAT2000_CATEGORIES * CAT2000_PER_CATEGORY),
}
TUEBINGEN = {"mit300": Format("tuebingen", "png", 16, False, 300),
             "cat2000": Format("tuebingen", "png", 16, True, CAT2000_CATEGORIES * CAT2000_PER_CATEGORY)}
BENCHMARKS = ("mit300", "cat2000", "tuebingen")


@dataclass(frozen=True)
class Stimulus:
    """A stimulus image: ``rel`` its path below the stimulus root as the benchmark names it ("i1.jpg",
    "Action/001.jpg"), ``path`` the file."""

    rel: PurePosixPath
    path: Path

    def map_name(self, fmt: Format) -> PurePosixPath:
        """The map's path inside the model's folder: same name and folders, the format's extension."""
        return self.rel.with_suffix(f".{fmt.ext}")


def benchmark_format(benchmark: str, dataset: str | None = None, stimuli_root: Path | None = None) -> Format:
    """The :class:`Format` of ``benchmark``. For ``tuebingen`` the dataset (mit300 | cat2000) is ``dataset`` or,
    when None, read from the stimulus folder's layout (category folders: cat2000)."""
    if benchmark in FORMATS:
        if dataset not in (None, benchmark):
            raise ValueError(f"--dataset {dataset} does not go with --benchmark {benchmark} (only tuebingen takes one)")
        return FORMATS[benchmark]
    if benchmark != "tuebingen":
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if dataset is None:
        dataset = "cat2000" if stimuli_root is not None and _category_dirs(_stimulus_root(stimuli_root, True)) \
            else "mit300"
    if dataset not in TUEBINGEN:
        raise ValueError(f"unknown dataset {dataset!r} for tuebingen; choose one of {', '.join(TUEBINGEN)}")
    return TUEBINGEN[dataset]


def _category_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and image_files(p)) \
        if root.is_dir() else []


def _stimulus_root(root: Path, categories: bool) -> Path:
    """The folder that holds the stimuli: ``root`` or the release's sub-folder (MIT300 BenchmarkIMAGES, CAT2000
    testSet/Stimuli or Stimuli) when ``root`` is the release's top folder."""
    subs = ("testSet/Stimuli", "Stimuli") if categories else ("BenchmarkIMAGES",)
    for sub in subs:
        if (root / sub).is_dir():
            return root / sub
    return root


def find_stimuli(root: str | Path, fmt: Format) -> list[Stimulus]:
    """The stimuli under ``root`` in the format's layout, sorted by name; FileNotFoundError / ValueError naming
    the folder and the layout expected when it holds none or another layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such stimulus folder")
    base = _stimulus_root(root, fmt.categories)
    cats = _category_dirs(base)
    flat = image_files(base)
    if fmt.categories:
        if not cats:
            raise ValueError(f"{base}: no category folders with images; {fmt.name} stimuli sit in <category>/ folders "
                             "(CAT2000: testSet/Stimuli/Action/001.jpg …)" + (" — these look like a flat folder, "
                                                                             "use --benchmark mit300" if flat else ""))
        return [Stimulus(PurePosixPath(c.name, p.name), p) for c in cats for p in image_files(c)]
    if not flat:
        hint = " (it has category folders: use --benchmark cat2000)" if cats else ""
        raise ValueError(f"{base}: no images (jpg, jpeg, png) directly in this folder{hint}")
    return [Stimulus(PurePosixPath(p.name), p) for p in flat]


def check_complete(stimuli: Sequence[Stimulus], fmt: Format, root: Path) -> None:
    """ValueError when ``stimuli`` is not the benchmark's full test set (count; CAT2000 also 20 folders of 100),
    or when two stimuli would write the same map name."""
    seen: dict[PurePosixPath, Stimulus] = {}
    for s in stimuli:
        name = s.map_name(fmt)
        if name in seen:
            raise ValueError(f"{seen[name].path} and {s.path} would both write {name}; a benchmark names maps after "
                             "the stimuli, rename or remove one")
        seen[name] = s
    problems = []
    if len(stimuli) != fmt.expected:
        problems.append(f"{len(stimuli)} stimuli, the {fmt.name} test set has {fmt.expected}")
    if fmt.categories:
        counts: dict[str, int] = {}
        for s in stimuli:
            counts[s.rel.parts[0]] = counts.get(s.rel.parts[0], 0) + 1
        if len(counts) != CAT2000_CATEGORIES:
            problems.append(f"{len(counts)} category folders, CAT2000 has {CAT2000_CATEGORIES}")
        short = {c: n for c, n in counts.items() if n != CAT2000_PER_CATEGORY}
        if short:
            problems.append(f"folders without {CAT2000_PER_CATEGORY} images: {dict(sorted(short.items())[:5])}")
    if problems:
        raise ValueError(f"{root}: {'; '.join(problems)} (missing stimuli?); pass --partial to write maps for a "
                         "subset anyway (not a valid upload)")


def encode_map(m: np.ndarray, fmt: Format) -> bytes:
    """A map (H, W) float in [0, 1] as the format's file: 8-bit grayscale JPEG (quality 95) or 16-bit grayscale
    PNG, values rounded to the nearest level."""
    m = np.clip(np.asarray(m, dtype=np.float64), 0.0, 1.0)
    buf = io.BytesIO()
    if fmt.bit_depth == 16:
        Image.fromarray(np.rint(m * 65535.0).astype(np.uint16)).save(buf, format="PNG")
    else:
        Image.fromarray(np.rint(m * 255.0).astype(np.uint8), mode="L").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def decode_map(data: bytes, where: str) -> np.ndarray:
    """The pixel array of a map file; ValueError naming ``where`` when it is not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im)
    except Exception as exn:  # PIL raises several types for garbage
        raise ValueError(f"{where}: not a readable image ({exn})") from exn


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header."""
    with Image.open(path) as im:
        return im.height, im.width


def check_maps(folder: Path, stimuli: Sequence[Stimulus], fmt: Format) -> None:
    """ValueError unless ``folder`` holds exactly one map per stimulus, named as the format says, grayscale at
    the format's bit depth and of its stimulus's size (the error names the file and both sizes)."""
    want = {s.map_name(fmt): s for s in stimuli}
    have = {PurePosixPath(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file()}
    missing, extra = sorted(set(want) - have), sorted(have - set(want))
    if missing:
        raise ValueError(f"{folder}: no map for {len(missing)} stimuli, e.g. {[str(m) for m in missing[:3]]}")
    if extra:
        raise ValueError(f"{folder}: {len(extra)} files that belong to no stimulus, e.g. {[str(e) for e in extra[:3]]}")
    dtype = np.uint16 if fmt.bit_depth == 16 else np.uint8
    for name, s in want.items():
        path = folder / name
        arr = decode_map(path.read_bytes(), str(path))
        size = image_size(s.path)
        if arr.ndim != 2 or arr.dtype != dtype:
            raise ValueError(f"{path}: a {arr.dtype} array of shape {arr.shape}; {fmt.name} takes {fmt.bit_depth}-bit "
                             "grayscale maps")
        if arr.shape != size:
            raise ValueError(f"{path}: map is {arr.shape[1]}×{arr.shape[0]} (W×H) but its stimulus {s.path} is "
                             f"{size[1]}×{size[0]}; maps must have the stimulus's size")


def write_zip(folder: Path, zip_path: Path) -> None:
    """Zip ``folder`` (its name as the top folder, files sorted, fixed timestamps) atomically."""
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            info = zipfile.ZipInfo(f"{folder.name}/{p.relative_to(folder).as_posix()}", ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, p.read_bytes())
    tmp.replace(zip_path)


def write_benchmark(predict: Callable[[list[np.ndarray]], list[np.ndarray]], root: str | Path, fmt: Format,
                    out: str | Path, name: str, run: dict | None = None, partial: bool = False,
                    batch: int = 8) -> dict:
    """Predict a map for every stimulus under ``root`` and lay them out for ``fmt``'s benchmark.

    predict: uint8 RGB images (H, W, 3) → maps (H, W) float in [0, 1] at each image's size (e.g.
    :func:`salnet.inference.predict.predict_maps` bound to a model). Writes ``out/<name>/<stimulus name>.<ext>``
    (replacing a previous folder of that name only once every new map is written and checked), ``out/<name>.zip`` and
    ``out/manifest.json``; returns the manifest (benchmark, dataset, format, the run ``run`` describes, the zip's
    name, size and sha256, one row per map: stimulus, map name, size, sha256). ``partial``: accept fewer stimuli
    than the benchmark's test set (a check of the pipeline, not an upload).
    """
    import shutil

    from salnet.data.sample import decode_rgb

    root, out = Path(root), Path(out)
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"model name {name!r}: it names the zip's folder; use letters, digits, '-', '_' and '.'")
    stimuli = find_stimuli(root, fmt)
    if not partial:
        check_complete(stimuli, fmt, root)
    folder, tmp = out / name, out / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for start in range(0, len(stimuli), batch):
        chunk = stimuli[start:start + batch]
        images = [_read_stimulus(s.path, decode_rgb) for s in chunk]
        for s, image, m in zip(chunk, images, predict(images)):
            m = np.asarray(m, dtype=np.float64)
            h, w = m.shape[-2:]
            m = m.reshape(h, w)
            if m.shape != image.shape[:2]:
                raise ValueError(f"{s.path}: the model's map is {m.shape} (H, W), the stimulus {image.shape[:2]}")
            data = encode_map(m, fmt)
            target = tmp / s.map_name(fmt)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            rows.append({"stimulus": s.rel.as_posix(), "map": s.map_name(fmt).as_posix(), "height": m.shape[0],
                         "width": m.shape[1], "sha256": hashlib.sha256(data).hexdigest()})
    check_maps(tmp, stimuli, fmt)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    zip_path = out / f"{name}.zip"
    write_zip(folder, zip_path)
    manifest = {
        "benchmark": fmt.name, "dataset": "cat2000" if fmt.categories else "mit300",
        "format": {"ext": fmt.ext, "bit_depth": fmt.bit_depth, "grayscale": True,
                   "layout": f"{name}/<category>/<stimulus>" if fmt.categories else f"{name}/<stimulus>"},
        "model_name": name, "partial": partial, "count": len(rows), "expected": fmt.expected,
        "stimuli": str(root.resolve()), "run": run or {},
        "zip": {"file": zip_path.name, "bytes": zip_path.stat().st_size,
                "sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "maps": rows,
    }
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest


def _read_stimulus(path: Path, decode) -> np.ndarray:
    try:
        return decode(path.read_bytes())
    except Exception as exn:  # PIL raises several types for truncated or foreign files
        raise ValueError(f"{path}: unreadable stimulus image ({exn}); a benchmark needs a map for every stimulus, "
                         "replace the file with the release's") from exn


def run_record(checkpoint: Path, config: Path) -> dict:
    """What the manifest says about the run that made the maps: checkpoint path and sha256, config path, run id,
    run name, and the salnet/torch versions."""
    import torch

    import salnet
    from salnet.config import config_hash, load_config

    cfg = load_config(config)
    return {"checkpoint": str(Path(checkpoint).resolve()),
            "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
            "config": str(Path(config).resolve()), "run_id": config_hash(cfg), "name": cfg.name,
            "input_size": list(cfg.data.input_size), "salnet": salnet.__version__, "torch": torch.__version__}
