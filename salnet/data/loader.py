"""Streaming, DDP-safe loaders over the shards written by :mod:`salnet.data.shards`.

Training: every epoch the shard list is shuffled with (seed, epoch) - the same order on every rank -
then split by rank and by DataLoader worker (by sample index when there are fewer shards than
rank x worker slots); samples pass a per-worker shuffle buffer and are batched in the workers. The
stream repeats, and each rank takes exactly ``len(loader)`` = floor(total / (world_size x batch))
batches per epoch, so uneven shards never make one rank wait for another in a collective.
Validation: the split's samples in manifest order are cut into contiguous ranges, one per
(rank, worker), so each sample is read exactly once across ranks; batches keep the original-size map
and fixation points as lists.
A sample that fails to decode is skipped and counted, as are the samples lost after a truncated
tar (from the manifest's per-shard counts); past ``max_bad_fraction`` the run stops with an error.
Batch: {"image": float (B, 3, H, W) [0, 1], "map": (B, 1, H, W) [0, 1], "fixations": (B, 1, H, W)
{0, 1}, "id": list[str]}; validation adds "map_orig": list of (1, H0, W0) and "points": list of
int64 (N, 3) (y, x, observer) at the original resolution.
"""

from __future__ import annotations

import random
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salnet.data.maps import fixation_map
from salnet.data.sample import decode_gray, decode_rgb, map_to_float
from salnet.data.shards import decode_record, iter_tar, read_manifest
from salnet.imresize import band_resize

# what a corrupt sample raises: PIL (OSError, SyntaxError for broken headers), zlib, numpy/json
# (ValueError), a missing member (KeyError); anything else is a bug and propagates
DECODE_ERRORS = (ValueError, OSError, EOFError, KeyError, SyntaxError, zlib.error)


@dataclass
class LoaderConfig:
    """size: model input (H, W) (SalGAN 192x256, loss study 300x400); resize: imresize method for the
    image and map; flip: random horizontal flip (training only); max_bad_fraction: stop when more of
    the samples seen are corrupt; min_seen_for_check: samples seen before the fraction is enforced
    mid-epoch (it is always enforced at the end of an epoch); fast_decode: training only, let libjpeg
    decode JPEGs at 1/2, 1/4 or 1/8 scale (DCT scaling, still at least the model size) before the
    resize: about 2x faster, but no longer the exact full-resolution INTER_AREA of SalGAN's code."""

    size: tuple[int, int] = (192, 256)
    batch_size: int = 32
    workers: int = 2
    shuffle_buffer: int = 256
    flip: bool = True
    resize: str = "area"
    seed: int = 0
    max_bad_fraction: float = 0.01
    min_seen_for_check: int = 200
    fast_decode: bool = False


def dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit (rank, world_size), else torch.distributed's when initialised, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    return rank, world_size


def shard_list(folder: str | Path, split: str) -> list[tuple[str, int]]:
    """[(shard path, sample count)] of a split, from the folder's manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if split not in manifest["splits"]:
        raise ValueError(f"{folder}: no split {split!r} in the manifest (has {sorted(manifest['splits'])})")
    counts = {r["name"]: r["count"] for r in manifest["shards"]}
    return [(str(folder / name), counts[name]) for name in manifest["splits"][split]["shards"]]


def epoch_order(shards: list, seed: int, epoch: int) -> list:
    """The shard order of an epoch: a function of (seed, epoch) only, so identical on all ranks."""
    order = list(shards)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


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
        smap = torch.from_numpy(map_to_float(decode_gray(rec["map.png"])))[None]
        pts = sample.fixations.astype(np.int64)
        fix = torch.from_numpy(fixation_map(pts, (sample.height, sample.width), self.size))[None]
        # uint8 HWC in: the first pass gathers bytes and its weights make floats (no full-size float copy)
        image = band_resize(rgb, self.size, self.resize, channels_last=True)
        image = image.float() if image.dtype == torch.uint8 else image  # same size: no resize happened
        image = (image.permute(2, 0, 1) / 255.0).clamp_(0, 1).contiguous()
        smap_small = band_resize(smap, self.size, self.resize).clamp(0, 1)
        if flip:  # flipped after resizing, all three alike (a flipped point grid would not align)
            image, smap_small, fix = image.flip(-1), smap_small.flip(-1), fix.flip(-1)
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


class _Counter:
    def __init__(self):
        self.good = self.bad = 0


def read_slot(shards: list[tuple[str, int]], rank: int, world_size: int, worker: int, workers: int,
              counter: _Counter):
    """Records of one (rank, worker) share: shards[rank::world_size][worker::workers] (split_by_node then
    split_by_worker), or every n-th sample of all shards when there are fewer shards than slots.

    Truncated or unreadable shards end early; the samples that were due from them are counted bad.
    """
    slots, slot = world_size * workers, rank * workers + worker
    by_sample = len(shards) < slots
    mine = shards if by_sample else shards[rank::world_size][worker::workers]
    for path, count in mine:
        seen = 0
        try:
            for rec in iter_tar(path):
                take = not by_sample or seen % slots == slot
                seen += 1
                if take:
                    yield rec
        except (tarfile.TarError, OSError, EOFError):
            pass
        if seen < count:  # lost: the rest of a truncated shard
            lost = range(seen, count)
            counter.bad += sum(1 for i in lost if i % slots == slot) if by_sample else len(lost)


class TrainStream(IterableDataset):
    """Infinite stream of collated batches for one rank (see the module docstring)."""

    def __init__(self, shards: list[tuple[str, int]], cfg: LoaderConfig, rank: int, world_size: int):
        super().__init__()
        self.shards, self.cfg, self.rank, self.world_size = shards, cfg, rank, world_size
        self.epoch = 0
        self.transform = Transform(cfg.size, cfg.resize, keep_original=False, fast_decode=cfg.fast_decode)

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.cfg.seed}-{self.epoch}-{self.rank}-{wid}")
        self._counter, self._reported, batch = _Counter(), 0, []
        for rep in range(1_000_000):  # pass 0 is the epoch's share; later passes only top up a short one
            order = epoch_order(self.shards, self.cfg.seed, self.epoch * 1000 + rep)
            buffer, good_before = [], self._counter.good
            for rec in read_slot(order, self.rank, self.world_size, wid, nw, self._counter):
                buffer.append(rec)
                if len(buffer) >= self.cfg.shuffle_buffer:
                    yield from self._add(buffer.pop(rng.randrange(len(buffer))), rng, batch)
            rng.shuffle(buffer)  # drain at the pass end, so passes (epochs) do not mix
            for rec in buffer:
                yield from self._add(rec, rng, batch)
            if self._counter.good == good_before:  # a whole pass without one good sample: never ends
                raise BadFractionError(f"rank {self.rank} worker {wid}: not one decodable sample in its share "
                                       f"of {len(self.shards)} shards; run jobs/pack.py --verify on them")

    def _add(self, rec, rng, batch):
        item = self._transform(rec, rng, self._counter)
        if item is not None:
            batch.append(item)
        if len(batch) == self.cfg.batch_size:
            out = collate(batch)
            out["_good"], out["_bad"] = self._counter.good - self._reported, self._counter.bad
            self._reported, self._counter.bad = self._counter.good, 0
            batch.clear()
            yield out

    def _transform(self, rec, rng, counter):
        try:
            item = self.transform(rec, self.cfg.flip and rng.random() < 0.5)
        except DECODE_ERRORS:  # one undecodable sample: skip it and count it
            counter.bad += 1
            return None
        counter.good += 1
        return item


class BadFractionError(RuntimeError):
    """More corrupt or lost samples than LoaderConfig.max_bad_fraction allows."""


class _Accounting:
    def __init__(self, cfg: LoaderConfig, what: str):
        self.cfg, self.what, self.good, self.bad = cfg, what, 0, 0

    def add(self, batch: dict) -> dict:
        self.good += int(batch.pop("_good"))
        self.bad += int(batch.pop("_bad"))
        if self.good + self.bad >= self.cfg.min_seen_for_check:
            self.check()
        return batch

    def check(self):
        seen = self.good + self.bad
        if seen and self.bad / seen > self.cfg.max_bad_fraction:
            raise BadFractionError(
                f"{self.what}: {self.bad} of {seen} samples corrupt or lost ({self.bad / seen:.1%} > "
                f"max_bad_fraction {self.cfg.max_bad_fraction:.1%}); run jobs/pack.py --verify on the shards"
            )

    @property
    def stats(self) -> dict:
        return {"good": self.good, "bad": self.bad}


class TrainLoader:
    """Iterate once per epoch: exactly len(self) batches on every rank. ``set_epoch`` like
    DistributedSampler; without it the epoch advances after each full pass."""

    def __init__(self, folder: str | Path, split: str = "train", cfg: LoaderConfig | None = None,
                 rank: int | None = None, world_size: int | None = None):
        self.cfg = cfg or LoaderConfig()
        self.rank, self.world_size = dist_rank_world(rank, world_size)
        self.shards = shard_list(folder, split)
        total = sum(c for _, c in self.shards)
        self.batches = total // (self.world_size * self.cfg.batch_size)
        if self.batches == 0:
            raise ValueError(f"{folder}/{split}: {total} samples are fewer than one batch of "
                             f"{self.cfg.batch_size} per rank x {self.world_size} ranks; lower batch_size")
        self.dataset = TrainStream(self.shards, self.cfg, self.rank, self.world_size)
        self.accounting = _Accounting(self.cfg, f"{folder}/{split}")
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.dataset.epoch = self.epoch
        dl = DataLoader(self.dataset, batch_size=None, num_workers=self.cfg.workers,
                        persistent_workers=False, prefetch_factor=2 if self.cfg.workers else None)
        it = iter(dl)
        for _ in range(self.batches):
            yield self.accounting.add(next(it))
        del it
        self.accounting.check()
        self.epoch += 1

    @property
    def stats(self) -> dict:
        return self.accounting.stats


class ValStream(IterableDataset):
    """This (rank, worker)'s contiguous range of the split's samples, each read once, in order."""

    def __init__(self, shards: list[tuple[str, int]], cfg: LoaderConfig, rank: int, world_size: int):
        super().__init__()
        self.shards, self.cfg, self.rank, self.world_size = shards, cfg, rank, world_size
        self.transform = Transform(cfg.size, cfg.resize, keep_original=True)

    def ranges(self, nw: int) -> list[tuple[int, int]]:
        """[start, stop) global sample indices per slot = rank * nw + worker."""
        total, slots = sum(c for _, c in self.shards), self.world_size * nw
        return [(s * total // slots, (s + 1) * total // slots) for s in range(slots)]

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        lo, hi = self.ranges(nw)[self.rank * nw + wid]
        counter, batch, reported, start = _Counter(), [], 0, 0
        for path, count in self.shards:
            stop = start + count
            if stop > lo and start < hi:
                seen = 0
                try:
                    for rec in iter_tar(path):
                        i = start + seen
                        seen += 1
                        if lo <= i < hi:
                            try:
                                batch.append(self.transform(rec, flip=False))
                                counter.good += 1
                            except DECODE_ERRORS:  # one undecodable sample: skip and count
                                counter.bad += 1
                        if len(batch) == self.cfg.batch_size:
                            yield self._emit(batch, counter, reported)
                            reported, counter.bad, batch = counter.good, 0, []
                except (tarfile.TarError, OSError, EOFError):
                    pass
                counter.bad += len(range(max(start + seen, lo), min(stop, hi)))
            start = stop
        if batch or counter.bad:
            yield self._emit(batch, counter, reported)

    @staticmethod
    def _emit(batch, counter, reported):
        out = collate(batch) if batch else {"image": None, "id": []}
        out["_good"], out["_bad"] = counter.good - reported, counter.bad
        return out


class ValLoader:
    """One pass over a split, each sample on exactly one rank; batches may be uneven across ranks."""

    def __init__(self, folder: str | Path, split: str = "val", cfg: LoaderConfig | None = None,
                 rank: int | None = None, world_size: int | None = None):
        self.cfg = cfg or LoaderConfig()
        self.rank, self.world_size = dist_rank_world(rank, world_size)
        self.shards = shard_list(folder, split)
        self.dataset = ValStream(self.shards, self.cfg, self.rank, self.world_size)
        self.accounting = _Accounting(self.cfg, f"{folder}/{split}")

    def __iter__(self):
        dl = DataLoader(self.dataset, batch_size=None, num_workers=self.cfg.workers,
                        prefetch_factor=2 if self.cfg.workers else None)
        for batch in dl:
            batch = self.accounting.add(batch)
            if batch["id"]:
                yield batch
        self.accounting.check()

    @property
    def stats(self) -> dict:
        return self.accounting.stats
