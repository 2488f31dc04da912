"""Atomic text files: a reader (another job, status.py, a resumed run) never sees half a file."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask (e.g. 0o022), read from /proc on Linux; elsewhere set and restored under a lock
    (os.umask has no read-only form)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0o666 less the umask (0o644 under 022)."""
    return 0o666 & ~current_umask()


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to a uniquely named temporary file beside ``path`` (concurrent writers do not share
    it), fsync it and rename it over ``path``. The file gets the mode the umask gives new files (mkstemp's
    own 0o600 would hide a run's config from colleagues sharing the folder)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
