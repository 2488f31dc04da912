"""Atomic checkpoints, latest/best links, pruning and RNG state round trips."""

import random

import numpy as np
import pytest
import torch

from salnet.train.checkpoint import CheckpointManager, atomic_save, load_checkpoint, rng_state, set_rng_state


def state(step):
    net = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(net.weight, float(step))
    opt = torch.optim.Adagrad(net.parameters(), lr=0.1)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"model": net.state_dict(), "optim": opt.state_dict(), "step": step, "epoch": step // 10,
            "loader": {"epoch": 1, "batch": 7}, "rng": rng_state()}


def test_latest_best_and_keep_last(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        m.save(state(step), step, is_best=(step == 20))
    names = sorted(p.name for p in tmp_path.glob("ckpt-*.pt"))
    assert names == ["ckpt-000000020.pt", "ckpt-000000030.pt", "ckpt-000000040.pt"]  # best kept
    assert m.load()["step"] == 40 and m.load("best.pt")["step"] == 20
    got = m.load()
    assert torch.equal(got["model"]["weight"], state(40)["model"]["weight"])
    assert got["optim"]["state"][0]["sum"].shape == (2, 3)


def test_torn_write_leaves_previous_checkpoint(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save(state(1), 1)
    (tmp_path / ".ckpt-000000002.pt.999.tmp").write_bytes(b"half a checkpoint")  # killed mid-write
    assert m.load()["step"] == 1
    assert CheckpointManager(tmp_path / "empty").load() is None


def test_corrupt_file_is_a_clear_error(tmp_path):
    p = atomic_save(state(3), tmp_path / "x.pt")
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a loadable salnet checkpoint"):
        load_checkpoint(p)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    atomic_save({"rng": rng_state()}, tmp_path / "r.pt")
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]
