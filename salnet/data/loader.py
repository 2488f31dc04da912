"""Streaming, DDP-safe loaders over the shards of :mod:`salnet.data.shards`, on webdataset pipelines.

Training, per (rank, DataLoader worker) and per pass over the data, a ``wds.DataPipeline``:
``wds.SimpleShardList`` shuffles the shards with (seed, epoch), the same order on every rank; rank then
worker slicing (``wds.split_by_node``/``split_by_worker``'s, made explicit: a rank may come without a
process group); the tar reader (:func:`salnet.data.tario.tar_records`, ``wds.tarfile_to_samples`` at ~10x
its speed) whose handler skips a damaged tar; a counting stage; ``wds.shuffle``. Passes chain into one
batching stage (decode, resize and flip into a batch's slots, :meth:`_Counter.batches`). Each rank takes
exactly ``len(loader)`` = floor(passes x total / (world_size x batch)) batches per epoch from the repeating stream,
so uneven shards never make a rank wait in a collective.
Order and flips are a function of (seed, epoch, rank, worker) only, so training resumes mid-epoch by
skipping batches. With fewer shards than rank x worker slots, the slots split every shard by sample index.
Validation: the split's samples in manifest order are cut into contiguous ranges, one per (rank,
worker), each read exactly once across ranks; batches keep the original-size map and points.
An undecodable sample is skipped and counted (by the batching stage), and so is each sample a
truncated or unreadable tar never delivered: the tar stage only reports that an error happened, so a
custom stage, _ShardCounter, numbers each shard's records against the manifest's count. Past
``max_bad_fraction`` the run stops with :class:`BadFractionError`.
Batch: {"image": float (B, 3, H, W) [0, 1], "map": (B, 1, H, W) [0, 1], "fixations": (B, 1, H, W)
{0, 1}, "id": list[str]}; validation adds "map_orig": list of (1, H0, W0) and "points": list of
int64 (N, 3) (y, x, observer) at the original resolution.
Shards packed at the model's input size (``input_size`` in the manifest, :mod:`salnet.data.records`) give
the same batches bit for bit, from stored values instead of decoding and resizing; their input size must
be the loader's (checked when the loader is made). Training does not even read their original-size maps.
"""

from __future__ import annotations

import os
import random
import tarfile
import zlib
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salnet.data.features import TapTransform, check_cache, read_cache_manifest, zip_stage
from salnet.data.shards import read_manifest
from salnet.data.tario import tar_records
from salnet.data.transform import BatchPool, Transform, collate
from salnet.data.worker_signals import ignore_stop_signals, start_workers

# what a corrupt sample raises: PIL (OSError, SyntaxError for broken headers), zlib, numpy/json
# (ValueError), a missing member (KeyError); anything else is a bug and propagates
DECODE_ERRORS = (ValueError, OSError, EOFError, KeyError, SyntaxError, zlib.error)
# a damaged shard in the tar stage: truncated/missing (tarfile, OS), duplicate member (ValueError)
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)


@dataclass
class LoaderConfig:
    """size: model input (H, W) (SalGAN 192x256, loss study 300x400); resize: imresize method for the
    image and map; flip: random horizontal flip (training only); max_bad_fraction: stop when more of
    the samples seen are corrupt; min_seen_for_check: samples seen before the fraction is enforced
    mid-epoch (it is always enforced at the end of an epoch); fast_decode: training only, let libjpeg
    decode JPEGs at 1/2, 1/4 or 1/8 scale (DCT scaling, still at least the model size) before the
    resize: about 2x faster, but no longer the exact full-resolution INTER_AREA of SalGAN's code;
    pin_memory: page-locked batches, so ``.to(device, non_blocking=True)`` overlaps the copy with
    compute (default: when CUDA is available); passes: training only, passes over the split per epoch (each in
    a new shard and shuffle order); features: a feature cache of these shards (:mod:`salnet.data.features`):
    batches add its taps as ``tap:<layer>``, and flip must be off. With model-size shards, size must be the
    shards' input size and resize "area"; fast_decode does not apply (nothing is decoded)."""

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
    pin_memory: bool = field(default_factory=torch.cuda.is_available)
    passes: int = 1
    features: str | None = None


def dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit (rank, world_size), else torch.distributed's when initialised, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    return rank, world_size


def worker_slot() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this, (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


def shard_list(folder: str | Path, split: str) -> list[tuple[str, int]]:
    """[(absolute shard path, sample count)] of a split, from the folder's manifest (absolute: a relative
    "a:b/..." path would read as a URL scheme)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if split not in manifest["splits"]:
        raise ValueError(f"{folder}: no split {split!r} in the manifest (has {sorted(manifest['splits'])})")
    counts = {r["name"]: r["count"] for r in manifest["shards"]}
    return [(os.path.abspath(folder / name), counts[name]) for name in manifest["splits"][split]["shards"]]


def check_input_size(folder: str | Path, cfg: LoaderConfig) -> bool:
    """Whether the folder holds model-size shards; ValueError when they were packed for another input size
    (or the loader asks for another resize than the packer's INTER_AREA)."""
    packed = read_manifest(folder).get("input_size")
    if packed is None:
        return False
    if tuple(packed) != tuple(cfg.size) or cfg.resize != "area":
        raise ValueError(f"{folder}: shards packed at the model input size {packed[1]}x{packed[0]} (WxH, area "
                         f"resize) but this run's input size is {cfg.size[1]}x{cfg.size[0]} with resize "
                         f"{cfg.resize!r}; repack with jobs/pack.py --input-size {cfg.size[1]}x{cfg.size[0]}, or "
                         "use full-size shards (packed without --input-size)")
    return True


def epoch_seed(seed: int, epoch: int) -> int:
    """The shard-shuffle seed of an epoch (``wds.SimpleShardList(urls, seed=...)``)."""
    return seed * 1_000_003 + epoch


def epoch_order(shards: list, seed: int, epoch: int) -> list:
    """The shard order of an epoch, as the pipeline's ``wds.SimpleShardList`` yields it: a function of
    (seed, epoch) only, so identical on all ranks."""
    order = list(shards)
    random.Random(epoch_seed(seed, epoch)).shuffle(order)
    return order


def take_every(start: int, step: int):
    """Pipeline stage keeping items start, start + step, ...: ``wds.split_by_node`` / ``split_by_worker``
    with an explicit rank or worker id."""
    return lambda src: islice(src, start, None, step)


class _Counter:
    """Good/bad samples of one (rank, worker) stream, the tar handler that skips damaged shards, and the
    batching stage that transforms and counts samples (reporting them in each batch as ``_good``/``_bad``,
    popped by the loader)."""

    def __init__(self):
        self.good = self.bad = self.reported_bad = 0

    def tar_error(self, exn: Exception) -> bool:
        """Tar stage handler: skip the rest of the shard and go on (_ShardCounter counts what was lost)."""
        if isinstance(exn, TAR_ERRORS):
            return True
        raise exn

    def batches(self, transform: Transform, flips: random.Random | None, size: int, partial: bool, records):
        """Stage after the records (``wds.map`` and ``wds.batched`` in one): each record transformed into
        the next slot of a batch from a :class:`BatchPool` (flipped if ``flips`` draws < 0.5; an undecodable one is
        skipped and counted bad, its slot reused), a batch yielded as soon as it is full: ``wds.batched``
        pulls one record more first, which at the end of a pass starts the next pass's shuffle buffer.
        ``partial``: the last, short batch too, then an empty batch carrying the bad samples no batch
        reported."""
        batch: dict[str, torch.Tensor] | None = None
        items: list[dict] = []
        pool = BatchPool(transform)
        for rec in records:
            flip = flips is not None and flips.random() < 0.5
            if batch is None:
                batch = pool.new_batch(size)
            k = len(items)
            try:
                items.append(transform(rec, flip, {key: t[k] for key, t in batch.items()}))
            except DECODE_ERRORS:
                self.bad += 1
                continue
            self.good += 1
            if len(items) == size:
                yield self._report(collate(items, batch))
                batch, items = None, []
        if partial and items and batch is not None:  # items: a batch was started
            yield self._report(collate(items, batch))
        if partial and self.bad > self.reported_bad:
            yield self._report({"image": None, "id": []})

    def _report(self, batch: dict) -> dict:
        batch["_good"], batch["_bad"] = len(batch["id"]), self.bad - self.reported_bad
        self.reported_bad = self.bad
        return batch


class _ShardCounter:
    """Stage after the tar stage: numbers each shard's records, keeps those ``keep(url, index)`` selects, and
    counts bad the selected indices a shard never delivered (truncated, unreadable or missing tar; the
    manifest has its count). ``note`` runs on the shard list before the tar stage."""

    def __init__(self, counts: dict[str, int], keep, counter: _Counter):
        self.counts, self.keep, self.counter = counts, keep, counter
        self.opened: list[dict] = []  # the shard dicts, in the order the tar stage opens them

    def note(self, shards):
        for shard in shards:
            self.opened.append(shard)
            yield shard

    def __call__(self, records):
        pos = seen = 0
        for rec in records:
            while self.opened[pos]["url"] != rec["__url__"]:  # the shards opened before this one ended
                self._ended(pos, seen)
                pos, seen = pos + 1, 0
            seen += 1
            if self.keep(rec["__url__"], seen - 1):
                yield rec
        for p in range(pos, len(self.opened)):
            self._ended(p, seen if p == pos else 0)

    def _ended(self, pos: int, seen: int) -> None:
        url = self.opened[pos]["url"]
        self.counter.bad += sum(1 for i in range(seen, self.counts[url]) if self.keep(url, i))


class _Stream(IterableDataset):
    """One rank's stream over ``shards`` [(path, count)] (iterated in each DataLoader worker)."""

    def __init__(self, shards: list[tuple[str, int]], cfg: LoaderConfig, rank: int, world_size: int,
                 keep_original: bool, skip: frozenset[str] = frozenset()):
        super().__init__()
        self.shards, self.cfg, self.rank, self.world_size = shards, cfg, rank, world_size
        self.counts, self.epoch, self.skip = dict(shards), 0, skip  # skip: tar members left unread
        fast = cfg.fast_decode and not keep_original  # validation stays exact
        self.transform = Transform(cfg.size, cfg.resize, keep_original=keep_original, fast_decode=fast)
        if cfg.features:  # the cache's taps join each batch (the source shards still give maps and fixations)
            self.transform = TapTransform(read_cache_manifest(cfg.features)["shapes"], cfg.size, cfg.resize,
                                          keep_original=keep_original)

    def tar_stage(self, counter: _Counter):  # the shards' records, zipped with the cache's when there is one
        stage = partial(zip_stage, self.cfg.features) if self.cfg.features else tar_records
        return stage(counter.tar_error, self.skip)


class TrainStream(_Stream):
    """Infinite stream of collated batches for one rank (see the module docstring)."""

    def __iter__(self):
        wid, nw = worker_slot()
        key, counter = f"{self.cfg.seed}-{self.epoch}-{self.rank}-{wid}", _Counter()
        flips = random.Random(f"{key}-flip") if self.cfg.flip else None
        return iter(wds.DataPipeline(
            partial(self._passes, wid, nw, counter, random.Random(key)),
            partial(counter.batches, self.transform, flips, self.cfg.batch_size, False),
        ))

    def _passes(self, wid: int, nw: int, counter: _Counter, rng: random.Random):
        """Records of this (rank, worker): pass 0 is its share of the split; later passes (new shard orders)
        continue it, for an epoch of several passes (``LoaderConfig.passes``) or a share that ran short. Each
        pass drains its shuffle buffer, so every pass covers the share."""
        slots, slot = self.world_size * nw, self.rank * nw + wid
        by_sample = len(self.shards) < slots  # too few shards: every slots-th sample of every shard
        urls = [path for path, _ in self.shards]
        for rep in range(1_000_000):
            counting = _ShardCounter(self.counts, (lambda url, i: i % slots == slot) if by_sample else
                                     (lambda url, i: True), counter)
            good_before = counter.good
            yield from wds.DataPipeline(
                wds.SimpleShardList(urls, seed=epoch_seed(self.cfg.seed, self.epoch * 1000 + rep)),
                [] if by_sample else [take_every(self.rank, self.world_size), take_every(wid, nw)],
                counting.note,
                self.tar_stage(counter),
                counting,
                wds.shuffle(self.cfg.shuffle_buffer, initial=self.cfg.shuffle_buffer, rng=rng),
            )
            if counter.good == good_before:  # a whole pass without one good sample: never ends
                raise BadFractionError(f"rank {self.rank} worker {wid}: not one decodable sample in its "
                                       f"share of {len(self.shards)} shards; run jobs/pack.py --verify")


class BadFractionError(RuntimeError):
    """More corrupt or lost samples than LoaderConfig.max_bad_fraction allows."""


class _Loader:
    """What both loaders share: rank and shards, the DataLoader, and the bad-sample accounting (``stats``:
    the good and the corrupt or lost samples of everything this loader has delivered)."""

    def __init__(self, folder: str | Path, split: str, cfg: LoaderConfig | None, rank: int | None,
                 world_size: int | None):
        self.cfg = cfg or LoaderConfig()
        self.rank, self.world_size = dist_rank_world(rank, world_size)
        self.shards, self.what, self.good, self.bad = shard_list(folder, split), f"{folder}/{split}", 0, 0
        self.model_size = check_input_size(folder, self.cfg)
        if self.cfg.features:
            check_cache(self.cfg.features, folder, self.cfg.size, flip=self.cfg.flip)

    def _dataloader(self, dataset: IterableDataset) -> DataLoader:
        return DataLoader(dataset, batch_size=None, num_workers=self.cfg.workers,
                          pin_memory=self.cfg.pin_memory, prefetch_factor=2 if self.cfg.workers else None,
                          worker_init_fn=ignore_stop_signals if self.cfg.workers else None)

    def _account(self, batch: dict) -> dict:
        """Pop a batch's ``_good``/``_bad`` counts into the totals; check them once enough were seen."""
        self.good += int(batch.pop("_good"))
        self.bad += int(batch.pop("_bad"))
        if self.good + self.bad >= self.cfg.min_seen_for_check:
            self._check()
        return batch

    def _check(self) -> None:
        seen = self.good + self.bad
        if seen and self.bad / seen > self.cfg.max_bad_fraction:
            raise BadFractionError(
                f"{self.what}: {self.bad} of {seen} samples corrupt or lost ({self.bad / seen:.1%} > "
                f"max_bad_fraction {self.cfg.max_bad_fraction:.1%}); run jobs/pack.py --verify on the shards"
            )

    @property
    def stats(self) -> dict:
        return {"good": self.good, "bad": self.bad}


MAX_PASSES = 100  # a pass's shard order is seeded with epoch * 1000 + pass: passes must stay below 1000


class TrainLoader(_Loader):
    """Iterate once per epoch: exactly len(self) batches on every rank. ``set_epoch`` like
    DistributedSampler; without it the epoch advances after each full pass."""

    def __init__(self, folder: str | Path, split: str = "train", cfg: LoaderConfig | None = None,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__(folder, split, cfg, rank, world_size)
        total = sum(c for _, c in self.shards)
        if not 1 <= self.cfg.passes <= MAX_PASSES:
            raise ValueError(f"{folder}/{split}: passes={self.cfg.passes} per epoch; it must be 1 to {MAX_PASSES}")
        self.batches = total * self.cfg.passes // (self.world_size * self.cfg.batch_size)
        if self.batches == 0:
            raise ValueError(f"{folder}/{split}: {total} samples are fewer than one batch of "
                             f"{self.cfg.batch_size} per rank x {self.world_size} ranks; lower batch_size")
        # model-size shards: the original-size map is for validation only; training seeks over it
        skip = frozenset({"map.npy"}) if self.model_size else frozenset()
        self.dataset = TrainStream(self.shards, self.cfg, self.rank, self.world_size, keep_original=False, skip=skip)
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.dataset.epoch = self.epoch
        it = start_workers(self._dataloader(self.dataset))
        for _ in range(self.batches):
            yield self._account(next(it))
        del it
        self._check()
        self.epoch += 1


class ValStream(_Stream):
    """This (rank, worker)'s contiguous range of the split's samples, each read once, in order."""

    def ranges(self, nw: int) -> list[tuple[int, int]]:
        """[start, stop) global sample indices per slot = rank * nw + worker."""
        total, slots = sum(c for _, c in self.shards), self.world_size * nw
        return [(s * total // slots, (s + 1) * total // slots) for s in range(slots)]

    def __iter__(self):
        wid, nw = worker_slot()
        lo, hi = self.ranges(nw)[self.rank * nw + wid]
        starts, mine, start = {}, [], 0
        for path, count in self.shards:
            starts[path] = start
            if start + count > lo and start < hi:
                mine.append({"url": path})
            start += count
        counter = _Counter()
        counting = _ShardCounter(self.counts, lambda url, i: lo <= starts[url] + i < hi, counter)
        return iter(wds.DataPipeline(
            partial(iter, mine),  # the overlapping shards in manifest order (a list would be taken as stages)
            counting.note,
            self.tar_stage(counter),
            counting,
            partial(counter.batches, self.transform, None, self.cfg.batch_size, True),
        ))


class ValLoader(_Loader):
    """One pass over a split, each sample on exactly one rank; batches may be uneven across ranks."""

    def __init__(self, folder: str | Path, split: str = "val", cfg: LoaderConfig | None = None,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__(folder, split, cfg, rank, world_size)
        self.dataset = ValStream(self.shards, self.cfg, self.rank, self.world_size, keep_original=True)

    def __iter__(self):
        for batch in start_workers(self._dataloader(self.dataset)):
            batch = self._account(batch)
            if batch["id"]:
                yield batch
        self._check()
