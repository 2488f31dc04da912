"""SALICON: the 2017 release (images, png maps, per-image .mat ``gaze`` structs) and the 2015 JSON
release (COCO-style annotations, ``fixations`` = [row, col] 1-based, one annotation per observer).

2017: images/{train,val,test}/*.jpg, maps/{train,val}/*.png, fixations/{train,val}/*.mat with
``gaze`` (one struct per observer: ``location`` [x, y] 1-based raw samples, ``timestamp``,
``fixations`` [x, y] 1-based); the ``fixations`` field is kept (the challenge scores those).
2015: annotations/fixations_{split}2014*.json and images/{split}2014*/ (or images/); maps are
built as the SALICON API does: sigma 19 px blur of the binary fixation map, min-max normalised.
The documented 2015 convention is [row, col] 1-based integers (the train examples); the older val
examples file holds sub-pixel [x, y] 0-based mouse samples (first column up to 639.5 on 480-row
images). The convention is therefore detected per JSON file: [x, y] when the first column exceeds
every image height, 0-based when any value is below 1 or not an integer. It is recorded in the
sample metadata; points outside the image are dropped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salnet.data.base import Reader, ext_of, image_files, require
from salnet.data.maps import blur_fixations, coords_to_index, make_points, one_based_to_index, quantize16
from salnet.data.sample import Sample, decode_gray, image_size, read_bytes

SIGMA = 19.0  # SALICON API default, pixels at 640x480


def load_gaze_mat(path: Path) -> list[np.ndarray]:
    """A SALICON 2017 .mat -> per observer float64 (M, 2) [x, y] 1-based fixations."""
    try:
        import scipy.io  # here: scipy.io costs every process that imports salnet.data 0.3 s of CPU

        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exn:
        raise ValueError(f"{path}: unreadable .mat file ({exn})") from exn
    if "gaze" not in mat:
        raise ValueError(f"{path}: no 'gaze' variable (found {sorted(k for k in mat if not k.startswith('__'))})")
    gaze = np.atleast_1d(mat["gaze"]).ravel()
    out = []
    for g in gaze:
        if not hasattr(g, "fixations"):
            raise ValueError(f"{path}: gaze struct has no 'fixations' field")
        out.append(np.asarray(g.fixations, dtype=np.float64).reshape(-1, 2))
    return out


def json_convention(data: dict) -> dict:
    """{"order": "rc" | "xy", "base": 1 | 0} of one SALICON JSON file (see the module docstring)."""
    parts = [np.asarray(a["fixations"], np.float64).reshape(-1, 2) for a in data.get("annotations", [])]
    pts = np.concatenate(parts) if parts else np.zeros((0, 2))
    if not len(pts):
        return {"order": "rc", "base": 1}
    max_h = max((img["height"] for img in data.get("images", [])), default=0)
    order = "xy" if pts[:, 0].max() > max_h else "rc"
    base = 0 if (pts.min() < 1 or not np.array_equal(pts, np.round(pts))) else 1
    return {"order": order, "base": base}


class Salicon(Reader):
    name = "salicon"
    splits = ("train", "val", "test")
    layout_help = (
        "Expected the SALICON 2017 layout images/<split>/, maps/<split>/, fixations/<split>/*.mat, or the "
        "2015 JSON layout annotations/fixations_<split>2014*.json with images/<split>2014*/."
    )

    def check_layout(self) -> None:
        self.json_layout = (self.root / "annotations").is_dir() and not (self.root / "fixations").is_dir()
        if not self.json_layout:
            require(self.root, "images", help=self.layout_help)
            for split in ("train", "val"):
                if (self.root / "images" / split).is_dir():
                    require(self.root, f"maps/{split}", f"fixations/{split}", help=self.layout_help)
        elif not self.available_splits():
            raise FileNotFoundError(f"{self.root}/annotations: no fixations_<split>2014*.json. {self.layout_help}")
        self._anns: dict[str, dict] | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_anns"] = None  # the full 2015 JSON is large: each worker re-reads it once
        return state

    def has_split(self, split: str) -> bool:
        if self.json_layout:
            return bool(self._json_files(split))
        return (self.root / "images" / split).is_dir()

    def _json_files(self, split: str) -> list[Path]:
        return sorted((self.root / "annotations").glob(f"fixations_{split}2014*.json"))

    def _index(self, split: str) -> dict[str, Path]:
        if not self.json_layout:
            return {p.stem: p for p in image_files(self.root / "images" / split)}
        folders = sorted(p for p in (self.root / "images").glob(f"{split}2014*") if p.is_dir())
        folders = folders or [self.root / "images"]
        found = {p.name: p for f in folders for p in image_files(f)}
        index = {}
        for img in self._annotations(split)["images"].values():
            if img["file_name"] not in found:
                raise FileNotFoundError(
                    f"{self.name}: image {img['file_name']} of {self._json_files(split)[0].name} not found in "
                    f"{', '.join(str(f) for f in folders)}"
                )
            index[Path(img["file_name"]).stem] = found[img["file_name"]]
        return index

    def _annotations(self, split: str) -> dict:
        """{"images": {stem: image record}, "fix": {image_id: [annotation, ...] by annotation id}}."""
        if self._anns is None:
            self._anns = {}
        if split not in self._anns:
            images: dict[str, dict] = {}
            fix: dict[int, list[dict]] = {}
            for path in self._json_files(split):
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError) as exn:
                    raise ValueError(f"{path}: unreadable JSON ({exn})") from exn
                for img in data.get("images", []):
                    images[Path(img["file_name"]).stem] = img
                convention = json_convention(data)
                for ann in data.get("annotations", []):
                    fix.setdefault(ann["image_id"], []).append(dict(ann, convention=convention))
            for anns in fix.values():
                anns.sort(key=lambda a: a.get("id", 0))
            self._anns[split] = {"images": images, "fix": fix}
        return self._anns[split]

    def size_hint(self, split: str, id: str) -> int:
        size = self.index(split)[id].stat().st_size
        return size + (200_000 if split != "test" else 0)

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        h, w = image_size(data, str(path))
        sample = Sample(self.name, split, id, data, ext_of(path), h, w)
        if self.json_layout:
            return self._load_json(sample)
        if split == "test":
            return sample
        mat = self.root / "fixations" / split / f"{id}.mat"
        if not mat.is_file():
            raise FileNotFoundError(f"{self.name}: {mat} missing for image {path.name}")
        rows, dropped = [], 0
        for obs, fx in enumerate(load_gaze_mat(mat)):
            pts, d = make_points(one_based_to_index(fx[:, 1]), one_based_to_index(fx[:, 0]), obs, (h, w))
            rows.append(pts)
            dropped += d
        map_path = self.root / "maps" / split / f"{id}.png"
        sample.map = decode_gray(read_bytes(map_path), str(map_path))
        if sample.map.shape != (h, w):
            raise ValueError(f"{map_path}: map is {sample.map.shape[::-1]} but the image is {(w, h)} (w, h)")
        sample.fixations = np.concatenate(rows) if rows else sample.fixations
        sample.meta = {"map_source": "release", "dropped_fixations": dropped, "observers": len(rows)}
        return sample

    def _load_json(self, sample: Sample) -> Sample:
        anns = self._annotations(sample.split)
        img = anns["images"][sample.id]
        rows, dropped, workers = [], 0, []
        for obs, ann in enumerate(anns["fix"].get(img["id"], [])):
            conv = ann["convention"]
            v = np.asarray(ann["fixations"], dtype=np.float64).reshape(-1, 2)
            rows_, cols = (v[:, 0], v[:, 1]) if conv["order"] == "rc" else (v[:, 1], v[:, 0])
            ys = coords_to_index(rows_, conv["base"], sample.height)
            xs = coords_to_index(cols, conv["base"], sample.width)
            pts, d = make_points(ys, xs, obs, (sample.height, sample.width))
            rows.append(pts)
            dropped += d
            workers.append(ann.get("worker_id", -1))
        if rows:
            sample.fixations = np.concatenate(rows)
        sample.map = quantize16(blur_fixations(sample.fixations, (sample.height, sample.width), SIGMA))
        sample.meta = {"map_source": "fixations", "sigma": SIGMA, "dropped_fixations": dropped,
                       "observers": len(rows), "worker_ids": workers, "coco_id": img["id"],
                       "coordinates": f"{conv['order']} {conv['base']}-based" if rows else "none"}
        return sample
