"""Per-sample transform of the loaders: a shard record (full-size or model-size) → model-resolution tensors,
written straight into a slot of a preallocated batch (no stacking copy), and the batch's assembly."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from salnet.data.maps import fixation_map
from salnet.data.records import decode_record, expand, load_npy, record_map
from salnet.data.resize import resize_image, resize_map
from salnet.data.sample import decode_rgb, map_to_float

STACKED = ("image", "map", "fixations")  # per-sample tensors of one shape: a batch holds them stacked
LISTED = ("id", "map_orig", "points")  # per-sample values of varying shape: a batch holds lists


class Transform:
    """Decoded record -> model-resolution tensors (picklable; runs in the loader workers)."""

    def __init__(self, size: tuple[int, int], resize: str, keep_original: bool, fast_decode: bool = False):
        h, w = size  # a list, from a YAML config, is fine
        self.size, self.resize, self.keep_original = (int(h), int(w)), resize, keep_original
        self.fast_decode = fast_decode

    def new_batch(self, n: int, memory: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Uninitialised contiguous float32 tensors for n samples: "image" (n, 3, h, w), "map" and "fixations"
        (n, 1, h, w), all in ``memory`` (float32, :meth:`batch_floats` (n) long) when given."""
        h, w = self.size
        memory = np.empty(self.batch_floats(n), np.float32) if memory is None else memory
        flat, plane = torch.from_numpy(memory), n * h * w
        return {"image": flat[: 3 * plane].view(n, 3, h, w), "map": flat[3 * plane: 4 * plane].view(n, 1, h, w),
                "fixations": flat[4 * plane: 5 * plane].view(n, 1, h, w)}

    def batch_floats(self, n: int) -> int:
        """float32 values in a batch of n samples (image, map and fixation map)."""
        return n * 5 * self.size[0] * self.size[1]

    def __call__(self, rec: dict, flip: bool, out: dict[str, torch.Tensor] | None = None) -> dict:
        """The record's "image" (3, h, w) and "map" (1, h, w) in [0, 1], "fixations" (1, h, w) in {0, 1},
        "id" (and, keeping the original, "map_orig" (1, H0, W0) and int64 "points" (N, 3)). ``out``: the
        STACKED tensors to write into (slot k of a :meth:`new_batch`), each overwritten entirely; else new
        ones. Full-size records are decoded and resized; model-size ones (:mod:`salnet.data.records`) only
        scaled. Raises ValueError/OSError (the loader's DECODE_ERRORS) on a corrupt record."""
        out = out if out is not None else {k: v[0] for k, v in self.new_batch(1).items()}
        if "input.npy" in rec:
            return self._stored(rec, flip, out)
        sample = decode_record(rec, decode_map=False)
        draft = self.size if self.fast_decode and sample.image_ext in ("jpg", "jpeg") else None
        rgb = torch.from_numpy(decode_rgb(sample.image, draft))
        if draft is None and rgb.shape[:2] != (sample.height, sample.width):
            raise ValueError(f"{sample.id}: image is {tuple(rgb.shape[:2])}, metadata says "
                             f"{(sample.height, sample.width)}")
        # each map resized right after its decode, while the decoder's output is still in cache (after the
        # PNG's decode it was not: ~0.1 ms per sample more), and the image freed before the PNG's decode
        resize_image(rgb, self.size, self.resize, flip, out["image"])
        del rgb
        gray = record_map(rec)
        if gray is None:
            raise ValueError(f"{sample.id}: no map (a split without targets cannot be trained on)")
        smap = resize_map(gray, self.size, self.resize, flip, out["map"], self.keep_original)
        return self._finish(out, sample.id, sample.fixations, (sample.height, sample.width), flip, smap)

    def _stored(self, rec: dict, flip: bool, out: dict[str, torch.Tensor]) -> dict:
        """A model-size record: the stored input and target scaled (and mirrored) into ``out``."""
        info = json.loads(rec["json"])
        sid, (h, w) = info["id"], self.size
        if tuple(info["input_size"]) != self.size or self.resize != "area":
            raise ValueError(f"{sid}: packed at {info['input_size'][1]}x{info['input_size'][0]} (WxH) with the area "
                             f"resize, the loader wants {w}x{h} with {self.resize!r}")
        if "target.npy" not in rec:
            raise ValueError(f"{sid}: no map (a split without targets cannot be trained on)")
        for name, shape, scale, dst in (("input.npy", (3, h, w), info["input_scale"], out["image"]),
                                        ("target.npy", (h, w), info["target_scale"], out["map"][0])):
            stored = load_npy(rec[name], f"{sid}.{name}")
            if stored.shape != shape or (scale is None) != (stored.dtype == np.float32):
                raise ValueError(f"{sid}.{name}: {stored.dtype} {stored.shape} does not match its json "
                                 f"(shape {shape}, scale {scale})")
            expand(stored, scale, flip, dst)
        smap = None
        if self.keep_original:
            gray = record_map(rec)
            if gray is None:
                raise ValueError(f"{sid}: no original-size map.npy (needed to score at the original resolution)")
            smap = torch.from_numpy(map_to_float(gray))[None]
        return self._finish(out, sid, load_npy(rec["fix.npy"], f"{sid}.fix.npy"), (info["height"], info["width"]),
                            flip, smap)

    def _finish(self, out: dict, sid: str, fixations: np.ndarray, size: tuple[int, int], flip: bool,
                smap: torch.Tensor | None) -> dict:
        """The fixation map into ``out``; the item with the id (and the original map and points)."""
        pts = fixations.astype(np.int64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"{sid}: fixations must be (N, 3), got {pts.shape}")
        fixation_map(pts, size, self.size, flip, out=out["fixations"][0].numpy())
        item = {k: out[k] for k in STACKED}
        item["id"] = sid
        if self.keep_original:
            item["map_orig"], item["points"] = smap, torch.from_numpy(pts)
        return item


class BatchPool:
    """Batch memory for :meth:`Transform.new_batch`, recycled. A buffer is one ndarray that all of a batch's
    tensors share through ``torch.from_numpy``, and torch keeps it referenced while any tensor, view or
    slice of that memory lives: its reference count back at the pool's own says that nobody holds the
    batch any more, so it may be written again. Why: fresh memory pays a page fault and a zeroing per
    4 KiB on first write (~1 MB of float32 targets per SalGAN sample); paired against reused buffers on a
    2-core VM that was 0.08-0.13 ms per sample, and several times more in the VM's slow spells. The consumer
    keeps the last batch or two, so a few buffers suffice. ``keep``: the most buffers held; when all are
    busy, a batch gets memory of its own."""

    def __init__(self, transform: Transform, keep: int = 3):
        self.transform, self.keep, self.free_refs = transform, keep, 0
        self.buffers: list[np.ndarray] = []

    def _refs(self, i: int) -> int:
        return sys.getrefcount(self.buffers[i])

    def new_batch(self, n: int) -> dict[str, torch.Tensor]:
        """:meth:`Transform.new_batch` (n) in a free buffer of the pool, else in new memory."""
        floats = self.transform.batch_floats(n)
        for i in range(len(self.buffers)):  # no loop variable: it would count as a holder
            if self.buffers[i].size == floats and self._refs(i) == self.free_refs:
                return self.transform.new_batch(n, self.buffers[i])
        if len(self.buffers) == self.keep:
            return self.transform.new_batch(n)
        self.buffers.append(np.empty(floats, np.float32))
        # counted while no tensor holds it: a free buffer's count, whatever the interpreter adds
        self.free_refs = self._refs(len(self.buffers) - 1)
        return self.transform.new_batch(n, self.buffers[-1])


def collate(items: list[dict], batch: dict[str, torch.Tensor]) -> dict:
    """Items written into the first len(items) slots of ``batch`` (a :meth:`Transform.new_batch`) -> the batch:
    those slots of its STACKED tensors (views, no copy) and the items' LISTED fields as lists."""
    out: dict[str, torch.Tensor | list] = {k: v[: len(items)] for k, v in batch.items()}
    for k in LISTED:
        if items and k in items[0]:
            out[k] = [it[k] for it in items]
    return out
