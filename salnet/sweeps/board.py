"""A sweep's final evaluation in TensorBoard (``SWEEP/tb/<trial>/``): every trial's validation curves, an hparams
row per scored trial, the best trial's prediction panel, and a text page with the trial's point against the
sweep's control (:mod:`salnet.sweeps.stats`). Written by :func:`salnet.sweeps.summary.summarize_sweep`."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch

from salnet.sweeps.folder import read_metrics
from salnet.sweeps.tables import comparison_text, param_text

PANEL_TAG = "best/{} (image | prediction | ground truth)"
COMPARISON_TAG = "comparison to the control"


def read_epochs(run_dir: Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl``, one per epoch in epoch order, read as everywhere else
    (:func:`salnet.sweeps.folder.read_metrics`: the last line of an epoch wins, a torn last line is ignored)."""
    return list(read_metrics(run_dir).values())


def predictions_panel(run_dir: Path, shards: str, split: str, n: int, device,
                      batch_size: int | None) -> torch.Tensor | None:
    """[image | prediction | ground truth] rows of the first ``n`` images of ``split`` at the network input
    size (:func:`salnet.train.tensorboard.panel`), as the training loop's validation panel; None when the split
    has no readable image."""
    from salnet.train.tensorboard import panel

    kept = trial_predictions(run_dir, shards, split, n, device, batch_size)
    return panel(kept) if kept else None


def trial_predictions(run_dir: Path, shards: str, split: str, n: int, device,
                      batch_size: int | None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(image (3, H, W), prediction (1, H, W), ground-truth map (1, H, W)) of the first ``n`` images of ``split``
    at the run's network input size, on the CPU; [] when the split has no readable image."""
    from salnet.data.loader import LoaderConfig, ValLoader
    from salnet.inference.predict import load_model

    G, cfg = load_model(run_dir, device=device)
    lcfg = LoaderConfig(size=cfg.data.input_size, batch_size=batch_size or cfg.data.batch_size, workers=0,
                        flip=False, max_bad_fraction=cfg.data.max_bad_fraction)
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for batch in ValLoader(shards, split, lcfg, rank=0, world_size=1):
            pred = G(batch["image"].to(device)).prediction().float().cpu()
            kept += [(batch["image"][i], pred[i], batch["map"][i]) for i in range(len(pred))]
            if len(kept) >= n:
                break
    return kept[:n]



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
                best_panel: torch.Tensor | None, result: dict | None = None) -> None:
    """``SWEEP/tb/<trial>/``: ``val/<metric>`` per epoch (step = epoch, from 1), an hparams row for scored trials,
    the best trial's panel and, given summarize_sweep's ``result`` with its points, a text page (tag
    :data:`COMPARISON_TAG`) with the trial's point against the control. Each trial's folder is rewritten, so
    summarising twice leaves no duplicates."""
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
                        w.add_scalar(f"val/{m}", float(rec["val"][m]), int(rec["epoch"]))
            if best is not None and best_panel is not None and r["trial"] == best["trial"]:
                w.add_image(PANEL_TAG.format(r["trial"]), best_panel, 0, dataformats="CHW")
            text = comparison_text(result, r["trial"], metrics) if result and r["means"] is not None else None
            if text:
                w.add_text(COMPARISON_TAG, text, 0)
            if r["trial"] in hp_by_trial:
                hp = hp_by_trial[r["trial"]]
                # a metric undefined on every image has no mean; NaN keeps the row's metric set complete
                w.add_hparams(hp, {f"{prefix}/{m}": float(r["means"].get(m, math.nan)) for m in metrics},
                              hparam_domain_discrete=domains, run_name=".")
