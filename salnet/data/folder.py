"""A lab's own eye-tracking folder: images with maps and/or fixations matched by file stem.

Layout under root::

    images/      *.jpg | *.jpeg | *.png                       (required)
    maps/        <stem>.png | .jpg | .jpeg | .npy             continuous maps, the image's size
    fixations/   <stem>.npy (N, 2) int (y, x) 0-based points, or (N, 3) (y, x, observer);
                 <stem>.mat (MIT FIXATIONLOCS: one binary map variable of the image's size);
                 <stem>.png | .jpg | .npy binary maps of the image's size (JPEG thresholded at 128)
    splits.json  {"train": [stems], "val": [...], "test": [...]}   or train.txt / val.txt / test.txt
                 (one stem or file name a line); without them a seeded partition (val_fraction, test_fraction)

At least one of maps/ and fixations/ is needed. An image without a map gets one blurred from its fixations
with the stated Gaussian ``sigma`` in pixels (required when some image has no map). An image missing a
partner that the folder holds (no fixations file while fixations/ exists, or neither a map nor fixations) is
skipped and counted in ``skipped``; partner files without an image are counted in ``orphans``; both are
named once in a warning. Unreadable files and size mismatches are refused with an error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salnet.data.base import Reader, ext_of, image_files
from salnet.data.maps import blur_fixations, coords_to_index, make_points, points_from_binary, quantize16
from salnet.data.sample import Sample, decode_gray, image_size, read_bytes
from salnet.logs import get_logger

log = get_logger(__name__)

MAP_EXTS = (".png", ".jpg", ".jpeg", ".npy")
FIX_EXTS = (".npy", ".mat", ".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")


def _stems(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """stem -> file of the supported files in ``folder``; ValueError naming two files with one stem."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts:
            if p.stem in out:
                raise ValueError(f"folder: two files with stem {p.stem!r} in {folder} ({out[p.stem].name}, "
                                 f"{p.name}); keep one")
            out[p.stem] = p
    return out


def _shown(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" … (+{len(names) - 5})" if len(names) > 5 else "")


def read_map_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A continuous map file -> uint8/uint16 (H, W) as stored (images) or quantised to uint16 (.npy, scaled by
    its maximum). ValueError naming the file when unreadable, not 2-D, negative/non-finite or not ``size``."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exn:
            raise ValueError(f"{path}: unreadable .npy file ({exn})") from exn
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{path}: a map must be a 2-D numeric array (H, W), got {arr.dtype} {arr.shape}")
        if arr.dtype not in (np.uint8, np.uint16):
            a = arr.astype(np.float64)
            if not np.isfinite(a).all() or (a < 0).any():
                raise ValueError(f"{path}: a map must hold finite non-negative values")
            top = a.max()
            arr = quantize16(a / top if top > 0 else a)
    else:
        arr = decode_gray(read_bytes(path), str(path))
    if arr.shape != tuple(size):
        raise ValueError(f"{path}: map is {arr.shape[0]}x{arr.shape[1]} (h x w) but its image is "
                         f"{size[0]}x{size[1]}; maps must have their image's size")
    return np.ascontiguousarray(arr)


def read_fixation_file(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """A fixations file -> (int32 (N, 3) (y, x, observer) inside the image, points dropped outside it).

    .npy: (N, 2) (y, x) or (N, 3) (y, x, observer) points, 0-based (float points rounded to their pixel), or a
    binary map of the image's size; .mat: the MIT benchmark's binary map; .png/.jpg: a binary map (a JPEG's
    compression ringing below 128 is not a fixation). ValueError naming the file otherwise."""
    ext = path.suffix.lower()
    if ext == ".mat":
        from salnet.data.mit1003 import load_binary_mat

        return points_from_binary(load_binary_mat(path, size), 1), 0
    if ext in (".png", ".jpg", ".jpeg"):
        binary = decode_gray(read_bytes(path), str(path))
        if binary.shape != tuple(size):
            raise ValueError(f"{path}: fixation map is {binary.shape[0]}x{binary.shape[1]} but its image is "
                             f"{size[0]}x{size[1]}")
        return points_from_binary(binary, 128 if ext != ".png" else 1), 0
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exn:
        raise ValueError(f"{path}: unreadable .npy file ({exn})") from exn
    if arr.shape == tuple(size) and arr.shape[1] not in (2, 3):
        return points_from_binary(arr, 1), 0
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: fixations must be (N, 2) (y, x) or (N, 3) (y, x, observer) points, or a binary "
                         f"map of the image's size {size[0]}x{size[1]}; got {arr.dtype} {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: fixation points hold NaN/inf")
    y, x = coords_to_index(arr[:, 0], 0), coords_to_index(arr[:, 1], 0)
    observer = arr[:, 2].astype(np.int64) if arr.shape[1] == 3 else -1
    return make_points(y, x, observer, size)


class Folder(Reader):
    name = "folder"
    splits = ("train", "val", "test", "all")
    layout_help = ("Expected images/ with maps/ and/or fixations/ (files matched by stem); see "
                   "docs/own-data.md.")

    def __init__(self, root: str | Path, sigma: float | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.0, seed: int = 0):
        if sigma is not None and not sigma > 0:
            raise ValueError(f"folder: --sigma must be a positive number of pixels, got {sigma}")
        for what, f in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
            if not 0 <= f < 1:
                raise ValueError(f"folder: {what} must be in [0, 1), got {f}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(f"folder: --val-fraction + --test-fraction = {val_fraction + test_fraction} leaves no "
                             "training images; lower them")
        self.sigma, self.val_fraction, self.test_fraction, self.seed = sigma, val_fraction, test_fraction, seed
        super().__init__(root)

    def options(self) -> dict:
        return {"sigma": self.sigma, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                "seed": self.seed}

    def check_layout(self) -> None:
        r = self.root
        if not (r / "images").is_dir():
            raise FileNotFoundError(f"folder: {r} has no images/ folder. {self.layout_help}")
        self.has_maps, self.has_fix = (r / "maps").is_dir(), (r / "fixations").is_dir()
        if not (self.has_maps or self.has_fix):
            raise FileNotFoundError(f"folder: {r} has neither maps/ nor fixations/. {self.layout_help}")
        self._table: dict[str, tuple[Path, Path | None, Path | None]] | None = None
        self._split_of: dict[str, str] | None = None
        self.skipped: dict[str, list[str]] = {}
        self.orphans: list[str] = []

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_indexes"] = {}  # rebuilt by the worker; the table is small and picklable
        return state

    def table(self) -> dict[str, tuple[Path, Path | None, Path | None]]:
        """{stem: (image, map file or None, fixations file or None)} of the usable images (cached); logs once
        what was skipped and why."""
        if self._table is not None:
            return self._table
        images = {p.stem: p for p in image_files(self.root / "images")}
        if len(images) != len(image_files(self.root / "images")):
            raise ValueError(f"folder: two images in {self.root / 'images'} share a stem; file names must differ "
                             "by more than the extension")
        if not images:
            raise FileNotFoundError(f"folder: {self.root / 'images'} holds no .jpg/.jpeg/.png images")
        maps = _stems(self.root / "maps", MAP_EXTS) if self.has_maps else {}
        fix = _stems(self.root / "fixations", FIX_EXTS) if self.has_fix else {}
        self.orphans = sorted((set(maps) | set(fix)) - set(images))
        table: dict[str, tuple[Path, Path | None, Path | None]] = {}
        skipped: dict[str, list[str]] = {"no fixations file": [], "no map and no fixations": [],
                                         "no map (give --sigma)": []}
        for stem, img in images.items():
            m, f = maps.get(stem), fix.get(stem)
            if self.has_fix and f is None:
                skipped["no fixations file"].append(stem)
            elif m is None and f is None:
                skipped["no map and no fixations"].append(stem)
            elif m is None and self.sigma is None:
                skipped["no map (give --sigma)"].append(stem)
            else:
                table[stem] = (img, m, f)
        self.skipped = {k: v for k, v in skipped.items() if v}
        if not maps and self.sigma is None:
            raise ValueError(f"folder: {self.root} has fixations but no maps: give --sigma PIXELS, the Gaussian σ of "
                             "the maps made from them (about one degree of visual angle; SALICON uses 19, OSIE 24)")
        for why, stems in self.skipped.items():
            log.warning(f"folder: skipped {len(stems)} image(s) with {why}: {_shown(stems)}")
        if self.orphans:
            log.warning(f"folder: {len(self.orphans)} map/fixation file(s) without an image in images/: "
                        f"{_shown(self.orphans)}")
        if not table:
            raise ValueError(f"folder: none of the {len(images)} images in {self.root / 'images'} has its partner "
                             "files (matched by stem)")
        self._table = table
        return table

    def split_of(self) -> dict[str, str]:
        """{stem: split} from splits.json, the .txt lists, or the seeded partition (cached)."""
        if self._split_of is not None:
            return self._split_of
        stems = sorted(self.table())
        lists = self._split_lists()
        if lists is None:
            order = np.random.default_rng(self.seed).permutation(len(stems))
            n_val, n_test = round(len(stems) * self.val_fraction), round(len(stems) * self.test_fraction)
            names = ["val"] * n_val + ["test"] * n_test + ["train"] * (len(stems) - n_val - n_test)
            self._split_of = {stems[j]: names[k] for k, j in enumerate(order)}
            return self._split_of
        images = {p.stem for p in image_files(self.root / "images")}
        out: dict[str, str] = {}
        for split, names in lists.items():
            unknown = [n for n in names if n not in images]
            if unknown:
                raise ValueError(f"folder: the {split} list names {len(unknown)} image(s) not in images/: "
                                 f"{_shown(unknown)}")
            for n in names:
                if n in out and out[n] != split:
                    raise ValueError(f"folder: image {n!r} is in both the {out[n]} and the {split} lists")
                out[n] = split
        unlisted = [s for s in stems if s not in out]
        if unlisted:
            log.warning(f"folder: {len(unlisted)} image(s) in no split list, left out: {_shown(unlisted)}")
        self._split_of = {s: out[s] for s in stems if s in out}
        return self._split_of

    def _split_lists(self) -> dict[str, list[str]] | None:
        js = self.root / "splits.json"
        if js.is_file():
            try:
                data = json.loads(js.read_text())
            except ValueError as exn:
                raise ValueError(f"{js}: not valid JSON ({exn})") from exn
            if not isinstance(data, dict) or set(data) - set(SPLITS) or \
                    not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()):
                raise ValueError(f'{js}: expected {{"train": [stems], "val": [...], "test": [...]}} (keys among '
                                 f"{', '.join(SPLITS)})")
            return {k: [Path(s).stem for s in v] for k, v in data.items()}
        txt = {s: self.root / f"{s}.txt" for s in SPLITS if (self.root / f"{s}.txt").is_file()}
        if not txt:
            return None
        return {s: [Path(ln.strip()).stem for ln in p.read_text().splitlines() if ln.strip()] for s, p in txt.items()}

    def has_split(self, split: str) -> bool:
        return split == "all" or split in self.split_of().values()

    def _index(self, split: str) -> dict[str, Path]:
        table = self.table()
        return {s: table[s][0] for s, sp in self.split_of().items() if split in ("all", sp)}

    def load(self, split: str, id: str) -> Sample:
        self.index(split)[id]  # KeyError for an id outside the split
        img, map_path, fix_path = self.table()[id]
        data = read_bytes(img)
        h, w = image_size(data, str(img))
        fix, dropped, meta = np.zeros((0, 3), np.int32), 0, dict[str, object]()
        if fix_path is not None:
            fix, dropped = read_fixation_file(fix_path, (h, w))
            meta.update(fixations_source=fix_path.name, dropped_fixations=dropped)
        if map_path is not None:
            smap = read_map_file(map_path, (h, w))
            meta["map_source"] = "release"
        else:  # table() keeps an image without a map only with fixations and a sigma
            smap = quantize16(blur_fixations(fix, (h, w), float(self.sigma or 0)))
            meta.update(map_source="fixations", sigma=self.sigma)
        return Sample(self.name, split, id, data, ext_of(img), h, w, smap, fix, meta)
