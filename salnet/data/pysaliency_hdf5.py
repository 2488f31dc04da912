"""A dataset as pysaliency stores it: ``Stimuli``/``FileStimuli`` and ``FixationTrains``/``Fixations`` in HDF5.

Layout (what ``pysaliency.external_datasets`` writes): ``stimuli.hdf5`` + ``fixations.hdf5`` (split "all"), or
``stimuli_<split>.hdf5`` + ``fixations_<split>.hdf5`` (e.g. SALICON's train/validation); a stimuli file without
its fixations file is a split without targets (a benchmark's test images). Read with h5py directly (the formats
of pysaliency 0.2.22's ``to_hdf5``: attrs ``type`` and ``version``), so packing needs h5py but not pysaliency.

- Stimuli: ``Stimuli`` keeps each image as an array (datasets "0" … "size-1"; packed as lossless PNG);
  ``FileStimuli`` keeps file names relative to the HDF5 file (version ≥ 2.0; packed with the file's own bytes
  when it is a jpg/png). Ids: the stimuli's file names without extension, shortened as pysaliency's
  ``get_minimal_unique_filenames`` does ("Action/001"), or the index ("000042") for arrays without file names.
- Fixations: ``FixationTrains`` (``train_xs``/``train_ys`` rows padded with NaN, ``train_ns`` the stimulus,
  ``train_subjects`` the observer) or ``Fixations`` (``x``, ``y``, ``n``, ``subjects``). pysaliency's pixel of a
  fixation is ``(int(y), int(x))`` (0-based, pixel k covers [k, k+1)), which is what is stored; points outside
  the image are dropped and counted in ``meta["dropped_fixations"]``.
- Maps: none in pysaliency datasets; built from the fixations with a Gaussian of σ = max(H, W) / 30 pixels
  (≈ 35 px on MIT1003's 1024-pixel images, about one degree of visual angle there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from salnet.data.base import Reader, ext_of
from salnet.data.maps import blur_fixations, make_points, quantize16
from salnet.data.sample import IMAGE_EXTS, Sample, encode_png, image_size, read_bytes

SIGMA_FRACTION = 1 / 30  # σ = max(H, W) / 30


def _h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError("reading pysaliency HDF5 files needs h5py: pip install h5py") from err
    return h5py


def _text(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes | np.bytes_) else str(v)


def _attr(h5, name: str, where: Path) -> str:
    if name not in h5.attrs:
        raise ValueError(f"{where}: no '{name}' attribute; not a file written by pysaliency's to_hdf5")
    return _text(h5.attrs[name])


def minimal_unique_names(filenames: list[str]) -> list[str]:
    """pysaliency's ``get_minimal_unique_filenames``: drop the leading path components all names share."""
    if len(filenames) <= 1:
        return [os.path.basename(f) for f in filenames]
    parts = [Path(f).parts for f in filenames]
    while len({p[0] for p in parts}) <= 1 and all(len(p) > 1 for p in parts):
        parts = [p[1:] for p in parts]
    return ["/".join(p) for p in parts]


def read_stimuli(path: Path) -> list[dict]:
    """One record per stimulus of a ``Stimuli``/``FileStimuli`` HDF5 file: ``{"id", "file"}`` (FileStimuli, the
    absolute path) or ``{"id", "index"}`` (an array inside the file), in pysaliency's order."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        kind, version = _attr(f, "type", path), _attr(f, "version", path)
        if kind == "FileStimuli":
            names = [_text(n) for n in f["filenames"][...]]
            base = path.parent if version >= "2.0" else Path(".")
            files = [base / n for n in names]
            ids = [str(Path(n).with_suffix("")) for n in minimal_unique_names([str(x) for x in names])]
            recs: list[dict[str, str | int]] = [{"id": i, "file": str(p)} for i, p in zip(ids, files)]
        elif kind == "Stimuli":
            size = int(f.attrs["size"])
            names = [_text(n) for n in f["filenames"][...]] if "filenames" in f else []
            ids = ([str(Path(n).with_suffix("")) for n in minimal_unique_names(names)] if len(names) == size
                   else [f"{i:06d}" for i in range(size)])
            recs = [{"id": i, "index": n} for n, i in enumerate(ids)]
        else:
            raise ValueError(f"{path}: pysaliency type {kind!r}; a stimuli file holds 'Stimuli' or 'FileStimuli'")
    if len({r["id"] for r in recs}) != len(recs):
        raise ValueError(f"{path}: stimulus names are not unique after shortening; cannot name the samples")
    return recs


def read_fixations(path: Path) -> dict[str, np.ndarray]:
    """``{"x", "y", "n", "subject"}`` float/int arrays of every fixation in a ``FixationTrains`` or ``Fixations``
    HDF5 file (train padding removed)."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        kind = _attr(f, "type", path)
        if kind == "FixationTrains":
            xs, ys = f["train_xs"][...].astype(np.float64), f["train_ys"][...].astype(np.float64)
            ns, subjects = f["train_ns"][...].astype(np.int64), f["train_subjects"][...].astype(np.int64)
            keep = ~np.isnan(xs)
            rows = np.broadcast_to(np.arange(len(xs))[:, None], xs.shape)[keep]
            return {"x": xs[keep], "y": ys[keep], "n": ns[rows], "subject": subjects[rows]}
        if kind == "Fixations":
            n = f["n"][...].astype(np.int64)
            subj = f["subjects"][...].astype(np.int64) if "subjects" in f else np.full(len(n), -1)
            return {"x": f["x"][...].astype(np.float64), "y": f["y"][...].astype(np.float64), "n": n, "subject": subj}
    raise ValueError(f"{path}: pysaliency type {kind!r}; a fixations file holds 'FixationTrains' or 'Fixations'")


class PysaliencyHDF5(Reader):
    name = "pysaliency"
    layout_help = ("Expected stimuli.hdf5 + fixations.hdf5, or stimuli_<split>.hdf5 + fixations_<split>.hdf5 "
                   "(pysaliency's Stimuli/FileStimuli and FixationTrains/Fixations to_hdf5 files).")

    def check_layout(self) -> None:
        found = []
        if (self.root / "stimuli.hdf5").is_file():
            found.append("all")
        found += sorted(p.stem[len("stimuli_"):] for p in self.root.glob("stimuli_*.hdf5"))
        if not found:
            raise FileNotFoundError(f"{self.name}: no stimuli.hdf5 or stimuli_<split>.hdf5 in {self.root}. "
                                    f"{self.layout_help}")
        self.splits = tuple(found)
        self._cache: dict[str, tuple[list[dict], dict | None, dict[str, int]]] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _files(self, split: str) -> tuple[Path, Path]:
        suffix = "" if split == "all" else f"_{split}"
        return self.root / f"stimuli{suffix}.hdf5", self.root / f"fixations{suffix}.hdf5"

    def _read(self, split: str) -> tuple[list[dict], dict | None, dict[str, int]]:
        """(stimulus records, fixations or None, id → stimulus index) of a split (cached)."""
        if split not in self._cache:
            stim_file, fix_file = self._files(split)
            recs = read_stimuli(stim_file)
            fix = read_fixations(fix_file) if fix_file.is_file() else None
            if fix is not None and len(fix["n"]) and (fix["n"].min() < 0 or fix["n"].max() >= len(recs)):
                raise ValueError(f"{fix_file}: fixations refer to stimulus {int(fix['n'].max())}, but {stim_file} "
                                 f"has {len(recs)} stimuli")
            self._cache[split] = (recs, fix, {r["id"]: i for i, r in enumerate(recs)})
        return self._cache[split]

    def _index(self, split: str) -> dict[str, Path]:
        stim_file = self._files(split)[0]
        return {r["id"]: Path(r["file"]) if "file" in r else stim_file for r in self._read(split)[0]}

    def size_hint(self, split: str, id: str) -> int:
        path = self.index(split)[id]
        return (path.stat().st_size if path.suffix != ".hdf5" else 2_000_000) + 128 * 1024

    def _image(self, split: str, rec: dict) -> tuple[bytes, str]:
        if "file" in rec:
            path = Path(rec["file"])
            if ext_of(path) in IMAGE_EXTS:
                return read_bytes(path), ext_of(path)
            from PIL import Image

            with Image.open(path) as im:  # another format (bmp, tif): stored as lossless PNG
                arr = np.asarray(im.convert("RGB"))
        else:
            with _h5py().File(self._files(split)[0], "r") as f:
                arr = f[str(rec["index"])][...]
        return _png_rgb(arr, f"{self._files(split)[0]}[{rec.get('index', rec.get('file'))}]"), "png"

    def load(self, split: str, id: str) -> Sample:
        recs, fix, position = self._read(split)
        n = position[id]
        data, ext = self._image(split, recs[n])
        h, w = image_size(data, id)
        if fix is None:
            return Sample(self.name, split, id, data, ext, h, w, meta={"map_source": "none"})
        mine = fix["n"] == n
        ys, xs = np.floor(fix["y"][mine]), np.floor(fix["x"][mine])  # pysaliency's x_int/y_int
        pts, dropped = make_points(ys, xs, fix["subject"][mine], (h, w))
        sigma = max(h, w) * SIGMA_FRACTION
        smap = quantize16(blur_fixations(pts, (h, w), sigma))
        meta = {"map_source": "fixations", "sigma": sigma, "dropped_fixations": dropped, "stimulus_index": n}
        return Sample(self.name, split, id, data, ext, h, w, smap, pts, meta)


def _png_rgb(arr: np.ndarray, where: str) -> bytes:
    """A pysaliency stimulus array (H, W) or (H, W, 3|4), uint8 or float 0–255, as PNG bytes."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or a.min() < 0 or a.max() > 255:
            raise ValueError(f"{where}: stimulus of dtype {a.dtype} outside 0–255; expected uint8 images")
        a = np.rint(a).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 2:
        return encode_png(a)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{where}: stimulus of shape {a.shape}; expected (H, W) or (H, W, 3)")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
