"""Score a trained run on a packed split with the nine benchmark metrics, per image and on average.

    result = evaluate_run("runs/salgan-1a2b3c4d5e6f", split="test")
    result["means"]["cc"], result["images"], result["per_image"][0]   # {"id": ..., "cc": ..., ...}

The scoring is :func:`salnet.train.validate.score_images`, the rows behind ``validate`` (prediction resized to the
original resolution with MATLAB bicubic inside the metrics, sAUC negatives from the split's other
images, IG against the centre bias), so the means equal ``validate`` on the same model, split, batch
size and seed, and a run's ``final.json`` when the checkpoint is the one it was written from.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from salnet.inference.predict import load_model, resolve_checkpoint
from salnet.metrics import check_names
from salnet.train.validate import DEFAULT_METRICS, fixation_pool, score_images


def mean_rows(rows: list[dict], names) -> dict[str, float]:
    """Per-metric means over the rows where the metric is defined (not NaN), summed in float64 in row
    order as ``validate`` does; a metric defined nowhere is left out."""
    out = {}
    for n in names:
        s = torch.zeros((), dtype=torch.float64)
        c = 0
        for r in rows:
            v = r.get(n)
            if v is not None and not math.isnan(v):
                s += v
                c += 1
        if c:
            out[n] = (s / c).item()
    return out


def evaluate_run(run_dir: str | Path, shards: str | Path | None = None, split: str | None = None,
                 metrics=DEFAULT_METRICS, device: str | torch.device | None = None,
                 batch_size: int | None = None, checkpoint: str = "best", seed: int | None = None,
                 workers: int = 0) -> dict:
    """Score a run's checkpoint on a packed split at each image's original resolution.

    run_dir: a run folder (or a checkpoint file inside one); checkpoint: "best" (best.pt, falling back
    to latest.pt) or "latest". shards / split: default the run's ``data.shards`` and ``data.test_split``.
    batch_size / seed: default the run's ``data.batch_size`` / ``train.seed`` (what its validation used).
    Returns ``{"means": {metric: mean}, "images": int, "per_image": [row, ...], "checkpoint": str,
    "shards": str, "split": str, "bad_samples": int}``; rows as :func:`score_images`.
    """
    ckpt, _ = resolve_checkpoint(run_dir, checkpoint)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G, cfg = load_model(ckpt, device=device)
    shards = Path(shards if shards is not None else cfg.data.shards)
    split = split if split is not None else cfg.data.test_split
    result = evaluate_model(G, shards, split, cfg.data.input_size, metrics=metrics, device=device,
                            batch_size=batch_size or cfg.data.batch_size, seed=cfg.train.seed if seed is None else seed,
                            workers=workers, postprocess=cfg.model.postprocess,
                            max_bad_fraction=cfg.data.max_bad_fraction)
    return {**result, "checkpoint": str(ckpt.resolve())}


def evaluate_model(model, shards: str | Path, split: str, input_size: tuple[int, int], metrics=DEFAULT_METRICS,
                   device: str | torch.device = "cpu", batch_size: int = 32, seed: int = 0, workers: int = 0,
                   postprocess: str = "released", max_bad_fraction: float = 0.01) -> dict:
    """Score ``model`` (a saliency network, or a baseline with the same call convention) on a packed split at each
    image's original resolution, its input resized to ``input_size`` (H, W). Returns ``{"means", "images",
    "per_image", "shards", "split", "bad_samples"}`` as :func:`evaluate_run` (which calls it)."""
    from salnet.data.loader import LoaderConfig, ValLoader

    names = check_names(metrics)
    shards = Path(shards)
    if not (shards / "manifest.json").is_file():
        raise FileNotFoundError(f"{shards}: no manifest.json; pack the dataset first (jobs/pack.py) or pass "
                                "shards= the folder that holds it")
    lcfg = LoaderConfig(size=input_size, batch_size=batch_size, workers=workers, flip=False,
                        max_bad_fraction=max_bad_fraction)
    loader = ValLoader(shards, split, lcfg, rank=0, world_size=1)
    pool = fixation_pool(shards, split) if "sauc" in names else None
    rows = list(score_images(model, loader, torch.device(device), shuffle_pool=pool, metrics=names, seed=seed,
                             postprocess=postprocess))
    return {"means": mean_rows(rows, names), "images": len(rows), "per_image": rows,
            "shards": str(shards), "split": split, "bad_samples": loader.stats["bad"]}
