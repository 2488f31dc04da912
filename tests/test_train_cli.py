"""jobs/train.py's bad input: unknown config keys, ill-typed values, missing shards."""

import runpy
import sys
from pathlib import Path

import pytest

TRAIN = Path(__file__).resolve().parents[1] / "jobs" / "train.py"


def run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(TRAIN), run_name="__main__")
    return done.value.code


def test_unknown_key_names_the_closest(monkeypatch, capsys):
    assert run(monkeypatch, "train.alhpa=0.1") == 2
    assert "unknown config key 'train.alhpa'; did you mean 'train.alpha'?" in capsys.readouterr().err


def test_ill_typed_value(monkeypatch, capsys):
    assert run(monkeypatch, "train.epochs=many") == 2
    assert "train.epochs: expected an integer, got 'many'" in capsys.readouterr().err


def test_missing_shards_say_how_to_pack(monkeypatch, capsys, tmp_path):
    assert run(monkeypatch, f"data.shards={tmp_path / 'nope'}") == 2
    err = capsys.readouterr().err
    assert f"no shards at {tmp_path / 'nope'}" in err and "jobs/pack.py" in err


def test_unknown_config_file(monkeypatch, capsys, tmp_path):
    assert run(monkeypatch, "--config", str(tmp_path / "missing.yaml")) == 2
    assert "missing.yaml not found" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [
    ("data.batch_size=0", "data.batch_size=0: must be an integer ≥ 1"),
    ("data.batch_size=-1", "data.batch_size=-1: must be an integer ≥ 1"),
    ("train.epochs=-3", "train.epochs=-3: must be an integer ≥ 1"),
    ("train.lr_d=0", "train.lr_d=0.0: must be a number > 0"),
    ("model.width=0", "model.width=0.0: must be a number > 0"),
])
def test_impossible_values_stop_before_a_run_folder(monkeypatch, capsys, tmp_path, value, message):
    """--debug with an impossible value: one line naming the key and its range, no traceback, no run folder."""
    monkeypatch.chdir(tmp_path)
    assert run(monkeypatch, "--debug", value) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not any(p.name.startswith("salgan-") for p in (tmp_path / "runs").glob("*"))


def test_retries_out_of_range_name_the_sweep_line(tmp_path):
    from salnet.sweeps.load import SweepError, load_sweep

    text = (TRAIN.parents[1] / "sweeps" / "alpha.yaml").read_text().replace("retries: 2", "retries: -1")
    (tmp_path / "a.yaml").write_text(text)
    with pytest.raises(SweepError, match=r"a.yaml:\d+: budget.retries must be ≥ 0, got -1"):
        load_sweep(tmp_path / "a.yaml")
