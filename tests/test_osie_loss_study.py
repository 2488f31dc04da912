"""jobs/osie_loss_study.py end to end at smoke size: synthetic shards, the real VGG-16 file of ../shared/weights at
96×64, two points, one seed, one epoch each."""

from __future__ import annotations

import json

import pytest
from helpers import shared_path, synthetic_shards
from PIL import Image

HED_SHA256 = "ce8d8159e7c93cd228cc32819676d6e5c46df8c970063b7ca06e2fa8c92087e7"  # ../shared/weights/README.md


def test_smoke_run_trains_each_point_from_the_cache_and_compares_it_with_mse(tmp_path):
    import importlib.util
    from pathlib import Path

    weights = shared_path("weights", "vgg16_features_hed_bsds500_fp16.pth")
    shards = synthetic_shards(tmp_path, {"train": 8, "val": 4}, (64, 96), 0.5)
    spec = importlib.util.spec_from_file_location("study_job", Path(__file__).parents[1] / "jobs" /
                                                  "osie_loss_study.py")
    assert spec and spec.loader
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    out = tmp_path / "study"
    argv = ["--out", str(out), "--shards", str(shards), "--weights", str(weights), "--points", "KLD", "--seeds", "1",
            "--epochs", "1", "--readout-epochs", "1", "--input-size", "96x64", "--device", "cpu",
            "data.batch_size=4", "data.workers=0"]
    assert job.main(argv) == 0
    cache = json.loads((shards.parent / "shards-vgg16-96x64" / "manifest.json").read_text())
    assert cache["weights_sha256"] == HED_SHA256 and cache["input_size"] == [64, 96] and cache["dtype"] == "float16"
    summary = json.loads((out / "sweep" / "evaluation.json").read_text())
    points = {t["params"]["point"]: t for t in summary["trials"]}
    assert set(points) == {"MSE", "KLD"} and all(t["images"] == 4 for t in points.values())
    for name in ("p00-s0", "p01-s0"):  # each trial read the cache: 2 steps of batch 4, one epoch
        line = json.loads((out / "sweep" / "trials" / name / "metrics.jsonl").read_text())
        assert line["step"] == 2
    assert summary["control"]["point"] == "MSE"
    kld = next(p for p in summary["points"] if p["point"] == "KLD")
    cc = kld["comparison"]["cc"]
    assert cc["low"] <= cc["delta"] <= cc["high"] and cc["pairs"] == 4
    assert {b["name"] for b in summary["baselines"]} >= {"centre bias", "readout"}
    assert pytest.approx(points["KLD"]["means"]["cc"] - points["MSE"]["means"]["cc"], abs=1e-9) == cc["delta"]
    with Image.open(out / "sweep" / "cc_by_epoch.png") as im:  # each point's curve, the baselines as lines
        assert im.format == "PNG" and im.width >= 600
    page = (out / "sweep" / "orderings.md").read_text()  # Table 2's CC: MSE 0.639 above KLD 0.633
    assert "Paper: MSE > KLD" in page and "| MSE vs KLD | 0.639 vs 0.633 |" in page
