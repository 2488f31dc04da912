"""The README's main command (jobs/demo.py) on generated data: values equal a direct computation."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from salnet import metrics as M
from salnet.models.baselines import center_bias
from salnet.sweeps.load import load_sweep

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


def test_demo_trains_models_that_beat_the_centre_bias(tmp_path):
    """The README's main command as it is: synthetic shards → the BCE/4 bootstrap (one local run) → the salgan_gan
    sweep from it (BCE/4 alone and the adversarial stage at three α; Ray Tune, local processes) → the final
    evaluation on the test split. Every trial beats the centre bias, printed as a row of the same table, on CC,
    NSS and AUC-Judd; summary.md lists SalGAN's rows (tests/test_paper_sweeps.py leaves its tiny salgan_gan sweep
    to this test)."""
    import csv
    import subprocess

    out = subprocess.run([sys.executable, str(DEMO), "--data", "synthetic", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "He-initialised decoder" in out.stdout  # the demo says how its setup differs from the presets
    (boot,) = (tmp_path / "runs").glob("salgan-*")
    assert [json.loads(x)["stage"] for x in (boot / "metrics.jsonl").read_text().splitlines()] == ["bootstrap"] * 6
    (sweep,) = (tmp_path / "sweeps").glob("salgan_gan-*")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["point"] for r in rows] == ["BCE/4", "GAN/4 α=0.005", "GAN/4 α=0.05", "GAN/4 α=0.5"]
    assert all(r["status"] == "done" and r["epochs"] == "3" for r in rows)
    evaluation = json.loads((sweep / "evaluation.json").read_text())
    (centre,) = evaluation["baselines"]
    assert evaluation["split"] == "test" and centre["name"] == "centre bias" and centre["images"] == 40
    for t in evaluation["trials"]:
        assert t["images"] == 40
        for m in ("cc", "nss", "auc_judd"):
            assert t["means"][m] > centre["means"][m], (t["params"], m, t["means"][m], centre["means"][m])
        first = json.loads((sweep / "trials" / t["trial"] / "metrics.jsonl").read_text().splitlines()[0])
        assert first["stage"] == ("bootstrap" if t["params"]["point"] == "BCE/4" else "adversarial")
        assert list((sweep / "tb" / t["trial"]).glob("events.out.tfevents.*"))  # TensorBoard: curves, hparams
    table = [ln for ln in out.stdout.splitlines() if ln.startswith("| centre bias | – | baseline |")]
    assert len(table) == 1 and f"tensorboard --logdir {sweep / 'tb'}" in out.stdout
    text = (sweep / "summary.md").read_text()  # SalGAN's rows listed, with no Δ against them (synthetic data)
    for ref in load_sweep("salgan_gan").reference:
        assert f"| paper: {ref['label']} ({ref['source']}, {ref['dataset']}) |" in text, ref["label"]
    assert "| centre bias | – | baseline |" in text and "no Δ is computed" in text
    # each GAN point against BCE/4: CC, NSS, AUC-J with their intervals, over the 40 test images (one seed)
    assert evaluation["control"]["point"] == "BCE/4" and "one seed per point: each interval is over the 40 test " \
        "images only" in out.stdout
    compared = [ln for ln in out.stdout.splitlines() if ln.startswith("| GAN/4") and ln.count("[") == 3]
    assert [ln.split("|")[1].strip() for ln in compared] == ["GAN/4 α=0.005", "GAN/4 α=0.05", "GAN/4 α=0.5"]
    points = {p["point"]: p for p in evaluation["points"]}
    for ln in compared:
        c = points[ln.split("|")[1].strip()]["comparison"]
        assert [x.strip() for x in ln.strip("|").split("|")[2:]] == [
            f"{c[m]['delta']:+.3f} [{c[m]['low']:+.3f}, {c[m]['high']:+.3f}] {c[m]['mark']}"
            for m in ("cc", "nss", "auc_judd")]


def test_demo_comparison_note_says_what_its_intervals_cover():
    from salnet.run.demo import comparison_note

    c = {"delta": -0.1, "low": -0.15, "high": -0.05, "mark": "worse", "seed_sd": None}
    gan = {"point": "GAN/4 α=0.05", "scored": ["t1"], "seeds": [None], "comparison": dict.fromkeys(["cc", "nss",
                                                                                                   "auc_judd"], c)}
    result = {"control": {"point": "BCE/4", "how": "the sweep file's control"},
              "trials": [{"images": 40}, {"images": 40}],
              "points": [{"point": "BCE/4", "scored": ["t0"], "seeds": [None], "comparison": None}, gan]}
    lines = comparison_note(result).splitlines()
    assert lines[0].startswith("Against the control BCE/4 (Δ = point − control; 95 % paired bootstrap interval")
    assert "one seed per point: each interval is over the 40 test images only" in lines[0]
    assert lines[2:] == ["| point | seeds | ΔCC ↑ | ΔNSS ↑ | ΔAUC-J ↑ |", "|---|---:|---:|---:|---:|",
                         "| GAN/4 α=0.05 | 1 | " + " | ".join(["-0.100 [-0.150, -0.050] worse"] * 3) + " |"]
    assert comparison_note({"control": {"point": None, "how": "no point was scored"}}) == \
        "no comparison with a control (no point was scored)"
