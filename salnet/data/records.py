"""Shard records: a Sample <-> the (member name, bytes) of its WebDataset entry, in two kinds.

Full-size (as released): ``{key}.{jpg|jpeg|png}`` (image bytes as released), ``{key}.map.png`` (8/16-bit PNG)
or ``{key}.map.npy`` (the same pixels as raw integers: decoding is a copy, ~250x faster than the PNG, for
~1.7x the bytes), ``{key}.fix.npy`` (int32 (N, 3) y, x, observer) and ``{key}.json``.

Model-size (packed for one model input size (h, w), e.g. SalGAN's 192x256): the image and map already
resized with the loader's own exact resize (:mod:`salnet.data.resize`, INTER_AREA), stored so that the
loader's float32 values come back bit for bit: ``{key}.input.npy`` (3, h, w) and ``{key}.target.npy``
(h, w) hold the resize's exact integer sums (int16 for 8-bit images, int32 for 16-bit maps) that the
loader multiplies by the float32 scale in the json, as the resize kernel does (or float32 values where
the resize is not integer: no short repeated block, e.g. 800x600 -> 256x192). The original image is
not kept; the map at its original size is (``{key}.map.npy``), with the fixations at the original
resolution: validation scores every metric there (MIT convention). No compression anywhere: decoding
is a memory copy, and reading the bytes is the cost (see docs/benchmarks.md).
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from salnet.data.resize import resize_image, resize_map
from salnet.data.sample import Sample, decode_gray, decode_rgb, encode_png

MAP_CODECS = ("png", "npy")
NPY_MAGIC = b"\x93NUMPY"


def parse_input_size(text: str) -> tuple[int, int]:
    """"256x192" (W x H, as image sizes are written) -> (192, 256) (H, W, as configs hold input_size)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit() or min(int(w), int(h)) < 1:
        raise ValueError(f"input size {text!r}: write it as WIDTHxHEIGHT, e.g. 256x192 (SalGAN) or 400x300")
    return int(h), int(w)


def sample_key(dataset: str, split: str, id: str) -> str:
    """Tar/WebDataset key ``dataset/split/id`` with every character outside [A-Za-z0-9_-] of id -> '_'."""
    return f"{dataset}/{split}/{re.sub(r'[^A-Za-z0-9_-]', '_', id)}"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"metadata value {obj!r} is not JSON-serialisable")


def npy_bytes(arr: np.ndarray) -> bytes:
    """``np.save`` of a C-contiguous array (deterministic bytes: the header depends on dtype and shape only)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


@lru_cache(maxsize=256)
def _npy_header(head: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    f = io.BytesIO(head)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("npy member holds Python objects (refused)")
    return dtype, shape, fortran


def load_npy(data: bytes, where: str = "npy") -> np.ndarray:
    """.npy bytes -> a read-only array viewing ``data`` (np.load's result without its per-call header parse:
    shards repeat a few headers, cached here). ValueError on anything else or a short payload."""
    if data[:6] != NPY_MAGIC or len(data) < 10:
        raise ValueError(f"{where}: not an .npy array")
    start = 10 + int.from_bytes(data[8:10], "little") if data[6] == 1 else 12 + int.from_bytes(data[8:12], "little")
    dtype, shape, fortran = _npy_header(bytes(data[:start]))
    arr = np.frombuffer(data, dtype, count=math.prod(shape), offset=start)
    return arr.reshape(shape, order="F" if fortran else "C")


def expand(stored: np.ndarray, scale: float | None, flip: bool, out: torch.Tensor) -> None:
    """Stored model-size values -> ``out`` float32 of the same shape, columns mirrored when ``flip``: integer
    sums times the float32 ``scale`` (the exact product rounded once to float32, as the resize kernel
    computes it), or float32 copied. torch, not numpy: numpy's cast-and-multiply loop is ~1.4x slower and
    ~3x on a mirrored view."""
    with warnings.catch_warnings():  # a view of the record's bytes, only read
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(stored)
    src = src.flip(-1) if flip else src
    if scale is None:
        out.copy_(src)
    else:
        torch.mul(src, scale, out=out)


def exact_storage(values: np.ndarray, full: int, in_size: tuple[int, int]) -> tuple[np.ndarray, float | None]:
    """float32 resize output (..., h, w) of an image/map of ``in_size`` with maximum ``full`` -> (stored, scale)
    such that :func:`expand` gives ``values`` back bit for bit: the INTER_AREA kernel's integer sums (its
    denominator is full x the two block lengths) when they reproduce the values exactly, else float32."""
    (H, W), (h, w) = in_size, values.shape[-2:]
    denom = full * (H // math.gcd(H, h)) * (W // math.gcd(W, w))
    if denom < 2**24:
        sums = np.rint(values.astype(np.float64) * denom)
        if sums.min() >= 0 and sums.max() < 2**31:  # signed: torch multiplies int16/int32, not uint16/uint32
            ints = sums.astype(np.int16 if sums.max() < 2**15 else np.int32)
            scale, back = float(np.float32(1.0 / denom)), torch.empty(values.shape)
            expand(ints, scale, False, back)
            if np.array_equal(back.numpy().view(np.uint32), values.view(np.uint32)):
                return ints, scale
    return np.ascontiguousarray(values, dtype=np.float32), None


def model_members(sample: Sample, size: tuple[int, int]) -> tuple[dict[str, bytes], dict]:
    """The model-size members {suffix: bytes} ("input.npy", and with a map "target.npy" and "map.npy") and
    their json fields (input_size, input_scale, target_scale) of a sample, resized to ``size`` = (h, w)."""
    rgb = decode_rgb(sample.image)
    if rgb.shape[:2] != (sample.height, sample.width):
        raise ValueError(f"{sample.id}: image is {rgb.shape[:2]}, metadata says {(sample.height, sample.width)}")
    image = torch.empty((3, *size), dtype=torch.float32)
    resize_image(torch.from_numpy(rgb), size, "area", False, image)
    stored, scale = exact_storage(image.numpy(), 255, rgb.shape[:2])
    members, info = {"input.npy": npy_bytes(stored)}, {"input_size": list(size), "input_scale": scale,
                                                       "target_scale": None}
    if sample.map is not None:
        target = torch.empty((1, *size), dtype=torch.float32)
        resize_map(sample.map, size, "area", False, target, keep_original=False)
        stored, info["target_scale"] = exact_storage(target.numpy()[0], np.iinfo(sample.map.dtype).max,
                                                     sample.map.shape)
        members["target.npy"], members["map.npy"] = npy_bytes(stored), npy_bytes(sample.map)
    return members, info


def encode_sample(sample: Sample, input_size: Sequence[int] | None = None, map_codec: str = "png",
                  ) -> list[tuple[str, bytes]]:
    """A Sample -> the (tar member name, bytes) pairs of its shard entry, in a fixed order: full-size with the
    map as ``map_codec`` ("png" or "npy"), or model-size when ``input_size`` = (h, w) is given."""
    if map_codec not in MAP_CODECS:
        raise ValueError(f"unknown map codec {map_codec!r}; choose one of {', '.join(MAP_CODECS)}")
    key = sample_key(sample.dataset, sample.split, sample.id)
    info = {"dataset": sample.dataset, "split": sample.split, "id": sample.id, "height": sample.height,
            "width": sample.width, "image_ext": sample.image_ext, "n_fixations": int(len(sample.fixations)),
            "map_bits": None if sample.map is None else int(sample.map.dtype.itemsize * 8), **sample.meta}
    if input_size is not None:
        h, w = input_size  # a list when it comes from a JSON plan
        members, extra = model_members(sample, (int(h), int(w)))
        info.update(extra)
        named = [(f"{key}.{s}", b) for s, b in members.items()]
    else:
        named = [(f"{key}.{sample.image_ext}", sample.image)]
        if sample.map is not None:
            data = encode_png(sample.map) if map_codec == "png" else npy_bytes(sample.map)
            named.append((f"{key}.map.{map_codec}", data))
    named.append((f"{key}.fix.npy", npy_bytes(sample.fixations.astype(np.int32))))
    named.append((f"{key}.json", json.dumps(info, sort_keys=True, default=_json_default).encode()))
    return named


def record_map(rec: dict) -> np.ndarray | None:
    """The record's map at its original size, uint8/uint16 (H, W) (read-only for "map.npy"), or None."""
    where = f"{rec.get('__key__', '?')}.map"
    if "map.npy" in rec:
        arr = load_npy(rec["map.npy"], where + ".npy")
        if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"{where}.npy: a map must be uint8/uint16 (H, W), got {arr.dtype} {arr.shape}")
        return arr
    return decode_gray(rec["map.png"], where + ".png") if "map.png" in rec else None


def decode_record(rec: dict, decode_map: bool = True) -> Sample:
    """A WebDataset record (``__key__`` -> str, suffix -> bytes, e.g. from a tar) -> Sample; ValueError if a field
    is missing.

    Model-size records give ``image=b""`` (the original image is not stored). decode_map=False leaves
    Sample.map None (the loader decodes the map itself, straight to float).
    """
    where = rec.get("__key__", "?")
    if "json" not in rec or "fix.npy" not in rec:
        raise ValueError(f"sample {where}: missing json or fix.npy (truncated shard?)")
    info = json.loads(rec["json"])
    ext, model = info["image_ext"], info.get("input_size") is not None
    if (model and "input.npy" not in rec) or (not model and ext not in rec):
        raise ValueError(f"sample {where}: missing its {'input.npy' if model else ext} image")
    smap = None
    if info.get("map_bits") and decode_map:
        smap = record_map(rec)
        if smap is None or (model and "target.npy" not in rec):
            raise ValueError(f"sample {where}: missing its map")
        smap = np.array(smap)  # writable, the Sample's own
    fix = np.array(load_npy(rec["fix.npy"], f"{where}.fix.npy"))
    core = ("dataset", "split", "id", "height", "width", "image_ext", "n_fixations", "map_bits", "input_size",
            "input_scale", "target_scale")
    meta = {k: v for k, v in info.items() if k not in core}
    return Sample(info["dataset"], info["split"], info["id"], b"" if model else rec[ext], ext, info["height"],
                  info["width"], smap, fix, meta)


def compare(a: Sample, b: Sample, image: bool = True) -> list[str]:
    """Differences between two samples (empty when identical), for verification and tests; ``image=False``
    leaves the image bytes out (model-size records do not hold them)."""
    diffs = []
    for field in ("dataset", "split", "id", "image_ext", "height", "width"):
        if getattr(a, field) != getattr(b, field):
            diffs.append(f"{field} {getattr(a, field)!r} != {getattr(b, field)!r}")
    if image and a.image != b.image:
        diffs.append("image bytes differ")
    if a.map is None or b.map is None:
        if (a.map is None) != (b.map is None):
            diffs.append("map differs")
    elif a.map.dtype != b.map.dtype or not np.array_equal(a.map, b.map):
        diffs.append("map differs")
    if not np.array_equal(a.fixations, b.fixations):
        diffs.append(f"fixations differ ({len(a.fixations)} vs {len(b.fixations)})")
    return diffs
