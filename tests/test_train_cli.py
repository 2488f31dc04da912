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
