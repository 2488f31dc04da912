"""salnet.train.distributed: environment parsing and a real 2-process gloo all-reduce."""

import socket

import torch
import torch.multiprocessing as mp

from salnet.train.distributed import (
    DistEnv,
    all_reduce_sum,
    cleanup,
    first_host,
    init_distributed,
    job_port,
    read_env,
)


def test_read_env_sources():
    assert read_env({}) == DistEnv()
    tr = read_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "1234"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.master_addr, tr.master_port, tr.source) == \
        (3, 4, 1, "10.1.2.3", 1234, "torchrun")
    sl = read_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
                   "SLURM_JOB_NODELIST": "gpu[07-08]"})
    assert (sl.rank, sl.world_size, sl.local_rank, sl.master_addr, sl.master_port, sl.source) == \
        (5, 8, 1, "gpu07", job_port(123456), "slurm")
    # the port of a Slurm step lies below the ephemeral range, where the OS never hands one out by itself
    assert job_port(123456, (32768, 60999)) == 20000 + 123456 % 12768
    assert len({job_port(j, (32768, 60999)) for j in range(1000, 1100)}) == 100
    assert job_port(7, (10000, 60999)) == 61000 + 7  # an ephemeral range starting low: above it
    assert read_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).source == "single"
    assert first_host("node1,node2") == "node1" and first_host("a[3,5-9]") == "a3" and first_host("solo") == "solo"


def _worker(rank, port, out):
    env = init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                    "MASTER_PORT": str(port)})
    out[rank] = all_reduce_sum(torch.tensor([rank + 1.0, 10.0 * rank]))
    assert env.is_main == (rank == 0)
    cleanup()


def test_two_process_gloo_all_reduce():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    for r in range(2):
        assert torch.equal(out[r], torch.tensor([3.0, 10.0]))
