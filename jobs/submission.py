"""submitit glue shared by the job scripts: executors for the slurm/local/debug backends and the
checkpointable training job. (The library in salnet/ knows nothing of Slurm; this module is where the two
meet.)

Preemption: Slurm sends SIGUSR2 before it stops a job (submitit asks for it ``signal_delay_s`` ahead). The
training loop catches it, finishes the current step, writes an atomic checkpoint and returns
``preempted``; only then does :class:`TrainJob` hand over to submitit's own handler, which requeues the
job. The requeued job builds the same Trainer on the same run folder and resumes from ``latest.pt``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

import cloudpickle
import submitit

BACKENDS = ("slurm", "local", "debug")


def make_executor(
    folder: Path,
    backend: str = "slurm",
    *,
    partition: str | None = None,
    nodes: int = 1,
    tasks_per_node: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int = 4,
    time_min: int = 60,
    mem_gb: float | None = None,
    account: str | None = None,
    qos: str | None = None,
    constraint: str | None = None,
    name: str = "salnet",
    max_num_timeout: int = 3,
) -> submitit.AutoExecutor:
    """An AutoExecutor for ``backend`` (slurm | local processes | debug = in this process).

    One task per GPU (``tasks_per_node`` = ``gpus_per_node`` when GPUs are asked for); ``max_num_timeout``
    bounds how often a job is requeued after timing out.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=backend, slurm_max_num_timeout=max_num_timeout)
    params = {"timeout_min": time_min, "nodes": nodes, "tasks_per_node": max(tasks_per_node, gpus_per_node or 1),
              "cpus_per_task": cpus_per_task, "name": name}
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if mem_gb:
        params["mem_gb"] = mem_gb
    if backend == "slurm":
        params.update(slurm_partition=partition, slurm_account=account, slurm_qos=qos,
                      slurm_constraint=constraint, slurm_signal_delay_s=120)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


class TrainJob(submitit.helpers.Checkpointable):
    """``TrainJob()(config_dict, run_dir)``: one (DDP) training run as a requeueable submitit job."""

    def __call__(self, config: dict, run_dir: str) -> dict:
        from salnet.config import Config, from_dict
        from salnet.train.loop import Trainer

        # inside a submitit job: RANK/WORLD_SIZE/MASTER_ADDR for the process group (the debug backend runs
        # in this process, without a job environment)
        with contextlib.suppress(RuntimeError):
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        trainer = Trainer(from_dict(Config, config), run_dir=Path(run_dir))
        result = trainer.fit()
        if result["status"] == "preempted" and trainer.env.is_main:
            handler = trainer.stop.previous.get(signal.SIGUSR2)
            if callable(handler):  # submitit's: calls checkpoint() (the run folder holds the state), requeues
                handler(signal.SIGUSR2, None)
        return result


# the job classes travel by value: the worker needs salnet installed, not this folder on its path
cloudpickle.register_pickle_by_value(sys.modules[__name__])
