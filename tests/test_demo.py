"""The README's main command (jobs/demo.py) on generated data: values equal a direct computation."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from salnet import metrics as M
from salnet.baselines import center_bias

DEMO = Path(__file__).resolve().parents[1] / "jobs" / "demo.py"


def test_demo_scores_the_centre_bias_on_synthetic_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["demo.py", "--data", "synthetic", "--n", "6", "--out", str(tmp_path),
                                      "--baseline-only"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(DEMO), run_name="__main__")
    assert done.value.code == 0
    assert "centre-bias baseline on 6 synthetic images" in capsys.readouterr().out
    data = json.loads((tmp_path / "scores.json").read_text())
    gt = np.load(tmp_path / "synthetic" / "maps" / "synthetic_0003.npy")
    cc = M.cc(torch.from_numpy(center_bias(gt.shape)[None]), torch.from_numpy(gt[None])).item()
    assert data["per_image"]["synthetic_0003"]["cc"] == pytest.approx(cc, abs=1e-12)
    assert data["summary"]["ig"]["mean"] == pytest.approx(0.0, abs=1e-12)  # baseline vs itself
    assert data["summary"]["auc_judd"]["n"] == 6 and data["summary"]["auc_judd"]["undefined"] == 0


def test_demo_runs_the_whole_pipeline_locally(tmp_path):
    """synthetic shards → a 2-trial α sweep (Ray Tune, local processes) → final evaluation → TensorBoard and
    the tables: the trials are the ones Tune's seeded search gives, every trial is scored on the test split."""
    import csv
    import subprocess

    out = subprocess.run([sys.executable, str(DEMO), "--data", "synthetic", "--n", "4", "--out", str(tmp_path),
                          "--trials", "2", "--epochs", "2"], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from salnet.run.tuner import planned_trials
    from salnet.sweep import load_sweep, with_budget

    (sweep,) = (tmp_path / "sweeps").glob("alpha-*")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    planned = planned_trials(with_budget(load_sweep("alpha"), trials=2))
    assert [float(r["train.alpha"]) for r in rows] == [p["train.alpha"] for p in planned]
    assert all(r["status"] == "done" and r["epochs"] == "2" and r["cc"] for r in rows)
    evaluation = json.loads((sweep / "evaluation.json").read_text())
    assert evaluation["split"] == "test" and all(t["images"] == 8 for t in evaluation["trials"])
    for r in rows:  # TensorBoard: one run per trial (curves, hparams)
        assert list((sweep / "tb" / r["trial"]).glob("events.out.tfevents.*"))
    assert f"tensorboard --logdir {sweep / 'tb'}" in out.stdout and "| trial | train.alpha |" in out.stdout
