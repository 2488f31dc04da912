"""The final evaluation of a hyper-parameter sweep: every trial's checkpoint scored on a held-out split,
tables like the papers', TensorBoard views that compare the trials.

    result = summarize_sweep("runs/sweeps/alpha", split="test")
    result["best"]["trial"], result["trials"][0]["means"]["cc"]

Reads ``SWEEP/sweep.yaml`` (metric and mode) and ``SWEEP/trials/<name>/`` (run folders as
:class:`salnet.train.loop.Trainer` writes them, each with a ``trial.json``); writes ``SWEEP/summary.csv``,
``SWEEP/summary.md``, ``SWEEP/evaluation.json`` and ``SWEEP/tb/<trial name>/`` (hparams rows, the
``val/<metric>`` curves of every trial, the best trial's predictions). Pure library: no Ray, no Slurm.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import torch

from salnet.atomic import atomic_write
from salnet.metrics import METRICS, PAPER_COLUMNS, check_names
from salnet.sweep_folder import SweepFolder, read_metrics
from salnet.train.validate import DEFAULT_METRICS

MISSING = "–"
PANEL_TAG = "best/{} (image | prediction | ground truth)"


def read_spec(sweep_dir: Path) -> tuple[str, str, str]:
    """(sweep name, metric, mode) from ``sweep.yaml``'s ``spec``; the folder name, "cc", "max" where absent."""
    folder = SweepFolder(sweep_dir)
    spec = folder.plan_doc().get("spec") or {}
    metric = spec.get("metric", "cc")
    mode = spec.get("mode", "max" if METRICS.get(metric, METRICS["cc"]).higher_is_better else "min")
    if metric not in METRICS or mode not in ("max", "min"):
        raise ValueError(f"{folder.plan_file}: metric {metric!r} / mode {mode!r}: choose one of "
                         f"{', '.join(METRICS)} and max or min")
    return str(spec.get("name") or sweep_dir.name), metric, mode


def read_epochs(run_dir: Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl``, one per epoch in epoch order, read as everywhere else
    (:func:`salnet.sweep_folder.read_metrics`: the last line of an epoch wins, a torn last line is ignored)."""
    return list(read_metrics(run_dir).values())


def checkpoint_step(ckpt: Path) -> int:
    """The global step a checkpoint was saved at: from its file name ``ckpt-<step>.pt``, else from its contents."""
    m = re.fullmatch(r"ckpt-(\d+)\.pt", ckpt.resolve().name)
    if m:
        return int(m.group(1))
    from salnet.train.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt, map_location="cpu")["step"])


def check_split(run_dir: Path, split: str) -> None:
    """Raise ValueError naming the shards folder, the split and the splits it has when ``split`` is not packed
    in the shards a run was trained on (before any model is loaded; shard_list would say it per trial)."""
    from salnet.config import load_config
    from salnet.data.shards import read_manifest

    shards = Path(load_config(run_dir / "config.yaml").data.shards)
    splits = sorted(read_manifest(shards)["splits"])
    if split not in splits:
        raise ValueError(f"{shards}: no split {split!r} to evaluate the sweep on (trial {run_dir.name}); the "
                         f"manifest has {splits}; pack it (jobs/pack.py) or pass split= one of them")


def best_trial(rows: list[dict], metric: str, mode: str) -> dict | None:
    """The row with the best ``means[metric]`` (``mode`` "max" or "min"; ties: the first row), or None when
    no row has the metric."""
    scored = [r for r in rows if metric in (r.get("means") or {})]
    if not scored:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(scored, key=lambda r: sign * r["means"][metric])


def predictions_panel(run_dir: Path, shards: str, split: str, n: int, device,
                      batch_size: int | None) -> torch.Tensor | None:
    """[image | prediction | ground truth] rows of the first ``n`` images of ``split`` at the network input
    size (:func:`salnet.train.tensorboard.panel`), as the training loop's validation panel; None when the split
    has no readable image."""
    from salnet.data.loader import LoaderConfig, ValLoader
    from salnet.predict import load_model
    from salnet.train.tensorboard import panel

    G, cfg = load_model(run_dir, device=device)
    lcfg = LoaderConfig(size=cfg.data.input_size, batch_size=batch_size or cfg.data.batch_size, workers=0,
                        flip=False, max_bad_fraction=cfg.data.max_bad_fraction)
    kept = []
    with torch.no_grad():
        for batch in ValLoader(shards, split, lcfg, rank=0, world_size=1):
            pred = G(batch["image"].to(device)).prediction().float().cpu()
            kept += [(batch["image"][i], pred[i], batch["map"][i]) for i in range(len(pred))]
            if len(kept) >= n:
                break
    return panel(kept[:n]) if kept else None


def hparam_values(rows: list[dict]) -> tuple[list[dict], dict[str, list]]:
    """Each row's params plus ``status`` with one type per key across rows (numbers stay numbers; anything
    else, a missing value included, becomes a string) and the discrete domain of every string key."""
    keys = list(dict.fromkeys(k for r in rows for k in r["params"])) + ["status"]
    table = [{**r["params"], "status": r["status"]} for r in rows]
    domains = {}
    for k in keys:
        vals = [t.get(k) for t in table]
        if not all(isinstance(v, int | float) for v in vals):
            for t, v in zip(table, vals):
                t[k] = param_text(v)
            domains[k] = sorted({t[k] for t in table})
    return table, domains


def write_board(sweep_dir: Path, rows: list[dict], metrics: list[str], split: str, best: dict | None,
                best_panel: torch.Tensor | None) -> None:
    """``SWEEP/tb/<trial>/``: ``val/<metric>`` per epoch (step = epoch + 1), an hparams row for scored trials,
    the best trial's panel. Each trial's folder is rewritten, so summarising twice leaves no duplicates."""
    from torch.utils.tensorboard import SummaryWriter

    # TensorBoard's hparams plugin shows the Experiment of an arbitrary run, so every row must declare the same
    # hparams, domains and metrics. Only scored trials get a row: an unscored one would need NaN for every
    # metric, which the parallel-coordinates and scatter views cannot place; summary.md/csv list them all.
    scored = [r for r in rows if r["means"] is not None]
    hp_rows, domains = hparam_values(scored)
    hp_by_trial = {r["trial"]: hp for r, hp in zip(scored, hp_rows)}
    # the scores must not share tags with the curves (the plugin would show the curve's last value instead)
    prefix = split if split != "val" else "val_final"
    for r in rows:
        log_dir = sweep_dir / "tb" / r["trial"]
        shutil.rmtree(log_dir, ignore_errors=True)
        records = read_epochs(sweep_dir / "trials" / r["trial"])
        if not records and r["trial"] not in hp_by_trial:
            continue
        with SummaryWriter(str(log_dir)) as w:
            for rec in records:
                for m in metrics:
                    if m in (rec.get("val") or {}):
                        w.add_scalar(f"val/{m}", float(rec["val"][m]), int(rec["epoch"]) + 1)
            if best is not None and best_panel is not None and r["trial"] == best["trial"]:
                w.add_image(PANEL_TAG.format(r["trial"]), best_panel, 0, dataformats="CHW")
            if r["trial"] in hp_by_trial:
                hp = hp_by_trial[r["trial"]]
                # a metric undefined on every image has no mean; NaN keeps the row's metric set complete
                w.add_hparams(hp, {f"{prefix}/{m}": float(r["means"].get(m, math.nan)) for m in metrics},
                              hparam_domain_discrete=domains, run_name=".")


def param_text(v) -> str:
    """A parameter value as text: JSON for lists and mappings, str otherwise."""
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list | tuple) else str(v)


def to_csv(rows: list[dict], params: list[str], metrics: list[str]) -> str:
    """summary.csv: trial, params, status, epochs, checkpoint_step, one column per metric (repr precision)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *params, "status", "epochs", "checkpoint_step", *metrics])
    for r in rows:
        means = r["means"] or {}
        w.writerow([r["trial"], *("" if r["params"].get(p) is None else param_text(r["params"][p]) for p in params),
                    r["status"], r["epochs"], "" if r["checkpoint_step"] is None else r["checkpoint_step"],
                    *(repr(means[m]) if m in means else "" for m in metrics)])
    return buf.getvalue()


def _cell(v) -> str:
    text = f"{v:.4g}" if isinstance(v, float) else param_text(v)
    return text.replace("|", "\\|")


def read_reference(sweep_dir: Path) -> list[dict]:
    """The paper's rows of ``sweep.yaml``'s spec (``reference``: label, source, metric values); [] without."""
    spec = SweepFolder(sweep_dir).plan_doc().get("spec") or {}
    return [dict(r) for r in spec.get("reference") or []]


def references_for(rows: list[dict], reference: list[dict]) -> tuple[list[dict], list[dict]]:
    """(paper rows on the trials' dataset, the others): a row naming a ``dataset`` other than the one in the first
    scored trial's shard manifest is not the trials' comparison (e.g. SALICON's numbers next to synthetic data)."""
    from salnet.data.shards import read_manifest

    first = next((r for r in rows if r.get("shards")), None)
    dataset = read_manifest(first["shards"]).get("dataset") if first else None
    same = [r for r in reference if r.get("dataset") in (None, dataset)]
    return same, [r for r in reference if r not in same]


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
    table of each trial's difference to its paper row, and lines on images, bad samples and the baselines."""
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


def score_baselines(rows: list[dict], runs: dict[str, str | Path] | None, split: str, names: list[str],
                    device, batch_size: int | None) -> list[dict]:
    """The centre bias (always) and the baseline runs ``runs`` (name → run folder, e.g. the readout baseline),
    scored on the shards, split and input size of the first scored trial, as the trials are. [] when no trial
    was scored."""
    from salnet.baselines import CenterBiasModel
    from salnet.config import load_config
    from salnet.evaluate import evaluate_model, evaluate_run

    first = next((r for r in rows if r["means"] is not None), None)
    if first is None:
        return []
    cfg = load_config(Path(first["checkpoint"]).parent / "config.yaml")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    centre = evaluate_model(CenterBiasModel(), first["shards"], split, tuple(cfg.data.input_size), metrics=names,
                            device=dev, batch_size=batch_size or cfg.data.batch_size, seed=cfg.train.seed,
                            postprocess=cfg.model.postprocess)
    out = [{"name": "centre bias", "run": None, "means": centre["means"], "images": centre["images"]}]
    for name, run in (runs or {}).items():
        ev = evaluate_run(run, shards=first["shards"], split=split, metrics=names, device=dev, batch_size=batch_size)
        out.append({"name": name, "run": str(run), "means": ev["means"], "images": ev["images"]})
    return out


def summarize_sweep(sweep_dir: str | Path, split: str = "test", metrics=DEFAULT_METRICS,
                    device: str | torch.device | None = None, batch_size: int | None = None, images: int = 4,
                    baselines: dict[str, str | Path] | None = None) -> dict:
    """Score every trial of a sweep on ``split`` and write the sweep's tables and TensorBoard views.

    sweep_dir: a folder with ``trials/<name>/trial.json`` (and ``sweep.yaml`` for the metric and mode that pick
    the best trial; default cc, max). Trials with ``best.pt`` (else ``latest.pt``) are scored with
    :func:`salnet.evaluate.evaluate_run` (``metrics``, ``device``, ``batch_size``); the others stay in the tables
    with their status. ``images``: rows of the best trial's prediction panel (0: none). The centre bias and the
    ``baselines`` runs (name → run folder, e.g. ``{"readout": ...}``) are scored the same way and shown under the
    trials, with the paper's rows of the sweep file (``reference``) and each trial's Δ to its paper row.
    Writes summary.csv, summary.md, evaluation.json (atomically) and tb/; returns evaluation.json's dict:
    ``{"sweep", "sweep_dir", "split", "metric", "mode", "metrics", "best": {"trial", "value"} | None,
    "trials": [{"trial", "params", "status", "attempts", "requeues", "error", "epochs", "checkpoint", "checkpoint_step",
    "means": {metric: mean} | None, "images", "bad_samples", "shards"}], "baselines": [{"name", "run", "means",
    "images"}], "reference": [{"label", "source", "dataset", metric: value}], "reference_elsewhere": [...]}``
    (paper rows whose ``dataset`` differs from the trials' shards go to ``reference_elsewhere``: listed, no Δ).
    A split missing from a trial's
    shards is a ValueError naming the shards folder and the splits they have.
    """
    from salnet.evaluate import evaluate_run
    from salnet.predict import resolve_checkpoint

    sweep_dir = Path(sweep_dir)
    names = check_names(metrics)
    names = [m for m in PAPER_COLUMNS if m in names]
    sweep, metric, mode = read_spec(sweep_dir)
    if metric not in names:
        raise ValueError(f"{sweep_dir}: the sweep's metric {metric!r} picks the best trial; include it in metrics=")
    folder = SweepFolder(sweep_dir)
    if not folder.trials():
        raise FileNotFoundError(f"{folder.trials_dir}: no <trial>/trial.json; is {sweep_dir} a sweep folder?")
    rows: list[dict] = []  # one per trial: its record, then its scores (evaluation.json's "trials")
    ckpts: dict[str, Path] = {}
    for name in folder.trials():
        info = folder.read_trial(name)
        with contextlib.suppress(FileNotFoundError):  # failed before its first checkpoint: listed, not scored
            ckpts[name] = resolve_checkpoint(folder.trial_dir(name))[0]
        rows.append({"trial": name, "params": info.params, "status": info.status, "attempts": info.attempts,
                     "requeues": info.requeues, "error": info.error, "epochs": len(folder.epochs(name)),
                     "checkpoint": None, "checkpoint_step": None, "means": None, "images": None, "bad_samples": None,
                     "shards": None})
    for r in rows:  # every trial's shards before the first (slow) evaluation
        if r["trial"] in ckpts:
            check_split(sweep_dir / "trials" / r["trial"], split)
    for r in rows:
        if r["trial"] in ckpts:
            ev = evaluate_run(sweep_dir / "trials" / r["trial"], split=split, metrics=names, device=device,
                              batch_size=batch_size)
            r.update(checkpoint=ev["checkpoint"], checkpoint_step=checkpoint_step(ckpts[r["trial"]]),
                     means=ev["means"], images=ev["images"], bad_samples=ev["bad_samples"], shards=ev["shards"])
    top = best_trial(rows, metric, mode)
    best = {"trial": top["trial"], "value": top["means"][metric]} if top else None
    result = {"sweep": sweep, "sweep_dir": str(sweep_dir), "split": split, "metric": metric, "mode": mode,
              "metrics": names, "best": best, "trials": rows,
              "baselines": score_baselines(rows, baselines, split, names, device, batch_size),
              "reference": [], "reference_elsewhere": []}
    result["reference"], result["reference_elsewhere"] = references_for(rows, read_reference(sweep_dir))
    best_panel = None
    if top and images > 0:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        best_panel = predictions_panel(sweep_dir / "trials" / top["trial"], top["shards"], split, images, dev,
                                       batch_size)
    write_board(sweep_dir, rows, names, split, best, best_panel)
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    atomic_write(sweep_dir / "summary.csv", to_csv(rows, params, names))
    atomic_write(sweep_dir / "summary.md", to_markdown(result, params, names))
    from salnet.plots import write_sweep_plots  # summary.png and predictions.png beside summary.md

    write_sweep_plots(sweep_dir, result, best_panel)
    atomic_write(sweep_dir / "evaluation.json", json.dumps(result, indent=2))
    return result
