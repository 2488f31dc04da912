"""A shared first stage (SalGAN's bootstrap run once for the trials of a sweep): which configs share one, and a
trial started from the stage's run ends equal to the same trial that trained its bootstrap itself."""

import dataclasses

import pytest
import torch
from helpers import synthetic_shards

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides, config_hash
from salnet.train.loop import Trainer
from salnet.train.stages import continued_epochs, first_stage, stage_to_adopt


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic_shards(root, {"train": 16, "val": 8}, (32, 48), 0.05)
    return root / "shards"


def config(shards, *extra):
    return apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                      "train.epochs=3", "train.bootstrap_epochs=2", *extra])


def test_trials_that_differ_in_the_adversarial_keys_share_one_first_stage(tmp_path):
    base = config(tmp_path)
    trials = [apply_overrides(base, [x]) for x in ("train.alpha=0.5", "train.adversarial=false", "train.lr=0.01",
                                                   "train.optimizer=adam", "train.lr_d=0.1")]
    stages = {config_hash(first_stage(c)) for c in [base, *trials]}
    assert len(stages) == 1
    stage = first_stage(base)
    assert stage.train.epochs == 2 and stage.train.alpha == Config().train.alpha
    # what the bootstrap reads makes another stage
    for other in ("train.seed=1", "train.bootstrap_lr=0.01", "data.batch_size=2", "train.bootstrap_epochs=1"):
        assert config_hash(first_stage(apply_overrides(base, [other]))) not in stages, other
    # no stage to share: the content procedure, no bootstrap, nothing after it, a patience, an init_from of its own
    for none in ("train.procedure=content", "train.bootstrap_epochs=0", "train.epochs=2", "train.patience=3",
                 "train.init_from=somewhere"):
        assert first_stage(apply_overrides(base, [none])) is None, none


def final_state(trainer):
    return {**{f"G.{k}": v for k, v in trainer.G.state_dict().items()},
            **{f"D.{k}": v for k, v in trainer.D.state_dict().items()}}


@pytest.mark.parametrize("trial", ["train.alpha=0.5", "train.adversarial=false"])
def test_a_trial_from_the_shared_stage_equals_the_trial_with_its_own_bootstrap(shards, tmp_path, trial):
    own = Trainer(config(shards, trial), run_dir=tmp_path / "own")
    assert own.fit()["status"] == "done"

    stage_cfg = first_stage(config(shards, trial))
    stage = Trainer(stage_cfg, run_dir=tmp_path / "stage")
    assert stage.fit()["status"] == "done"
    shared_cfg = config(shards, trial, f"train.init_from={tmp_path / 'stage'}")
    assert stage_to_adopt(shared_cfg) == tmp_path / "stage"
    assert continued_epochs(shared_cfg, config_hash(stage_cfg)) == 2
    shared = Trainer(shared_cfg, run_dir=tmp_path / "shared")
    assert shared.epoch == 2 and shared.step == stage.step  # started where the stage ended
    result = shared.fit()
    assert result["status"] == "done" and result["step"] == own.step
    a, b = final_state(own), final_state(shared)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), \
        [k for k in a if not torch.equal(a[k], b[k])][:5]
    # the trial's folder reads as one run: the stage's epochs, then its own
    rows = [line for line in (tmp_path / "shared" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(rows) == 3


def test_an_unfinished_stage_is_refused(shards, tmp_path):
    stage_cfg = first_stage(config(shards))
    stage_cfg = dataclasses.replace(stage_cfg, train=dataclasses.replace(stage_cfg.train, max_steps=1))
    Trainer(stage_cfg, run_dir=tmp_path / "stage").fit()
    with pytest.raises(ValueError, match="has not finished"):
        Trainer(config(shards, f"train.init_from={tmp_path / 'stage'}"), run_dir=tmp_path / "trial")
