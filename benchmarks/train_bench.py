"""Throughput of the training loop's own steps (salnet.train.steps): SalGAN's adversarial step or the loss
study's content step, and DDP scaling.

One "adversarial step" = a D update and a G update on the same batch: img/s counts images through both. The
training loop alternates them over consecutive batches, as the released code does, so it consumes twice that
rate from its loader ("loop img/s"). The "loss_study" step
is one content step of the loss study's network (ASPPNet, 400×300, batch 60, SGD) on LC2 + R, its most
expensive loss (KLD, CC, NSS, SIG-MSE, and DF and GM through a frozen VGG-16). Prints img/s, achieved
TFLOP/s (FLOPs from the layer shapes, salnet/models/flops.py, the losses' VGG included) and the ratio to a
plain matmul's FLOP/s measured in the same run on the same device and dtype. ``--cached`` times the loss-study
step on LC1 (no DF or GM: the points a feature cache serves) twice in one run, from the images and from the
encoder's taps as a feature cache gives them (salnet.data.features), and prints both and their ratios.

    python -m benchmarks.train_bench --device cpu --batch 4 --steps 2            # CPU smoke figures
    python -m benchmarks.train_bench --device cuda --bf16 --channels-last        # one GPU, batch 32
    python -m benchmarks.train_bench --device cuda --bf16 --channels-last --step loss_study
    python -m benchmarks.train_bench --device cpu --step loss_study --cached --batch 8 --steps 2  # cache vs not
    torchrun --nproc-per-node 8 -m benchmarks.train_bench --device cuda --bf16   # DDP scaling

Under torchrun it reports the per-GPU and total img/s of DDP-wrapped G and D (gradients all-reduced).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from benchmarks.model_bench import matmul_reference, timed
from salnet.data.features import tap_key
from salnet.losses import LC1, LC2, build
from salnet.models import SALGAN_INPUT_SIZE, Discriminator, Generator
from salnet.models.flops import LayerFlops
from salnet.train import steps
from salnet.train.distributed import all_reduce_sum, cleanup, init_distributed

LOSS_STUDY = {**LC2, "center_bias": 0.1}  # LC2 + R (docs/design.md, "The loss study")
DEFAULTS = {"adversarial": (32, SALGAN_INPUT_SIZE), "loss_study": (60, (300, 400))}  # (batch, (H, W)) of the papers


def build_step(args, device: torch.device, distributed: bool, cached: bool = False):
    """(step function, modules whose layers count FLOPs, the step on the plain modules for the FLOP count).
    ``cached``: the loss-study step reads the encoder's taps from the batch, as from a feature cache."""
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    h, w = args.size
    batch = {"image": torch.rand(args.batch, 3, h, w, device=device).contiguous(memory_format=fmt),
             "map": torch.rand(args.batch, 1, h, w, device=device),
             "fixations": (torch.rand(args.batch, 1, h, w, device=device) < 1e-3).float()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: irrelevant to speed
        if args.step == "loss_study":
            from salnet.models.aspp import TAPS, ASPPNet

            G = ASPPNet(width=args.width).to(device, memory_format=fmt)
            out_size = G(batch["image"][:1]).logits.shape[-2:]
            spec = LC1 if args.cached else LOSS_STUDY  # --cached: the points without DF or GM
            loss = build(spec, center_bias=torch.rand(1, *out_size), vgg_weights="random").to(device)
            if cached:  # float32 taps, as the loader gives them from a float16 or float32 cache
                with torch.no_grad():
                    batch.update({tap_key(k): v.float() for k, v in G.encoder.taps(batch["image"], TAPS).items()})
        else:
            G = Generator(width=args.width).to(device, memory_format=fmt)
            loss = build("bce_pool4")
    g_run = DDP(G) if distributed else G
    if args.step == "loss_study":
        opt = torch.optim.SGD([q for q in G.parameters() if q.requires_grad], lr=1e-3)
        g_run = torch.compile(g_run, backend=args.compile_backend) if args.compile else g_run

        def content(g):
            return lambda: steps.content_step(g, opt, loss, batch, device, args.bf16)

        return content(g_run), (G, loss), content(G)
    D = Discriminator(width=args.width, input_size=(h, w)).to(device, memory_format=fmt)
    d_run = DDP(D) if distributed else D
    if args.compile:
        g_run = torch.compile(g_run, backend=args.compile_backend)
        d_run = torch.compile(d_run, backend=args.compile_backend)
    opt_g = torch.optim.Adagrad([q for q in G.parameters() if q.requires_grad], lr=3e-4)
    opt_d = torch.optim.Adagrad(D.parameters(), lr=3e-4)

    def pair(g, d):
        def run():
            steps.discriminator_step(G, d, opt_d, batch, device, args.bf16)
            steps.generator_step(g, D, opt_g, loss, batch, 0.05, device, args.bf16)

        return run

    return pair(g_run, d_run), (G, D), pair(G, D)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--step", choices=tuple(DEFAULTS), default="adversarial")
    p.add_argument("--batch", type=int, help="per process (default: 32 adversarial, 60 loss study)")
    p.add_argument("--size", type=int, nargs=2, help="input H W (default: 192 256 adversarial, 300 400 loss study)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (torch.compile compiles in them)")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend ('eager': a quick dry run)")
    p.add_argument("--matmul-n", type=int, default=0, help="reference matmul size (default 8192 GPU, 2048 CPU)")
    p.add_argument("--cached", action="store_true", help="loss_study: the step from the images and from cached taps "
                   "(LC1), and their ratio")
    p.add_argument("--json", type=Path, help="write the figures here as JSON (rank 0)")
    args = p.parse_args(argv)
    batch, size = DEFAULTS[args.step]
    args.batch, args.size = args.batch or batch, tuple(args.size or size)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    env = init_distributed()
    # the loop's choice (salnet.train.distributed.device_for): a rank bound to its own GPU sees one device
    device = (torch.device("cuda", env.local_rank % torch.cuda.device_count()) if args.device == "cuda"
              else torch.device(args.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    ref = matmul_reference(device, dtype, n, 20 if device.type == "cuda" else 5)
    figures = []  # (label, img/s, img/s over all ranks, FLOPs per batch)
    for cached in ((False, True) if args.cached else (False,)):
        run, counted, plain = build_step(args, device, env.distributed, cached)
        with LayerFlops(*counted) as counter:  # one eager step counts the FLOPs
            plain()
        sec = timed(run, args.steps, args.warmup, device)
        total = all_reduce_sum(torch.tensor([args.batch / sec], device=device)).item()
        label = ("adversarial step (D + G" if args.step == "adversarial" else
                 f"loss-study step (ASPPNet, {'LC1' if args.cached else 'LC2 + R'}"
                 + (", from cached taps" if cached else ", from images" if args.cached else ""))
        figures.append((label, args.batch / sec, total, counter.total))
    if env.is_main:
        threads = torch.get_num_threads()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
        h, w = args.size
        print(f"device {name} x{env.world_size}, batch {args.batch}/process, {h}x{w}, width {args.width}, "
              f"{'bf16' if args.bf16 else 'fp32'}, {'channels_last' if args.channels_last else 'NCHW'}"
              f"{', compiled (' + args.compile_backend + ')' if args.compile else ''}")
        for label, rate, total, flop in figures:
            flops = flop / args.batch * rate
            print(f"{label}, salnet.train.steps): {rate:.4g} img/s per process, {total:.4g} img/s total; "
                  f"{flop / args.batch / 1e9:.1f} GFLOP/img, {flops / 1e12:.3f} TFLOP/s = {flops / ref:.3f} x "
                  f"matmul ({ref / 1e12:.2f} TFLOP/s {dtype}, {n}x{n})")
        if args.cached:
            (_, r0, _, f0), (_, r1, _, f1) = figures
            print(f"cached / uncached: {r1 / r0:.2f}x the img/s, {f0 / f1:.2f}x fewer FLOPs per image")
        if args.step == "adversarial":
            print(f"the training loop, D and G on alternate batches, consumes {2 * figures[0][1]:.4g} img/s "
                  "per process")
        if args.json:
            _, rate, total, flop = figures[0]
            args.json.write_text(json.dumps({
                "device": name, "world_size": env.world_size, "step": args.step, "batch": args.batch,
                "size": [h, w], "width": args.width, "bf16": args.bf16, "channels_last": args.channels_last,
                "compile": args.compile and args.compile_backend, "img_s": rate, "total_img_s": total,
                "loop_img_s": (2 if args.step == "adversarial" else 1) * rate,
                "gflop_per_img": flop / args.batch / 1e9, "tflops": flop / args.batch * rate / 1e12,
                "matmul_tflops": ref / 1e12, "fraction_of_matmul": flop / args.batch * rate / ref,
                **({"cached_img_s": figures[1][1], "cached_gflop_per_img": figures[1][3] / args.batch / 1e9}
                   if args.cached else {})}, indent=1) + "\n")
    cleanup()


if __name__ == "__main__":
    main()
