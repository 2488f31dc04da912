"""Real torch.distributed (gloo) ranks: the loaders pick rank/world size up from the process group,
every rank runs the same number of batches (an all_reduce per batch would hang otherwise), and
validation covers the split exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from salnet.data import get_reader, write_synthetic
from salnet.data.loader import LoaderConfig, TrainLoader, ValLoader
from salnet.data.shards import pack


def _rank_main(rank: int, world: int, folder: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    cfg = LoaderConfig(size=(16, 24), batch_size=3, workers=1, shuffle_buffer=4)
    train, n = TrainLoader(folder, "train", cfg), 0
    for batch in train:
        t = torch.ones(1)
        dist.all_reduce(t)  # a collective per batch, as DDP does
        n += len(batch["id"])
    val = [i for b in ValLoader(folder, "val", cfg) for i in b["id"]]
    Path(out, f"rank{rank}.json").write_text(json.dumps({"batches": len(train), "train": n, "val": val}))
    dist.destroy_process_group()


def test_gloo_ranks_share_batch_counts_and_validation(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 23, "val": 11}, size=(24, 32), seed=0)
    reader = get_reader("synthetic", tmp_path / "raw")
    reader.size_hint = lambda split, id: 1000
    pack(reader, tmp_path / "s", shard_size_mb=0.005)  # uneven shards: 5, 5, 5, 5, 3
    ctx = mp.start_processes(_rank_main, args=(2, str(tmp_path / "s"), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:  # a DDP hang: kill our two ranks and fail
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("gloo ranks did not finish within 240 s")
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["batches"] for r in res] == [3, 3] and [r["train"] for r in res] == [9, 9]  # 23 // (2 x 3)
    assert sorted(res[0]["val"] + res[1]["val"]) == [f"{i:06d}" for i in range(11)]
    assert not set(res[0]["val"]) & set(res[1]["val"])
