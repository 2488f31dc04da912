"""The submitit jobs that run library code: a training run and a sweep's final evaluation. They are classes of
an installed package, so submitit pickles them by reference and a job imports them from salnet.

DDP: the tasks meet through a rendezvous file in the run folder (rank 0 publishes a port it has bound, so no port
collision can hang the job), with timeouts; Slurm's step ends every task as soon as one dies
(``srun --kill-on-bad-exit``, :func:`salnet.run.submission.make_executor`), and the job fails with a message naming
the rank, so a sweep retries it from its last checkpoint.

Preemption: Slurm sends SIGUSR2 before it stops a job (submitit asks for it ``slurm_signal_delay_s`` ahead).
The training loop catches it, finishes the current step, writes an atomic checkpoint and returns
``preempted``; only then does :class:`TrainJob` hand over to submitit's own handler, which requeues the job.
The requeued job builds the same Trainer on the same run folder and resumes from ``latest.pt``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import submitit

from salnet.logs import setup_logging


class TrainJob(submitit.helpers.Checkpointable):
    """``TrainJob()(config_dict, run_dir)``: one (DDP) training run as a requeueable submitit job; returns
    :meth:`salnet.train.loop.Trainer.fit`'s result."""

    def __call__(self, config: dict, run_dir: str) -> dict:
        from salnet.config import Config, from_dict
        from salnet.train.distributed import DistEnv, init_distributed, naming_peer_failures, rendezvous_file
        from salnet.train.loop import Trainer

        place = job_placement()
        setup_logging(rank=None if place is None else place.rank)  # INFO lines (one per epoch) from rank 0
        env = None
        if place is not None and place.distributed:  # rank 0 publishes its port in the run folder
            env = init_distributed(env=place, rendezvous=rendezvous_file(run_dir, place_key()))
        with naming_peer_failures(env or DistEnv()):
            trainer = Trainer(from_dict(Config, config), run_dir=Path(run_dir), env=env)
            result = trainer.fit()
        if result["status"] == "preempted" and trainer.env.is_main and self._requeue_asked(trainer.stop):
            trainer.stop.hand_over()  # submitit's handler requeues the job (the run folder holds the state)
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


def job_placement():
    """This task's place in its submitit job (rank, tasks, local rank, first host) as a DistEnv, or None outside a
    job (the debug backend runs jobs in the calling process)."""
    from salnet.train.distributed import DistEnv

    try:
        je = submitit.JobEnvironment()
        return DistEnv(je.global_rank, je.num_tasks, je.local_rank, je.hostnames[0], 0, "submitit")
    except (RuntimeError, KeyError, ValueError):
        return None


def place_key() -> str:
    """The job run's rendezvous key: job id and Slurm's restart count (a requeued job meets afresh)."""
    return f"{submitit.JobEnvironment().job_id}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"


class EvaluateJob:
    """``EvaluateJob()(sweep_dir, split)``: the final evaluation of a sweep (salnet.sweeps.summary) as a job."""

    def __call__(self, sweep_dir: str, split: str = "test") -> dict:
        from salnet.sweeps.summary import summarize_sweep

        setup_logging()
        return summarize_sweep(Path(sweep_dir), split=split)
