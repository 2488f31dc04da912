"""``python -m salnet.metrics score``: file formats, outputs and bad input."""

import csv
import json

import numpy as np
import pytest
import scipy.io
import torch
from helpers import shared_path
from PIL import Image

from salnet import metrics as M
from salnet.metrics.__main__ import main
from salnet.models.baselines import center_bias


def make_folders(tmp_path, n=4, H=48, W=64):
    rng = np.random.default_rng(0)
    pred, fix, maps = (tmp_path / d for d in ("pred", "fix", "maps"))
    for d in (pred, fix, maps):
        d.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    truth = {}
    for i in range(n):
        cy, cx = rng.uniform(10, H - 10), rng.uniform(10, W - 10)
        gt = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
        pts = np.stack([rng.integers(0, H, 20), rng.integers(0, W, 20)], 1)
        Image.fromarray((gt * 255).round().astype(np.uint8)).save(maps / f"im{i}.png")
        np.save(fix / f"im{i}.npy", pts.astype(np.int64))
        p = np.roll(gt, 3, axis=1)[::2, ::2]  # half-size prediction: resized by the scorer
        np.save(pred / f"im{i}.npy", p)
        truth[f"im{i}"] = (p, gt, pts)
    return pred, fix, maps, truth


def test_scores_folder_and_writes_per_image_values(tmp_path, capsys):
    pred, fix, maps, truth = make_folders(tmp_path)
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    assert main(["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps),
                 "--json", str(out_json), "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "4 images scored" in text and "auc_judd" in text
    data = json.loads(out_json.read_text())
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["image"] for r in rows] == sorted(truth)
    # the per-image values equal a direct call on the same arrays (PNG map quantised to 8 bits)
    p, gt, pts = truth["im2"]
    gt8 = np.asarray(Image.open(maps / "im2.png"), np.float64) / 255
    counts = np.zeros(gt.shape)
    np.add.at(counts, (pts[:, 0], pts[:, 1]), 1)
    direct = M.score_batch(torch.from_numpy(p[None]), fixations=torch.from_numpy(counts[None]),
                           gt_map=torch.from_numpy(gt8[None]), metrics=["nss", "cc", "kld", "emd"])
    for m, v in direct.items():
        assert data["per_image"]["im2"][m] == pytest.approx(v.item(), abs=1e-12)
        assert float(rows[2][m]) == pytest.approx(v.item(), abs=1e-12)
    s = data["summary"]["cc"]
    vals = [data["per_image"][k]["cc"] for k in sorted(truth)]
    assert s["n"] == 4 and s["undefined"] == 0 and s["mean"] == pytest.approx(np.mean(vals), abs=1e-12)


def test_undefined_values_are_counted_not_averaged(tmp_path, capsys):
    pred, fix, maps, _ = make_folders(tmp_path)
    np.save(pred / "im1.npy", np.full((24, 32), 0.3))  # constant prediction: CC, NSS undefined
    out_json = tmp_path / "s.json"
    assert main(["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps),
                 "--metrics", "cc", "nss", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert data["per_image"]["im1"]["cc"] is None
    assert data["summary"]["cc"]["n"] == 3 and data["summary"]["cc"]["undefined"] == 1
    defined = [data["per_image"][k]["cc"] for k in ("im0", "im2", "im3")]
    assert data["summary"]["cc"]["mean"] == pytest.approx(np.mean(defined))
    assert "nan" not in capsys.readouterr().out.lower()


def test_mit_benchmark_demo_out_of_the_box(tmp_path, capsys):
    demo = shared_path("data", "mit-benchmark-demo")
    gt = np.asarray(Image.open(demo / "FIXATIONMAPS" / "i210.jpg").convert("L"))
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "pred" / "i210.npy", center_bias(gt.shape))
    out_json = tmp_path / "s.json"
    assert main(["score", "--pred", str(tmp_path / "pred"), "--fixations", str(demo / "FIXATIONLOCS"),
                 "--maps", str(demo / "FIXATIONMAPS"), "--json", str(out_json)]) == 0
    v = json.loads(out_json.read_text())["per_image"]["i210"]
    fix = scipy.io.loadmat(demo / "FIXATIONLOCS" / "i210.mat")["fixations"].astype(np.float64)
    cb = torch.from_numpy(center_bias(gt.shape)[None])
    assert v["nss"] == pytest.approx(M.nss(cb, torch.from_numpy(fix[None])).item(), abs=1e-12)
    assert v["ig"] == pytest.approx(0.0, abs=1e-12)  # the centre bias against the centre-bias baseline
    assert v["sauc"] is None  # one image: no other images to shuffle from
    assert 0.75 < v["auc_judd"] < 0.9 and 0.2 < v["cc"] < 0.6


@pytest.mark.parametrize("case,needle", [
    ("garbage_png", "unreadable image"),
    ("lonely_pred", "without a partner"),
    ("nan_pred", "NaN/inf"),
    ("one_d_pred", "2-D array"),
    ("empty_pred", "2-D array"),
    ("mat_without_var", "no variable 'fixations'"),
    ("point_outside", "outside the"),
    ("missing_dir", "does not exist"),
])
def test_bad_input_names_the_file(tmp_path, capsys, case, needle):
    pred, fix, maps, _ = make_folders(tmp_path)
    culprit = {"garbage_png": pred / "im0.npy", "nan_pred": pred / "im1.npy", "one_d_pred": pred / "im2.npy",
               "empty_pred": pred / "im2.npy", "mat_without_var": fix / "im3.mat",
               "point_outside": fix / "im1.npy", "lonely_pred": pred / "extra.npy", "missing_dir": None}[case]
    if case == "garbage_png":
        culprit.unlink()
        culprit = pred / "im0.png"
        culprit.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "lonely_pred":
        np.save(culprit, np.ones((4, 4)))
    elif case == "nan_pred":
        a = np.load(culprit)
        a[0, 0] = np.nan
        np.save(culprit, a)
    elif case == "one_d_pred":
        np.save(culprit, np.ones(10))
    elif case == "empty_pred":
        np.save(culprit, np.ones((0, 5)))
    elif case == "mat_without_var":
        (fix / "im3.npy").unlink()
        scipy.io.savemat(culprit, {"fixLocs": np.ones((3, 3))})
    elif case == "point_outside":
        np.save(culprit, np.array([[0, 0], [48, 3]], np.int64))
    args = ["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps)]
    if case == "missing_dir":
        args[2] = str(tmp_path / "nope")
        culprit = tmp_path / "nope"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert (culprit.stem if case == "lonely_pred" else str(culprit)) in err
