"""Metric throughput: salnet.metrics vs pysaliency on the same maps, in the same run, and a SALICON
validation pass projected from it.

    python -m benchmarks.metrics_bench [--n 1000] [--ref-n 200] [--device cpu|cuda] [--batch 32] [--repeats 3]
    python -m benchmarks.metrics_bench --device cuda --n 256 --no-reference --agree --json out.json   # GPU

N maps of 480×640 with ``--fixations`` fixations each (smooth random ground truth, fixations drawn from it,
a shifted copy as prediction). Prints img/s per metric for salnet and for the reference on the first
``--ref-n`` of the same images, and their ratio; "overall" is the ratio of total time per image over the
metrics both have. References: pysaliency 0.2.22 (AUC-Judd, uniform AUC for AUC-Borji, shuffled AUC, NSS,
CC, SIM, MIT_KLDiv); scipy's HiGHS LP for EMD (same transport problem, first 10 images); numpy for IG.

Validation pass: the nine metrics on ``--val-images`` (SALICON val: 5,000) images at 480×640, projected
from this run's rates: batched (score_batch on ``--batch`` images) and image by image (batch 1, as
salnet.train.validate calls it, each image at its own size). EMD runs on any device only up to its small
grid: the exact network simplex (POT) always runs on the CPU, timed apart. ``--agree`` scores the first
batch on the CPU too and prints the largest difference per metric (the GPU check's agreement row).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from salnet import metrics as M
from salnet import native
from salnet.imresize import imresize
from salnet.metrics.emd import DOWNSIZE, _ground_distance, transport_cost
from salnet.models.baselines import center_bias

H, W = 480, 640
NFIX = 100  # fixations per image (--fixations)
AGREE_ATOL = 1e-9  # largest |device - CPU| per metric that counts as agreement (float64; tests/test_metrics_values)
SHARED = ["auc_judd", "auc_borji", "sauc", "nss", "cc", "sim", "kld"]  # the metrics pysaliency has


def make_batch(start: int, n: int, seed: int = 0):
    """Maps ``start..start+n``: (pred, gt, fixation counts) float64 (n,H,W), deterministic per index."""
    yy, xx = np.mgrid[0:H, 0:W]
    preds, gts, fixs = [], [], []
    for i in range(start, start + n):
        rng = np.random.default_rng((seed, i))
        gt = np.zeros((H, W))
        for _ in range(4):
            cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(20, 80)
            gt += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        gt /= gt.max()
        p = gt.ravel() / gt.sum()
        idx = rng.choice(p.size, NFIX, p=p)
        fix = np.zeros(H * W)
        np.add.at(fix, idx, 1)
        preds.append(np.roll(gt, (15, -20), (0, 1)) * 0.8 + 0.2 * center_bias((H, W)))
        gts.append(gt)
        fixs.append(fix.reshape(H, W))
    return np.stack(preds), np.stack(gts), np.stack(fixs)


def _best(fn, repeats, device="cpu"):
    """Fastest of ``repeats`` timed calls of ``fn()`` (seconds): the machine is shared, and the minimum is
    the least disturbed figure, for salnet and the reference alike."""
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_salnet(n, batch, device, dtype, repeats):
    totals = dict.fromkeys([*M.METRICS, "sauc_pysaliency", "seven", "together"], 0.0)
    base = torch.from_numpy(center_bias((H, W))).to(device, dtype)
    for lo in range(0, n, batch):
        p, g, f = make_batch(lo, min(batch, n - lo))
        p, g, f = (torch.from_numpy(a).to(device, dtype) for a in (p, g, f))
        other = f.roll(1, 0)  # fixations of other images (here: the neighbour's), same size
        kw = {"fixations": f, "gt_map": g, "other": other, "baseline": base, "dtype": dtype}
        for name in M.METRICS:
            totals[name] += _best(partial(M.score_batch, p, metrics=[name], **kw), repeats, device)
        totals["sauc_pysaliency"] += _best(partial(M.sauc, p, f, other, variant="pysaliency", dtype=dtype),
                                           repeats, device)
        # the seven metrics pysaliency has, in one call (MIT conventions); then all nine
        totals["seven"] += _best(partial(M.score_batch, p, metrics=SHARED, **kw), repeats, device)
        totals["together"] += _best(partial(M.score_batch, p, **kw), repeats, device)
    return {k: n / v for k, v in totals.items()}


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _pysaliency_auc(general_roc, s, ys, xs, neg_ys, neg_xs):
    """An AUC as pysaliency's AUC_per_image computes it: values gathered and copied as float, then
    general_roc; negatives at (neg_ys, neg_xs), or every pixel ("uniform") when None."""
    negatives = s.flatten() if neg_ys is None else s[neg_ys, neg_xs]
    return general_roc(s[ys, xs].astype(float), negatives.astype(float), judd=0)


def _pysaliency_auc_judd(general_roc, s, ys, xs, rst):
    """pysaliency's AUC_Judd: its jitter (RandomNoiseSaliencyMapModel, randn·1e-7 per map), the unfixated
    pixels as negatives, thresholds at the fixations."""
    s = s + rst.randn(*s.shape) * 1e-7
    unfixated = np.ones(s.shape, bool)
    unfixated[ys, xs] = False
    return general_roc(s[ys, xs].astype(float), s[unfixated].astype(float), judd=1)


def _numpy_ig(s, base, ys, xs):
    """IG as InfoGain.m states it, in numpy."""
    a = (s - s.min()) / np.ptp(s)
    c = (base - base.min()) / np.ptp(base)
    return np.mean(np.log2(M.EPS + a[ys, xs] / a.sum()) - np.log2(M.EPS + c[ys, xs] / c.sum()))


def time_reference(n, repeats):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(np, "trapz"):
            np.trapz = np.trapezoid
        import pysaliency
        import pysaliency.metrics as pm
        from pysaliency.roc import general_roc
    from scipy.optimize import linprog

    p, g, f = make_batch(0, n)
    base = center_bias((H, W))
    totals = dict.fromkeys(["auc_judd", "auc_borji", "sauc", "nss", "cc", "sim", "kld", "emd", "ig"], 0.0)
    pts = [np.argwhere(fi > 0) for fi in f]
    rst = np.random.RandomState(42)
    for i in range(n):
        ys, xs = np.nonzero(f[i])
        oy, ox = pts[(i - 1) % n].T
        calls = {
            "auc_judd": partial(_pysaliency_auc_judd, general_roc, p[i], ys, xs, rst),
            "auc_borji": partial(_pysaliency_auc, general_roc, p[i], ys, xs, None, None),
            "sauc": partial(_pysaliency_auc, general_roc, p[i], ys, xs, oy, ox),
            "nss": partial(pm.NSS, p[i], xs, ys),
            "cc": partial(pm.CC, p[i], g[i]),
            "sim": partial(pm.SIM, p[i], g[i]),
            "kld": partial(pm.MIT_KLDiv, p[i], g[i]),
            "ig": partial(_numpy_ig, p[i], base, ys, xs),
        }
        for name, fn in calls.items():
            totals[name] += _best(fn, repeats)
    del pysaliency
    m = min(n, 10)
    small = torch.nn.functional.avg_pool2d(torch.from_numpy(np.stack([g[:m], p[:m]])), 32).numpy()
    dist = _ground_distance(15, 20)
    t0 = time.perf_counter()
    for i in range(m):
        a, b = small[0, i].ravel(), small[1, i].ravel()
        a, b = a / a.sum(), b / b.sum()
        nn = a.size
        A = np.zeros((2 * nn, nn * nn))
        for k in range(nn):
            A[k, k * nn:(k + 1) * nn] = 1
            A[nn + k, k::nn] = 1
        linprog(dist.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    totals["emd"] = (time.perf_counter() - t0) * n / m
    return {k: n / v for k, v in totals.items()}


def batch_inputs(lo: int, n: int, device, dtype):
    """Batch ``lo..lo+n`` on ``device``: (pred, score_batch keyword arguments)."""
    p, g, f = (torch.from_numpy(a).to(device, dtype) for a in make_batch(lo, n))
    base = torch.from_numpy(center_bias((H, W))).to(device, dtype)
    return p, {"fixations": f, "gt_map": g, "other": f.roll(1, 0), "baseline": base, "dtype": dtype}


def time_validation(n: int, batch: int, device, dtype, repeats: int) -> dict[str, float]:
    """Seconds per image of the nine metrics on ``n`` images: batched, image by image (batch 1, each image's own
    baseline: salnet.train.validate's calls), and EMD's CPU network simplex alone (its part in both)."""
    out = {"batched": 0.0, "per_image": 0.0, "emd_simplex": 0.0}
    for lo in range(0, n, batch):
        p, kw = batch_inputs(lo, min(batch, n - lo), device, dtype)
        out["batched"] += _best(partial(M.score_batch, p, **kw), repeats, device)
        for i in range(len(p)):
            one = {k: v[i:i + 1] if torch.is_tensor(v) and v.ndim == 3 else v for k, v in kw.items()}
            one["baseline"] = kw["baseline"][None]
            out["per_image"] += _best(partial(M.score_batch, p[i:i + 1], **one), repeats, device)
        small = imresize(kw["gt_map"], scale=1.0 / DOWNSIZE)  # what emd() hands to the simplex
        P, Q = small.flatten(1).cpu().numpy(), imresize(p, tuple(small.shape[-2:])).flatten(1).cpu().numpy()
        dist = _ground_distance(*small.shape[-2:])
        t0 = time.perf_counter()
        for a, b in zip(P, Q):
            transport_cost(a / a.sum(), b / b.sum(), dist)
        out["emd_simplex"] += time.perf_counter() - t0
    return {k: v / n for k, v in out.items()}


def agreement(device, dtype, batch: int) -> dict[str, float]:
    """Largest |device - CPU| per metric on the first batch (NaN where both are NaN counts as equal)."""
    p, kw = batch_inputs(0, batch, device, dtype)
    got = M.score_batch(p, **kw)
    p, kw = batch_inputs(0, batch, "cpu", dtype)
    ref = M.score_batch(p, **kw)
    diffs = {}
    for name in M.METRICS:
        a, b = got[name].double().cpu(), ref[name].double()
        same_nan = torch.isnan(a) & torch.isnan(b)
        d = (a - b).abs().masked_fill(same_nan, 0.0)
        diffs[name] = float(d.max()) if not torch.isnan(d).any() else float("inf")
    return diffs


def print_validation(val: dict, images: int, where: str) -> dict[str, float]:
    """Print a validation pass projected from seconds per image; returns the projected seconds."""
    proj = {k: v * images for k, v in val.items()}
    print(f"validation pass, {images} images {W}x{H}, nine metrics, {where}: batched {proj['batched']:.0f} s, image by "
          f"image (as salnet.train.validate calls them) {proj['per_image']:.0f} s; of which EMD's network simplex "
          f"on the CPU {proj['emd_simplex']:.0f} s")
    return proj


def main(argv=None):
    global NFIX
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--ref-n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per batch / image, fastest kept (both sides)")
    ap.add_argument("--fixations", type=int, default=NFIX, help="fixations per image")
    ap.add_argument("--no-reference", action="store_true", help="skip pysaliency (not installed on a GPU machine)")
    ap.add_argument("--val-images", type=int, default=5000, help="images of the projected validation pass")
    ap.add_argument("--val-n", type=int, default=64, help="images timed for the projection (each device)")
    ap.add_argument("--agree", action="store_true",
                    help="the first batch on the CPU too: largest |difference| per metric")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    NFIX = args.fixations
    dtype = getattr(torch, args.dtype)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    kernels = "C kernels" if native.library() is not None else "torch only (no C compiler)"
    print(f"{args.n} maps {H}x{W}, {NFIX} fixations each; salnet on {dev}, {args.dtype}, batch {args.batch}, "
          f"{kernels}; fastest of {args.repeats} timed calls per batch (salnet) and per image (reference)")
    ours = time_salnet(args.n, args.batch, args.device, dtype, args.repeats)
    result = {"device": dev, "dtype": args.dtype, "fixations": NFIX, "salnet_img_s": ours}
    if not args.no_reference:
        result["reference_img_s"] = ref = time_reference(min(args.ref_n, args.n), args.repeats)
        print_comparison(ours, ref)
    else:
        print(f"{'metric':<12}{'salnet img/s':>14}")
        for name in M.METRICS:
            print(f"{name:<12}{ours[name]:>14.1f}")
    print(f"all nine metrics (MIT conventions) in one score_batch call: {ours['together']:.1f} img/s")
    batch = min(args.batch, args.val_n)
    result["validation_s"] = {args.device: print_validation(
        time_validation(args.val_n, batch, args.device, dtype, args.repeats), args.val_images, dev)}
    if args.device != "cpu":
        result["validation_s"]["cpu"] = print_validation(
            time_validation(args.val_n, batch, "cpu", dtype, args.repeats), args.val_images,
            f"CPU ({torch.get_num_threads()} threads)")
    if args.agree:
        result["agree_max_abs"] = diffs = agreement(args.device, dtype, batch)
        worst = max(diffs.values())
        print(f"{dev} vs CPU on {batch} images, largest |difference| per metric: "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
              + f"; {'agree' if worst <= AGREE_ATOL else 'DISAGREE'} (tolerance {AGREE_ATOL:g})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


def print_comparison(ours: dict, ref: dict) -> None:
    """salnet against the reference, per metric and overall."""
    print(f"{'metric':<12}{'salnet img/s':>14}{'reference img/s':>17}{'ratio':>9}  reference")
    refname = {"auc_borji": "pysaliency uniform AUC", "emd": "scipy HiGHS LP", "ig": "numpy",
               "sauc": "pysaliency sAUC (vs salnet pysaliency variant)"}
    pairs = {**{k: k for k in M.METRICS}, "sauc": "sauc_pysaliency"}
    for name in M.METRICS:
        o = ours[pairs[name]]
        print(f"{name:<12}{o:>14.1f}{ref[name]:>17.1f}{o / ref[name]:>8.1f}×  {refname.get(name, 'pysaliency')}")
    print(f"{'sauc (mit)':<12}{ours['sauc']:>14.1f}")
    t_sep = sum(1 / ours[pairs[k]] for k in SHARED)
    t_ref = sum(1 / ref[k] for k in SHARED)
    t_one = 1 / ours["seven"]
    print(f"overall, pysaliency's seven metrics per image: salnet in one score_batch call (MIT conventions) "
          f"{1 / t_one:.1f} img/s "
          f"vs pysaliency {1 / t_ref:.1f} img/s = {t_ref / t_one:.1f}×")
    print(f"  (each metric in its own call, inputs checked and statistics computed each time: {1 / t_sep:.1f} img/s "
          f"= {t_ref / t_sep:.1f}×)")


if __name__ == "__main__":
    main()
