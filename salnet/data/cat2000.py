"""CAT2000 (Borji & Itti 2015): 20 categories x 100 images (1920x1080) per set.

Layout: trainSet/Stimuli/<cat>/*.jpg, trainSet/FIXATIONMAPS/<cat>/*.jpg (continuous),
trainSet/FIXATIONLOCS/<cat>/*.mat (binary fixation map, variable ``fixLocs``); testSet/Stimuli/<cat>/
(no targets). Splits "train" (trainSet) and "test" (testSet); ids are "<category>/<name>".
"""

from __future__ import annotations

from pathlib import Path

from salnet.data.base import Reader, ext_of, image_files, require
from salnet.data.maps import points_from_binary
from salnet.data.mit1003 import load_binary_mat
from salnet.data.sample import Sample, decode_gray, image_size, read_bytes

SETS = {"train": "trainSet", "test": "testSet"}


class CAT2000(Reader):
    name = "cat2000"
    splits = ("train", "test")
    layout_help = (
        "Expected trainSet/Stimuli/<category>/, trainSet/FIXATIONMAPS/<category>/, "
        "trainSet/FIXATIONLOCS/<category>/*.mat and/or testSet/Stimuli/<category>/."
    )

    def check_layout(self) -> None:
        if not self.available_splits():
            raise FileNotFoundError(f"{self.name}: neither trainSet/Stimuli nor testSet/Stimuli under {self.root}. "
                                    f"{self.layout_help}")
        if self.has_split("train"):
            require(self.root, "trainSet/FIXATIONMAPS", "trainSet/FIXATIONLOCS", help=self.layout_help)

    def has_split(self, split: str) -> bool:
        return (self.root / SETS[split] / "Stimuli").is_dir()

    def _index(self, split: str) -> dict[str, Path]:
        stimuli = self.root / SETS[split] / "Stimuli"
        cats = sorted(p for p in stimuli.iterdir() if p.is_dir() and not p.name.startswith("."))
        return {f"{c.name}/{p.stem}": p for c in cats for p in image_files(c)}

    def size_hint(self, split: str, id: str) -> int:
        return 2 * self.index(split)[id].stat().st_size

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        h, w = image_size(data, str(path))
        if split == "test":
            return Sample(self.name, split, id, data, ext_of(path), h, w, meta={"map_source": "none"})
        cat, stem = id.split("/", 1)
        base = self.root / SETS[split]
        maps = [base / "FIXATIONMAPS" / cat / f"{stem}.{e}" for e in ("jpg", "jpeg", "png")]
        map_path = next((m for m in maps if m.is_file()), None)
        if map_path is None:
            raise FileNotFoundError(f"{self.name}: {maps[0]} missing for image {path}")
        smap = decode_gray(read_bytes(map_path), str(map_path))
        if smap.shape != (h, w):
            raise ValueError(f"{map_path}: map is {smap.shape} but image {path.name} is {(h, w)} (h, w)")
        loc = base / "FIXATIONLOCS" / cat / f"{stem}.mat"
        if not loc.is_file():
            raise FileNotFoundError(f"{self.name}: {loc} missing for image {path}")
        fix = points_from_binary(load_binary_mat(loc, (h, w)), 1)
        meta = {"map_source": "release", "fixations_source": "FIXATIONLOCS", "category": cat}
        return Sample(self.name, split, id, data, ext_of(path), h, w, smap, fix, meta)
