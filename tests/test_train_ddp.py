"""Validation under DDP: two gloo ranks give the single-process numbers; a 2-rank training run works."""

import socket

import pytest
import torch
import torch.multiprocessing as mp
from helpers import synthetic_shards

from salnet.data.loader import LoaderConfig, ValLoader
from salnet.models.salgan import Generator
from salnet.train.distributed import cleanup, init_distributed
from salnet.train.validate import fixation_pool, validate


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model():
    torch.manual_seed(0)
    return Generator(width=0.0625).eval()


def _rank(rank, port, shards, out):
    init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                              "MASTER_PORT": str(port)})
    loader = ValLoader(shards, "val", LoaderConfig(size=(32, 48), batch_size=3, workers=0, flip=False),
                       rank=rank, world_size=2)
    out[rank], _ = validate(model(), loader, torch.device("cpu"), shuffle_pool=fixation_pool(shards, "val"))
    cleanup()


@pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
def test_two_ranks_equal_one(tmp_path):
    synthetic_shards(tmp_path, {"val": 11}, (32, 48), 0.02)  # 11: ranks get 5 and 6 images
    shards = tmp_path / "shards"
    single, _ = validate(model(), ValLoader(shards, "val", LoaderConfig(size=(32, 48), batch_size=3, workers=0,
                                                                        flip=False)),
                         torch.device("cpu"), shuffle_pool=fixation_pool(shards, "val"))
    out = mp.Manager().dict()
    mp.spawn(_rank, args=(free_port(), shards, out), nprocs=2, join=True)
    assert single["images"] == 11
    for r in range(2):
        assert out[r].keys() == single.keys()
        for k in single:
            assert out[r][k] == pytest.approx(single[k], abs=1e-9), k


def _train_rank(rank, port, shards, run_dir, out):
    from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
    from salnet.train.loop import Trainer

    env = init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                    "MASTER_PORT": str(port)})
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                     "data.batch_size=2"])
    result = Trainer(cfg, run_dir=run_dir, env=env).fit()
    trainer_g = {k: v.clone() for k, v in Trainer(cfg, run_dir=run_dir, env=env).G.state_dict().items()}
    out[rank] = (result["status"], result["step"], result["val"], trainer_g)
    cleanup()


@pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
def test_two_rank_salgan_training(tmp_path):
    synthetic_shards(tmp_path, {"train": 16, "val": 6}, (32, 48), 0.05)
    out = mp.Manager().dict()
    mp.spawn(_train_rank, args=(free_port(), tmp_path / "shards", tmp_path / "run", out), nprocs=2, join=True)
    (s0, n0, v0, g0), (s1, n1, v1, g1) = out[0], out[1]
    assert s0 == s1 == "done" and n0 == n1 == 2 * (16 // (2 * 2))  # 2 epochs × 4 batches per rank
    assert v0 == v1 and v0["images"] == 6  # all-reduced: every rank reports the whole split
    for k in g0:  # DDP kept the replicas identical; rank 0's checkpoint holds them
        assert torch.equal(g0[k], g1[k]), k
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2
