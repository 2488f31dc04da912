"""Pictures of a sweep's final evaluation, next to its summary.md: ``summary.png`` (every scored trial's searched
value(s) against each metric, the papers' reported values as horizontal lines) and ``predictions.png`` (a few
images with each shown trial's prediction and the ground truth, every column titled); and a run's validation curve
by epoch (:func:`write_curves`, from ``metrics.jsonl``).

    write_sweep_plots(sweep_dir, result, predictions)   # result: summarize_sweep's dict
    write_curves(out_png, {"BCE/4 alone": run_a, "GAN/4": run_b}, {"centre bias": 0.29})

matplotlib draws with its Agg backend (files only, no display). Trials are placed by their parameters: a numeric
parameter on its own axis (logarithmic when its values are positive and span more than a factor 20), anything
else (a points sweep's labels, a choice of strings, a loss spec) as categories in first-seen order. A reference
row ``{label, source, <metric>: value}`` of the sweep becomes a dashed line on that metric's plot; the control
point's mean a solid line, and every other point carries the 95 % interval of its difference to the control as an
error bar (salnet.sweeps.stats).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from salnet.atomic import umask_mode
from salnet.sweeps.stats import SEED_KEY

BEST_COLOUR, TRIAL_COLOUR, CONTROL_COLOUR = "#d62728", "#1f77b4", "0.15"
REFERENCE_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, umask_mode())  # mkstemp makes it private; a picture is for whoever reads the sweep folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def trial_label(row: dict) -> str:
    """A trial's label: the sweep's (``label``, or a points sweep's ``point``), else its name."""
    return str(row.get("label") or row.get("params", {}).get("point") or row["trial"])


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _axes_values(rows: list[dict], param: str) -> tuple[list, bool, list[str]]:
    """(x of each row, numeric?, category names): numbers as they are, anything else as category indices."""
    vals = [r["params"].get(param) for r in rows]
    if all(_is_number(v) for v in vals):
        return [float(v) for v in vals], True, []
    texts = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in vals]
    cats = list(dict.fromkeys(texts))
    return [cats.index(t) for t in texts], False, cats


def _error_bars(ax, x_of: dict[str, float], points: list[dict], control: str | None, metric: str) -> list[float]:
    """Draw each compared point's interval around its mean (at its first scored trial's x) and the control's mean
    as a solid line on ``ax``; returns the y values drawn (for the axis limits)."""
    drawn = []
    for p in points:
        x = next((x_of[t] for t in p["scored"] if t in x_of), None)
        c = (p.get("comparison") or {}).get(metric) or {}
        y = p["mean"].get(metric)
        if p["point"] == control and y is not None:
            ax.axhline(y, ls="-", lw=1.0, color=CONTROL_COLOUR, zorder=1)
            ax.annotate(f"control {control}: {y:.3g}", (0.01, y), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, -9), fontsize=7, color=CONTROL_COLOUR)
            drawn.append(y)
        elif x is not None and y is not None and c.get("delta") is not None:
            # the interval of Δ moved onto the point's mean: the bar crosses the control's line exactly where the
            # (unadjusted) interval contains 0
            lo, hi = y - (c["delta"] - c["low"]), y + (c["high"] - c["delta"])
            ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="none", ecolor=CONTROL_COLOUR, elinewidth=1.2,
                        capsize=3, zorder=4)
            drawn += [lo, hi]
    return drawn


def sweep_figure(rows: list[dict], metrics: list[str], references: list[dict] | None = None,
                 best: str | None = None, title: str = "", baselines: list[dict] | None = None,
                 points: list[dict] | None = None, control: str | None = None):
    """A matplotlib Figure: one plot per (metric, searched parameter) of the scored ``rows`` (summarize_sweep's
    trial rows: ``trial``, ``params``, ``means``, optional ``label``); the ``best`` trial in red, the reference
    rows' values of each metric as dashed lines, the ``baselines`` ({name, means}) as grey dotted lines. With
    ``points`` (summarize_sweep's: ``point``, ``scored``, ``mean``, ``comparison``) and the ``control`` point's
    label: each point's mean over seeds with an error bar, its difference to the control's 95 % interval drawn
    around that mean, and the control's mean as a solid line. ``train.seed`` never gets an axis. Without a scored
    trial, a figure that says so."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from salnet.metrics import METRICS, PAPER_COLUMNS

    scored = [r for r in rows if r.get("means")]
    metrics = [m for m in metrics if any(m in r["means"] for r in scored)]
    if not scored or not metrics:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, f"{title}\nno trial was scored", ha="center", va="center")
        return fig
    params = [k for k in dict.fromkeys(k for r in scored for k in r["params"]) if k != SEED_KEY]
    # the searched values: parameters that differ between trials (a shared override says nothing)
    varied = [p for p in params if len({json.dumps(r["params"].get(p), sort_keys=True) for r in scored}) > 1]
    params = varied or params[:1] or ["trial"]
    if params == ["trial"]:
        scored = [{**r, "params": {"trial": trial_label(r)}} for r in scored]
    ncols = 3 if len(params) == 1 else len(params)
    nrows = -(-len(metrics) // 3) if len(params) == 1 else len(metrics)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
    cells = [(m, p) for m in metrics for p in params]
    log_axis = {}  # one scale per parameter over all scored trials, whichever metric they have
    for p in params:
        xs, numeric, _ = _axes_values(scored, p)
        log_axis[p] = numeric and min(xs) > 0 and max(xs) / min(xs) > 20
    for ax, (metric, param) in zip(axes.flat, cells):
        mine = [r for r in scored if metric in r["means"]]
        xs, numeric, cats = _axes_values(mine, param)
        ys = [r["means"][metric] for r in mine]
        colours = [BEST_COLOUR if r["trial"] == best else TRIAL_COLOUR for r in mine]
        ys = ys + _error_bars(ax, dict(zip((r["trial"] for r in mine), xs)), points or [], control, metric)
        ax.scatter(xs, ys[:len(xs)], c=colours, s=[70 if r["trial"] == best else 36 for r in mine], zorder=3)
        for x, y, r in zip(xs, ys[:len(xs)], mine):
            if numeric or cats[x] != trial_label(r):  # a points sweep's label is already the tick under it
                ax.annotate(trial_label(r), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if numeric:
            if log_axis[param]:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(cats)), [c if len(c) <= 18 else c[:17] + "…" for c in cats], rotation=20,
                          fontsize=8, ha="right")
            ax.set_xlim(-0.5, len(cats) - 0.5)
        for i, ref in enumerate(r for r in references or [] if _is_number(r.get(metric))):
            colour = REFERENCE_COLOURS[i % len(REFERENCE_COLOURS)]
            ax.axhline(float(ref[metric]), ls="--", lw=1.2, color=colour, zorder=2)
            ax.annotate(f"{ref.get('label', 'paper')} ({ref.get('source', 'reported')}): {ref[metric]:g}",
                        (0.01 if i % 2 == 0 else 0.99, float(ref[metric])), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=7, color=colour,
                        ha="left" if i % 2 == 0 else "right")  # alternate sides: close values stay readable
            if not numeric and ref.get("label") in cats:  # the paper's value at its own point
                ax.scatter([cats.index(ref["label"])], [float(ref[metric])], marker="D", facecolors="none",
                           edgecolors=colour, s=46, zorder=4)
        for b in baselines or []:
            v = (b.get("means") or {}).get(metric)
            if _is_number(v):
                ax.axhline(v, ls=":", lw=1.2, color="0.45", zorder=1)
                ax.annotate(f"{b.get('name', 'baseline')}: {v:.3g}", (0.99, v), xycoords=("axes fraction", "data"),
                            textcoords="offset points", xytext=(0, -9), fontsize=7, color="0.35", ha="right")
        lines = [float(r[metric]) for r in references or [] if _is_number(r.get(metric))] + \
            [float(b["means"][metric]) for b in baselines or [] if _is_number((b.get("means") or {}).get(metric))]
        lo, hi = min(ys + lines), max(ys + lines)
        pad = (hi - lo) or abs(hi) or 1.0
        ax.set_ylim(lo - 0.15 * pad, hi + 0.2 * pad)  # room for the lines' labels above and below them
        arrow = "↑" if METRICS[metric].higher_is_better else "↓"
        ax.set_title(f"{PAPER_COLUMNS.get(metric, metric)} {arrow}", fontsize=10)
        ax.set_xlabel(param, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    keys = ["red: best trial"] + ([f"bars: 95 % interval of Δ to {control} (solid)"] if points and control else [])
    keys +=  [] + (["dashed: paper"] if references else []) + (["dotted: baseline"] if baselines else [])
    fig.suptitle(f"{title}   ({'; '.join(keys)})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # keep the title's line clear
    return fig


def figure_png(fig) -> bytes:
    """The PNG bytes of a Figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def predictions_figure(images: list, truth: list, columns: list[tuple[str, list]], title: str = ""):
    """A matplotlib Figure with one row per image: the image, each column's prediction ``columns`` = [(label,
    [map (1, H, W) or (H, W)])], the ground-truth map; each column titled (image, the labels, ground truth), each
    map shown on its own range (black = its minimum). ``images``: (3, H, W) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def array(t) -> np.ndarray:
        return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64)

    heads = ["image", *(label for label, _ in columns), "ground truth"]
    h, w = array(images[0]).shape[-2:]
    cell = 2.4  # inches per column: a 100-dpi picture of about 240 pixels a column
    fig, axes = plt.subplots(len(images), len(heads), squeeze=False,
                             figsize=(cell * len(heads), cell * h / w * len(images) + 0.7))
    for i, img in enumerate(images):
        cells = [np.clip(array(img).transpose(1, 2, 0), 0, 1), *(array(maps[i]).reshape(array(maps[i]).shape[-2:])
                                                                 for _, maps in columns),
                 array(truth[i]).reshape(array(truth[i]).shape[-2:])]
        for j, (ax, a) in enumerate(zip(axes[i], cells)):
            ax.imshow(a, cmap=None if a.ndim == 3 else "gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j] if len(heads[j]) <= 24 else heads[j][:23] + "…", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_sweep_plots(sweep_dir: str | Path, result: dict, predictions: dict | None = None,
                      references: list[dict] | None = None) -> list[Path]:
    """Write ``SWEEP/summary.png`` (:func:`sweep_figure` of ``result``, summarize_sweep's dict) and, given
    ``predictions`` ({"images", "truth", "columns"}: :func:`salnet.sweeps.summary.shown_predictions`),
    ``SWEEP/predictions.png`` (:func:`predictions_figure`). references: the papers' rows (default
    ``result["reference"]``); ``result["baselines"]`` ({name, means}), where present, are drawn as dotted lines.
    Returns the paths written."""
    sweep_dir = Path(sweep_dir)
    if references is None:
        references = result.get("reference") or []
    best = (result.get("best") or {}).get("trial")
    title = f"Sweep {result.get('sweep', sweep_dir.name)}: {result.get('split', '')} split"
    fig = sweep_figure(result["trials"], list(result["metrics"]), references, best, title,
                       result.get("baselines") or [], result.get("points"), (result.get("control") or {}).get("point"))
    written = [sweep_dir / "summary.png"]
    atomic_bytes(written[0], figure_png(fig))
    if predictions:
        written.append(sweep_dir / "predictions.png")
        fig = predictions_figure(predictions["images"], predictions["truth"], predictions["columns"],
                                 f"Sweep {result.get('sweep', sweep_dir.name)}: {result.get('split', '')} split "
                                 "(★ best trial)")
        atomic_bytes(written[1], figure_png(fig))
    return written


def curves_figure(series: dict[str, dict[int, float]], lines: dict[str, float], metric: str = "cc",
                  title: str = ""):
    """A matplotlib Figure: ``metric`` by epoch, one curve per ``series`` ({label: {epoch: value}}, epochs counted
    from 1), each of ``lines`` ({label: value}, e.g. the centre bias and the readout) a dotted horizontal line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from salnet.metrics import METRICS, PAPER_COLUMNS

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (label, values) in enumerate(series.items()):
        epochs = sorted(values)
        ax.plot(epochs, [values[e] for e in epochs], marker="o", ms=2.5, lw=1.4, label=label,
                color=f"C{i % 10}")
    for label, v in lines.items():
        if _is_number(v):
            ax.axhline(float(v), ls=":", lw=1.3, color="0.35")
            ax.annotate(f"{label}: {float(v):.3g}", (0.01, float(v)), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=8, color="0.25")
    arrow = "↑" if metric in METRICS and METRICS[metric].higher_is_better else "↓"
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {PAPER_COLUMNS.get(metric, metric)} {arrow}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def write_curves(out: str | Path, runs: dict[str, str | Path], lines: dict[str, float] | None = None,
                 metric: str = "cc", title: str = "") -> Path:
    """``out`` (PNG): :func:`curves_figure` of each run folder's ``metrics.jsonl`` ({label: run_dir}, read with
    :func:`salnet.sweeps.folder.read_metrics`; epochs without ``metric`` left out) and ``lines``. Returns ``out``."""
    from salnet.sweeps.folder import read_metrics

    series = {label: {e: float(r["val"][metric]) for e, r in read_metrics(run).items()
                      if _is_number((r.get("val") or {}).get(metric))} for label, run in runs.items()}
    out = Path(out)
    atomic_bytes(out, figure_png(curves_figure(series, lines or {}, metric, title)))
    return out


def baseline_values(result: dict, metric: str = "cc") -> dict[str, float]:
    """{name: mean ``metric``} of summarize_sweep's ``result["baselines"]`` (the centre bias, the readout, …)."""
    return {b["name"]: float(b["means"][metric]) for b in result.get("baselines") or []
            if _is_number((b.get("means") or {}).get(metric))}
