"""Process-group setup from torchrun variables, Slurm variables, a submitit job, or a single process.

``init_distributed()`` reads the environment, initialises ``torch.distributed`` when there is more than
one process (NCCL on GPU, gloo on CPU) and returns a :class:`DistEnv`. Only rank 0 writes files; metric
sums are all-reduced so validation numbers equal a single-process evaluation of the same model.

A rendezvous cannot hang. Given a rendezvous file on the shared file system (the run folder: every rank
reads its checkpoints there anyway), rank 0 listens on a port the OS gives it — bound, so nothing else holds
it — and writes ``host:port`` into the file; the other ranks wait for the file and connect. Without one, the
port comes from the environment (torchrun's ``MASTER_PORT``) or, in a Slurm step, from the job id in the
range below Linux's ephemeral ports (a port the OS hands out to some outgoing connection never takes it). A
peer that never comes is an error after ``SALNET_DIST_TIMEOUT_S`` seconds (default 600) naming the rank and
the port; so is a collective that waits that long, and a peer that dies ends the others at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from salnet.atomic import atomic_write

TIMEOUT_ENV = "SALNET_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's net.ipv4.ip_local_port_range


class RendezvousError(RuntimeError):
    """The ranks of a job could not meet; the message names the rank, the address and what to do."""


class LostPeerError(RuntimeError):
    """A collective failed or timed out: another rank died or hangs; the message names this rank and the
    process group's address."""


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"  # single | torchrun | slurm | submitit

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def where(self) -> str:
        """``rank R of W (process group at HOST:PORT)``, for messages."""
        return f"rank {self.rank} of {self.world_size} (process group at {self.master_addr}:{self.master_port})"


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``gpu[03-05,7],cpu1`` → ``gpu03``."""
    m = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse Slurm node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def ephemeral_ports(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The range the OS picks local ports of outgoing connections from (Linux's default where unreadable)."""
    try:
        lo, hi = (int(x) for x in Path(path).read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT


def job_port(job_id: int, ephemeral: tuple[int, int] | None = None) -> int:
    """A Slurm job's rendezvous port when there is no rendezvous file: the same on every task, different for
    neighbouring job ids, and outside the ephemeral range (20000 up to its start; above its end when it
    starts lower)."""
    lo, hi = ephemeral or ephemeral_ports()
    if lo - 20000 >= 1000:
        return 20000 + job_id % (lo - 20000)
    return hi + 1 + job_id % max(65535 - hi, 1)


def read_env(environ=None) -> DistEnv:
    """The process's place in the job from ``RANK``/``WORLD_SIZE`` (torchrun), else ``SLURM_PROCID``/
    ``SLURM_NTASKS``, else single."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                       env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun")
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "127.0.0.1")
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                       first_host(nodelist), job_port(int(env.get("SLURM_JOB_ID", "0"))), "slurm")
    return DistEnv()


def slurm_step_key(environ=None) -> str | None:
    """``JOBID.STEP.RESTART`` of the Slurm step this process belongs to (the same on every task, new for each
    requeue), or None outside Slurm."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env:
        return None
    return f"{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '0')}.{env.get('SLURM_RESTART_COUNT', '0')}"


def rendezvous_file(run_dir: str | Path, key: str) -> Path:
    """Where rank 0 of the job run ``key`` publishes its address: a file in the (shared) run folder."""
    return Path(run_dir) / ".rendezvous" / f"{key}.json"


def dist_timeout(timeout_s: float | None = None) -> float:
    """Seconds a rank waits for its peers: ``timeout_s``, else ``$SALNET_DIST_TIMEOUT_S``, else 600."""
    return float(timeout_s or os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)


@contextlib.contextmanager
def deadline(seconds: float, message):
    """Ends the process (exit status 1, ``message()`` on stderr) if the block has not finished after
    ``seconds``: the last resort against a call blocked inside C++ (a store client talking to a process that
    is not a store waits forever)."""
    def fire():
        sys.stderr.write(f"{RendezvousError.__name__}: {message()}\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _published_store(env: DistEnv, rendezvous: Path, timeout: float, met: list[DistEnv]) -> dist.Store:
    """The TCPStore of a rendezvous through a file: rank 0 binds a port the OS gives it and publishes it; the
    others wait for the file and connect. ``met[0]`` becomes the address used."""
    td = datetime.timedelta(seconds=timeout)
    if env.is_main:
        store = dist.TCPStore(env.master_addr, 0, env.world_size, True, timeout=td, wait_for_workers=False)
        # the job's first host, as Slurm and torchrun name it (rank 0 runs there); only the port is new
        met[0] = dataclasses.replace(env, master_port=store.port)
        rendezvous.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(rendezvous, json.dumps({"host": met[0].master_addr, "port": store.port,
                                             "world_size": env.world_size, "pid": os.getpid()}))
        return store
    end = time.monotonic() + timeout
    while not rendezvous.is_file():  # written atomically: once it is there, it is whole
        if time.monotonic() > end:
            raise RendezvousError(f"rank {env.rank} of {env.world_size}: rank 0 did not publish its address in "
                                  f"{rendezvous} within {timeout:.0f} s; see rank 0's log (it may have failed "
                                  f"before the rendezvous), or raise ${TIMEOUT_ENV}")
        time.sleep(0.2)
    doc = json.loads(rendezvous.read_text())
    met[0] = dataclasses.replace(env, master_addr=doc["host"], master_port=int(doc["port"]))
    return dist.TCPStore(met[0].master_addr, met[0].master_port, env.world_size, False, timeout=td)


def init_distributed(backend: str | None = None, environ=None, rendezvous: str | Path | None = None,
                     timeout_s: float | None = None, env: DistEnv | None = None) -> DistEnv:
    """Initialise the default process group when the job has several processes (``env``, else read from
    ``environ``); returns the DistEnv, with the address the group actually met at. ``rendezvous``: the file
    through which rank 0 publishes its port (:func:`rendezvous_file`), else ``MASTER_ADDR:MASTER_PORT``;
    ``timeout_s``: see :func:`dist_timeout`. Peers that do not meet within the timeout are a
    :class:`RendezvousError` (or, when a call cannot be interrupted, exit status 1 with that message on
    stderr)."""
    env = env or read_env(environ)
    if not env.distributed or dist.is_initialized():
        return env
    timeout = dist_timeout(timeout_s)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    rendezvous = Path(rendezvous) if rendezvous else None
    met = [env]
    td = datetime.timedelta(seconds=timeout)
    with deadline(timeout + min(timeout, 30.0), lambda: f"{met[0].where}: no rendezvous with the other ranks within "
                                        f"{timeout:.0f} s (is another program listening on that port?)"):
        try:
            if rendezvous is None:  # torch's own tcp:// store (under torchrun: the agent's)
                dist.init_process_group(backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
                                        rank=env.rank, world_size=env.world_size, timeout=td)
            else:
                dist.init_process_group(backend, store=_published_store(env, rendezvous, timeout, met),
                                        rank=env.rank, world_size=env.world_size, timeout=td)
            dist.barrier()  # every rank is in: the rendezvous file has served
        except (dist.DistError, RuntimeError) as exn:
            if isinstance(exn, RendezvousError):
                raise
            hint = (f"another program holds port {met[0].master_port}: choose a free MASTER_PORT below "
                    f"{ephemeral_ports()[0]} (outside the ephemeral range), or resubmit" if "EADDRINUSE" in str(exn)
                    else "see the other ranks' logs")
            raise RendezvousError(f"{met[0].where}: the ranks did not meet ({str(exn).splitlines()[0][:300]}); "
                                  f"{hint}") from None
    if rendezvous is not None and env.is_main:
        rendezvous.unlink(missing_ok=True)
    return met[0]


def init_for_run(run_dir: str | Path, environ=None) -> DistEnv:
    """:func:`init_distributed` for a training run in ``run_dir``: the tasks of a Slurm step (``srun python
    jobs/train.py``) meet through a rendezvous file there, torchrun's through torchrun's store."""
    env = read_env(environ)
    key = slurm_step_key(environ) if env.source == "slurm" else None
    return init_distributed(env=env, rendezvous=rendezvous_file(run_dir, key) if key else None)


def is_peer_failure(exn: BaseException) -> bool:
    """Whether ``exn`` is a collective that failed because of another rank (gloo or NCCL)."""
    text = str(exn)
    return isinstance(exn, dist.DistError) or (
        isinstance(exn, RuntimeError) and any(k in text for k in ("gloo", "NCCL", "ProcessGroup", "c10d")))


@contextlib.contextmanager
def naming_peer_failures(env: DistEnv):
    """Re-raise a collective's failure inside the block as :class:`LostPeerError` naming this rank and the process
    group's address (gloo's own message names neither)."""
    try:
        yield
    except Exception as exn:
        if env.distributed and not isinstance(exn, RendezvousError | LostPeerError) and is_peer_failure(exn):
            first = str(exn).strip().splitlines()[0][:300] if str(exn).strip() else type(exn).__name__
            raise LostPeerError(f"{env.where}: lost another rank ({first}); the job ends here and resumes from its "
                                "last checkpoint when resubmitted (a sweep does so by itself)") from exn
        raise


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


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
