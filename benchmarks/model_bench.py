"""SalGAN training-step throughput: generator forward+backward and the full adversarial step (D + G).

Prints img/s, achieved TFLOP/s (FLOPs counted from the layer shapes, salnet/models/flops.py) and the
ratio against a reference measured in the same run: the FLOP/s of a plain square matmul on the same
device in the same dtype (an achievable "peak"). Random weights (speed does not depend on them).

    python -m benchmarks.model_bench --device cpu --batch 4 --steps 2          # CPU smoke figures
    python -m benchmarks.model_bench --device cuda --bf16 --channels-last      # GPU: batch 32, 256×192

The adversarial step runs G once: D is updated on (S, Ŝ.detach()) and then G on α·BCE/4 + BCE(D(I,Ŝ),1)
with D's parameters not requiring grad — the same updates as the released code's two G passes, since
G has not changed between them.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch

from salnet.losses import build, discriminator_loss, generator_adversarial_loss
from salnet.models import SALGAN_INPUT_SIZE, Discriminator, Generator
from salnet.models.flops import LayerFlops

ALPHA = 0.05


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (mean over ``steps`` after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def matmul_reference(device: torch.device, dtype: torch.dtype, n: int, steps: int) -> float:
    """FLOP/s of an n×n @ n×n matmul in ``dtype`` on ``device``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = timed(lambda: a @ b, steps, max(1, steps // 5), device)
    return 2 * n**3 / sec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of G and D")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (reference matmul in bf16 too)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--matmul-n", type=int, default=0, help="reference matmul size (default 8192 GPU, 2048 CPU)")
    p.add_argument("--only", choices=("generator", "adversarial"), default=None)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    h, w = SALGAN_INPUT_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-weights warning: irrelevant to speed
        gen = Generator(width=args.width).to(device, memory_format=fmt)
    disc = Discriminator(width=args.width).to(device, memory_format=fmt)
    g_model = torch.compile(gen) if args.compile else gen
    d_model = torch.compile(disc) if args.compile else disc
    opt_g = torch.optim.Adagrad([q for q in gen.parameters() if q.requires_grad], lr=3e-4, weight_decay=1e-4)
    opt_d = torch.optim.Adagrad(disc.parameters(), lr=3e-4, weight_decay=1e-4)
    bce4 = build("bce_pool4")
    img = torch.rand(args.batch, 3, h, w, device=device).contiguous(memory_format=fmt)
    sal = torch.rand(args.batch, 1, h, w, device=device).contiguous(memory_format=fmt)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def make_steps(g_net: torch.nn.Module, d_net: torch.nn.Module) -> dict[str, Callable[[], None]]:
        def generator_step() -> None:
            with autocast():
                out = g_net(img)
                loss = bce4(out.logits, {"map": sal})[0]
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()

        def adversarial_step() -> None:
            with autocast():
                out = g_net(img)
                fake = out.prob.detach()
                loss_d = discriminator_loss(d_net(sal, img).logits, d_net(fake, img).logits)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            disc.requires_grad_(False)  # G step: gradients through D, not into it
            with autocast():
                content = bce4(out.logits, {"map": sal})[0]
                loss_g = ALPHA * content + generator_adversarial_loss(d_net(out.prob, img).logits)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            disc.requires_grad_(True)

        return {"generator": generator_step, "adversarial": adversarial_step}

    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    ref_steps = 20 if device.type == "cuda" else 5
    ref_before = matmul_reference(device, dtype, n, ref_steps)
    eager, fast = make_steps(gen, disc), make_steps(g_model, d_model)
    labels = {"generator": "generator fwd+bwd (BCE/4)", "adversarial": "adversarial step (D + G)"}
    results = {}
    for key in eager:
        if args.only and key != args.only:
            continue
        with LayerFlops(gen, disc) as counter:  # one untimed eager step counts the FLOPs
            eager[key]()
        results[key] = (counter.total, timed(fast[key], args.steps, args.warmup, device))
    # Measured before and after the model, the best of the two: on a shared machine the load changes.
    ref = max(ref_before, matmul_reference(device, dtype, n, ref_steps))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device={name} dtype={'bf16 autocast' if args.bf16 else 'float32'} channels_last={args.channels_last} "
        f"compile={args.compile} batch={args.batch} width={args.width} input={w}x{h} (WxH) steps={args.steps}"
    )
    print(f"reference: {n}x{n} matmul {str(dtype).removeprefix('torch.')}: {ref / 1e12:.3f} TFLOP/s (best of 2)")
    for key, (flops, sec) in results.items():
        achieved = flops / sec
        print(
            f"{labels[key]:28s}: {args.batch / sec:9.1f} img/s  {flops / args.batch / 1e9:7.1f} GFLOP/img  "
            f"{achieved / 1e12:7.3f} TFLOP/s  ratio vs matmul {achieved / ref:.3f}"
        )


if __name__ == "__main__":
    main()
