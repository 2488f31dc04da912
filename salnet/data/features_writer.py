"""Writing the loss study's feature cache (:mod:`salnet.data.features` describes it and reads it): each source
shard's samples through the training loader's own decode and resize (:class:`salnet.data.loader.ValStream`),
unflipped, into one tar of taps per shard; planned, resumable, and split into disjoint shards for array tasks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from salnet.atomic import atomic_write
from salnet.data.features import (
    DTYPES,
    FEATURES_VERSION,
    STATE_DIR,
    differences,
    identity,
)
from salnet.data.records import npy_bytes, sample_key
from salnet.data.shards import finished_record, read_manifest
from salnet.data.tario import write_tar
from salnet.models.aspp import TAPS
from salnet.models.vgg import VGG16Features


def compute_shard(encoder: VGG16Features, source: Path, name: str, split: str, count: int, dataset: str,
                  input_size: tuple[int, int], dtype: str, batch_size: int = 8,
                  device: torch.device | None = None) -> tuple[list[tuple[str, bytes]], int]:
    """The tar members of one source shard's taps and the number of samples the loader could not decode (left
    out). The images come through the validation stream (the loader's decode and area resize, no flip)."""
    from salnet.data.loader import LoaderConfig, ValStream

    device = device or torch.device("cpu")
    cfg = LoaderConfig(size=input_size, batch_size=batch_size, workers=0, flip=False, pin_memory=False)
    stream = ValStream([(os.path.abspath(source / name), count)], cfg, 0, 1, keep_original=False)
    members, bad = [], 0
    with torch.no_grad():
        for batch in stream:
            bad += int(batch["_bad"])
            if not batch["id"]:
                continue
            taps = encoder.taps(batch["image"].to(device), TAPS)
            for i, sid in enumerate(batch["id"]):
                key = sample_key(dataset, split, sid)
                for layer in TAPS:
                    arr = taps[layer][i].float().cpu().numpy().astype(DTYPES[dtype])
                    if not np.isfinite(arr).all():
                        raise ValueError(f"{key}: {layer} overflows {dtype} (a value beyond ±65504); write the "
                                         "cache with --dtype float32")
                    members.append((f"{key}.{layer}.npy", npy_bytes(arr)))
    return members, bad


def finished(out: Path, name: str) -> dict | None:
    """The record of a finished cache tar (present with the recorded size), else None."""
    return finished_record(out, name, STATE_DIR)


def prepare(source: str | Path, out: str | Path, encoder: nn.Module, input_size: tuple[int, int], dtype: str,
            weights: str | None, splits: list[str] | None = None) -> dict:
    """Plan a cache of ``source``'s shards (every split, or ``splits``) in ``out``, stored in out/.features/plan.json;
    a folder planned for another identity or dtype is refused (ValueError naming the difference). Returns the plan:
    the :func:`identity` plus "dtype", "weights", "source", "dataset", "splits" and "shards" [{name, split, count}]."""
    source, out = Path(source), Path(out)
    if dtype not in DTYPES:
        raise ValueError(f"unknown cache dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    manifest = read_manifest(source)
    splits = splits or sorted(manifest["splits"])
    unknown = [s for s in splits if s not in manifest["splits"]]
    if unknown:
        raise ValueError(f"{source}: no split(s) {unknown} (has {sorted(manifest['splits'])})")
    counts = {r["name"]: r["count"] for r in manifest["shards"]}
    shards = [{"name": n, "split": s, "count": counts[n]} for s in splits for n in manifest["splits"][s]["shards"]]
    plan = {**identity(source, encoder, input_size), "dtype": dtype, "weights": weights,
            "source": str(source.resolve()), "dataset": manifest["dataset"], "shards": shards,
            "splits": {s: manifest["splits"][s] for s in splits}, "version": FEATURES_VERSION}
    path = out / STATE_DIR / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diffs = differences(old, plan) + ([f"dtype ({old['dtype']})"] if old["dtype"] != dtype else [])
        if diffs or old["shards"] != shards:
            raise ValueError(f"{out} holds a feature cache of other {'; other '.join(diffs or ['splits'])}; use a "
                             "fresh --out folder or delete it")
        return old
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(plan, sort_keys=True, indent=1) + "\n")
    return plan


def load_plan(out: str | Path) -> dict:
    return json.loads((Path(out) / STATE_DIR / "plan.json").read_text())


def write_shards(out: str | Path, encoder: VGG16Features, names: list[str] | None = None, batch_size: int = 8,
                 device: torch.device | None = None, progress: bool = False) -> list[dict]:
    """Write the planned cache tars ``names`` (default all; finished ones are skipped); returns their records."""
    out = Path(out)
    plan = load_plan(out)
    todo = [s for s in plan["shards"] if names is None or s["name"] in set(names)]
    encoder = encoder.to(device or torch.device("cpu")).eval()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(s["count"] for s in todo), unit="img", desc="features")
    records = []
    for s in todo:
        rec = finished(out, s["name"])
        if rec is None:
            members, bad = compute_shard(encoder, Path(plan["source"]), s["name"], s["split"], s["count"],
                                         plan["dataset"], tuple(plan["input_size"]), plan["dtype"], batch_size,
                                         device)
            sha, nbytes = write_tar(out / s["name"], members)
            rec = {"name": s["name"], "split": s["split"], "count": len(members) // len(TAPS), "bad": bad,
                   "bytes": nbytes, "sha256": sha}
            # a record exists only for a complete tar
            atomic_write(out / STATE_DIR / f"{s['name']}.json", json.dumps(rec, sort_keys=True) + "\n")
        records.append(rec)
        if bar:
            bar.update(s["count"])
    if bar:
        bar.close()
    return records


def finalize(out: str | Path, encoder: VGG16Features) -> dict:
    """manifest.json from the plan and the finished tars, with each tap's shape (C, h, w); ValueError when a tar is
    not written yet."""
    out = Path(out)
    plan = load_plan(out)
    recs = [finished(out, s["name"]) for s in plan["shards"]]
    missing = [s["name"] for s, r in zip(plan["shards"], recs) if r is None]
    if missing:
        raise ValueError(f"{out}: {len(missing)} cache tar(s) not written yet ({missing[:3]}...); run the same "
                         "command again to resume")
    h, w = plan["input_size"]
    param = next(encoder.parameters())
    with torch.no_grad():
        probe = encoder.taps(torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype), TAPS)
    manifest = {**{k: v for k, v in plan.items() if k != "shards"}, "kind": "features", "shards": recs,
                "shapes": {k: list(v.shape[1:]) for k, v in probe.items()},
                "bytes": sum(r["bytes"] for r in recs if r is not None)}
    atomic_write(out / "manifest.json", json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return manifest
