"""The submitit jobs that run library code: a training run and a sweep's final evaluation. They are classes of
an installed package, so submitit pickles them by reference and a job imports them from salnet.

Preemption: Slurm sends SIGUSR2 before it stops a job (submitit asks for it ``slurm_signal_delay_s`` ahead).
The training loop catches it, finishes the current step, writes an atomic checkpoint and returns
``preempted``; only then does :class:`TrainJob` hand over to submitit's own handler, which requeues the job.
The requeued job builds the same Trainer on the same run folder and resumes from ``latest.pt``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import submitit


class TrainJob(submitit.helpers.Checkpointable):
    """``TrainJob()(config_dict, run_dir)``: one (DDP) training run as a requeueable submitit job; returns
    :meth:`salnet.train.loop.Trainer.fit`'s result."""

    def __call__(self, config: dict, run_dir: str) -> dict:
        from salnet.config import Config, from_dict
        from salnet.train.loop import Trainer

        # inside a submitit job: RANK/WORLD_SIZE/MASTER_ADDR for the process group (the debug backend runs
        # in this process, without a job environment)
        with contextlib.suppress(RuntimeError):
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        trainer = Trainer(from_dict(Config, config), run_dir=Path(run_dir))
        result = trainer.fit()
        if result["status"] == "preempted" and trainer.env.is_main and self._requeue_asked(trainer.stop):
            handler = trainer.stop.previous.get(signal.SIGUSR2)
            if callable(handler):  # submitit's: requeues the job (the run folder holds the state)
                handler(signal.SIGUSR2, None)
        return result

    @staticmethod
    def _requeue_asked(stop, wait_s: float = 5.0) -> bool:
        """USR2 = a timeout or preemption notice (Slurm sends SIGTERM first on preemption): requeue. SIGTERM
        alone = scancel: the checkpoint is written and nothing is requeued. Waits briefly for a USR2 that
        follows a SIGTERM."""
        deadline = time.monotonic() + wait_s
        while "SIGUSR2" not in stop.seen and "SIGTERM" in stop.seen and time.monotonic() < deadline:
            time.sleep(0.1)
        return "SIGUSR2" in stop.seen


class EvaluateJob:
    """``EvaluateJob()(sweep_dir, split)``: the final evaluation of a sweep (salnet.summary) as a job."""

    def __call__(self, sweep_dir: str, split: str = "test") -> dict:
        from salnet.summary import summarize_sweep

        return summarize_sweep(Path(sweep_dir), split=split)
