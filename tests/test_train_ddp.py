"""DDP with two gloo ranks: validation gives the single-process numbers; a 2-rank training run keeps the ranks'
weights equal; two ranks on half a batch each train as one process on the whole batch."""

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


def own_weights(trainer) -> dict:
    """This process's G and D as they are now (copies), keys prefixed by the network."""
    return {f"{net}.{k}": v.detach().clone() for net in ("G", "D")
            for k, v in getattr(trainer, net).state_dict().items()}


def _train_rank(rank, port, shards, run_dir, out):
    from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
    from salnet.train.loop import Trainer

    class Recording(Trainer):
        """Keeps this rank's own weights after each epoch's last step, before fit() reloads the best checkpoint
        (which every rank reads from rank 0's file, so after it the ranks agree whatever DDP did)."""

        def _epoch(self, board):
            status = super()._epoch(board)
            self.own = own_weights(self)
            return status

    env = init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                    "MASTER_PORT": str(port)})
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                     "data.batch_size=2"])
    trainer = Recording(cfg, run_dir=run_dir, env=env)
    result = trainer.fit()
    out[rank] = (result["status"], result["step"], result["val"], trainer.own)
    cleanup()


@pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
def test_two_rank_salgan_training(tmp_path):
    """Each rank's own G and D after its last step (bootstrap, then D and G steps) are bitwise equal across ranks:
    DDP averages the gradients of both networks, so the replicas take the same steps. Without the all-reduce the
    ranks' copies differ in most tensors."""
    synthetic_shards(tmp_path, {"train": 16, "val": 6}, (32, 48), 0.05)
    out = mp.Manager().dict()
    mp.spawn(_train_rank, args=(free_port(), tmp_path / "shards", tmp_path / "run", out), nprocs=2, join=True)
    (s0, n0, v0, w0), (s1, n1, v1, w1) = out[0], out[1]
    assert s0 == s1 == "done" and n0 == n1 == 2 * (16 // (2 * 2))  # 2 epochs × 4 batches per rank
    assert v0 == v1 and v0["images"] == 6  # all-reduced: every rank reports the whole split
    assert w0.keys() == w1.keys() and any(k.startswith("D.") for k in w0)
    differ = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert not differ, f"{len(differ)} of {len(w0)} tensors differ between the ranks: {differ[:5]}"
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2


# ---------------------------------------------------------------- two ranks = one process over the same batch

# the steps driven by hand: two bootstrap steps, then D, G, D, G (Trainer.train_step picks D or G by the step)
STAGES = [("bootstrap", 0), ("bootstrap", 1), ("adversarial", 4), ("adversarial", 5), ("adversarial", 6),
          ("adversarial", 7)]
# float32 sums in another order (each rank's half-batch mean, then their average): the weights agree to 1.5e-8;
# stepping on half the batch (what a rank without the all-reduce does) moves them 1.1e-3 away
DDP_ATOL = 1e-6


def global_batches(shards) -> list[dict]:
    from salnet.data.loader import TrainLoader

    loader = TrainLoader(shards, "train", LoaderConfig(size=(32, 48), batch_size=4, workers=0, flip=False),
                         rank=0, world_size=1)
    loader.set_epoch(0)
    return list(loader)


def half(batch: dict, rank: int) -> dict:
    """Rank ``rank``'s half of a global batch of 4: samples 2·rank and 2·rank + 1."""
    return {k: v[2 * rank:2 * rank + 2] if torch.is_tensor(v) or isinstance(v, list | tuple) else v
            for k, v in batch.items()}


def driven(shards, run_dir, env, batch_size, pick):
    """A Trainer of the tiny SalGAN config stepped by hand through STAGES on ``pick(global batch)``; its G and D."""
    from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
    from salnet.train.loop import Trainer

    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                     f"data.batch_size={batch_size}"])
    trainer = Trainer(cfg, run_dir=run_dir, resume=False, env=env)
    assert len(trainer.train_loader) == 4  # 16 images / 4 per step: step 4 is the first adversarial one
    for (stage, step), batch in zip(STAGES, global_batches(shards) * 2):
        trainer.step = step
        trainer.train_step(pick(batch), stage)
    return own_weights(trainer)


def _half_batch_rank(rank, port, shards, run_dir, out):
    env = init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                    "MASTER_PORT": str(port)})
    out[rank] = driven(shards, run_dir, env, 2, lambda b: half(b, rank))
    cleanup()


@pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
def test_two_ranks_train_as_one_process_on_the_global_batch(tmp_path):
    """Two ranks with 2 images each, bootstrap + D + G steps, end with the G and D of one process stepping on the
    same 4 images, to DDP_ATOL."""
    from salnet.train.distributed import DistEnv

    shards = synthetic_shards(tmp_path, {"train": 16, "val": 2}, (32, 48), 0.05)
    single = driven(shards, tmp_path / "one", DistEnv(), 4, lambda b: b)
    out = mp.Manager().dict()
    mp.spawn(_half_batch_rank, args=(free_port(), shards, tmp_path / "two", out), nprocs=2, join=True)
    for rank in range(2):
        assert out[rank].keys() == single.keys()
        worst = max((out[rank][k] - single[k]).abs().max().item() for k in single)
        assert worst < DDP_ATOL, (rank, worst)
    moved = driven(shards, tmp_path / "again", DistEnv(), 4, lambda b: half(b, 0))  # half the batch: not the same
    assert max((moved[k] - single[k]).abs().max().item() for k in single) > 100 * DDP_ATOL
