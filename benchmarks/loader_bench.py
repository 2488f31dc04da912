"""Training-loader throughput per core, from each kind of shard, against today's exact path: one run, one thread.

    python -m benchmarks.loader_bench [--n 256] [--size 480 640] [--model-size 192 256] [--batches 96]

Builds SALICON-like samples (synthetic scenes at 640x480 re-encoded as JPEG, 16-bit maps) and packs them three
ways: full-size as released (JPEG + 16-bit PNG map: today's shards), full-size with the map as raw .npy
(``--map-codec npy``) and model-size (``--input-size``: stored already resized, the loader only scales). Then
times the training loader (resize to the model input, fixation map, flip, shuffle buffer, batches of 32) on
each: exact (full-resolution INTER_AREA, SalGAN's), fast_decode (JPEG decoded at a DCT-reduced size first),
exact over the .npy maps, and model-size; plus decode-only (the same tars read, JPEG + PNG map + fixations
decoded, nothing else) as the floor of today's path. All run as endless streams over the epochs in one
process on one thread, interleaved batch by batch (one batch of each in turn), so every path sees the same
machine state within a fraction of a second: this shared VM's speed drifts by up to +-25% over minutes. Then
one validation pass per kind (the loader that keeps each original-size map and the points: validation
scores there), passes alternating, best of three.
Prints img/s per core (one thread) and the cores one GPU needs at 2,000 img/s (a SalGAN step on one H100 at
half its bf16 peak), each path against the exact one; target: >= 1,000 img/s per core from model-size shards.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salnet.data.loader import LoaderConfig, TrainLoader, ValLoader, shard_list
from salnet.data.sample import decode_gray, decode_rgb
from salnet.data.shards import iter_tar, pack, read_manifest
from salnet.data.synthetic import Synthetic, write_synthetic

GPU_RATE = 2000.0  # img/s one GPU consumes (issue 16: ~206 GFLOP per image at half an H100's bf16 peak)
TARGET = 1000.0  # img/s per core from model-size shards: two cores feed one GPU


class JpegSynthetic(Synthetic):
    """The synthetic release with JPEG images, as real releases ship them."""

    def load(self, split, id):
        s = super().load(split, id)
        buf = io.BytesIO()
        Image.open(io.BytesIO(s.image)).save(buf, format="JPEG", quality=90)
        s.image, s.image_ext = buf.getvalue(), "jpg"
        return s


def decoded(folder: Path):
    """Endless stream over the train shards' epochs (read with the loader's tar reader), decoding each
    sample's JPEG, PNG map and fixations; yields 1 per sample."""
    paths = [path for path, _ in shard_list(folder, "train")]
    while True:
        for rec in (rec for p in paths for rec in iter_tar(p)):
            decode_rgb(rec["jpg"])
            decode_gray(rec["map.png"])
            np.load(io.BytesIO(rec["fix.npy"]))
            yield 1


def batches(loader: TrainLoader):
    """Endless stream of the loader's batches over its epochs; yields each batch's size."""
    while True:
        for batch in loader:
            yield len(batch["id"])


def interleaved(streams: dict, rounds: int, batch: int, window: int = 8) -> dict[str, tuple[float, list[float]]]:
    """Time ``rounds`` rounds of one batch of every stream in turn (a loader yields a batch; decode-only streams
    yield samples, ``batch`` of them). Returns {name: (img/s over all rounds, [img/s per window of rounds])}."""
    spent, done, marks, windows = ({k: 0.0 for k in streams}, {k: 0 for k in streams}, {}, {k: [] for k in streams})
    for r in range(rounds):
        for key, (stream, per_sample) in streams.items():
            t = time.perf_counter()
            done[key] += sum(next(stream) for _ in range(batch)) if per_sample else next(stream)
            spent[key] += time.perf_counter() - t
            if (r + 1) % window == 0:
                t0, n0 = marks.get(key, (0.0, 0))
                windows[key].append((done[key] - n0) / (spent[key] - t0))
                marks[key] = (spent[key], done[key])
    return {k: (done[k] / spent[k], windows[k]) for k in streams}


def build(tmp: Path, args) -> dict[str, float]:
    """Write the release and pack it three ways; returns packing img/s per kind."""
    write_synthetic(tmp / "raw", {"train": args.n}, size=tuple(args.size), seed=0)
    rates = {}
    for kind, kw in (("full", {}), ("npy", {"map_codec": "npy"}), ("model", {"input_size": tuple(args.model_size)})):
        t = time.perf_counter()
        pack(JpegSynthetic(tmp / "raw"), tmp / kind, shard_size_mb=16, workers=args.pack_workers, **kw)
        rates[kind] = args.n / (time.perf_counter() - t)
    return rates


def kb_per_sample(folder: Path) -> float:
    m = read_manifest(folder)
    return sum(s["bytes"] for s in m["shards"]) / sum(s["count"] for s in m["shards"]) / 1e3


PATHS = {  # name: (shard kind, fast_decode, label)
    "exact": ("full", False, "full-size shards, exact (today)"),
    "fast_decode": ("full", True, "full-size shards, fast_decode"),
    "npy_maps": ("npy", False, "full-size, .npy maps, exact"),
    "model_size": ("model", False, "model-size shards"),
}


def measure(tmp: Path, args) -> dict[str, tuple[float, list[float]]]:
    streams = {}
    for name, (kind, fast, _) in PATHS.items():
        cfg = LoaderConfig(size=tuple(args.model_size), batch_size=32, workers=args.workers, shuffle_buffer=64,
                           fast_decode=fast)
        streams[name] = (batches(TrainLoader(tmp / kind, "train", cfg, rank=0, world_size=1)), False)
    streams["decode"] = (decoded(tmp / "full"), True)
    if args.warmup:  # page cache, resize weights, native library
        interleaved(streams, args.warmup, 32, window=args.warmup + 1)
    return interleaved(streams, args.batches, 32, window=min(8, args.batches))


def validation(tmp: Path, args, repeats: int = 3) -> dict[str, float]:
    """img/s of one validation pass (original-size maps and points kept) over the train split of each shard kind;
    passes alternate between the kinds, the best of ``repeats`` kept."""
    cfg = LoaderConfig(size=tuple(args.model_size), batch_size=32, workers=args.workers, flip=False)
    best = {}
    for _ in range(repeats):
        for kind in ("full", "npy", "model"):
            t = time.perf_counter()
            n = sum(len(b["id"]) for b in ValLoader(tmp / kind, "train", cfg, rank=0, world_size=1))
            best[kind] = max(best.get(kind, 0.0), n / (time.perf_counter() - t))
    return best


def report(args, pack_rates: dict, sizes: dict, results: dict, val: dict) -> None:
    h, w = args.model_size
    print(f"images {args.size[1]}x{args.size[0]} -> model {w}x{h}, n={args.n}; one thread (torch threads "
          f"{torch.get_num_threads()}, loader workers {args.workers}); {args.batches} batches of 32 per path, "
          "interleaved batch by batch")
    print(f"packing ({args.pack_workers} workers): full-size {pack_rates['full']:.1f} img/s, .npy maps "
          f"{pack_rates['npy']:.1f} img/s, model-size {pack_rates['model']:.1f} img/s; bytes per sample: "
          f"{sizes['full']:.0f} KB, {sizes['npy']:.0f} KB, {sizes['model']:.0f} KB (training reads "
          f"{sizes['model_read']:.0f} KB of it)")
    exact, window = results["exact"][0], min(8, args.batches)
    print(f"{'path':34s}{'img/s per core':>16s}{'cores per GPU at 2,000 img/s':>31s}{'x exact':>9s}  windows of "
          f"{window} batches (min/median/max img/s)")
    for name, (_, _, label) in PATHS.items():
        rate, win = results[name]
        print(f"{label:34s}{rate:16.1f}{GPU_RATE / rate:31.1f}{rate / exact:9.2f}  "
              f"{min(win):.0f} / {statistics.median(win):.0f} / {max(win):.0f}")
    dec = results["decode"][0]
    print(f"{'decode-only, full-size (floor)':34s}{dec:16.1f}{GPU_RATE / dec:31.1f}{dec / exact:9.2f}  "
          f"(loader exact / decode-only {exact / dec:.3f})")
    print(f"validation loader (original-size maps decoded, points), one pass, best of 3: full-size {val['full']:.1f} "
          f"img/s, .npy maps {val['npy']:.1f} img/s, model-size {val['model']:.1f} img/s per core")
    model = results["model_size"][0]
    print(f"model-size shards: {model:.0f} img/s per core, target >= {TARGET:.0f}: "
          f"{'met' if model >= TARGET else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, nargs=2, default=(480, 640), help="raw image H W")
    p.add_argument("--model-size", type=int, nargs=2, default=(192, 256), help="model input H W")
    p.add_argument("--workers", type=int, default=0, help="loader workers (0: in the main process, one thread)")
    p.add_argument("--pack-workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=96, help="timed batches per path")
    p.add_argument("--warmup", type=int, default=8, help="untimed rounds first")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core (DataLoader workers use 1 thread too)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pack_rates = build(tmp, args)
        sizes = {k: kb_per_sample(tmp / k) for k in ("full", "npy", "model")}
        read = [r for path, _ in shard_list(tmp / "model", "train") for r in iter_tar(path, {"map.npy"})]
        sizes["model_read"] = sum(len(v) for r in read for k, v in r.items() if k != "__key__") / len(read) / 1e3
        results = measure(tmp, args)
        val = validation(tmp, args)
    report(args, pack_rates, sizes, results, val)


if __name__ == "__main__":
    main()
