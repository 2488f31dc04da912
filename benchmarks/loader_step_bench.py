"""The real loader feeding the real SalGAN training step: img/s and the fraction of the time the GPU idles.

    python -m benchmarks.loader_step_bench --device cuda --workers 2          # the GPU check's figure
    python -m benchmarks.loader_step_bench --device cpu --n 16 --size 64 96 --model-size 32 48 --width 0.0625 \\
        --batch 4 --steps 3 --workers 1                                        # a dry run of the code path

Packs ``--distinct`` synthetic 640x480 JPEG samples into model-size shards (``--input-size``, the fast path)
and copies the shard until it holds ``--n`` samples (making a synthetic scene costs ~0.1 s; the loader's
speed does not depend on the content), then runs TrainLoader (``--workers`` processes, pinned memory on
CUDA) into the loop's adversarial updates (salnet.train.steps, bf16 and channels_last on CUDA), alternating
as the loop does: D on one batch, G on the next. ``--warmup`` untimed updates, then ``--steps`` timed ones
(one batch each). GPU busy time is measured with CUDA events around each update (its host-to-device copies
included):
idle fraction = 1 - busy / wall, i.e. the time the GPU waited for data or for the host. Also prints the
loader alone (same workers) and the updates alone (the same batch again and again), so the three can be
compared: a loader slower than the step shows as idle time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.loader_bench import JpegSynthetic
from salnet.data.loader import LoaderConfig, TrainLoader
from salnet.data.shards import pack, read_manifest
from salnet.data.synthetic import write_synthetic
from salnet.losses import build
from salnet.models import Discriminator, Generator
from salnet.train import steps


def replicate(folder: Path, total: int) -> int:
    """Copy the folder's train shards until the manifest lists at least ``total`` samples; returns the count."""
    manifest = read_manifest(folder)
    shards, count = list(manifest["shards"]), manifest["splits"]["train"]["count"]
    originals, k = list(shards), 0
    while count < total:
        for rec in originals:
            k += 1
            name = f"train-copy{k:05d}.tar"
            shutil.copyfile(folder / rec["name"], folder / name)
            shards.append({**rec, "name": name})
            count += rec["count"]
    manifest["shards"], manifest["splits"]["train"] = shards, {"count": count, "shards": [r["name"] for r in shards]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return count


def endless(loader: TrainLoader):
    while True:
        yield from loader


def make_step(args, device: torch.device):
    """The loop's adversarial updates on a batch already on ``device``: D, then G on the next batch, and so on."""
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: irrelevant to speed
        G = Generator(width=args.width).to(device, memory_format=fmt)
    D = Discriminator(width=args.width, input_size=tuple(args.model_size)).to(device, memory_format=fmt)
    opt_g = torch.optim.Adagrad([q for q in G.parameters() if q.requires_grad], lr=3e-4)
    opt_d = torch.optim.Adagrad(D.parameters(), lr=3e-4)
    loss, bf16, count = build("bce_pool4"), device.type == "cuda", [0]

    def step(batch):
        count[0] += 1
        if count[0] % 2:
            steps.discriminator_step(G, D, opt_d, batch, device, bf16)
        else:
            steps.generator_step(G, D, opt_g, loss, batch, 0.05, device, bf16)

    return step


def to_device(batch: dict, device: torch.device) -> dict:
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    out = {k: batch[k].to(device, non_blocking=True) for k in ("image", "map", "fixations")}
    out["image"] = out["image"].contiguous(memory_format=fmt)
    return out


def run(args, folder: Path, device: torch.device) -> dict:
    cfg = LoaderConfig(size=tuple(args.model_size), batch_size=args.batch, workers=args.workers,
                       shuffle_buffer=args.batch * 4, pin_memory=device.type == "cuda")
    step, cuda = make_step(args, device), device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    data = endless(TrainLoader(folder, "train", cfg, rank=0, world_size=1))
    for _ in range(args.warmup):
        step(to_device(next(data), device))
    sync()
    events, busy, t0 = [], 0.0, time.perf_counter()
    for _ in range(args.steps):
        batch = next(data)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(to_device(batch, device))
            end.record()
            events.append((start, end))
        else:  # synchronous: the step's own time is the busy time
            t = time.perf_counter()
            step(to_device(batch, device))
            busy += time.perf_counter() - t
    sync()
    wall = time.perf_counter() - t0
    busy = sum(s.elapsed_time(e) for s, e in events) / 1e3 if cuda else busy
    together = args.steps * args.batch / wall
    t = time.perf_counter()  # the loader alone
    for _ in range(args.steps):
        next(data)
    loader_alone = args.steps * args.batch / (time.perf_counter() - t)
    fixed = to_device(next(data), device)  # the updates alone, on one batch
    step(fixed), step(fixed)
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        step(fixed)
    sync()
    step_alone = args.steps * args.batch / (time.perf_counter() - t)
    return {"img_s": together, "gpu_idle_fraction": max(0.0, 1.0 - busy / wall), "loader_alone_img_s": loader_alone,
            "step_alone_img_s": step_alone, "workers": args.workers, "batch": args.batch, "steps": args.steps,
            "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=2048, help="samples in the shards (copies of --distinct ones)")
    p.add_argument("--distinct", type=int, default=64, help="synthetic samples made and packed")
    p.add_argument("--size", type=int, nargs=2, default=(480, 640), help="raw image H W")
    p.add_argument("--model-size", type=int, nargs=2, default=(192, 256), help="model input H W")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of G and D")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="loader processes (the issue: two cores per GPU)")
    p.add_argument("--pack-workers", type=int, default=8)
    p.add_argument("--steps", type=int, default=60, help="timed updates (one batch each; even: D and G alike)")
    p.add_argument("--warmup", type=int, default=6)
    p.add_argument("--shards", type=Path, help="reuse this folder of model-size shards instead of packing")
    p.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.shards
        if folder is None:
            folder = Path(tmp) / "shards"
            t = time.perf_counter()
            write_synthetic(Path(tmp) / "raw", {"train": args.distinct}, size=tuple(args.size), seed=0)
            pack(JpegSynthetic(Path(tmp) / "raw"), folder, shard_size_mb=8, workers=args.pack_workers,
                 input_size=tuple(args.model_size))
            n = replicate(folder, args.n)
            print(f"made and packed {args.distinct} model-size samples, copied to {n}, in "
                  f"{time.perf_counter() - t:.1f} s")
        out = run(args, folder, device)
    print(f"{out['device']}: loader ({args.workers} workers) + adversarial updates, batch {args.batch}: "
          f"{out['img_s']:.1f} img/s, GPU idle {out['gpu_idle_fraction']:.1%}; loader alone "
          f"{out['loader_alone_img_s']:.1f} img/s, updates alone {out['step_alone_img_s']:.1f} img/s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
