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
    monkeypatch.setattr(sys, "argv", ["demo.py", "--data", "synthetic", "--n", "6", "--out", str(tmp_path)])
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
