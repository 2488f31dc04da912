"""Comparisons of a sweep's points with its control: paired bootstrap intervals over test images, the spread
over seeds, Holm's adjustment for comparing many points at once.

    groups = group_points(trials)                    # trials that differ only in train.seed → one point
    d = paired_difference(point_values, control_values, seed=0)   # {"delta", "low", "high", "p", "pairs", ...}
    found = compare_points(points, "BCE/4", ["cc", "kld"], {"cc": True, "kld": False})   # label → metric → d

A point's value on an image is that image's value averaged over the point's seeds; the difference to the control
is the mean over images of (point − control), both on the same images. Its interval resamples the images with
replacement (``N_BOOT`` resamples, the percentile interval): it says how much the difference depends on which
test images were drawn, with the seeds' variation averaged into each image's value. The seed spread is reported
beside it (the standard deviation over seeds of the per-seed difference). An image where either side is
undefined (NaN) is dropped from that metric's pairs and counted. Marks: a difference is "better" or "worse" when
its bootstrap p-value, Holm-adjusted over the points compared with the control on that metric, is below 5 %;
otherwise "not resolved". The intervals themselves are not adjusted (each is a 95 % interval on its own).

Pure numpy: no torch, no files.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

SEED_KEY = "train.seed"  # the one parameter that tells repeated trials of a point apart
N_BOOT = 4000  # resamples: the 2.5 % and 97.5 % quantiles to about ±2 % of the interval's width
LEVEL = 0.95  # the intervals' coverage
ALPHA = 0.05  # the family-wise error rate of the marks (Holm)
MARKS = ("better", "worse", "not resolved")
_BLOCK = 4_000_000  # resampled values held at once (32 MB of float64)


def point_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters without ``train.seed``: what defines its point."""
    return {k: v for k, v in params.items() if k != SEED_KEY}


def point_key(params: dict[str, Any]) -> str:
    """A canonical text of a point's parameters (sorted JSON of the params without ``train.seed``)."""
    return json.dumps(point_params(params), sort_keys=True, default=str)


def point_label(params: dict[str, Any], keys: list[str] | None = None) -> str:
    """A point's name: a points sweep's ``point`` label, else ``key=value`` of its parameters (without the seed;
    only ``keys`` where given: those that differ between points)."""
    p = point_params(params)
    if "point" in p:
        return str(p["point"])
    if keys:
        p = {k: v for k, v in p.items() if k in keys}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={json.dumps(v, default=str)}"
                     if isinstance(v, dict | list) else f"{k}={v}" for k, v in p.items()) or "–"


def group_points(rows: list[dict]) -> list[dict]:
    """Trials grouped into points by their params without ``train.seed``, in first-seen order; a point is named by
    :func:`point_label` with the parameters that differ between the trials.

    rows: summarize_sweep's trial rows (``trial``, ``params``, ``means`` or None). Returns
    ``[{"point": label, "key": point_key, "params": params without the seed, "trials": [names],
    "scored": [names with means], "seeds": [seed of each scored trial, None where the trial has none]}]``."""
    names = dict.fromkeys(k for r in rows for k in point_params(r["params"]))
    varied = [k for k in names if len({json.dumps(r["params"].get(k), sort_keys=True, default=str)
                                       for r in rows}) > 1]
    points: dict[str, dict] = {}
    for r in rows:
        key = point_key(r["params"])
        if key not in points:
            label = point_label(r["params"], varied)
            if any(q["point"] == label for q in points.values()):  # values equal to 4 digits: told apart by a trial
                label = f"{label} ({r['trial']})"
            points[key] = {"point": label, "key": key, "params": point_params(r["params"]), "trials": [],
                           "scored": [], "seeds": []}
        p = points[key]
        p["trials"].append(r["trial"])
        if r.get("means") is not None:
            p["scored"].append(r["trial"])
            p["seeds"].append(r["params"].get(SEED_KEY))
    return list(points.values())


def seed_summary(means: list[dict[str, float]], metric: str) -> tuple[float | None, float | None]:
    """(mean, standard deviation with N − 1) over seeds of one metric's per-trial means; sd None below two seeds,
    both None when no seed has the metric."""
    vals = [m[metric] for m in means if metric in m and not math.isnan(m[metric])]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None


def image_values(per_image: list[list[dict]], metric: str) -> dict[str, float]:
    """Each image's value of ``metric`` averaged over seeds (NaN seeds left out; NaN when no seed defines it).
    per_image: one list of rows ``{"id", metric: value}`` per seed (scored trial) of a point."""
    sums: dict[str, list[float]] = {}
    for rows in per_image:
        for r in rows:
            v = r.get(metric)
            sums.setdefault(str(r["id"]), [])
            if v is not None and not math.isnan(v):
                sums[str(r["id"])].append(float(v))
    return {i: (sum(v) / len(v) if v else math.nan) for i, v in sums.items()}


def bootstrap_means(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """The means of ``n_boot`` resamples (with replacement, the same size) of a 1-d array; the resamples are drawn
    from ``numpy.random.default_rng(seed)``, so the same seed and length give the same resamples."""
    n = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    step = max(1, _BLOCK // max(n, 1))
    for start in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - start), n))
        out[start:start + len(idx)] = values[idx].mean(axis=1)
    return out


def paired_difference(point: dict[str, float], control: dict[str, float], n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> dict:
    """The mean over images of point − control with its paired bootstrap interval.

    point / control: image id → value (a point's per-image values averaged over its seeds). Images missing on
    either side or NaN on either side are dropped and counted. Returns ``{"delta", "low", "high", "p", "pairs",
    "dropped"}``: the mean difference, the percentile interval at ``level``, the two-sided bootstrap p-value of
    "no difference" (2 · the smaller share of resampled means on either side of 0, counting the observed sample
    once, at most 1) and the numbers of images used and dropped. delta, low, high, p are None without a pair;
    low, high, p are None with a single pair (nothing to resample)."""
    ids = sorted(set(point) | set(control))
    diffs = [point[i] - control[i] for i in ids if i in point and i in control
             and not math.isnan(point[i]) and not math.isnan(control[i])]
    out: dict[str, Any] = {"pairs": len(diffs), "dropped": len(ids) - len(diffs)}
    if not diffs:
        return {**out, "delta": None, "low": None, "high": None, "p": None}
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) == 1:
        return {**out, "delta": float(d[0]), "low": None, "high": None, "p": None}
    means = bootstrap_means(d, n_boot, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    below, above = int((means <= 0).sum()), int((means >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (n_boot + 1))
    if np.all(d == d[0]):  # every resample is the observed mean (up to rounding): no uncertainty from the images
        low = high = d[0]
    return {**out, "delta": float(d.mean()), "low": float(low), "high": float(high), "p": float(p)}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the k-th smallest of m is multiplied by m − k + 1,
    made monotone and capped at 1."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p))
        out[i] = running
    return out


def mark(delta: float | None, p_adjusted: float | None, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """"better", "worse" or "not resolved": the sign of ``delta`` (read with the metric's direction) where the
    adjusted p-value is below ``alpha``."""
    if delta is None or p_adjusted is None or p_adjusted >= alpha or delta == 0:
        return "not resolved"
    return "better" if (delta > 0) == higher_is_better else "worse"


def seed_spread(point: dict, control: dict, metric: str) -> float | None:
    """The standard deviation (N − 1) over the seeds both points ran of the per-seed difference of their means;
    None with fewer than two such seeds. point / control: ``{"seeds": [...], "means": [{metric: mean}, ...]}``."""
    theirs = {s: m.get(metric) for s, m in zip(control["seeds"], control["means"]) if s is not None}
    diffs = [m[metric] - theirs[s] for s, m in zip(point["seeds"], point["means"])
             if s is not None and theirs.get(s) is not None and m.get(metric) is not None]
    diffs = [d for d in diffs if not math.isnan(d)]
    return float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None


def compare_points(points: list[dict], control: str, metrics: list[str], higher_is_better: dict[str, bool],
                   n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict[str, dict]]:
    """Every point against the control, on every metric.

    points: ``[{"point": label, "seeds": [...], "means": [{metric: mean} per seed], "per_image": [[{"id", metric:
    value}, ...] per seed]}]``; control: the label of one of them. Returns label → metric → ``{"delta", "low",
    "high", "p", "p_holm", "pairs", "dropped", "seed_sd", "mark"}`` for every point but the control, Holm's
    adjustment taken over those points on each metric."""
    ctrl = next(p for p in points if p["point"] == control)
    others = [p for p in points if p is not ctrl]
    out: dict[str, dict[str, dict]] = {p["point"]: {} for p in others}
    for m in metrics:
        base = image_values(ctrl["per_image"], m)
        found = [paired_difference(image_values(p["per_image"], m), base, n_boot, seed) for p in others]
        for p, d, adj in zip(others, found, holm([d["p"] for d in found])):
            out[p["point"]][m] = {**d, "p_holm": adj, "seed_sd": seed_spread(p, ctrl, m),
                                  "mark": mark(d["delta"], adj, higher_is_better[m])}
    return out


def resolve_control(points: list[dict], control: str | None, metric: str, mode: str) -> tuple[str | None, str]:
    """The control point's label and how it was chosen. control: a point label, or None / "best" for the point
    with the best mean over seeds of ``metric`` (``mode`` max or min; ties: the first). A label without a scored
    trial falls back to the best point, and the reason says so. points: as :func:`compare_points` (their
    ``means``). Returns (None, reason) when no point has the metric."""
    def score(p):
        return seed_summary(p["means"], metric)[0]

    scored = [p for p in points if score(p) is not None]
    if control not in (None, "best"):
        if any(p["point"] == control for p in scored):
            return control, "the sweep file's control"
        why = f"the sweep file's control {control!r} has no scored trial; "
    else:
        why = "" if control == "best" else "the sweep file names no control; "
    if not scored:
        return None, why + "no point was scored"
    sign = 1.0 if mode == "max" else -1.0
    best = max(scored, key=lambda p: sign * score(p))
    return best["point"], why + f"the best point by {metric} ({mode}), so every other point is at or behind it " \
                                "on that metric by construction"
