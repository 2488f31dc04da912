"""Score saved predictions against ground truth folders (files matched by stem).

Used by ``python -m salnet.metrics score`` and by the demo. Values are per image, as the MIT benchmark
averages them; the summary gives mean ± std over the images where a metric is defined and counts the
undefined ones separately.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from salnet.metrics import METRICS, check_names, other_fixations, score_batch
from salnet.metrics.files import (
    FIX_EXTS,
    MAP_EXTS,
    ScoreInputError,
    index_dir,
    read_fixations,
    read_map,
)
from salnet.models.baselines import center_bias


@dataclass
class ScoreResult:
    """``values[stem][metric]`` per image (NaN = undefined), ``reasons[stem][metric]`` why each undefined value
    is (:data:`REASONS`), the settings used and ``left_out`` ({what: stems without a partner}, with only_matched)."""

    metrics: list[str]
    values: dict[str, dict[str, float]]
    settings: dict = field(default_factory=dict)
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def why(self, metric: str) -> dict[str, int]:
        """{reason: images} of a metric's undefined values."""
        out: dict[str, int] = {}
        for row in self.reasons.values():
            if metric in row:
                out[row[metric]] = out.get(row[metric], 0) + 1
        return out

    def summary(self) -> dict[str, dict]:
        out = {}
        for m in self.metrics:
            v = np.array([row[m] for row in self.values.values()], dtype=np.float64)
            ok = v[~np.isnan(v)]
            out[m] = {
                "mean": float(ok.mean()) if ok.size else math.nan,
                "std": float(ok.std()) if ok.size else math.nan,
                "n": int(ok.size),
                "undefined": int(v.size - ok.size),
                "why_undefined": self.why(m),
            }
        return out

    def table(self) -> str:
        rows = [f"{'metric':<12}{'mean ± std':>22}{'images':>8}{'undefined':>10}  why undefined"]
        for m, s in self.summary().items():
            arrow = "↑" if METRICS[m].higher_is_better else "↓"
            mean = "undefined" if s["n"] == 0 else f"{s['mean']:.4f} ± {s['std']:.4f}"
            why = ", ".join(f"{n} {r}" for r, n in sorted(s["why_undefined"].items()))
            rows.append(f"{m:<10}{arrow} {mean:>22}{s['n']:>8}{s['undefined']:>10}  {why}".rstrip())
        return "\n".join(rows)

    def write_json(self, path: Path) -> None:
        per_image = {k: {m: (None if math.isnan(v) else v) for m, v in row.items()} for k, row in self.values.items()}
        summ = {m: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in s.items()}
                for m, s in self.summary().items()}
        Path(path).write_text(json.dumps({"settings": self.settings, "summary": summ, "per_image": per_image,
                                          "why_undefined": self.reasons, "left_out": self.left_out}, indent=2))

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", *self.metrics])
            for stem, row in self.values.items():
                w.writerow([stem, *("" if math.isnan(row[m]) else repr(row[m]) for m in self.metrics)])


def _default_metrics(have_fix: bool, have_maps: bool) -> list[str]:
    ok = []
    for name, m in METRICS.items():
        needs = set(m.needs.split("+")) - {"other", "baseline"}
        if ("fixations" in needs and not have_fix) or ("gt_map" in needs and not have_maps):
            continue
        ok.append(name)
    return ok


# why a value is undefined, checked in this order (the first that holds is given)
REASONS = ("no fixations", "no other images' fixations (sAUC)", "constant prediction", "constant ground-truth map")


def _shown(stems: list[str]) -> str:
    return ", ".join(stems[:10]) + (f" … (+{len(stems) - 10})" if len(stems) > 10 else "")


def _check_partners(pred: dict, others: dict[str, dict], only_matched: bool = False) -> dict[str, list[str]]:
    """Files of each folder without a partner in another: an error naming them, or with ``only_matched``
    {"--pred" | "--maps" | "--fixations": the stems left out} (an error when no stem is in every folder)."""
    left: dict[str, list[str]] = {}
    for what, files in others.items():
        lonely_pred = sorted(set(pred) - set(files))
        lonely_gt = sorted(set(files) - set(pred))
        for stems, where, missing in ((lonely_pred, "--pred", what), (lonely_gt, what, "--pred")):
            if stems and not only_matched:
                raise ScoreInputError(f"{len(stems)} {where} files without a partner in {missing}: {_shown(stems)}; "
                                      "files are matched by stem (name without extension); --only-matched scores "
                                      "the files that have partners")
            if stems:
                left[where] = sorted(set(left.get(where, [])) | set(stems))
    common = set(pred).intersection(*others.values())
    if not common:
        raise ScoreInputError(f"no file stem is in every folder ({', '.join(['--pred', *others])}); files are "
                              "matched by stem (name without extension)")
    return left


def _reason(metric: str, pred: np.ndarray, fix: np.ndarray | None, gt: np.ndarray | None,
            other_empty: bool) -> str:
    """Why ``metric`` is undefined on an image (the first of :data:`REASONS` that holds)."""
    needs = METRICS[metric].needs.split("+")
    if "fixations" in needs and fix is not None and not (fix > 0).any():
        return REASONS[0]
    if "other" in needs and other_empty:
        return REASONS[1]
    if pred.max() == pred.min():
        return REASONS[2]
    if "gt_map" in needs and gt is not None and gt.max() == gt.min():
        return REASONS[3]
    return "undefined by the formula"


def score_folders(
    pred_dir: Path,
    fixations_dir: Path | None = None,
    maps_dir: Path | None = None,
    *,
    baseline: Path | None = None,
    metrics: Sequence[str] | None = None,
    variant: str = "mit",
    seed: int = 0,
    n_splits: int = 100,
    step: float = 0.1,
    n_other: int = 10,
    batch_size: int = 16,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    only_matched: bool = False,
) -> ScoreResult:
    """Score every prediction in ``pred_dir`` against its partners in ``fixations_dir``/``maps_dir``; a file
    without a partner is an error, or with ``only_matched`` left out and counted in ``left_out``.

    Without ``metrics``, every metric the given folders allow is computed. IG uses ``baseline`` (a map
    file) or, by default, :func:`salnet.models.baselines.center_bias` at each image's size.
    """
    preds = index_dir(pred_dir, MAP_EXTS, "--pred")
    fixf = index_dir(fixations_dir, FIX_EXTS, "--fixations")
    mapf = index_dir(maps_dir, MAP_EXTS, "--maps")
    if not fixf and not mapf:
        raise ScoreInputError("give --fixations and/or --maps: there is no ground truth to score against")
    names = _default_metrics(bool(fixf), bool(mapf)) if metrics is None else check_names(metrics)
    for n in names:
        need = METRICS[n].needs.split("+")
        if "fixations" in need and not fixf:
            raise ScoreInputError(f"metric {n} needs fixations: give --fixations DIR")
        if "gt_map" in need and not mapf:
            raise ScoreInputError(f"metric {n} needs ground-truth maps: give --maps DIR")
    others = {k: v for k, v in (("--fixations", fixf), ("--maps", mapf)) if v}
    left_out = _check_partners(preds, others, only_matched)
    stems = sorted(set(preds).intersection(*others.values()))
    gt_maps = {s: read_map(mapf[s]) for s in stems} if mapf else {}
    fix_counts, points, sizes = {}, [], []
    for s in stems:
        if fixf:
            c = read_fixations(fixf[s]).to_counts(gt_maps[s].shape if s in gt_maps else None)
            if s in gt_maps and c.shape != gt_maps[s].shape:
                raise ScoreInputError(f"{fixf[s]}: fixation map {c.shape} and ground-truth map {mapf[s].name} "
                                      f"{gt_maps[s].shape} differ in size")
            fix_counts[s] = c
            yx = np.argwhere(c > 0)
            points.append(np.repeat(yx, c[c > 0].astype(np.int64), axis=0))
            sizes.append(c.shape)
        else:
            sizes.append(gt_maps[s].shape)
    base = read_map(baseline) if baseline is not None else None
    groups: dict[tuple, list[int]] = defaultdict(list)
    pred_arrays = {s: read_map(preds[s]) for s in stems}
    for i, s in enumerate(stems):
        groups[(sizes[i], pred_arrays[s].shape)].append(i)
    values: dict[str, dict[str, float]] = {s: {} for s in stems}
    other_empty: dict[str, bool] = {}
    for (size, _), idx in groups.items():
        for lo in range(0, len(idx), batch_size):
            chunk = idx[lo : lo + batch_size]
            batch_stems = [stems[i] for i in chunk]

            def stack(arrs):
                return torch.from_numpy(np.stack(arrs)).to(device=device, dtype=dtype)

            kw = {"pred": stack([pred_arrays[s] for s in batch_stems])}
            if fixf:
                kw["fixations"] = stack([fix_counts[s] for s in batch_stems])
            if mapf:
                kw["gt_map"] = stack([gt_maps[s] for s in batch_stems])
            if "sauc" in names:
                kw["other"] = torch.stack([other_fixations(points, sizes, i, n_other=n_other, variant=variant,
                                                           seed=seed, key=stems[i]) for i in chunk]).to(device, dtype)
                other_empty.update({stems[i]: not bool((o > 0).any()) for i, o in zip(chunk, kw["other"])})
            if "ig" in names:
                kw["baseline"] = stack([base if base is not None else center_bias(size)] * len(chunk))
            out = score_batch(metrics=names, variant=variant, seed=seed, keys=batch_stems, n_splits=n_splits,
                              step=step, dtype=dtype, **kw)
            for m, v in out.items():
                for s, x in zip(batch_stems, v.cpu().tolist()):
                    values[s][m] = float(x)
    reasons = {s: {m: _reason(m, pred_arrays[s], fix_counts.get(s), gt_maps.get(s), other_empty.get(s, False))
                   for m, v in row.items() if math.isnan(v)} for s, row in values.items()}
    settings = {"variant": variant, "seed": seed, "n_splits": n_splits, "step": step, "n_other": n_other,
                "pred": str(pred_dir), "fixations": str(fixations_dir),
                "maps": str(maps_dir), "baseline": str(baseline) if baseline else "center_bias"}
    return ScoreResult(names, values, settings, {s: r for s, r in reasons.items() if r}, left_out)
