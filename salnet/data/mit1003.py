"""MIT1003 (Judd et al. 2009) and the MIT benchmark folder layouts.

Layouts recognised under root:
- release: ALLSTIMULI/*.jpeg + ALLFIXATIONMAPS/<name>_fixMap.jpg (continuous) and <name>_fixPts.jpg
  (binary, JPEG-saved: thresholded at 128 so compression ringing is not taken for fixations);
- cvzoya sample: stimuli/*.jpg + fixation_maps/*.jpg (same names; maps only, no points);
- benchmark: ALLSTIMULI/ + FIXATIONMAPS/ + FIXATIONLOCS/*.mat (binary map variable, e.g. ``fixations``).
Splits: the loss study's 500 train / 200 val / rest test, drawn by a fixed seeded permutation of the
sorted ids (scaled proportionally when the root holds fewer than 1003 images), and "all".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salnet.data.base import Reader, ext_of, image_files, seeded_split
from salnet.data.maps import points_from_binary
from salnet.data.sample import Sample, decode_gray, image_size, read_bytes

SPLIT_SEED = 1003
FULL, N_TRAIN, N_VAL = 1003, 500, 200


def load_binary_mat(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Binary fixation map (H, W) stored in a .mat (MIT benchmark / CAT2000 FIXATIONLOCS).

    Takes the single 2-D variable of the image's size (``fixations``, ``fixLocs``, ...);
    ValueError naming the variables found otherwise.
    """
    try:
        import scipy.io  # here: scipy.io costs every process that imports salnet.data 0.3 s of CPU

        mat = scipy.io.loadmat(path)
    except Exception as exn:
        raise ValueError(f"{path}: unreadable .mat file ({exn})") from exn
    found = {k: v for k, v in mat.items() if not k.startswith("__")}
    cands = [v for v in found.values() if isinstance(v, np.ndarray) and v.shape == tuple(size)]
    if len(cands) != 1:
        shapes = {k: getattr(v, "shape", None) for k, v in found.items()}
        raise ValueError(f"{path}: expected one binary map of size {size}, found variables {shapes}")
    return cands[0]


class MIT1003(Reader):
    name = "mit1003"
    splits = ("train", "val", "test", "all")
    layout_help = (
        "Expected ALLSTIMULI/ with ALLFIXATIONMAPS/ (*_fixMap.jpg, *_fixPts.jpg), or ALLSTIMULI/ with "
        "FIXATIONMAPS/ and FIXATIONLOCS/, or stimuli/ with fixation_maps/."
    )

    def check_layout(self) -> None:
        r = self.root
        if (r / "ALLSTIMULI").is_dir() and (r / "ALLFIXATIONMAPS").is_dir():
            self.layout = "release"
        elif (r / "ALLSTIMULI").is_dir() and (r / "FIXATIONMAPS").is_dir():
            self.layout = "benchmark"
        elif (r / "stimuli").is_dir() and (r / "fixation_maps").is_dir():
            self.layout = "maps_only"
        else:
            present = sorted(p.name for p in r.iterdir() if p.is_dir())
            raise FileNotFoundError(f"{self.name}: {r} has folders {present}. {self.layout_help}")

    def _stimuli(self) -> Path:
        return self.root / ("stimuli" if self.layout == "maps_only" else "ALLSTIMULI")

    def _index(self, split: str) -> dict[str, Path]:
        files = {p.stem: p for p in image_files(self._stimuli())}
        sizes = {"train": N_TRAIN, "val": N_VAL, "test": FULL - N_TRAIN - N_VAL}
        return {i: files[i] for i in seeded_split(list(files), split, sizes, FULL, SPLIT_SEED)}

    def size_hint(self, split: str, id: str) -> int:
        return 2 * self.index(split)[id].stat().st_size

    def _map_path(self, id: str) -> Path:
        r = self.root
        cands = {
            "release": [r / "ALLFIXATIONMAPS" / f"{id}_fixMap.jpg"],
            "benchmark": [r / "FIXATIONMAPS" / f"{id}.{e}" for e in ("jpg", "jpeg", "png")],
            "maps_only": [r / "fixation_maps" / f"{id}.{e}" for e in ("jpg", "jpeg", "png")],
        }[self.layout]
        for c in cands:
            if c.is_file():
                return c
        raise FileNotFoundError(f"{self.name}: no fixation map for {id} (looked for {cands[0]})")

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        h, w = image_size(data, str(path))
        map_path = self._map_path(id)
        smap = decode_gray(read_bytes(map_path), str(map_path))
        if smap.shape != (h, w):
            raise ValueError(f"{map_path}: map is {smap.shape} but image {path.name} is {(h, w)} (h, w)")
        meta = {"map_source": "release"}
        fix = np.zeros((0, 3), np.int32)
        if self.layout == "release":
            pts = self.root / "ALLFIXATIONMAPS" / f"{id}_fixPts.jpg"
            binary = decode_gray(read_bytes(pts), str(pts))
            fix = points_from_binary(binary, 128)
            meta["fixations_source"] = "fixPts.jpg >= 128"
        elif self.layout == "benchmark":
            loc = self.root / "FIXATIONLOCS" / f"{id}.mat"
            if not loc.is_file():
                raise FileNotFoundError(f"{self.name}: {loc} missing for image {path.name}")
            fix = points_from_binary(load_binary_mat(loc, (h, w)), 1)
            meta["fixations_source"] = "FIXATIONLOCS"
        return Sample(self.name, split, id, data, ext_of(path), h, w, smap, fix, meta)
