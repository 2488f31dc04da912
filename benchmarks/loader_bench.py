"""Loader throughput against decode-only throughput over the same shards, same cores, one run.

    python benchmarks/loader_bench.py [--n 256] [--size 480 640] [--model-size 192 256] [--batches 96]

Builds SALICON-like shards (synthetic scenes at 640x480 re-encoded as JPEG, 16-bit maps), timing the
packing; then times (a) decode-only: read the tars with the loader's reader (``wds.tarfile_to_samples``)
and decode JPEG image, PNG map and fixations, nothing else; (b) the training loader: the same plus resize to
the model input, fixation map, flip, shuffle buffer and batching. Both run as endless streams over the
epochs, interleaved batch by batch in one process on one thread: each loader batch of 32 is timed, then
decode-only's next 32 samples, so both see the same machine state within a fraction of a second (this
shared VM's speed drifts by up to +-25% over minutes, which made whole-pass timings disagree run to run).
Prints img/s of each over all batches and their ratio, loader / decode (target >= 0.85), with the range of
the ratio over windows of 8 batches. The fast_decode loader is compared with a decode-only that decodes the
JPEG at the same reduced (DCT-scaled) size; decode-only with salnet's own tar reader (``iter_tar``) is
timed alongside the exact loader, to show that the reader is not what the ratio measures.
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


def decoded(folder: Path, draft: tuple[int, int] | None = None, reader: str = "wds"):
    """Endless stream over the train shards' epochs (read with webdataset's tar reader, as the loader does,
    or salnet's iter_tar), decoding each sample's image (at the draft size when given, as fast_decode
    does), map and fixations; yields 1 per sample."""
    paths = [path for path, _ in shard_list(folder, "train")]
    while True:
        if reader == "wds":
            records = wds.DataPipeline(lambda: iter([{"url": p} for p in paths]), wds.tarfile_to_samples())
        else:
            records = (rec for p in paths for rec in iter_tar(p))
        for rec in records:
            decode_rgb(rec["jpg"], draft)
            decode_gray(rec["map.png"])
            np.load(io.BytesIO(rec["fix.npy"]))
            yield 1


def batches(loader: TrainLoader):
    """Endless stream of the loader's batches over its epochs; yields each batch's size."""
    while True:
        for batch in loader:
            yield len(batch["id"])


def interleaved(streams: dict, steps: int, window: int = 8) -> tuple[dict, list[float]]:
    """Time ``steps`` rounds of: one batch of streams["loader"], then as many samples of every other stream.
    Returns ({name: img/s over all rounds}, [loader / streams["decode"] rate ratio per window of rounds])."""
    spent = {k: 0.0 for k in streams}
    done = {k: 0 for k in streams}
    ratios, mark = [], (0.0, 0, 0.0, 0)
    for step in range(steps):
        t = time.perf_counter()
        n = next(streams["loader"])
        spent["loader"] += time.perf_counter() - t
        done["loader"] += n
        for key, stream in streams.items():
            if key != "loader":
                t = time.perf_counter()
                done[key] += sum(next(stream) for _ in range(n))
                spent[key] += time.perf_counter() - t
        if (step + 1) % window == 0:
            now = (spent["loader"], done["loader"], spent["decode"], done["decode"])
            ratios.append(((now[1] - mark[1]) / (now[0] - mark[0])) / ((now[3] - mark[3]) / (now[2] - mark[2])))
            mark = now
    return {k: done[k] / spent[k] for k in streams}, ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, nargs=2, default=(480, 640))
    p.add_argument("--model-size", type=int, nargs=2, default=(192, 256))
    p.add_argument("--workers", type=int, default=0,
                   help="loader workers (0: in the main process, like decode)")
    p.add_argument("--pack-workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=96, help="timed loader batches (each followed by decode-only's)")
    p.add_argument("--warmup", type=int, default=8, help="untimed rounds first")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core for both measurements (DataLoader workers use 1 thread too)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic(tmp / "raw", {"train": args.n}, size=tuple(args.size), seed=0)
        t = time.perf_counter()
        pack(JpegSynthetic(tmp / "raw"), tmp / "shards", shard_size_mb=16, workers=args.pack_workers)
        pack_rate = args.n / (time.perf_counter() - t)
        results, window = {}, min(8, args.batches)
        for fast in (False, True):
            cfg = LoaderConfig(size=tuple(args.model_size), batch_size=32, workers=args.workers,
                               shuffle_buffer=64, fast_decode=fast)
            draft = tuple(args.model_size) if fast else None
            streams = {"loader": batches(TrainLoader(tmp / "shards", "train", cfg, rank=0, world_size=1)),
                       "decode": decoded(tmp / "shards", draft)}
            if not fast:
                streams["iter_tar"] = decoded(tmp / "shards", None, reader="iter_tar")
            if args.warmup:  # page cache, resize weights, native library
                interleaved(streams, args.warmup, window=args.warmup + 1)
            results[fast] = interleaved(streams, args.batches, window)
    print(f"images {args.size[1]}x{args.size[0]} -> model {args.model_size[1]}x{args.model_size[0]}, "
          f"n={args.n}, torch threads {torch.get_num_threads()}, {args.batches} batches of 32 each, interleaved")
    print(f"packing      {pack_rate:8.1f} img/s  ({args.pack_workers} workers, JPEG + 16-bit PNG map)")
    for fast, name, ref in ((False, "exact", "full-size JPEG"), (True, "fast_decode", "JPEG DCT-scaled")):
        rate, ratios = results[fast]
        print(f"decode-only  {rate['decode']:8.1f} img/s  (1 process: {ref} + PNG map + fixations)")
        if "iter_tar" in rate:
            print(f"decode-only  {rate['iter_tar']:8.1f} img/s  (the same, tars read by salnet's iter_tar instead of "
                  f"webdataset)")
        print(f"loader {name:11s} {rate['loader']:6.1f} img/s  ({args.workers} workers, batch 32)  ratio "
              f"loader/decode {rate['loader'] / rate['decode']:.3f}  (target >= 0.85; windows of {window} batches: "
              f"min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
