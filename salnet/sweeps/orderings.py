"""Does a paper's ordering of a sweep's points hold on the sweep's own images?

For one metric, the points that both the paper and the sweep have are ordered by the paper's values, best first;
every pair (a ranked above b by the paper) is compared on the sweep's per-image values: the mean over images of
a − b (each image's value averaged over the point's seeds), its 95 % paired bootstrap interval over images and its
bootstrap p-value (:func:`salnet.sweeps.stats.paired_difference`), Holm-adjusted over the metric's pairs. A pair
*holds* when the adjusted p-value is below 5 % and the difference has the paper's sign, is *reversed* when it is
below 5 % with the other sign, and is *not resolved* otherwise.

    pairs = check_ordering(values, paper, higher_is_better=True)     # values: point → image id → value
    write_orderings(sweep_dir, reference_rows)                       # SWEEP/orderings.md from per_image.csv

Pure numpy and the standard library.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from salnet.atomic import atomic_write
from salnet.sweeps import stats

ORDERING_METRICS = ("cc", "nss", "auc_judd", "kld")  # the columns the loss study's Table 2 shows ordered
VERDICTS = ("holds", "reversed", "not resolved")


def check_ordering(values: dict[str, dict[str, float]], paper: dict[str, float], higher_is_better: bool,
                   n_boot: int = stats.N_BOOT, seed: int = 0) -> list[dict]:
    """Every pair of the paper's ordering, compared on the sweep's images.

    values: point label → image id → value (averaged over seeds); paper: point label → the paper's value. Points
    missing on either side are left out. Returns ``[{"above", "below", "paper": (above's, below's), "delta" (mean
    of above − below), "low", "high", "p", "p_adjusted", "pairs", "verdict"}]`` in the paper's order (best first,
    then each point's pairs with the points below it)."""
    labels = [p for p in paper if p in values and not math.isnan(paper[p])]
    order = sorted(labels, key=lambda p: paper[p], reverse=higher_is_better)
    out = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            d = stats.paired_difference(values[a], values[b], n_boot, seed)
            out.append({"above": a, "below": b, "paper": (paper[a], paper[b]), **d})
    as_verdict = {"better": "holds", "worse": "reversed", "not resolved": "not resolved"}  # of a against b
    for row, p_adj in zip(out, stats.holm([r["p"] for r in out])):
        row["p_adjusted"] = p_adj
        row["verdict"] = as_verdict[stats.mark(row["delta"], p_adj, higher_is_better)]
    return out


def read_point_values(per_image_csv: str | Path, metric: str) -> dict[str, dict[str, float]]:
    """point label → image id → ``metric`` averaged over the point's seeds, from a sweep's per_image.csv (rows
    without a point — the baselines — are left out)."""
    seeds: dict[str, dict[str, list[dict]]] = {}
    with open(per_image_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["point"]:
                seeds.setdefault(r["point"], {}).setdefault(r["trial"], []).append(
                    {"id": r["id"], metric: float(r[metric]) if r.get(metric) else math.nan})
    return {p: stats.image_values(list(by_trial.values()), metric) for p, by_trial in seeds.items()}


def orderings_markdown(found: dict[str, list[dict]], source: str, where: str) -> str:
    """orderings.md: per metric, the paper's order, the counts of each verdict and one line per pair."""
    from salnet.metrics import METRICS, PAPER_COLUMNS

    lines = [f"# The orderings of {source} on {where}", "",
             "Each pair: the paper ranks the first point above the second; Δ = first − second, mean over images "
             "(each image averaged over seeds), its 95 % paired bootstrap interval over images, and the verdict "
             f"(Holm-adjusted over the metric's pairs, α = {stats.ALPHA}).", ""]
    for metric, pairs in found.items():
        arrow = "↑" if METRICS[metric].higher_is_better else "↓"
        order = list(dict.fromkeys([p["above"] for p in pairs] + [p["below"] for p in pairs]))
        counts = {v: sum(p["verdict"] == v for p in pairs) for v in VERDICTS}
        lines += [f"## {PAPER_COLUMNS.get(metric, metric)} {arrow}", "",
                  "Paper: " + (" > " if METRICS[metric].higher_is_better else " < ").join(order), "",
                  f"{len(pairs)} pairs: {counts['holds']} hold, {counts['reversed']} reversed, "
                  f"{counts['not resolved']} not resolved.", "",
                  "| paper's order | paper | Δ here [95 % interval] | verdict |", "|---|---:|---:|---|"]
        for p in pairs:
            interval = "–" if p["delta"] is None else (
                f"{p['delta']:+.3f}" + ("" if p["low"] is None else f" [{p['low']:+.3f}, {p['high']:+.3f}]"))
            lines.append(f"| {p['above']} vs {p['below']} | {p['paper'][0]:.3f} vs {p['paper'][1]:.3f} | "
                         f"{interval} | {p['verdict']} |")
        lines.append("")
    return "\n".join(lines)


def write_orderings(sweep_dir: str | Path, reference: list[dict], metrics=ORDERING_METRICS,
                    where: str = "this sweep's images") -> dict[str, list[dict]]:
    """``SWEEP/orderings.md`` (and the returned dict, metric → :func:`check_ordering`'s pairs) from the sweep's
    per_image.csv and the paper's ``reference`` rows (``{"label", "source", metric: value}``, a sweep file's)."""
    from salnet.metrics import METRICS

    sweep_dir = Path(sweep_dir)
    found = {}
    for m in metrics:
        paper = {r["label"]: float(r[m]) for r in reference if isinstance(r.get(m), int | float)}
        found[m] = check_ordering(read_point_values(sweep_dir / "per_image.csv", m), paper,
                                  METRICS[m].higher_is_better)
    source = next((r["source"] for r in reference if r.get("source")), "the paper")
    atomic_write(sweep_dir / "orderings.md", orderings_markdown(found, source, where))
    return found
