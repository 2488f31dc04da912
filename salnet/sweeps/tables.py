"""summary.md and summary.csv of a sweep's final evaluation, and per_image.csv beside them: text only, from
:func:`salnet.sweeps.summary.summarize_sweep`'s result (its trials, baselines, paper rows, points and control)."""

from __future__ import annotations

import csv
import io
import json
import math

from salnet.metrics import METRICS, PAPER_COLUMNS

MISSING = "–"


def param_text(v) -> str:
    """A parameter value as text: JSON for lists and mappings, str otherwise."""
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list | tuple) else str(v)


STAT_COLUMNS = ("mean", "sd", "delta", "low", "high", "seed_sd", "p_holm", "mark", "pairs")


def to_csv(rows: list[dict], params: list[str], metrics: list[str], result: dict | None = None) -> str:
    """summary.csv: trial, params, status, epochs, checkpoint_step, one column per metric (repr precision); with
    ``result``'s points and control, then ``control`` and per metric ``<metric>_<stat>`` for each of
    :data:`STAT_COLUMNS`: the trial's point's mean and sd over seeds, its difference to the control with the
    interval, the seed spread, the Holm-adjusted p-value, the mark and the images paired (empty for the control)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    stats = result is not None and result.get("points") is not None
    w.writerow(["trial", *params, "status", "epochs", "checkpoint_step", *metrics,
                *(["control", *(f"{m}_{s}" for m in metrics for s in STAT_COLUMNS)] if stats else [])])
    control = ((result or {}).get("control") or {}).get("point")
    for r in rows:
        means = r["means"] or {}
        extra = []
        if stats:
            point = point_of(result, r["trial"]) if r["means"] is not None else None
            extra.append(control or "")
            for m in metrics:
                if point is None:
                    extra += [""] * len(STAT_COLUMNS)
                    continue
                c = (point["comparison"] or {}).get(m) or {}
                extra += [_number(point["mean"].get(m)), _number(point["sd"].get(m)),
                          *(_number(c.get(k)) for k in ("delta", "low", "high", "seed_sd", "p_holm")),
                          c.get("mark", ""), _number(c.get("pairs"))]
        w.writerow([r["trial"], *("" if r["params"].get(p) is None else param_text(r["params"][p]) for p in params),
                    r["status"], r["epochs"], "" if r["checkpoint_step"] is None else r["checkpoint_step"],
                    *(repr(means[m]) if m in means else "" for m in metrics), *extra])
    return buf.getvalue()


def _cell(v) -> str:
    text = f"{v:.4g}" if isinstance(v, float) else param_text(v)
    return text.replace("|", "\\|")



def _paper_label(ref: dict) -> str:
    where = [ref[k] for k in ("source", "dataset") if ref.get(k)]
    return f"paper: {ref['label']}" + (f" ({', '.join(where)})" if where else "")


def matched_reference(row: dict, reference: list[dict]) -> dict | None:
    """The paper row a trial compares to: the one labelled as the trial's point, else the only one there is."""
    label = (row.get("params") or {}).get("point")
    for ref in reference:
        if label is not None and ref["label"] == label:
            return ref
    return reference[0] if len(reference) == 1 else None


def _values(means: dict | None, metrics: list[str], top: dict[str, str] | None = None) -> list[str]:
    cells = []
    for m in metrics:
        v = (means or {}).get(m)
        text = MISSING if v is None else f"{v:.3f}"
        cells.append(f"**{text}**" if top and v is not None and text == top.get(m) else text)
    return cells


def below_baseline(row: dict, baseline: dict, metrics: list[str]) -> list[str]:
    """The metrics on which a scored trial is not better than a baseline (ties count as not better)."""
    out = []
    for m in metrics:
        a, b = (row["means"] or {}).get(m), (baseline["means"] or {}).get(m)
        if a is not None and b is not None and not (a > b if METRICS[m].higher_is_better else a < b):
            out.append(m)
    return out


def to_markdown(result: dict, params: list[str], metrics: list[str]) -> str:
    """summary.md: a title, the table in the papers' column order (best trial value per column in bold, the best
    trial starred, "–" where undefined or unscored) with the baselines' and the paper's rows under the trials, a
    table of each trial's difference to its paper row, the points against the control (:func:`comparison_lines`)
    and lines on images, bad samples and the baselines."""
    rows, best = result["trials"], result["best"]
    baselines, reference = result.get("baselines") or [], result.get("reference") or []
    heads = [f"{PAPER_COLUMNS[m]} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in metrics]
    # bold every cell that shows the best value as printed, so equal-looking cells are never told apart
    top = {}
    for m in metrics:
        vals = [r["means"][m] for r in rows if m in (r["means"] or {})]
        if vals:
            top[m] = f"{(max if METRICS[m].higher_is_better else min)(vals):.3f}"
    lines = [f"# Sweep {result['sweep']}: {result['split']} split", "",
             "| " + " | ".join(["trial", *params, "status", *heads]) + " |",
             "|" + "---|" * (len(params) + 2) + "---:|" * len(metrics)]
    for r in rows:
        name = r["trial"] + (" ★" if best and r["trial"] == best["trial"] else "")
        cells = [_cell(name), *(MISSING if r["params"].get(p) is None else _cell(r["params"][p]) for p in params),
                 r["status"], *_values(r["means"], metrics, top)]
        lines.append("| " + " | ".join(cells) + " |")
    for b in baselines:
        lines.append("| " + " | ".join([_cell(b["name"]), *[MISSING] * len(params), "baseline",
                                        *_values(b["means"], metrics)]) + " |")
    elsewhere = result.get("reference_elsewhere") or []
    for ref in [*reference, *elsewhere]:
        lines.append("| " + " | ".join([_cell(_paper_label(ref)), *[MISSING] * len(params), "reported",
                                        *_values(ref, metrics)]) + " |")
    scored = [r for r in rows if r["means"] is not None]
    compared = [(r, ref) for r in scored if (ref := matched_reference(r, reference)) is not None]
    if compared:
        shown = [m for m in metrics if any(m in ref for _, ref in compared)]
        lines += ["", "Against the paper (Δ = this trial − the paper's row; ↑/↓: which way is better):", "",
                  "| " + " | ".join(["trial", *params, "paper row",
                                     *(f"Δ{PAPER_COLUMNS[m]} {'↑' if METRICS[m].higher_is_better else '↓'}"
                                       for m in shown)]) + " |",
                  "|" + "---|" * (len(params) + 2) + "---:|" * len(shown)]
        for r, ref in compared:
            deltas = [MISSING if m not in ref or m not in r["means"] else f"{r['means'][m] - ref[m]:+.3f}"
                      for m in shown]
            lines.append("| " + " | ".join([_cell(r["trial"]), *(MISSING if r["params"].get(p) is None
                                                                    else _cell(r["params"][p]) for p in params),
                                            _cell(ref["label"]), *deltas]) + " |")

    def span(key):
        vals = sorted({r[key] for r in scored})
        return str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]}"

    lines += comparison_lines(result, metrics)
    lines.append("")
    if scored:
        lines.append(f"{span('images')} {result['split']} images, {span('bad_samples')} bad samples skipped; "
                     f"{len(scored)} of {len(rows)} trials scored (best checkpoint of each).")
    else:
        lines.append(f"No trial has a checkpoint; none of the {len(rows)} trials was scored.")
    if best:
        lines.append(f"★ best trial by {PAPER_COLUMNS[result['metric']]} ({result['mode']}): {best['trial']}.")
    if rows:  # each retry and requeue resumed from the trial's last checkpoint
        lines.append("Attempts per trial (jobs; + times Slurm requeued one): " + ", ".join(
            f"{r['trial']} {r.get('attempts', 0)}" + (f"+{r['requeues']}" if r.get("requeues") else "") for r in rows)
            + ".")
    for b in baselines:
        behind = {r["trial"]: below_baseline(r, b, metrics) for r in scored}
        worse = {t: ms for t, ms in behind.items() if ms}
        if scored and not worse:
            lines.append(f"Every scored trial is better than the {b['name']} on all {len(metrics)} metrics.")
        for t, ms in worse.items():
            lines.append(f"{t} is not better than the {b['name']} on: {', '.join(PAPER_COLUMNS[m] for m in ms)}.")
    if elsewhere:
        sets = sorted({r["dataset"] for r in elsewhere})
        lines.append(f"The paper's rows on {', '.join(sets)} are for reference only: these trials ran on another "
                     "dataset, so no Δ is computed against them.")
    lines.append(f"{MISSING}: no checkpoint to score, or undefined on every image.")
    return "\n".join(lines) + "\n"


def point_of(result: dict | None, trial: str) -> dict | None:
    """The point (an entry of ``result["points"]``) a trial belongs to; None without points."""
    return next((p for p in (result or {}).get("points") or [] if trial in p["trials"]), None)


def _number(v) -> str:
    return "" if v is None else repr(v)


def _signed(v: float | None) -> str:
    return MISSING if v is None else f"{v:+.3f}"


def _head(m: str, prefix: str = "") -> str:
    return f"{prefix}{PAPER_COLUMNS[m]} {'↑' if METRICS[m].higher_is_better else '↓'}"


def mean_sd(point: dict, m: str) -> str:
    """"0.486 ± 0.010": a point's mean over seeds ± the standard deviation over seeds ("± –" with one seed)."""
    mean, sd = point["mean"].get(m), point["sd"].get(m)
    return MISSING if mean is None else f"{mean:.3f} ± {MISSING if sd is None else f'{sd:.3f}'}"


def comparison_cell(c: dict | None) -> str:
    """"+0.012 [+0.004, +0.020] better", with "±0.006" after the difference where there is a seed spread."""
    if not c or c["delta"] is None:
        return MISSING
    spread = "" if c.get("seed_sd") is None else f" ±{c['seed_sd']:.3f}"
    interval = MISSING if c["low"] is None else f"{c['low']:+.3f}, {c['high']:+.3f}"
    return f"{c['delta']:+.3f}{spread} [{interval}] {c['mark']}"


def _seeds(point: dict) -> str:
    seeds = [s for s in point["seeds"] if s is not None]
    return str(len(point["scored"])) + (f" ({', '.join(map(str, seeds))})" if seeds else "")


def comparison_table(result: dict, metrics: list[str]) -> list[str]:
    """The markdown table of every scored point but the control: its seeds and, per metric, the difference to the
    control with its interval, seed spread and mark (:func:`comparison_cell`); [] without a control."""
    control = (result.get("control") or {}).get("point")
    shown = [p for p in result.get("points") or [] if p["point"] != control and p["comparison"]]
    if control is None or not shown:
        return []
    lines = ["| " + " | ".join(["point", "seeds", *(_head(m, "Δ") for m in metrics)]) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    for p in shown:
        lines.append("| " + " | ".join([_cell(p["point"]), _seeds(p),
                                        *(comparison_cell(p["comparison"].get(m)) for m in metrics)]) + " |")
    return lines


def comparison_lines(result: dict, metrics: list[str]) -> list[str]:
    """summary.md's section on the control: what it is, how to read the differences, the table of
    :func:`comparison_table`, the points' means ± sd over seeds where a point ran several, and the undefined
    per-image values dropped."""
    ctrl, stats = result.get("control") or {}, result.get("statistics") or {}
    if ctrl.get("point") is None:
        return ["", f"No control: {ctrl.get('how', 'no point was scored')}."]
    points = result.get("points") or []
    n_other = sum(1 for p in points if p["point"] != ctrl["point"] and p["comparison"])
    lines = ["", f"## Against the control: {ctrl['point']}", "",
             f"Control: {ctrl['point']} ({ctrl['how']}). Δ = point − control: the mean over the test images of "
             "each image's value averaged over the point's seeds, on the images where both are defined. "
             f"[{stats.get('level', 0.95):.0%} paired bootstrap interval: the images resampled with replacement, "
             f"{stats.get('n_boot')} resamples; each interval unadjusted.] ±: the seed spread of Δ (sd over the seeds "
             "both points ran), where there are seeds. better / worse: the bootstrap p-value, Holm-adjusted over "
             f"the {n_other} point{'s' if n_other != 1 else ''} compared with the control on each metric, is below "
             f"{stats.get('alpha', 0.05):g}; not resolved: otherwise (the difference may be real, but these images "
             "and seeds do not show it). ↑/↓: which way is better.", ""]
    table = comparison_table(result, metrics)
    lines += table or [f"Only the control {ctrl['point']} was scored: nothing to compare."]
    if any(len(p["scored"]) > 1 for p in points):
        lines += ["", "Points: mean over seeds ± standard deviation over seeds (– with one seed):", "",
                  "| " + " | ".join(["point", "seeds", *(_head(m) for m in metrics)]) + " |",
                  "|---|---:|" + "---:|" * len(metrics)]
        lines += ["| " + " | ".join([_cell(p["point"]), _seeds(p), *(mean_sd(p, m) for m in metrics)]) + " |"
                  for p in points if p["scored"]]
    dropped = [f"{p['point']} {PAPER_COLUMNS[m]} {c['dropped']}" for p in points if p["comparison"]
               for m, c in p["comparison"].items() if c["dropped"]]
    if dropped:
        lines += ["", "Images left out of a comparison (undefined on either side): " + ", ".join(dropped) + "."]
    return lines


def comparison_text(result: dict | None, trial: str, metrics: list[str]) -> str | None:
    """A trial's point against the control as a markdown table for TensorBoard's text page (metric, the point's
    mean ± sd over seeds, Δ with interval and mark); None without a control or a scored point."""
    point = point_of(result, trial)
    control = ((result or {}).get("control") or {}).get("point")
    if point is None or control is None or not point["scored"]:
        return None
    if point["point"] == control:
        head = f"Point {point['point']} (seeds: {_seeds(point)}) is the sweep's control."
    else:
        head = f"Point {point['point']} (seeds: {_seeds(point)}) against the control {control}:"
    rows = ["| metric | mean ± sd over seeds | Δ to the control [95 % interval] |", "|---|---:|---:|"]
    rows += [f"| {_head(m)} | {mean_sd(point, m)} | {comparison_cell((point['comparison'] or {}).get(m))} |"
             for m in metrics]
    return "\n".join([head, "", *rows])


def per_image_csv(scored: list[dict], metrics: list[str]) -> str:
    """per_image.csv: one line per (trial or baseline, image): trial, point, seed, id, height, width and the
    metrics (repr precision; empty where undefined). scored: ``[{"trial", "point", "seed", "per_image": rows}]``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", "point", "seed", "id", "height", "width", *metrics])
    for s in scored:
        for r in s["per_image"]:
            w.writerow([s["trial"], s["point"] or "", "" if s["seed"] is None else s["seed"], r["id"],
                        r.get("height", ""), r.get("width", ""),
                        *("" if r.get(m) is None or math.isnan(r[m]) else repr(r[m]) for m in metrics)])
    return buf.getvalue()
