"""The papers' experiments as sweeps (salgan_content, salgan_gan, loss_study): every trial planned with --dry-run,
every loss spec of the loss study trains, and each sweep runs at --tiny scale on the local backend with the paper's
rows in its summary.md (salgan_gan: the demo, tests/test_demo.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import synthetic_shards

from salnet.losses import LC1, LC2
from salnet.sweeps.load import load_sweep, trial_config
from salnet.train.loop import Trainer

LAUNCH = Path(__file__).resolve().parents[1] / "jobs" / "launch.py"
PAPER_SWEEPS = {"salgan_content": 5, "salgan_gan": 4, "loss_study": 28}
pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")


def launch(*args, cwd):
    return subprocess.run([sys.executable, str(LAUNCH), *args], capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.mark.parametrize("name", list(PAPER_SWEEPS))
def test_dry_run_plans_every_point(name, tmp_path, launch_here):
    res = launch_here("--sweep", name, "--dry-run", "--verbose", "--backend", "local", cwd=tmp_path,
                      env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    spec = load_sweep(name)
    assert res.stdout.count("--- trial ") == PAPER_SWEEPS[name] == len(spec.points)
    for point in spec.points:
        assert f"--- trial {spec.points.index(point)}: {{'point': {point['label']!r}}}" in res.stdout
    assert {r["label"] for r in spec.reference} <= {p["label"] for p in spec.points}  # every paper row has a trial
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_the_points_are_the_papers_settings():
    gan, content, study = load_sweep("salgan_gan"), load_sweep("salgan_content"), load_sweep("loss_study")
    bce = trial_config(gan, {"point": "BCE/4"})
    assert not bce.train.adversarial and bce.train.loss == {"bce_pool4": 1.0} and bce.train.epochs == 120
    assert trial_config(gan, {"point": "GAN/4 α=0.05"}).train.alpha == 0.05
    mse = trial_config(content, {"point": "MSE"})
    assert mse.train.loss == {"mse": 1.0} and mse.train.epochs == mse.train.bootstrap_epochs == 15
    lc2r = trial_config(study, {"point": "LC2 + R"})
    assert lc2r.train.loss == {**LC2, "center_bias": 0.1} and lc2r.model.arch == "aspp"
    assert trial_config(study, {"point": "LC1 (KLD + CC + NSS)"}).train.loss == LC1
    assert (lc2r.train.optimizer, lc2r.train.lr, lc2r.data.batch_size) == ("sgd", 1e-3, 60)


def test_every_loss_of_the_study_trains(tmp_path):
    """Each of the 28 loss specs (ASPPNet at debug size) takes two optimiser steps and logs every term."""
    shards = synthetic_shards(tmp_path, {"train": 4, "val": 2}, (64, 96), 0.05)
    spec = load_sweep("loss_study")
    for point in spec.points:
        cfg = trial_config(spec, {"point": point["label"]}, {
            "model.width": 0.0625, "model.weights": "random", "data.input_size": [64, 96], "data.batch_size": 2,
            "data.workers": 0,
            "data.shards": str(shards), "train.epochs": 1, "train.bf16": False, "data.val_subset": 2})
        run = tmp_path / "runs" / str(spec.points.index(point))
        result = Trainer(cfg, run_dir=run).fit()
        assert result["status"] == "done" and result["step"] == 2, point["label"]
        line = json.loads((run / "metrics.jsonl").read_text())
        assert {f"content/{k}" for k in cfg.train.loss} <= set(line["train"]), point["label"]


# salgan_gan at tiny scale, with its paper rows: the demo (tests/test_demo.py), the README's main command. One point
# each (a sweep of several points and their comparison: the demo)
@pytest.mark.parametrize("name, points", [("salgan_content", "BCE/4"), ("loss_study", "LC2 + R")])
def test_tiny_sweep_on_the_local_backend_prints_the_paper_rows(name, points, tmp_path):
    res = launch("--sweep", name, "--backend", "local", "--tiny", "--points", points, "--out", str(tmp_path / "runs"),
                 "--cpus-per-task", "1", "--gpus-per-node", "0", "--max-concurrent", "1",
                 "train.epochs=1", cwd=tmp_path)  # the mechanism, not learning: one epoch
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (folder,) = (tmp_path / "runs" / "sweeps").glob(f"{name}-*")
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert [t["params"]["point"] for t in evaluation["trials"]] == points.split(",")
    assert all(t["status"] == "done" and t["means"] for t in evaluation["trials"])
    text = (folder / "summary.md").read_text()
    for ref in load_sweep(name).reference:  # synthetic data: the paper's rows are listed, with no Δ against them
        assert f"| paper: {ref['label']} ({ref['source']}, {ref['dataset']}) |" in text, ref["label"]
    assert "| centre bias | – | baseline |" in text and "no Δ is computed" in text
