"""Throughput of the training loop's own SalGAN adversarial step (salnet.train.steps), and DDP scaling.

One "adversarial step" = a D update and a G update on a batch (the loop alternates them batch by batch,
as the released code does; the pair processes each image once through each update). Prints img/s,
achieved TFLOP/s (FLOPs from the layer shapes, benchmarks/flops.py) and the ratio to a plain matmul's
FLOP/s measured in the same run on the same device and dtype.

    python benchmarks/train_bench.py --device cpu --batch 4 --steps 2            # CPU smoke figures
    python benchmarks/train_bench.py --device cuda --bf16 --channels-last        # one GPU, batch 32
    torchrun --nproc-per-node 8 benchmarks/train_bench.py --device cuda --bf16   # DDP scaling

Under torchrun it reports the per-GPU and total img/s of DDP-wrapped G and D (gradients all-reduced).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import LayerFlops  # noqa: E402
from model_bench import matmul_reference, timed  # noqa: E402

from salnet.losses import build  # noqa: E402
from salnet.models import SALGAN_INPUT_SIZE, Discriminator, Generator  # noqa: E402
from salnet.train import steps  # noqa: E402
from salnet.train.distributed import all_reduce_sum, cleanup, init_distributed  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="per process")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args(argv)
    env = init_distributed()
    device = torch.device(args.device, env.local_rank) if args.device == "cuda" else torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: irrelevant to speed
        G = Generator(width=args.width).to(device, memory_format=fmt)
    D = Discriminator(width=args.width).to(device, memory_format=fmt)
    g_run = DDP(G) if env.distributed else G
    d_run = DDP(D) if env.distributed else D
    if args.compile:
        g_run, d_run = torch.compile(g_run), torch.compile(d_run)
    opt_g = torch.optim.Adagrad([q for q in G.parameters() if q.requires_grad], lr=3e-4)
    opt_d = torch.optim.Adagrad(D.parameters(), lr=3e-4)
    loss = build("bce_pool4")
    h, w = SALGAN_INPUT_SIZE
    batch = {"image": torch.rand(args.batch, 3, h, w, device=device).contiguous(memory_format=fmt),
             "map": torch.rand(args.batch, 1, h, w, device=device),
             "fixations": (torch.rand(args.batch, 1, h, w, device=device) < 1e-3).float()}

    def pair(g, d):
        steps.discriminator_step(G, d, opt_d, batch, device, args.bf16)
        steps.generator_step(g, D, opt_g, loss, batch, 0.05, device, args.bf16)

    with LayerFlops(G, D) as counter:
        pair(G, D)
    sec = timed(lambda: pair(g_run, d_run), args.steps, args.warmup, device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    ref = matmul_reference(device, dtype, 8192 if device.type == "cuda" else 2048, 20 if device.type == "cuda" else 5)
    total = all_reduce_sum(torch.tensor([args.batch / sec], device=device)).item()
    if env.is_main:
        threads = torch.get_num_threads()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
        flops = counter.total / sec
        print(f"device {name} x{env.world_size}, batch {args.batch}/process, {h}x{w}, width {args.width}, "
              f"{'bf16' if args.bf16 else 'fp32'}, {'channels_last' if args.channels_last else 'NCHW'}"
              f"{', compiled' if args.compile else ''}")
        print(f"adversarial step (D + G, salnet.train.steps): {args.batch / sec:.3g} img/s per process, "
              f"{total:.3g} img/s total; {flops / 1e12:.3f} TFLOP/s = {flops / ref:.2f} x matmul "
              f"({ref / 1e12:.2f} TFLOP/s {dtype})")
    cleanup()


if __name__ == "__main__":
    main()
