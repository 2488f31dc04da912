"""Validation with the nine benchmark metrics at each image's original resolution (MIT convention).

Each rank scores its share of the split (the validation loader reads every sample exactly once across
ranks); per-metric sums and counts of defined values are all-reduced, so the means equal a
single-process evaluation of the same model. sAUC draws its negatives from the fixations of other
validation images, read once from the shards (fixations and sizes only, no image decoding).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch

from salnet.config import POSTPROCESS
from salnet.data.features import model_input
from salnet.metrics import METRICS, check_names, other_fixations, score_batch
from salnet.models.baselines import center_bias
from salnet.models.postprocess import postprocess as released_postprocess
from salnet.models.salgan import SaliencyOutput
from salnet.train.distributed import all_reduce_sum

DEFAULT_METRICS = tuple(METRICS)


class SaliencyModel(Protocol):
    """What validation calls: the saliency networks (nn.Modules) and model-free ones such as
    :class:`salnet.models.baselines.CenterBiasModel`."""

    training: bool

    def __call__(self, image: torch.Tensor | dict[str, torch.Tensor]) -> SaliencyOutput: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


def split_fixations(records) -> tuple[dict[str, int], list[np.ndarray], list[tuple[int, int]]]:
    """From (id, points (N,≥2) (y, x, …), (H, W)) records → (index by id, point arrays, sizes)."""
    index: dict[str, int] = {}
    points: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []
    for i, (sid, pts, size) in enumerate(records):
        index[sid] = i
        points.append(np.asarray(pts)[:, :2].astype(np.int64))
        sizes.append((int(size[0]), int(size[1])))
    return index, points, sizes


def fixation_pool(folder, split: str):
    """The ``shuffle_pool`` of :func:`validate` for a packed split: every sample's fixations and size,
    read from the shards without decoding images or maps (unreadable records are left out)."""
    import io
    import json
    import tarfile

    from salnet.data.loader import shard_list
    from salnet.data.shards import iter_tar

    records = []
    for path, _ in shard_list(folder, split):
        try:
            for rec in iter_tar(path):
                if "json" in rec and "fix.npy" in rec:
                    info = json.loads(rec["json"])
                    pts = np.load(io.BytesIO(rec["fix.npy"]), allow_pickle=False)
                    records.append((info["id"], pts, (info["height"], info["width"])))
        except (tarfile.TarError, OSError, EOFError):
            continue  # a truncated shard: the loader counts its losses; its readable samples are kept
    return split_fixations(records)


def counts_map(points: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    c = np.zeros(size, dtype=np.float64)
    if len(points):
        np.add.at(c, (points[:, 0], points[:, 1]), 1.0)
    return torch.from_numpy(c)




def score_images(G: SaliencyModel, loader, device: torch.device, *, shuffle_pool=None, metrics=DEFAULT_METRICS,
                 seed: int = 0, max_images: int | None = None, kept: list | None = None, keep: int = 0,
                 postprocess: str = "none"):
    """Yield one row per image of ``loader`` (validation batches with ``map_orig`` and ``points``):
    ``{"id", "height", "width", metric: float (NaN where undefined)}``, scored at the image's original
    resolution. sAUC is left out when ``shuffle_pool`` is None; ``max_images`` stops early; the first
    ``keep`` (image, prediction, ground truth) triples are appended to ``kept`` (TensorBoard panel).
    ``postprocess``: "none" scores the network's prediction (resized by the metrics, MATLAB bicubic); "released"
    first turns it into the released SalGAN's output map (:func:`salnet.models.postprocess.postprocess`: bicubic resize
    to the image size, 5×5 Gaussian blur, clip), which is what the papers' benchmark scores were computed on."""
    if postprocess not in POSTPROCESS:
        raise ValueError(f"unknown postprocess {postprocess!r}; choose one of {', '.join(POSTPROCESS)}")
    names = [m for m in check_names(metrics) if m != "sauc" or shuffle_pool is not None]
    seen = 0
    was_training = G.training
    G.eval()
    try:
        for batch in loader:
            with torch.no_grad():  # not across the yields: the caller's code must keep its grad mode
                pred = G(model_input(batch, device)).prediction().float().cpu()  # images or cached taps
            take = len(batch["id"]) if max_images is None else min(len(batch["id"]), max_images - seen)
            # images of one original size are scored in one call (their values do not depend on the batch: every
            # random draw is seeded per image key)
            groups: dict[tuple[int, int], list[int]] = {}
            for i in range(take):
                groups.setdefault(tuple(batch["map_orig"][i].shape[-2:]), []).append(i)
            rows: dict[int, dict] = {}
            for size, idx in groups.items():
                ids = [batch["id"][i] for i in idx]
                p = pred[idx].double()
                if postprocess == "released":
                    p = released_postprocess(p, size)
                other = None
                if shuffle_pool is not None:
                    index, points, sizes = shuffle_pool
                    other = torch.stack([other_fixations(points, sizes, index[sid], seed=seed, key=sid)
                                         for sid in ids])
                vals = score_batch(
                    p, metrics=names, seed=seed, keys=ids, other=other,
                    fixations=torch.stack([counts_map(batch["points"][i].numpy()[:, :2], size) for i in idx]),
                    gt_map=torch.stack([batch["map_orig"][i].double().reshape(size) for i in idx]),
                    baseline=torch.from_numpy(center_bias(size)))
                for j, (i, sid) in enumerate(zip(idx, ids)):
                    rows[i] = {"id": sid, "height": size[0], "width": size[1],
                               **{n: float(vals[n][j]) for n in names}}
            for i in range(take):
                if kept is not None and len(kept) < keep:
                    kept.append((batch["image"][i], pred[i], batch["map"][i]))
                yield rows[i]
            seen += take
            if max_images is not None and seen >= max_images:
                return
    finally:
        G.train(was_training)


def validate(G: SaliencyModel, loader, device: torch.device, *, shuffle_pool=None, metrics=DEFAULT_METRICS,
             max_images: int | None = None, seed: int = 0, keep: int = 0,
             postprocess: str = "none") -> tuple[dict[str, float], list]:
    """Score ``G`` on this rank's share of ``loader`` and average over all ranks.

    ``shuffle_pool``: (index by id, points, sizes) of the whole split for sAUC (None: sAUC left out).
    ``max_images``: score only the first images of this rank's share (the fixed per-epoch subset).
    ``keep``: return that many (image, prediction, ground truth) triples for the TensorBoard panel.
    ``postprocess``: as :func:`score_images`.
    Returns ({metric: mean over images where defined, "images": count}, kept samples).
    """
    names = [m for m in check_names(metrics) if m != "sauc" or shuffle_pool is not None]
    sums = torch.zeros(len(names), dtype=torch.float64)
    counts = torch.zeros(len(names), dtype=torch.float64)
    kept: list = []
    for row in score_images(G, loader, device, shuffle_pool=shuffle_pool, metrics=names, seed=seed,
                            max_images=max_images, kept=kept, keep=keep, postprocess=postprocess):
        for j, n in enumerate(names):
            if not math.isnan(row[n]):
                sums[j] += row[n]
                counts[j] += 1
    sums, counts = all_reduce_sum(sums.to(device)).cpu(), all_reduce_sum(counts.to(device)).cpu()
    out = {n: (sums[j] / counts[j]).item() for j, n in enumerate(names) if counts[j] > 0}
    out["images"] = int(counts.max().item()) if len(names) else 0
    return out, kept
