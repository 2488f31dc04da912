"""model.weights: the presets and sweeps train the ImageNet encoder; where it comes from; what is refused before
anything is written; DF/GM never on an unasked-for random VGG; init_from keeps its input convention."""

import dataclasses

import pytest
import torch

from salnet import losses
from salnet.config import DEBUG_OVERRIDES, PRESETS, Config, apply_overrides, config_hash, save_config
from salnet.losses.perceptual import VGGPools
from salnet.models import VGG16Features
from salnet.models.weights import ENV_FILE, WeightsError, resolve_weights, torchvision_cache_file
from salnet.sweeps.load import SWEEPS_DIR, load_sweep, trial_config
from salnet.train.build import with_init_from_convention
from salnet.train.checks import check_weights


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No cache, no $SALNET_VGG16_WEIGHTS, no download: where a fresh offline machine stands."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SALNET_OFFLINE", "1")
    monkeypatch.delenv(ENV_FILE, raising=False)
    return tmp_path


def vgg_file(path):
    """A torchvision-format VGG-16 file (seeded random values in the real shapes)."""
    torch.manual_seed(0)
    state = VGG16Features(weights="random").state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in state.items()}, path)
    return state


def test_every_preset_and_sweep_trains_the_imagenet_encoder():
    assert {name: make().model.weights for name, make in PRESETS.items()} == {"salgan": "imagenet",
                                                                             "loss_study": "imagenet"}
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        spec = load_sweep(path)
        params = {"point": spec.points[0]["label"]} if spec.points else {}
        assert trial_config(spec, params).model.weights == "imagenet", path.name
    assert apply_overrides(Config(), DEBUG_OVERRIDES).model.weights == "random"  # --debug writes it out
    # "random" is what runs made before it existed hold (null): their ids do not change
    assert config_hash(apply_overrides(Config(), ["model.weights=random"])) == \
        config_hash(apply_overrides(Config(), ["model.weights=null"]))


def test_imagenet_resolves_through_the_setting_then_the_cache(offline, monkeypatch):
    with pytest.raises(WeightsError) as err:
        resolve_weights("imagenet")
    message = str(err.value)
    assert str(torchvision_cache_file()) in message and f"{ENV_FILE}=" in message and "model.weights=random" in message
    cached = torchvision_cache_file()
    state = vgg_file(cached)
    assert resolve_weights("imagenet") == cached == resolve_weights("torchvision")
    local = offline / "offline-cluster" / "vgg16.pth"
    vgg_file(local)
    monkeypatch.setenv(ENV_FILE, str(local))
    assert resolve_weights("imagenet") == local  # the one setting wins over the cache
    monkeypatch.setenv(ENV_FILE, str(offline / "nowhere.pth"))
    with pytest.raises(WeightsError, match=f"{ENV_FILE}=.*nowhere.pth: no such file"):
        resolve_weights("imagenet")
    monkeypatch.delenv(ENV_FILE)
    net = VGG16Features(weights="imagenet")
    assert torch.equal(net.features[0].weight, state["features.0.weight"].half().float())
    assert resolve_weights("random") is None and resolve_weights(None) is None
    with pytest.raises(WeightsError, match="missing.pth does not exist"):
        resolve_weights(offline / "missing.pth")


def test_a_run_checks_its_weights_before_anything_is_written(offline):
    cfg = apply_overrides(Config(), [f"data.shards={offline / 'shards'}"])
    with pytest.raises(WeightsError, match="vgg16-397923af.pth is not cached"):
        check_weights(cfg)
    with pytest.raises(ValueError, match="'random' for a narrow network"):
        check_weights(apply_overrides(cfg, ["model.width=0.5"]))
    assert check_weights(apply_overrides(cfg, ["model.weights=random"])) is None
    # a run whose init_from gives every weight does not read the encoder file ...
    assert check_weights(apply_overrides(cfg, ["train.init_from=somewhere"])) is None
    # ... unless its DF/GM losses do
    with pytest.raises(WeightsError):
        check_weights(apply_overrides(cfg, ["train.init_from=somewhere", "train.loss={df: 1.0}"]))


def test_perceptual_losses_refuse_a_random_vgg_unless_asked(offline):
    with pytest.raises(ValueError, match="DF and GM losses need VGG-16 weights"):
        VGGPools()
    with pytest.raises(ValueError, match="DF and GM losses need VGG-16 weights"):
        losses.build({"df": 1.0})
    with pytest.raises(WeightsError):  # the default of a bare term is the ImageNet VGG, not a random one
        losses.LOSSES["gm"]()
    loss = losses.build({"df": 1.0, "gm": 1.0}, vgg_weights="random")
    s = torch.rand(1, 1, 32, 32)
    _, parts = loss(torch.logit(s.clamp(0.01, 0.99)), {"map": s}, s.clamp(0.01, 0.99))
    assert set(parts) >= {"df", "gm"}


def test_the_released_weights_keep_their_input_convention_as_init_from(tmp_path):
    """jobs/convert.py's checkpoint (caffe_bgr) used as train.init_from: the run normalises its input as the
    released network expects, and its config says so."""
    from helpers import synthetic_shards

    from salnet.interop.released_salgan import released_config
    from salnet.train.checkpoint import CheckpointManager
    from salnet.train.loop import Trainer

    released = released_config(width=0.0625)
    assert released.model.input_convention == "caffe_bgr"
    run = tmp_path / "released"
    from salnet.models import Generator

    G = Generator(width=0.0625, weights="random", input_convention="caffe_bgr")
    run.mkdir()
    save_config(released, run / "config.yaml")
    CheckpointManager(run).save({"G": G.state_dict(), "step": 0, "epoch": 0, "run_id": config_hash(released)}, 0,
                                is_best=True)
    shards = synthetic_shards(tmp_path / "data", {"train": 4, "val": 2})
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"train.init_from={run}", f"data.shards={shards}",
                                     "data.input_size=[32, 48]"])
    assert cfg.model.input_convention == "torchvision"
    assert with_init_from_convention(cfg).model.input_convention == "caffe_bgr"
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    assert trainer.cfg.model.input_convention == "caffe_bgr"
    assert trainer.G.encoder.input_convention == "caffe_bgr"
    assert all(torch.equal(a, b) for a, b in zip(trainer.G.state_dict().values(), G.state_dict().values()))
    same = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_convention="caffe_bgr"))
    assert with_init_from_convention(same) is same
