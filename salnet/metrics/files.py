"""Reading saved maps and fixations for scoring, with errors that name the file and the problem.

Formats (matched by file stem):
- maps (predictions, ground-truth maps, baselines): ``.npy`` (2-D, real), ``.png``/``.jpg``/``.jpeg``
  (grey or RGB, converted to grey; 8- or 16-bit); returned as float64 (H, W), images scaled to [0, 1].
- fixations: a binary/count map (``.npy`` 2-D, ``.png``/``.jpg``, ``.mat`` with variable ``fixations``,
  the MIT benchmark's FIXATIONLOCS) or ``.npy`` integer (N, 2) points (y, x), 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAP_EXTS = (".npy", ".png", ".jpg", ".jpeg")
FIX_EXTS = (".npy", ".png", ".jpg", ".jpeg", ".mat")
JPEG_FIXATION_THRESHOLD = 0.5  # binary fixation images saved as JPEG carry compression noise around 0 and 1


class ScoreInputError(ValueError):
    """Bad scoring input; the message names the file and what to do."""


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(im, dtype=np.float64) / 65535.0
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exn:
        raise ScoreInputError(f"{path}: unreadable image ({exn}); re-export it as PNG or .npy") from exn
    return arr


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exn:
        raise ScoreInputError(f"{path}: unreadable .npy file ({exn})") from exn


def read_map(path: Path) -> np.ndarray:
    """A saliency/ground-truth/baseline map as float64 (H, W); rejects NaN/inf and non-2-D arrays."""
    path = Path(path)
    if path.suffix.lower() not in MAP_EXTS:
        raise ScoreInputError(f"{path}: unsupported map format; use one of {', '.join(MAP_EXTS)}")
    arr = _read_npy(path) if path.suffix.lower() == ".npy" else _read_image(path)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ScoreInputError(f"{path}: a map must be a 2-D array (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ScoreInputError(f"{path}: a map must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise ScoreInputError(f"{path}: {n} NaN/inf values; fix or re-export the map before scoring")
    return arr


@dataclass
class Fixations:
    """Fixations of one image: ``counts`` (H, W) float64 when the file gives a map, or ``points``
    (N, 2) int64 (y, x) needing a size from elsewhere (its ground-truth map)."""

    path: Path
    counts: np.ndarray | None = None
    points: np.ndarray | None = None

    def to_counts(self, size: tuple[int, int] | None) -> np.ndarray:
        if self.counts is not None:
            return self.counts
        if size is None:
            raise ScoreInputError(f"{self.path}: fixation points need the image size; give --maps with a map "
                                  "of the same stem")
        if self.points is None:
            raise ScoreInputError(f"{self.path}: holds neither a fixation map nor fixation points")
        H, W = size
        y, x = self.points[:, 0], self.points[:, 1]
        outside = (y < 0) | (y >= H) | (x < 0) | (x >= W)
        if outside.any():
            raise ScoreInputError(f"{self.path}: {int(outside.sum())} fixation(s) outside the {H}x{W} image, "
                                  f"e.g. (y, x) = {tuple(self.points[outside][0])}; points are 0-based (y, x)")
        counts = np.zeros((H, W), dtype=np.float64)
        np.add.at(counts, (y, x), 1.0)
        return counts


def read_fixations(path: Path) -> Fixations:
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FIX_EXTS:
        raise ScoreInputError(f"{path}: unsupported fixation format; use one of {', '.join(FIX_EXTS)}")
    if ext == ".mat":
        import scipy.io

        try:
            mat = scipy.io.loadmat(path)
        except Exception as exn:  # scipy raises several types for corrupt files
            raise ScoreInputError(f"{path}: unreadable .mat file ({exn})") from exn
        if "fixations" not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise ScoreInputError(f"{path}: no variable 'fixations' (found {found}); save the binary map as "
                                  "'fixations'")
        arr = np.asarray(mat["fixations"])
    elif ext == ".npy":
        arr = _read_npy(path)
        if arr.ndim == 2 and arr.shape[1] == 2 and np.issubdtype(arr.dtype, np.integer):
            return Fixations(path, points=arr.astype(np.int64))
    else:
        arr = _read_image(path) > JPEG_FIXATION_THRESHOLD
    if arr.ndim != 2:
        raise ScoreInputError(f"{path}: fixations must be a 2-D map or (N, 2) integer points, got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ScoreInputError(f"{path}: a fixation map must hold non-negative counts")
    return Fixations(path, counts=arr)


def index_dir(folder: Path | None, exts: tuple[str, ...], what: str) -> dict[str, Path]:
    """stem → file for the supported files of ``folder``; a missing folder or two files with one stem
    are errors."""
    if folder is None:
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise ScoreInputError(f"{what} folder {folder} does not exist or is not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            if p.stem in out:
                raise ScoreInputError(f"{what}: two files with stem {p.stem!r} ({out[p.stem].name}, {p.name}); "
                                      "keep one")
            out[p.stem] = p
    if not out:
        raise ScoreInputError(f"{what} folder {folder} holds no {'/'.join(exts)} files")
    return out
