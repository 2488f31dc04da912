"""Exact resume of a network that draws from the global RNG after resuming: the loss study's ASPP network, whose
dropout (p = 0.25) draws a mask at every training step. A resumed run equals an uninterrupted one only if the
checkpoint's RNG states are restored once the skipped batches are read; SalGAN's networks draw nothing, so the
resume tests in test_train.py cannot tell."""

import json
import signal

import pytest
import torch
from helpers import synthetic_shards
from test_train import preempt_at

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.train.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
STEPS_PER_EPOCH = 24 // 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return synthetic_shards(root, {"train": 24, "val": 4}, (32, 48), 0.05)


def config(shards):
    return apply_overrides(Config(), [
        *DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]", "model.arch=aspp",
        "model.postprocess=none", "train.procedure=content", "train.bootstrap_epochs=0", "train.optimizer=sgd",
        "train.lr=0.01", "train.momentum=0.0", "train.loss={kld: 10, cc: -2, nss: -1}", "train.log_every=1"])


@pytest.fixture(scope="module")
def full(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    trainer = Trainer(config(shards), run_dir=run)
    dropouts = [m for m in trainer.G.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p > 0 for m in dropouts)  # the network draws from the global RNG while training
    assert trainer.fit()["status"] == "done"
    return trainer.G.state_dict(), run


@pytest.mark.parametrize("k", [2, 6, 9])  # mid-epoch 1, its last step, mid-epoch 2
def test_resumed_dropout_network_equals_uninterrupted(shards, full, tmp_path, k):
    """Preempted after step k, resumed in a new Trainer: G and every epoch's validation equal the uninterrupted
    run's, bitwise."""
    weights, full_run = full
    first = Trainer(config(shards), run_dir=tmp_path / "cut")
    preempt_at(first, k)
    assert first.fit()["status"] == "preempted"
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    second = Trainer(config(shards), run_dir=tmp_path / "cut")
    assert second.step == k and second.batch_in_epoch == (k - 1) % STEPS_PER_EPOCH + 1  # 6: epoch 1 not closed
    assert second.fit()["status"] == "done"
    got = second.G.state_dict()
    differ = [n for n in weights if not torch.equal(weights[n], got[n])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run: {differ[:4]}"
    read = [[json.loads(x)["val"] for x in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (full_run, tmp_path / "cut")]
    assert read[0] == read[1] and len(read[0]) == 2
