"""The synthetic dataset (:mod:`salnet.data.synthetic`) generated and packed in one call: the data of debug
runs (``jobs/train.py --debug``, ``--tiny`` sweeps) and of the demo.

    from salnet.data.synthetic_shards import ensure_synthetic_shards
    shards = ensure_synthetic_shards("runs/debug-data/synthetic", {"train": 32, "val": 8}, size=(64, 96))
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from salnet.data.shards import pack
from salnet.data.synthetic import Synthetic, write_synthetic


def ensure_synthetic_shards(out: str | Path, counts: dict[str, int] | None = None,
                            size: tuple[int, int] = (64, 96), seed: int = 0) -> Path:
    """Generate and pack a small synthetic dataset into ``out`` (shards + manifest) unless one with the same
    splits, counts, size and seed is already there; returns ``out``. Raw files go to ``out``'s sibling
    ``raw``. Debug runs and the local pipeline use it (default train 32, val 8, test 8)."""
    out = Path(out)
    raw = out.parent / "raw"
    counts = counts or {"train": 32, "val": 8, "test": 8}
    try:
        have = {k: v["count"] for k, v in json.loads((out / "manifest.json").read_text())["splits"].items()}
        info = json.loads((raw / "synthetic.json").read_text())
        if have == counts and info["size"] == list(size) and info["seed"] == seed:
            return out
    except (OSError, ValueError, KeyError):
        pass
    for d in (raw, out):  # another size or split set: start over rather than mix samples
        shutil.rmtree(d, ignore_errors=True)
    write_synthetic(raw, counts, size=size, seed=seed)
    pack(Synthetic(raw), out, list(counts), shard_size_mb=1.0)
    return out
