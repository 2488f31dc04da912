"""Metric throughput: salnet.metrics vs pysaliency on the same maps, in the same run.

    python benchmarks/metrics_bench.py [--n 1000] [--ref-n 200] [--device cpu|cuda] [--batch 32]

N maps of 480×640 with ~100 fixations each (smooth random ground truth, fixations drawn from it, a
shifted copy as prediction). Prints img/s per metric for salnet and for the reference on the first
``--ref-n`` of the same images, and their ratio; "overall" is the ratio of total time per image over the
metrics both have. References: pysaliency 0.2.22 (AUC-Judd, uniform AUC for AUC-Borji, shuffled AUC, NSS,
CC, SIM, MIT_KLDiv); scipy's HiGHS LP for EMD (same transport problem, first 10 images); numpy for IG.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from salnet import metrics as M
from salnet.baselines import center_bias
from salnet.metrics.emd import _ground_distance

H, W, NFIX = 480, 640, 100
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


def time_salnet(n, batch, device, dtype):
    totals = dict.fromkeys([*M.METRICS, "sauc_pysaliency", "seven", "together"], 0.0)
    base = torch.from_numpy(center_bias((H, W))).to(device, dtype)
    for lo in range(0, n, batch):
        p, g, f = make_batch(lo, min(batch, n - lo))
        p, g, f = (torch.from_numpy(a).to(device, dtype) for a in (p, g, f))
        other = f.roll(1, 0)  # fixations of other images (here: the neighbour's), same size
        for name in M.METRICS:
            kw = {"fixations": f, "gt_map": g, "other": other, "baseline": base}
            _sync(device)
            t0 = time.perf_counter()
            M.score_batch(p, metrics=[name], dtype=dtype, **kw)
            _sync(device)
            totals[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        M.sauc(p, f, other, variant="pysaliency", dtype=dtype)
        _sync(device)
        totals["sauc_pysaliency"] += time.perf_counter() - t0
        t0 = time.perf_counter()  # the seven metrics pysaliency has, in one call (MIT conventions)
        M.score_batch(p, metrics=SHARED, fixations=f, gt_map=g, other=other, dtype=dtype)
        _sync(device)
        totals["seven"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        M.score_batch(p, fixations=f, gt_map=g, other=other, baseline=base, dtype=dtype)  # one call, nine metrics
        _sync(device)
        totals["together"] += time.perf_counter() - t0
    return {k: n / v for k, v in totals.items()}


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_reference(n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(np, "trapz"):
            np.trapz = np.trapezoid
        import pysaliency
        import pysaliency.metrics as pm
        from pysaliency.roc import general_roc
    from scipy.optimize import linprog

    p, g, f = make_batch(0, n)
    totals = dict.fromkeys(["auc_judd", "auc_borji", "sauc", "nss", "cc", "sim", "kld", "emd", "ig"], 0.0)
    pts = [np.argwhere(fi > 0) for fi in f]
    rst = np.random.RandomState(42)
    for i in range(n):
        ys, xs = np.nonzero(f[i])
        # each AUC as pysaliency's AUC_per_image computes it: positives and negatives gathered and copied
        # as float, then general_roc; AUC_Judd first adds its jitter (RandomNoiseSaliencyMapModel:
        # randn·1e-7 per map) and takes the unfixated pixels as negatives
        t0 = time.perf_counter()
        jit = p[i] + rst.randn(H, W) * 1e-7
        unfixated = np.ones((H, W), bool)
        unfixated[ys, xs] = False
        general_roc(jit[ys, xs].astype(float), jit[unfixated].astype(float), judd=1)
        totals["auc_judd"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        general_roc(p[i][ys, xs].astype(float), p[i].flatten().astype(float), judd=0)  # "uniform" nonfixations
        totals["auc_borji"] += time.perf_counter() - t0
        j = (i - 1) % n
        t0 = time.perf_counter()
        general_roc(p[i][ys, xs].astype(float), p[i][pts[j][:, 0], pts[j][:, 1]].astype(float), judd=0)  # shuffled
        totals["sauc"] += time.perf_counter() - t0
        for name, fn, args in (("nss", lambda a, x, y: pm.NSS(a, x, y).mean(), (p[i], xs, ys)),
                               ("cc", pm.CC, (p[i], g[i])), ("sim", pm.SIM, (p[i], g[i])),
                               ("kld", pm.MIT_KLDiv, (p[i], g[i]))):
            t0 = time.perf_counter()
            fn(*args)
            totals[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        a = (p[i] - p[i].min()) / np.ptp(p[i])
        b = center_bias((H, W))
        b = (b - b.min()) / np.ptp(b)
        np.mean(np.log2(M.EPS + a[ys, xs] / a.sum()) - np.log2(M.EPS + b[ys, xs] / b.sum()))
        totals["ig"] += time.perf_counter() - t0
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--ref-n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.n} maps {H}x{W}, {NFIX} fixations each; salnet on {dev}, {args.dtype}, batch {args.batch}")
    ours = time_salnet(args.n, args.batch, args.device, dtype)
    ref = time_reference(min(args.ref_n, args.n))
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
    print(f"all nine metrics (MIT conventions) in one score_batch call: {ours['together']:.1f} img/s")


if __name__ == "__main__":
    main()
