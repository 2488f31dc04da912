"""Checkpoints that survive preemption: atomic writes, ``latest``/``best`` links, keep-last-k, RNG state.

A checkpoint is one ``torch.save`` of a plain dict of tensors, numbers and strings (so it loads with
``weights_only=True``): model and optimiser state dicts, grad scaler, epoch, step, loader position and
every RNG state. Files are ``ckpt-{step:09d}.pt`` in the run folder; ``latest.pt`` and ``best.pt`` are
symlinks replaced atomically, so a job killed at any instant leaves either the old or the new
checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

LATEST, BEST = "latest.pt", "best.pt"


def atomic_save(obj, path: Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _link(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.lnk")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)


def rng_state() -> dict:
    """Every RNG the training touches, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


class CheckpointManager:
    """Save/resume checkpoints in ``run_dir``; keeps the newest ``keep_last`` plus whatever ``best`` and
    ``latest`` point to."""

    def __init__(self, run_dir: Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_last = keep_last

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        path = atomic_save(state, self.dir / f"ckpt-{step:09d}.pt")
        _link(path, self.dir / LATEST)
        if is_best:
            _link(path, self.dir / BEST)
        self._prune()
        return path

    def _prune(self) -> None:
        keep = {(self.dir / n).resolve() for n in (LATEST, BEST) if (self.dir / n).exists()}
        ckpts = sorted(self.dir.glob("ckpt-*.pt"))
        for old in ckpts[: -self.keep_last]:
            if old.resolve() not in keep:
                old.unlink()

    def latest(self) -> Path | None:
        p = self.dir / LATEST
        return p if p.exists() else None

    def load(self, which: str = LATEST, map_location="cpu") -> dict | None:
        """The checkpoint ``latest.pt``/``best.pt`` (or a file name) as a dict, or None if there is none."""
        p = self.dir / which
        if not p.exists():
            return None
        return load_checkpoint(p, map_location)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``); a truncated or foreign file is a clear error."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exn:  # torch raises several types for corrupt or unsafe pickles
        raise ValueError(f"{path}: not a loadable salnet checkpoint ({type(exn).__name__}: {exn}); "
                         "delete it to restart from the previous one") from exn
