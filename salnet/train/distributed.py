"""Process-group setup from torchrun variables, Slurm variables, or a single process.

``init_distributed()`` reads the environment, initialises ``torch.distributed`` when there is more than
one process (NCCL on GPU, gloo on CPU) and returns a :class:`DistEnv`. Only rank 0 writes files; metric
sums are all-reduced so validation numbers equal a single-process evaluation of the same model.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"  # single | torchrun | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``gpu[03-05,7],cpu1`` → ``gpu03``."""
    m = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse Slurm node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def read_env(environ=None) -> DistEnv:
    """The process's place in the job from ``RANK``/``WORLD_SIZE`` (torchrun, or submitit's
    ``TorchDistributedEnvironment().export()``), else ``SLURM_PROCID``/``SLURM_NTASKS``, else single."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                       env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun")
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "127.0.0.1")
        port = 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000  # same on every task, varies per job
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                       first_host(nodelist), port, "slurm")
    return DistEnv()


def init_distributed(backend: str | None = None, environ=None) -> DistEnv:
    """Initialise the default process group when the job has several processes; returns the DistEnv."""
    env = read_env(environ)
    if env.distributed and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
                                rank=env.rank, world_size=env.world_size)
    return env


def device_for(env: DistEnv) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python, numpy and torch with a per-rank seed (``seed + 1000·rank``); returns it."""
    s = seed + 1000 * rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    return s


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; identity in a single process)."""
    t = t.clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
