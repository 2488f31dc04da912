"""salnet.config: YAML round trip, typed dotted overrides, unknown keys, the config hash."""

import pytest
import yaml

from salnet.config import (
    ADDED_KEYS,
    Config,
    ConfigError,
    apply_overrides,
    config_hash,
    load_config,
    save_config,
    shorter_run,
    to_dict,
)


def test_yaml_round_trip_is_exact(tmp_path):
    cfg = apply_overrides(Config(), ["train.alpha=0.2", "data.input_size=[300, 400]", "model.weights=null"])
    save_config(cfg, tmp_path / "config.yaml", extra={"git_sha": "abc123", "seed": 0})
    doc = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert doc["meta"] == {"run_id": config_hash(cfg), "git_sha": "abc123", "seed": 0}
    back = load_config(tmp_path / "config.yaml")
    assert back == cfg and back.data.input_size == (300, 400) and back.train.alpha == 0.2


def test_overrides_are_typed():
    cfg = apply_overrides(Config(), ["train.epochs=3", "train.lr=1e-3", "data.flip=false",
                                     "train.loss={kld: 10, cc: -2}", "train.loss.nss=-1"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.001 and cfg.data.flip is False
    assert cfg.train.loss == {"kld": 10, "cc": -2, "nss": -1}
    assert apply_overrides(Config(), ["train.lr=1"]).train.lr == 1.0  # int accepted for a float, stored as float
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        apply_overrides(Config(), ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="data.flip: expected true/false"):
        apply_overrides(Config(), ["data.flip=1"])
    with pytest.raises(ConfigError, match=r"data.input_size: expected a list of 2"):
        apply_overrides(Config(), ["data.input_size=[1, 2, 3]"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        apply_overrides(Config(), ["train.alpha"])


def test_unknown_keys_suggest_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.alhpa'.*did you mean 'train.alpha'"):
        apply_overrides(Config(), ["train.alhpa=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trian.alpha'"):
        apply_overrides(Config(), ["trian.alpha=0.1"])
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 3\n  bootstrap_epoch: 2\n")
    with pytest.raises(ConfigError, match=r"'train.bootstrap_epoch'.*did you mean 'bootstrap_epochs'"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_hash_identifies_the_config():
    a, b = Config(), Config()
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 12
    assert config_hash(apply_overrides(a, ["train.alpha=0.1"])) != config_hash(a)
    # key order of a dict field does not matter; values do
    x = apply_overrides(a, ["train.loss={kld: 10, cc: -2}"])
    y = apply_overrides(a, ["train.loss={cc: -2, kld: 10}"])
    assert config_hash(x) == config_hash(y)
    assert to_dict(a)["data"]["input_size"] == [192, 256]


def test_shorter_run_finds_the_same_config_with_fewer_epochs():
    cfg = apply_overrides(Config(), ["train.epochs=7"])
    short = apply_overrides(cfg, ["train.epochs=3"])
    assert shorter_run(cfg, config_hash(short)) == 3
    assert shorter_run(cfg, config_hash(cfg)) is None  # not shorter
    assert shorter_run(short, config_hash(cfg)) is None  # longer
    assert shorter_run(cfg, config_hash(apply_overrides(short, ["train.alpha=0.5"]))) is None
    assert shorter_run(cfg, None) is None

def test_keys_added_later_keep_the_ids_of_earlier_runs():
    """Run ids as salnet computed them before data.train_passes and train.cpu_bf16 existed (commit 0291055): a run
    started then resumes now. A new key at another value is part of the id. Such a run saved model.weights: null
    (the default then; "random" now, with the same id)."""
    base = apply_overrides(Config(), ["model.weights=null"])
    assert config_hash(base) == config_hash(apply_overrides(Config(), ["model.weights=random"]))
    assert config_hash(base) == "b5d9f87034ea"
    assert config_hash(apply_overrides(base, ["train.recipe=paper", "data.shards=shards/salicon"])) == "561bb7987386"
    for key, value in ADDED_KEYS.items():
        other = "x" if value is None else 2 if isinstance(value, int) and not isinstance(value, bool) else not value
        assert config_hash(apply_overrides(base, [f"{key}={str(other).lower()}"])) != config_hash(base), key


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    from salnet.atomic import atomic_write

    target = tmp_path / "state.json"
    atomic_write(target, "old")
    atomic_write(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]

    with pytest.raises(TypeError):  # a failed write leaves the previous file and no temporary behind
        atomic_write(target, 42)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
