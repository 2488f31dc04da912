"""Checkpoints that survive preemption and faults: atomic writes, ``latest``/``best`` links, keep-last-k, RNG
state, and a fall back to the newest intact checkpoint.

A checkpoint is one ``torch.save`` of a plain dict of tensors, numbers and strings (so it loads with
``weights_only=True``): model and optimiser state dicts, grad scaler, epoch, step, loader position and
every RNG state. Files are ``ckpt-{step:09d}.pt`` in the run folder; ``latest.pt`` and ``best.pt`` are
symlinks replaced atomically, so a job killed at any instant leaves either the old or the new
checkpoint, never a torn one. A write that fails (a full disk) removes its temporary file and raises
:class:`CheckpointWriteError`; the previous checkpoint and the links stay as they were. A ``latest.pt`` that
does not load (damaged after it was written, or dangling) is reported and the newest checkpoint that loads
is used instead; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

LATEST, BEST = "latest.pt", "best.pt"
CKPT = re.compile(r"ckpt-(\d+)\.pt")
PARTIAL = re.compile(r"\.(ckpt-\d+\.pt|latest\.pt|best\.pt)\.(\d+)\.(tmp|lnk)")  # a writer's temporary files


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, I/O error); nothing was replaced."""


class CheckpointFallback(UserWarning):
    """``latest.pt`` did not load and an older checkpoint is used instead."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a node that loses power keeps the new name)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj, path: Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``. A failed write
    (a full disk) removes the temporary file and raises :class:`CheckpointWriteError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exn:  # torch's zip writer reports ENOSPC as a RuntimeError
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 2**20 if path.parent.is_dir() else float("nan")
        code = getattr(exn, "errno", None) or (errno.ENOSPC if free < 1 else errno.EIO)
        raise CheckpointWriteError(code, f"{path}: the checkpoint could not be written ({type(exn).__name__}: "
                                   f"{str(exn).splitlines()[0][:200]}); {free:.0f} MiB free there. Nothing was "
                                   "replaced: the previous checkpoint is intact. Free space (or move the run "
                                   "folder) and resume") from exn
    _fsync_dir(path.parent)
    return path


def _link(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.lnk")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(target.name, tmp)
        os.replace(tmp, link)
    except OSError as exn:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(exn.errno, f"{link}: could not point it at {target.name} ({exn}); it still "
                                   "points at the previous checkpoint") from exn
    _fsync_dir(link.parent)


def rng_state() -> dict:
    """Every RNG the training touches, as weights_only-loadable values."""
    mt = np.random.get_state(legacy=False)  # the legacy tuple's values, typed: {"state": {"key", "pos"}, ...}
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(mt["state"]["key"].astype(np.int64)), "pos": int(mt["state"]["pos"]),
                  "has_gauss": int(mt["has_gauss"]), "gauss": float(mt["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():  # this process's device only: a resume may see fewer devices (see set_rng_state)
        state["cuda"] = {"device": torch.cuda.current_device(), "state": torch.cuda.get_rng_state()}
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s states (loaded onto any device: a checkpoint read with map_location=cuda). The
    CUDA state goes to this process's current device, whatever device saved it (under per-task GPU binding every
    rank sees its GPU as device 0); a checkpoint of an older version holds a list with every visible device's
    state, of which the current device's entry is restored when there is one. Without CUDA it is left out."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_as_tuple(state["python"]))
    saved = state.get("cuda")
    if saved is None or not torch.cuda.is_available():
        return
    current = torch.cuda.current_device()
    if isinstance(saved, dict):
        torch.cuda.set_rng_state(saved["state"].cpu(), current)
    elif current < len(saved):
        torch.cuda.set_rng_state(saved[current].cpu(), current)


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
        """Write ``ckpt-{step}.pt`` and point ``latest.pt`` (and ``best.pt``) at it; a failure is a
        :class:`CheckpointWriteError` and leaves the previous checkpoint and links as they were."""
        self._remove_partial()
        path = atomic_save(state, self.dir / f"ckpt-{step:09d}.pt")
        _link(path, self.dir / LATEST)
        if is_best:
            _link(path, self.dir / BEST)
        self._prune()
        return path

    def _remove_partial(self) -> None:
        """Temporary files of a writer that was killed before its rename (only the writer calls this)."""
        for p in self.dir.iterdir():
            m = PARTIAL.fullmatch(p.name)
            if m and int(m.group(2)) != os.getpid():
                p.unlink(missing_ok=True)

    def _prune(self) -> None:
        keep = {(self.dir / n).resolve() for n in (LATEST, BEST) if (self.dir / n).exists()}
        ckpts = sorted(self.dir.glob("ckpt-*.pt"))
        for old in ckpts[: -self.keep_last]:
            if old.resolve() not in keep:
                old.unlink()

    def checkpoints(self) -> list[Path]:
        """The ``ckpt-*.pt`` files, newest step first."""
        steps = {p: int(m.group(1)) for p in self.dir.glob("ckpt-*.pt") if (m := CKPT.fullmatch(p.name))}
        return sorted(steps, key=steps.__getitem__, reverse=True)

    def latest(self) -> Path | None:
        """``latest.pt`` when it points at a file, else the newest ``ckpt-*.pt`` (a job killed before its first
        link), else None."""
        p = self.dir / LATEST
        if p.exists():
            return p
        found = self.checkpoints()
        return found[0] if found else None

    def load(self, which: str = LATEST, map_location="cpu") -> dict | None:
        """The checkpoint ``latest.pt``/``best.pt`` (or a file name) as a dict, or None if there is none. For
        ``latest.pt``: when it does not load (or is missing while checkpoints exist), the newest checkpoint that
        loads, with a :class:`CheckpointFallback` warning naming both; a ValueError when none loads."""
        if which != LATEST:
            p = self.dir / which
            return load_checkpoint(p, map_location) if p.exists() else None
        latest = self.dir / LATEST
        candidates = ([latest] if latest.exists() else []) + self.checkpoints()
        if not candidates:
            return None
        failures: list[tuple[Path, str]] = []
        for p in candidates:
            if failures and p.resolve() in {q.resolve() for q, _ in failures}:
                continue
            try:
                state = load_checkpoint(p, map_location)
            except ValueError as exn:
                cause = exn.__cause__ or exn
                failures.append((p, f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:120]}"))
                continue
            if failures or p != latest:
                bad = "; ".join(f"{q.name}{' -> ' + q.resolve().name if q.is_symlink() else ''}: {why}"
                                for q, why in failures) or f"{LATEST} is missing"
                warnings.warn(f"{self.dir}: {bad}; resuming from {p.name} (step {state.get('step', '?')}) "
                              "instead, the newest checkpoint that loads (nothing was deleted)",
                              CheckpointFallback, stacklevel=2)
            return state
        raise ValueError(f"{self.dir}: no checkpoint loads ("
                         + "; ".join(f"{q.name}: {why}" for q, why in failures)
                         + "); move them aside to start the run afresh, or train with --no-resume")


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``); a truncated or foreign file is a clear error."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exn:  # torch raises several types for corrupt or unsafe pickles
        raise ValueError(f"{path}: not a loadable salnet checkpoint ({type(exn).__name__}: {exn}); it is "
                         "truncated, damaged or not a checkpoint (a resumed run falls back to the previous one "
                         "by itself)") from exn


def resolve_checkpoint(path: str | Path, which: str = "best") -> tuple[Path, Path]:
    """(checkpoint file, config.yaml) for a run folder or a checkpoint file inside one.

    A run folder gives ``best.pt`` (``which="best"``, falling back to ``latest.pt``) or ``latest.pt``
    (``which="latest"``); a ``.pt`` file uses its own ``<name>.yaml`` beside it when there is one (a standalone
    checkpoint, e.g. the converted released SalGAN), else the ``config.yaml`` of its folder. Missing pieces
    raise FileNotFoundError naming the path and what to pass instead.
    """
    path = Path(path)
    if which not in ("best", "latest"):
        raise ValueError(f"which={which!r}: choose 'best' or 'latest'")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder or checkpoint file")
    if path.is_dir():
        order = (BEST, LATEST) if which == "best" else (LATEST,)
        found = [path / n for n in order if (path / n).exists()]
        if not found:
            raise FileNotFoundError(f"{path}: no {' or '.join(order)} in this run folder (has training saved "
                                    "a checkpoint yet? pass a ckpt-*.pt file to use another one)")
        ckpt, run = found[0], path
    else:
        ckpt, run = path, path.parent
        if path.with_suffix(".yaml").is_file():  # a standalone checkpoint with its own config
            return ckpt, path.with_suffix(".yaml")
    config = run / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing; a checkpoint is read with the config.yaml of its run "
                                f"folder, so keep {ckpt.name} inside the run folder it was trained in")
    return ckpt, config
