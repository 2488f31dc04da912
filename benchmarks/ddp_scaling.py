"""DDP scaling on paper: gradient all-reduce volume per training step, its time over NVLink and InfiniBand, and
the resulting 1 -> 8 and 8 -> 64 GPU efficiency next to the single-GPU step.

    python -m benchmarks.ddp_scaling                         # SalGAN's adversarial step, 2,000 img/s assumed
    python -m benchmarks.ddp_scaling --measured OUT/summary.json   # the single-GPU step a GPU check measured
    python -m benchmarks.ddp_scaling --step loss_study --img-s 1000

Counts, not timings: the trainable parameters of the step's networks (what DDP all-reduces: frozen VGG layers
are not), and the step's FLOPs from the layer shapes (salnet/models/flops.py) of one step of the training loop's own
functions run on the meta device (no memory, no arithmetic). Model (stated in the output):
- per step each trainable gradient is all-reduced once (SalGAN: D's in the D update, G's in the G update), in
  fp32 (DDP's default; a bf16 compression hook halves it);
- ring all-reduce: each GPU sends and receives 2(n-1)/n x S bytes; in one node over NVLink at --nvlink-gbs per
  GPU; across nodes hierarchically (reduce-scatter in the node, ring across the m nodes, all-gather in the node),
  the nodes' NICs (--ib-gbps each node in all) carrying 2(m-1)/m x S per node; plus --latency-us per ring hop;
- the step's time at --img-s per GPU (batch per GPU fixed: weak scaling); with no overlap the all-reduce adds
  to it; with DDP's overlap it hides behind the backward pass (its share of the step's FLOPs), except the last
  bucket (25 MB, DDP's default), which can only start when the backward ends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks import train_bench
from salnet.models.flops import LayerFlops

BUCKET = 25e6  # bytes: DDP's default bucket_cap_mb


def ring_seconds(nbytes: float, n: int, gbs: float, latency: float) -> float:
    """Ring all-reduce of ``nbytes`` among ``n`` peers at ``gbs`` GB/s per peer: 2(n-1)/n x S / B + 2(n-1) hops."""
    return 0.0 if n <= 1 else 2 * (n - 1) / n * nbytes / (gbs * 1e9) + 2 * (n - 1) * latency


def allreduce_seconds(nbytes: float, gpus: int, per_node: int, args) -> float:
    """One all-reduce of ``nbytes`` over ``gpus`` GPUs, ``per_node`` to a node (hierarchical across nodes)."""
    lat = args.latency_us * 1e-6
    inside = min(gpus, per_node)
    nodes = max(1, gpus // per_node)
    t = ring_seconds(nbytes, inside, args.nvlink_gbs, lat)  # reduce-scatter + all-gather in the node
    return t + ring_seconds(nbytes, nodes, args.ib_gbps / 8, lat)  # the node's share of the ring across nodes


def count(step: str) -> dict:
    """Trainable parameters and FLOPs of one training-loop step at the papers' batch and size: on the meta device,
    or where a loss reads values (the loss study's NSS), one image on the CPU, FLOPs scaled to the batch."""
    args = train_bench.parse(["--step", step, "--device", "meta"])
    try:
        _, counted, plain = train_bench.build_step(args, torch.device("meta"), distributed=False)
        with LayerFlops(*counted) as c:
            plain()
        scale = 1
    except RuntimeError:  # "cannot be called on meta tensors"
        scale, args.batch = args.batch, 1
        _, counted, plain = train_bench.build_step(args, torch.device("cpu"), distributed=False)
        with LayerFlops(*counted) as c:
            plain()
    params = {type(m).__name__: sum(p.numel() for p in m.parameters() if p.requires_grad) for m in counted}
    return {"batch": args.batch * scale, "size": list(args.size), "trainable": {k: v for k, v in params.items() if v},
            "total_params": {type(m).__name__: sum(p.numel() for p in m.parameters()) for m in counted},
            "flops": c.total * scale, "backward_share": c.backward_flops / c.total}


def measured_rate(path: Path, step: str) -> float | None:
    """The single-GPU img/s of ``step`` from a GPU check's summary.json or a train_bench --json file."""
    data = json.loads(path.read_text())
    rows = [r.get("values", {}) for r in data.get("rows", [])] or [data]
    rates = [v["img_s"] for v in rows if v.get("step") == step and v.get("world_size", 1) == 1 and "img_s" in v]
    return max(rates) if rates else None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", choices=("adversarial", "loss_study"), default="adversarial")
    p.add_argument("--img-s", type=float, default=2000.0, help="single-GPU step rate, img/s (issue 16's H100 target)")
    p.add_argument("--measured", type=Path, help="take --img-s from a GPU check's summary.json or train_bench JSON")
    p.add_argument("--nvlink-gbs", type=float, default=450.0, help="NVLink GB/s per GPU, one direction (H100: 450)")
    p.add_argument("--ib-gbps", type=float, default=800.0, help="InfiniBand Gb/s per node (4 x 200 Gb/s)")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--latency-us", type=float, default=5.0, help="per ring hop")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    source = "assumed (--img-s; issue 16's target for SalGAN on one H100: 2,000)"
    if args.measured:
        rate = measured_rate(args.measured, args.step)
        if rate is None:
            raise SystemExit(f"{args.measured}: no single-GPU {args.step} step rate in it")
        args.img_s, source = rate, f"measured ({args.measured})"
    c = count(args.step)
    trainable = sum(c["trainable"].values())
    step_s = c["batch"] / args.img_s
    backward_s = step_s * c["backward_share"]
    print(f"{args.step} step of the training loop, batch {c['batch']} per GPU at {c['size'][1]}x{c['size'][0]}: "
          f"{c['flops'] / c['batch'] / 1e9:.1f} GFLOP/img, backward {c['backward_share']:.0%} of it")
    print("trainable parameters (all-reduced): " + ", ".join(
        f"{k} {v / 1e6:.2f} M of {c['total_params'][k] / 1e6:.2f} M" for k, v in c["trainable"].items()))
    print(f"single-GPU step: {args.img_s:.0f} img/s {source} = {step_s * 1e3:.2f} ms per step")
    print(f"links: NVLink {args.nvlink_gbs:.0f} GB/s per GPU, InfiniBand {args.ib_gbps:.0f} Gb/s per node "
          f"({args.gpus_per_node} GPUs), {args.latency_us:.0f} us per ring hop")
    result = {"step": args.step, "img_s": args.img_s, "source": source, "count": c, "rows": []}
    print(f"{'gradients':10s}{'MB/step':>9s}{'GPUs':>6s}{'all-reduce ms':>15s}{'eff. no overlap':>17s}"
          f"{'eff. overlapped':>17s}{'1->8':>7s}{'8->64':>7s}")
    for dtype, nbytes in (("fp32", 4), ("bf16", 2)):
        size = trainable * nbytes
        eff = {}
        for gpus in (1, 8, 64):
            comm = allreduce_seconds(size, gpus, args.gpus_per_node, args)
            last = allreduce_seconds(min(BUCKET, size), gpus, args.gpus_per_node, args)
            exposed = 0.0 if gpus == 1 else max(comm - backward_s, last)
            eff[gpus] = (step_s / (step_s + comm), step_s / (step_s + exposed))
            result["rows"].append({"gradients": dtype, "mb": size / 1e6, "gpus": gpus, "allreduce_ms": comm * 1e3,
                                   "efficiency_no_overlap": eff[gpus][0], "efficiency_overlapped": eff[gpus][1]})
            print(f"{dtype:10s}{size / 1e6:9.1f}{gpus:6d}{comm * 1e3:15.3f}{eff[gpus][0]:17.3f}{eff[gpus][1]:17.3f}"
                  + (f"{eff[8][0] / eff[1][0]:7.3f}" if gpus == 8 else "")
                  + (f"{'':7s}{eff[64][0] / eff[8][0]:7.3f}" if gpus == 64 else ""))
    print("1->8 and 8->64: per-GPU throughput ratio without overlap (with DDP's overlap: the 'eff. overlapped' ratio)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
