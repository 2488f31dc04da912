"""DataLoader workers under Slurm's stop signals.

On preemption, ``scancel`` or a timeout Slurm sends SIGTERM (and SIGUSR2 ahead of a timeout); with
``proctrack/pgid`` or ``linuxproc`` it reaches every process of a task, the loader workers too. A worker killed by
a signal its parent did not send makes the main process raise "DataLoader worker ... killed by signal" before it
reads its stop flag and checkpoints. So the workers ignore both signals and the main process owns shutdown: it
stops its workers itself, and a worker still exits when its parent dies (SIGKILL, after Slurm's ``KillWait``,
ends them all).

A worker can only ignore them from its ``worker_init_fn``; between the fork and that call it has the parent's
handler, then torch's (which kills a worker on a SIGTERM from anyone but its parent). The main process therefore
blocks both signals while it starts workers: a worker is born with them blocked, a signal sent meanwhile waits,
and it is discarded once the worker ignores it. The main process's own signal waits those few milliseconds.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: SIGTERM and SIGUSR2 ignored in this worker, then unblocked (a pending one is
    discarded)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_workers(loader: Iterable) -> Iterator:
    """``iter(loader)`` with SIGTERM and SIGUSR2 blocked in this thread while it forks the loader's workers (a
    DataLoader with ``worker_init_fn=ignore_stop_signals``); the previous signal mask is restored after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
