"""Logging for salnet: one logger per module under ``salnet``, set up once per process by its entry point.

    from salnet.logs import get_logger
    log = get_logger(__name__)
    log.info("epoch %d: ...", epoch)            # a library module: never configures handlers itself

    setup_logging()                  # a script, a Slurm job, a Ray actor: INFO from rank 0, WARNING+ from every rank
    setup_logging(all_ranks=True)    # or SALNET_LOG_ALL_RANKS=1: every rank logs INFO, lines prefixed "[rank N]"

The handler is plain, as the scripts' prints were: INFO and below go to standard output as the bare message,
WARNING and above to standard error as ``warning: message`` (``error: ...``). The process's rank is looked up
when a line is logged: ``torch.distributed``'s rank once a process group exists, else ``RANK`` (torchrun) or
``SLURM_PROCID`` (a Slurm task), else 0; ``setup_logging(rank=...)`` fixes it. ``SALNET_LOG_LEVEL`` (e.g.
``DEBUG``) sets the level. Without :func:`setup_logging` (salnet used as a library), records propagate to the
application's own logging configuration and nothing is printed by salnet itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

ROOT = "salnet"
ALL_RANKS_ENV = "SALNET_LOG_ALL_RANKS"
LEVEL_ENV = "SALNET_LOG_LEVEL"


def get_logger(name: str = ROOT) -> logging.Logger:
    """The logger of module ``name`` (pass ``__name__``); names outside the package are put under ``salnet``."""
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")


def process_rank() -> int:
    """This process's rank: the process group's when there is one, else RANK / SLURM_PROCID, else 0."""
    dist = sys.modules.get("torch.distributed")  # imported by whoever uses DDP; never imported here
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    for var in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


class _RankFilter(logging.Filter):
    """Drops records below WARNING on ranks other than 0 (unless every rank logs); prefixes the rank when every
    rank logs in a multi-process run."""

    def __init__(self, rank: int | None, all_ranks: bool) -> None:
        super().__init__()
        self.rank, self.all_ranks = rank, all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        rank = process_rank() if self.rank is None else self.rank
        record.rank_prefix = f"[rank {rank}] " if self.all_ranks and _world_size() > 1 else ""
        return self.all_ranks or rank == 0 or record.levelno >= logging.WARNING


def _world_size() -> int:
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    value = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    return int(value) if value.isdigit() else 1


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return getattr(record, "rank_prefix", "") + text


class _ConsoleHandler(logging.Handler):
    """Writes to the current ``sys.stdout`` (below WARNING) or ``sys.stderr``, looked up per record: a stream
    replaced after setup (pytest's capture, a job wrapper's redirection) is the one written to."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a closed or broken stream: logging must not end the job
            self.handleError(record)


def setup_logging(rank: int | None = None, all_ranks: bool | None = None, level: int | str | None = None,
                  ) -> logging.Logger:
    """Configure the ``salnet`` logger for this process (idempotent: a second call replaces the first's handler).

    ``rank``: this process's rank (None: looked up per record, see :func:`process_rank`). ``all_ranks``: every rank
    logs INFO (None: ``SALNET_LOG_ALL_RANKS=1``). ``level``: a logging level or its name (None: ``SALNET_LOG_LEVEL``,
    else INFO). Records stop at this handler (no propagation), so a root handler that Ray or submitit install does
    not print them twice. Returns the ``salnet`` logger."""
    logger = logging.getLogger(ROOT)
    for h in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(h)
    if all_ranks is None:
        all_ranks = os.environ.get(ALL_RANKS_ENV, "0") not in ("", "0", "false", "no")
    name = level if level is not None else os.environ.get(LEVEL_ENV, "INFO")
    resolved = logging.getLevelName(name.upper()) if isinstance(name, str) else name
    if not isinstance(resolved, int):
        raise ValueError(f"log level {name!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    handler = _ConsoleHandler()
    handler.setFormatter(_PlainFormatter("%(message)s"))
    handler.addFilter(_RankFilter(rank, all_ranks))
    logger.addHandler(handler)
    logger.setLevel(resolved)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def captured(name: str = ROOT, level: int = logging.INFO) -> Iterator[list[str]]:
    """The messages logged under ``name`` at ``level`` or above inside the block, from every rank, whether or not
    :func:`setup_logging` ran (tests, notebooks)."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = get_logger(name)
    handler, previous = _Collect(level), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
