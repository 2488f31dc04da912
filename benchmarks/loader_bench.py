"""Loader throughput against decode-only throughput over the same shards, same cores, one run.

    python benchmarks/loader_bench.py [--n 256] [--size 480 640] [--model-size 192 256] [--workers 0]

Builds SALICON-like shards (synthetic scenes at 640x480 re-encoded as JPEG, 16-bit maps), timing
the packing; then times (a) decode-only: read the tars and decode JPEG image, PNG map and fixations,
nothing else; (b) the training loader: the same plus resize to the model input, fixation map, flip,
shuffle buffer and batching. Prints img/s of each and the ratio loader / decode (target >= 0.85).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salnet.data.loader import LoaderConfig, TrainLoader, shard_list
from salnet.data.sample import decode_gray, decode_rgb
from salnet.data.shards import iter_tar, pack
from salnet.data.synthetic import Synthetic, write_synthetic


class JpegSynthetic(Synthetic):
    """The synthetic release with JPEG images, as real releases ship them."""

    def load(self, split, id):
        s = super().load(split, id)
        buf = io.BytesIO()
        Image.open(io.BytesIO(s.image)).save(buf, format="JPEG", quality=90)
        s.image, s.image_ext = buf.getvalue(), "jpg"
        return s


def decode_only(folder: Path) -> int:
    n = 0
    for path, _ in shard_list(folder, "train"):
        for rec in iter_tar(path):
            decode_rgb(rec["jpg"])
            decode_gray(rec["map.png"])
            np.load(io.BytesIO(rec["fix.npy"]))
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, nargs=2, default=(480, 640))
    p.add_argument("--model-size", type=int, nargs=2, default=(192, 256))
    p.add_argument("--workers", type=int, default=0, help="loader workers (0: in the main process, like decode)")
    p.add_argument("--pack-workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats (best kept)")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core for both measurements (DataLoader workers use 1 thread too)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic(tmp / "raw", {"train": args.n}, size=tuple(args.size), seed=0)
        t = time.perf_counter()
        pack(JpegSynthetic(tmp / "raw"), tmp / "shards", shard_size_mb=16, workers=args.pack_workers)
        pack_rate = args.n / (time.perf_counter() - t)
        loaders = {}
        for fast in (False, True):
            cfg = LoaderConfig(size=tuple(args.model_size), batch_size=32, workers=args.workers,
                               shuffle_buffer=64, fast_decode=fast)
            loaders[fast] = TrainLoader(tmp / "shards", "train", cfg, rank=0, world_size=1)
            list(loaders[fast])  # warm up: page cache, resize weights
        # interleaved repeats, best of each: the machine is shared, so single timings are noisy
        best = {"decode": 0.0, False: 0.0, True: 0.0}
        for _ in range(args.repeats):
            t = time.perf_counter()
            n = decode_only(tmp / "shards")
            best["decode"] = max(best["decode"], n / (time.perf_counter() - t))
            for fast, loader in loaders.items():
                t = time.perf_counter()
                m = sum(len(b["id"]) for b in loader)
                best[fast] = max(best[fast], m / (time.perf_counter() - t))
        decode_rate, rates = best["decode"], best
    print(f"images {args.size[1]}x{args.size[0]} -> model {args.model_size[1]}x{args.model_size[0]}, n={args.n}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"packing      {pack_rate:8.1f} img/s  ({args.pack_workers} workers, JPEG + 16-bit PNG map)")
    print(f"decode-only  {decode_rate:8.1f} img/s  (1 process: full-size JPEG + PNG map + fixations; "
          f"best of {args.repeats})")
    for fast, name in ((False, "exact"), (True, "fast_decode")):
        print(f"loader {name:11s} {rates[fast]:8.1f} img/s  ({args.workers} workers, batch 32)  "
              f"ratio loader/decode = {rates[fast] / decode_rate:.3f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
