"""OSIE (Xu et al. 2014): 700 images (800x600), 15 observers, real eye tracking.

Layout: data/stimuli/*.jpg and data/eye/fixations.mat: a (700, 1) struct array with ``img`` (file name)
and ``subjects`` (one struct per observer: ``fix_x``, ``fix_y`` sub-pixel 1-based, ``fix_duration``).
No maps in the release: built from the fixations with sigma 24 px. The release has no split: "train" and
"val" are a seeded 80/20 partition of the images present (560/140 of the full 700; 80/20 of the shared
600: 480/120), "all" is every image. Records whose
image is absent from data/stimuli (partial copies) are skipped and counted in ``missing_images``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salnet.data.base import Reader, ext_of, image_files, require, seeded_split
from salnet.data.maps import blur_fixations, make_points, one_based_to_index, quantize16
from salnet.data.sample import Sample, image_size, read_bytes

SIGMA = 24.0  # pixels at 800x600 (dataset documentation)
FULL, SPLIT_SEED = 700, 700
SPLIT_SIZES = {"train": 560, "val": 140}


def _vector(v) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, np.float64)).ravel()


def load_osie_fixations(path: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """fixations.mat -> {image file name: [(fix_x, fix_y) float64 1-based per observer]}."""
    try:
        import scipy.io  # here: scipy.io costs every process that imports salnet.data 0.3 s of CPU

        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exn:
        raise ValueError(f"{path}: unreadable .mat file ({exn})") from exn
    if "fixations" not in mat:
        raise ValueError(f"{path}: no 'fixations' variable")
    out = {}
    for rec in np.atleast_1d(mat["fixations"]).ravel():
        subjects = np.atleast_1d(rec.subjects).ravel()
        out[str(rec.img)] = [(_vector(s.fix_x), _vector(s.fix_y)) for s in subjects]
    return out


class OSIE(Reader):
    name = "osie"
    splits = ("train", "val", "all")
    layout_help = "Expected data/stimuli/*.jpg and data/eye/fixations.mat."

    def check_layout(self) -> None:
        require(self.root, "data/stimuli", "data/eye/fixations.mat", help=self.layout_help)
        self._fix: dict[str, list[tuple[np.ndarray, np.ndarray]]] | None = None
        self.missing_images = 0

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fix"] = None
        return state

    def fixations(self) -> dict:
        if self._fix is None:
            self._fix = load_osie_fixations(self.root / "data" / "eye" / "fixations.mat")
        return self._fix

    def _index(self, split: str) -> dict[str, Path]:
        files = {p.name: p for p in image_files(self.root / "data" / "stimuli")}
        fix = self.fixations()
        self.missing_images = sum(1 for name in fix if name not in files)
        extra = sorted(set(files) - set(fix))
        if extra:
            raise ValueError(f"{self.name}: images without fixation records in fixations.mat: {extra[:5]}")
        present = {Path(n).stem: files[n] for n in fix if n in files}
        return {i: present[i] for i in seeded_split(list(present), split, SPLIT_SIZES, FULL, SPLIT_SEED)}

    def size_hint(self, split: str, id: str) -> int:
        return self.index(split)[id].stat().st_size + 250_000

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        h, w = image_size(data, str(path))
        rows, dropped = [], 0
        for obs, (fx, fy) in enumerate(self.fixations()[path.name]):
            pts, d = make_points(one_based_to_index(fy), one_based_to_index(fx), obs, (h, w))
            rows.append(pts)
            dropped += d
        fix = np.concatenate(rows) if rows else np.zeros((0, 3), np.int32)
        smap = quantize16(blur_fixations(fix, (h, w), SIGMA))
        meta = {"map_source": "fixations", "sigma": SIGMA, "dropped_fixations": dropped, "observers": len(rows)}
        return Sample(self.name, split, id, data, ext_of(path), h, w, smap, fix, meta)
