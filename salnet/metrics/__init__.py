"""The nine MIT saliency benchmark metrics, batched on torch tensors (CPU or CUDA, float64 default).

Conventions (README "Metrics"): MIT MATLAB code by default, pysaliency's variant where they differ.
``python -m salnet.metrics score ...`` scores saved predictions (see :mod:`salnet.metrics.score`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from salnet.metrics.auc import auc_borji, auc_judd, sauc
from salnet.metrics.common import (
    EPS,
    VARIANTS,
    as_batch,
    check_finite,
    fixation_layout,
    map_pair_stats,
    map_stats,
    resize_to,
    shared_inputs,
)
from salnet.metrics.distribution import cc, info_gain, kld, nss, sim
from salnet.metrics.emd import emd
from salnet.metrics.shuffled import other_fixations


@dataclass(frozen=True)
class Metric:
    """A metric's function, the ground truth it needs and its direction."""

    name: str
    fn: object
    needs: str  # "fixations" | "gt_map" | "fixations+other" | "fixations+baseline"
    higher_is_better: bool = True
    random: bool = False
    has_variant: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("auc_judd", auc_judd, "fixations", random=True),
        Metric("auc_borji", auc_borji, "fixations", random=True),
        Metric("sauc", sauc, "fixations+other", random=True, has_variant=True),
        Metric("nss", nss, "fixations", has_variant=True),
        Metric("cc", cc, "gt_map"),
        Metric("sim", sim, "gt_map", has_variant=True),
        Metric("kld", kld, "gt_map", higher_is_better=False),
        Metric("emd", emd, "gt_map", higher_is_better=False),
        Metric("ig", info_gain, "fixations+baseline", has_variant=True),
    )
}


def check_names(names) -> list[str]:
    """Validate metric names; unknown ones are an error listing the valid choices."""
    names = list(names)
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; valid: {', '.join(METRICS)}")
    return names


def score_batch(
    pred: torch.Tensor,
    *,
    fixations: torch.Tensor | None = None,
    gt_map: torch.Tensor | None = None,
    other: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    metrics=tuple(METRICS),
    variant: str = "mit",
    seed: int = 0,
    keys=None,
    n_splits: int = 100,
    step: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Every requested metric on one batch of same-sized ground truth; returns name → (B,) values.

    Metrics whose inputs are missing (no ``other`` for sAUC, no ``baseline`` for IG) are an error
    naming the missing input. ``variant`` applies to the metrics that have one (sAUC, NSS, SIM, IG);
    ``n_splits`` and ``step`` to AUC-Borji and sAUC (MIT defaults 100 and 0.1).
    """
    out = {}
    names = check_names(metrics)
    needed = {k for n in names for k in METRICS[n].needs.split("+")}
    with shared_inputs():
        # check the inputs the metrics use for NaN/inf once and resize the prediction once; the metrics
        # then skip both and share per-map statistics (EMD resizes the original prediction itself, to its
        # own small grid, as EMD.m does)
        pred = as_batch(pred, "pred", dtype)
        if baseline is not None and baseline.ndim == 2:  # one baseline for the whole batch
            baseline = baseline.expand(pred.shape[0], *baseline.shape)
        given = {k: (None if v is None else as_batch(v, k, dtype) if k in needed else v)
                 for k, v in {"fixations": fixations, "gt_map": gt_map, "other": other, "baseline": baseline}.items()}
        target = given["fixations"] if given["fixations"] is not None else given["gt_map"]
        resized = resize_to(pred, target.shape[-2:]) if target is not None else pred
        gt = given["gt_map"]
        if gt is not None and "gt_map" in needed and gt.shape == resized.shape:
            map_pair_stats(resized.flatten(1), gt.flatten(1))  # both maps' statistics in one pass
        # bicubic weights are all nonzero, so a NaN/inf in pred reaches the resized map: its row sums
        # (shared with the metrics' statistics) are the check
        check_finite(pred, "pred", map_stats(resized.flatten(1)).total)
        for k, v in given.items():
            if v is not None and k in needed:
                check_finite(v, k, _total(k, v.flatten(1)))
        for name in names:
            out[name] = _call(METRICS[name], name, resized if name != "emd" else pred, given, variant, seed, keys,
                              n_splits, step, dtype)
    return out


def _total(name: str, x: torch.Tensor) -> torch.Tensor:
    """Sums over each row of the input ``name`` (B,N), shared with the metrics: a ground-truth map's from
    its statistics; a fixation map's over its fixated (nonzero, NaN/inf included) pixels, from the
    packing the metrics use, so that the mostly-zero map is not summed in full as well."""
    if name == "gt_map":
        return map_stats(x).total
    if name in ("fixations", "other"):
        return fixation_layout(x).counts.sum(1)
    return x.sum(1)


def _call(m: Metric, name, pred, given, variant, seed, keys, n_splits, step, dtype) -> torch.Tensor:
    needed = m.needs.split("+")
    missing = [k for k in needed if given[k] is None]
    if missing:
        raise ValueError(f"metric {name} needs {' and '.join(missing)}, which was not given")
    kw: dict = {"dtype": dtype}
    if m.random:
        kw.update(seed=seed, keys=keys)
    if name in ("auc_borji", "sauc"):
        kw.update(n_splits=n_splits, step=step)
    if m.has_variant:
        kw["variant"] = variant
    return m.fn(pred, *[given[k] for k in needed], **kw)


__all__ = [
    "EPS", "METRICS", "VARIANTS", "Metric", "auc_borji", "auc_judd", "cc", "check_names", "emd",
    "info_gain", "kld", "nss", "other_fixations", "sauc", "score_batch", "sim",
]
