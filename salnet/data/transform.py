"""Per-sample transform of the loaders: a decoded shard record → model-resolution tensors, and collation."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from salnet.data.maps import fixation_map
from salnet.data.sample import decode_gray, decode_rgb, map_to_float
from salnet.data.shards import decode_record
from salnet.imresize import area_resize_int, band_resize


class Transform:
    """Decoded record -> model-resolution tensors (picklable; runs in the loader workers)."""

    def __init__(self, size: tuple[int, int], resize: str, keep_original: bool, fast_decode: bool = False):
        self.size, self.resize, self.keep_original = tuple(size), resize, keep_original
        self.fast_decode = fast_decode

    def __call__(self, rec: dict, flip: bool) -> dict:
        sample = decode_record(rec, decode_map=False)
        draft = self.size if self.fast_decode and sample.image_ext in ("jpg", "jpeg") else None
        rgb = torch.from_numpy(decode_rgb(sample.image, draft))
        if draft is None and rgb.shape[:2] != (sample.height, sample.width):
            raise ValueError(f"{sample.id}: image is {tuple(rgb.shape[:2])}, metadata says "
                             f"{(sample.height, sample.width)}")
        if "map.png" not in rec:
            raise ValueError(f"{sample.id}: no map.png (a split without targets cannot be trained on)")
        gray = decode_gray(rec["map.png"])
        pts = sample.fixations.astype(np.int64)
        fix = torch.from_numpy(fixation_map(pts, (sample.height, sample.width), self.size, flip))[None]
        area = self.resize == "area"
        # flips are applied after resizing, to all three alike (a flipped point grid would not align):
        # area_resize_int and fixation_map write their outputs mirrored, the band paths flip a copy
        image = area_resize_int(rgb, self.size, flip) if area else None  # exact integer sums
        if image is None:
            # uint8 HWC in: the first pass gathers bytes and its weights make floats (no full-size float copy)
            image = band_resize(rgb, self.size, self.resize, channels_last=True)
            image = image.float() if image.dtype == torch.uint8 else image  # same size: no resize happened
            # divided straight into a (3, H, W) tensor: one pass instead of divide, clamp and a transposing copy
            image = torch.div(image.permute(2, 0, 1), 255.0, out=torch.empty(3, *self.size)).clamp_(0, 1)
            image = image.flip(-1) if flip else image
        smap = None
        with warnings.catch_warnings():  # PIL's array is read-only; it is only read here
            warnings.simplefilter("ignore", UserWarning)
            gray_t = torch.from_numpy(gray)
        smap_small = area_resize_int(gray_t[..., None], self.size, flip) if area else None
        if smap_small is None or self.keep_original:
            smap = torch.from_numpy(map_to_float(gray))[None]
        if smap_small is None:
            smap_small = band_resize(smap, self.size, self.resize)
            smap_small = smap_small.clamp(0, 1) if smap_small is smap else smap_small.clamp_(0, 1)  # no alias
            smap_small = smap_small.flip(-1) if flip else smap_small
        out = {"image": image, "map": smap_small, "fixations": fix, "id": sample.id}
        if self.keep_original:
            out["map_orig"], out["points"] = smap, torch.from_numpy(pts)
        return out


def collate(items: list[dict]) -> dict:
    """Stack tensors of equal shape; ids and original-size fields stay lists."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("image", "map", "fixations")}
    out["id"] = [it["id"] for it in items]
    for k in ("map_orig", "points"):
        if k in items[0]:
            out[k] = [it[k] for it in items]
    return out
