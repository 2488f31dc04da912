"""The final evaluation of a hyper-parameter sweep: every trial's checkpoint scored on a held-out split,
tables like the papers', TensorBoard views that compare the trials.

    result = summarize_sweep("runs/sweeps/alpha", split="test")
    result["best"]["trial"], result["trials"][0]["means"]["cc"]

Reads ``SWEEP/sweep.yaml`` (metric, mode, control) and ``SWEEP/trials/<name>/`` (run folders as
:class:`salnet.train.loop.Trainer` writes them, each with a ``trial.json``); writes ``SWEEP/summary.csv``,
``SWEEP/summary.md`` (salnet.sweeps.tables), ``SWEEP/per_image.csv`` (every scored trial's per-image values),
``SWEEP/evaluation.json`` and ``SWEEP/tb/<trial name>/`` (salnet.sweeps.board: hparams rows, the ``val/<metric>``
curves of every trial, the best trial's predictions, the comparison with the control). The statistics are
salnet.sweeps.stats. Pure library: no Ray, no Slurm.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import torch

from salnet.atomic import atomic_write
from salnet.metrics import METRICS, PAPER_COLUMNS, check_names
from salnet.sweeps import stats
from salnet.sweeps.board import PANEL_TAG, hparam_values, predictions_panel, read_epochs, write_board
from salnet.sweeps.folder import SweepFolder
from salnet.sweeps.tables import MISSING, per_image_csv, to_csv, to_markdown
from salnet.train.tensorboard import panel
from salnet.train.validate import DEFAULT_METRICS

PREDICTION_COLUMNS = 6  # trials shown in predictions.png: the best, then the others in trial order

__all__ = ["MISSING", "PANEL_TAG", "PAPER_COLUMNS", "best_trial", "hparam_values", "predictions_panel", "read_epochs",
           "read_spec", "references_for", "summarize_sweep", "to_markdown", "write_board"]


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


def score_baselines(rows: list[dict], runs: dict[str, str | Path] | None, split: str, names: list[str],
                    device, batch_size: int | None, per_image: dict[str, list[dict]] | None = None) -> list[dict]:
    """The centre bias (always) and the baseline runs ``runs`` (name → run folder, e.g. the readout baseline),
    scored on the shards, split and input size of the first scored trial, as the trials are. [] when no trial
    was scored. ``per_image``, when given, receives each baseline's per-image rows under its name."""
    from salnet.config import load_config
    from salnet.inference.evaluate import evaluate_model, evaluate_run
    from salnet.models.baselines import CenterBiasModel

    first = next((r for r in rows if r["means"] is not None), None)
    if first is None:
        return []
    cfg = load_config(Path(first["checkpoint"]).parent / "config.yaml")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    centre = evaluate_model(CenterBiasModel(), first["shards"], split, tuple(cfg.data.input_size), metrics=names,
                            device=dev, batch_size=batch_size or cfg.data.batch_size, seed=cfg.train.seed,
                            postprocess=cfg.model.postprocess)
    out = [{"name": "centre bias", "run": None, "means": centre["means"], "images": centre["images"]}]
    kept = {"centre bias": centre["per_image"]}
    for name, run in (runs or {}).items():
        ev = evaluate_run(run, shards=first["shards"], split=split, metrics=names, device=dev, batch_size=batch_size)
        out.append({"name": name, "run": str(run), "means": ev["means"], "images": ev["images"]})
        kept[name] = ev["per_image"]
    if per_image is not None:
        per_image.update(kept)
    return out


def read_control(sweep_dir: Path) -> str | None:
    """The sweep file's ``control`` (a point label, "best", or None where it names none)."""
    return (SweepFolder(sweep_dir).plan_doc().get("spec") or {}).get("control")


def compare_to_control(rows: list[dict], per_image: dict[str, list[dict]], control: str | None, metric: str,
                       mode: str, metrics: list[str], n_boot: int = stats.N_BOOT, seed: int = 0) -> tuple[list, dict]:
    """The trials grouped into points (:func:`salnet.sweeps.stats.group_points`) and each scored point compared with the
    control (:func:`salnet.sweeps.stats.resolve_control`, :func:`salnet.sweeps.stats.compare_points`).

    rows: the trial rows (``means`` None where unscored); per_image: trial → its per-image rows. Returns (points,
    control): points ``[{"point", "params", "trials", "scored", "seeds", "mean": {metric: mean over seeds}, "sd":
    {metric: sd over seeds | None}, "comparison": {metric: {...}} | None (the control, unscored points)}]`` and
    ``{"point": label | None, "how": why it is the control, "rule": the sweep file's control}``."""
    by_name = {r["trial"]: r for r in rows}
    groups = stats.group_points(rows)
    work = [{"point": g["point"], "seeds": g["seeds"], "means": [by_name[t]["means"] for t in g["scored"]],
             "per_image": [per_image[t] for t in g["scored"]]} for g in groups]
    label, how = stats.resolve_control(work, control, metric, mode)
    better = {m: METRICS[m].higher_is_better for m in metrics}
    found = stats.compare_points([w for w in work if w["means"]], label, metrics, better, n_boot, seed) if label else {}
    points = []
    for g, w in zip(groups, work):
        summary = {m: stats.seed_summary(w["means"], m) for m in metrics}
        points.append({k: g[k] for k in ("point", "params", "trials", "scored", "seeds")}
                      | {"mean": {m: s[0] for m, s in summary.items() if s[0] is not None},
                         "sd": {m: s[1] for m, s in summary.items()}, "comparison": found.get(g["point"])})
    return points, {"point": label, "how": how, "rule": control}


def shown_predictions(sweep_dir: Path, rows: list[dict], top: dict, split: str, n: int, device,
                      batch_size: int | None) -> dict | None:
    """predictions.png's content: the first ``n`` images of ``split`` (as the best trial's loader gives them), their
    ground-truth maps, and the predictions of the best trial and then of the other scored trials, at most
    :data:`PREDICTION_COLUMNS` in all: ``{"images", "truth", "columns": [(label, [map])]}``; None without images."""
    import torch.nn.functional as F

    from salnet.sweeps.board import trial_predictions
    from salnet.sweeps.plots import trial_label

    kept = trial_predictions(sweep_dir / "trials" / top["trial"], top["shards"], split, n, device, batch_size)
    if not kept:
        return None
    def at_image_size(preds: list[torch.Tensor]) -> list[torch.Tensor]:
        # a network whose output is smaller than its input (the loss study's), or a trial at another input size
        return [p if p.shape[-2:] == img.shape[-2:] else
                F.interpolate(p.reshape(1, 1, *p.shape[-2:]).float(), size=img.shape[-2:], mode="bilinear",
                              align_corners=False)[0] for p, (img, _, _) in zip(preds, kept)]

    others = [r for r in rows if r["means"] is not None and r["trial"] != top["trial"]]
    columns = [(f"{trial_label(top)} ★", at_image_size([p for _, p, _ in kept]))]
    for r in others[:PREDICTION_COLUMNS - 1]:
        preds = [p for _, p, _ in trial_predictions(sweep_dir / "trials" / r["trial"], r["shards"], split, n,
                                                    device, batch_size)]
        columns.append((trial_label(r), at_image_size(preds)))
    return {"images": [img for img, _, _ in kept], "truth": [gt for _, _, gt in kept], "columns": columns}


def summarize_sweep(sweep_dir: str | Path, split: str = "test", metrics=DEFAULT_METRICS,
                    device: str | torch.device | None = None, batch_size: int | None = None, images: int = 4,
                    baselines: dict[str, str | Path] | None = None) -> dict:
    """Score every trial of a sweep on ``split`` and write the sweep's tables and TensorBoard views.

    sweep_dir: a folder with ``trials/<name>/trial.json`` (and ``sweep.yaml`` for the metric and mode that pick
    the best trial; default cc, max). Trials with ``best.pt`` (else ``latest.pt``) are scored with
    :func:`salnet.inference.evaluate.evaluate_run` (``metrics``, ``device``, ``batch_size``); the others stay in the
    tables with their status. ``images``: rows of predictions.png and of the best trial's TensorBoard panel (0:
    none). The centre bias and the ``baselines`` runs (name → run folder, e.g. ``{"readout": ...}``) are scored
    the same way and shown under the trials, with the paper's rows of the sweep file (``reference``) and each
    trial's Δ to its paper row. Trials that differ only in ``train.seed`` form a point; every point is compared
    with the sweep file's ``control`` (a point label; "best" or none: the best point) by
    :func:`compare_to_control`.
    Writes summary.csv, summary.md, per_image.csv (every scored trial's and baseline's per-image values),
    evaluation.json (atomically) and tb/; returns evaluation.json's dict:
    ``{"sweep", "sweep_dir", "split", "metric", "mode", "metrics", "best": {"trial", "value"} | None,
    "trials": [{"trial", "params", "status", "attempts", "requeues", "error", "epochs", "checkpoint", "checkpoint_step",
    "means": {metric: mean} | None, "images", "bad_samples", "shards"}], "baselines": [{"name", "run", "means",
    "images"}], "reference": [{"label", "source", "dataset", metric: value}], "reference_elsewhere": [...],
    "points": [...], "control": {...}, "statistics": {"n_boot", "level", "alpha", "adjustment", "seed"}}``
    (paper rows whose ``dataset`` differs from the trials' shards go to ``reference_elsewhere``: listed, no Δ).
    A split missing from a trial's
    shards is a ValueError naming the shards folder and the splits they have.
    """
    from salnet.inference.evaluate import evaluate_run
    from salnet.train.checkpoint import resolve_checkpoint

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
    per_image: dict[str, list[dict]] = {}  # trial or baseline → its per-image rows (per_image.csv, not the json)
    for r in rows:
        if r["trial"] in ckpts:
            ev = evaluate_run(sweep_dir / "trials" / r["trial"], split=split, metrics=names, device=device,
                              batch_size=batch_size)
            r.update(checkpoint=ev["checkpoint"], checkpoint_step=checkpoint_step(ckpts[r["trial"]]),
                     means=ev["means"], images=ev["images"], bad_samples=ev["bad_samples"], shards=ev["shards"])
            per_image[r["trial"]] = ev["per_image"]
    top = best_trial(rows, metric, mode)
    best = {"trial": top["trial"], "value": top["means"][metric]} if top else None
    result = {"sweep": sweep, "sweep_dir": str(sweep_dir), "split": split, "metric": metric, "mode": mode,
              "metrics": names, "best": best, "trials": rows,
              "baselines": score_baselines(rows, baselines, split, names, device, batch_size, per_image),
              "reference": [], "reference_elsewhere": [],
              "statistics": {"n_boot": stats.N_BOOT, "level": stats.LEVEL, "alpha": stats.ALPHA, "seed": 0,
                             "adjustment": "Holm, over the points compared with the control on each metric"}}
    points, control = compare_to_control(rows, per_image, read_control(sweep_dir), metric, mode, names)
    result.update(points=points, control=control)
    result["reference"], result["reference_elsewhere"] = references_for(rows, read_reference(sweep_dir))
    best_panel, shown = None, None
    if top and images > 0:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        shown = shown_predictions(sweep_dir, rows, top, split, images, dev, batch_size)
        if shown:
            best_panel = panel([(img, shown["columns"][0][1][i], gt)  # as the training loop's panel
                                for i, (img, gt) in enumerate(zip(shown["images"], shown["truth"]))])
    write_board(sweep_dir, rows, names, split, best, best_panel, result)
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    atomic_write(sweep_dir / "summary.csv", to_csv(rows, params, names, result))
    label = {t: p["point"] for p in points for t in p["trials"]}
    kept = [{"trial": r["trial"], "point": label[r["trial"]], "seed": r["params"].get(stats.SEED_KEY),
             "per_image": per_image[r["trial"]]} for r in rows if r["trial"] in per_image]
    kept += [{"trial": name, "point": None, "seed": None, "per_image": per_image[name]}
             for name in per_image if name not in label]
    atomic_write(sweep_dir / "per_image.csv", per_image_csv(kept, names))
    atomic_write(sweep_dir / "summary.md", to_markdown(result, params, names))
    from salnet.sweeps.plots import write_sweep_plots  # summary.png and predictions.png beside summary.md

    write_sweep_plots(sweep_dir, result, shown)
    atomic_write(sweep_dir / "evaluation.json", json.dumps(result, indent=2))
    return result
