"""Loader throughput against decode-only throughput over the same shards, same cores, one run.

    python benchmarks/loader_bench.py [--n 256] [--size 480 640] [--model-size 192 256] [--workers 0]

Builds SALICON-like shards (synthetic scenes at 640x480 re-encoded as JPEG, 16-bit maps), timing
the packing; then times (a) decode-only: read the tars with the loader's reader
(``wds.tarfile_to_samples``) and decode JPEG image, PNG map and fixations, nothing else; (b) the
training loader: the same plus resize to the model input, fixation map, flip, shuffle buffer and
batching. Prints img/s of each (best of the repeats) and the ratio loader / decode (target >= 0.85): of
the two bests, and the median over repeats of each loader pass against its decode-only pass of the same
repeat (a few seconds earlier). The fast_decode loader is compared with a decode-only that decodes the JPEG
at the same reduced (DCT-scaled) size.
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
import webdataset as wds
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


def decode_only(folder: Path, draft: tuple[int, int] | None = None, reader: str = "wds") -> int:
    """Read every train shard (with webdataset's tar reader, as the loader does, or salnet's iter_tar)
    and decode each sample's image (at the draft size when given, as fast_decode does), map and
    fixations. Returns the number of samples."""
    n = 0
    paths = [path for path, _ in shard_list(folder, "train")]
    if reader == "wds":
        records = wds.DataPipeline(lambda: iter([{"url": p} for p in paths]), wds.tarfile_to_samples())
    else:
        records = (rec for p in paths for rec in iter_tar(p))
    for rec in records:
        decode_rgb(rec["jpg"], draft)
        decode_gray(rec["map.png"])
        np.load(io.BytesIO(rec["fix.npy"]))
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, nargs=2, default=(480, 640))
    p.add_argument("--model-size", type=int, nargs=2, default=(192, 256))
    p.add_argument("--workers", type=int, default=0,
                   help="loader workers (0: in the main process, like decode)")
    p.add_argument("--pack-workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9, help="interleaved timing repeats")
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
        # interleaved repeats: the machine is shared, so single timings are noisy. Kept: the best of each,
        # and the ratio of each loader pass to its decode-only pass of the same repeat (seconds apart, so
        # nearly the same machine state), whose median is robust to the slow drifts that move the two bests apart
        best = {"decode": 0.0, "iter_tar": 0.0, "draft": 0.0, False: 0.0, True: 0.0}
        paired: dict[bool, list[float]] = {False: [], True: []}
        draft = tuple(args.model_size)
        refs = (("decode", None, "wds"), ("iter_tar", None, "iter_tar"), ("draft", draft, "wds"))
        for _ in range(args.repeats):
            rate = {}
            for key, draft, reader in refs:
                t = time.perf_counter()
                n = decode_only(tmp / "shards", draft, reader)
                rate[key] = n / (time.perf_counter() - t)
            for fast, loader in loaders.items():
                t = time.perf_counter()
                m = sum(len(b["id"]) for b in loader)
                rate[fast] = m / (time.perf_counter() - t)
                paired[fast].append(rate[fast] / rate["draft" if fast else "decode"])
            best = {k: max(v, rate[k]) for k, v in best.items()}
    print(f"images {args.size[1]}x{args.size[0]} -> model {args.model_size[1]}x{args.model_size[0]}, "
          f"n={args.n}, torch threads {torch.get_num_threads()}")
    print(f"packing      {pack_rate:8.1f} img/s  ({args.pack_workers} workers, JPEG + 16-bit PNG map)")
    print(f"decode-only  {best['decode']:8.1f} img/s  (1 process: full-size JPEG + PNG map + fixations; "
          f"best of {args.repeats})")
    print(f"decode-draft {best['draft']:8.1f} img/s  (the same, JPEG DCT-scaled as fast_decode does)")
    print(f"decode-only  {best['iter_tar']:8.1f} img/s  (the same, tars read by salnet's iter_tar instead of "
          f"webdataset: loader exact/this = {best[False] / best['iter_tar']:.3f})")
    for fast, name, ref in ((False, "exact", "decode"), (True, "fast_decode", "draft")):
        print(f"loader {name:11s} {best[fast]:8.1f} img/s  ({args.workers} workers, batch 32)  "
              f"ratio loader/{ref}: best/best {best[fast] / best[ref]:.3f}, median of paired passes "
              f"{statistics.median(paired[fast]):.3f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
