"""``python -m salnet.metrics score``: --only-matched scores the files with partners (the values equal scoring those
files alone) and says how many were left out; every undefined value says why; errors have one prefix."""

import json
import shutil

import numpy as np
from test_metrics_score import make_folders

from salnet.metrics.__main__ import main

FIX_METRICS = {"auc_judd", "auc_borji", "sauc", "nss", "ig"}


def test_only_matched_scores_the_pairs_and_counts_the_rest(tmp_path, capsys):
    pred, fix, maps, _ = make_folders(tmp_path, n=6)
    for stem in ("im4", "im5"):
        (pred / f"{stem}.npy").unlink()  # predictions for 4 of the 6 ground-truth images
    np.save(pred / "extra.npy", np.ones((24, 32)))  # and one without ground truth
    args = ["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: 1 --pred files without a partner in --fixations: extra; files are matched by stem (name "
                   "without extension); --only-matched scores the files that have partners"]
    assert main([*args, "--only-matched", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "4 images scored" in out
    assert "left out: 1 --pred file(s) without a partner (extra)" in out
    assert "left out: 2 --fixations file(s) without a partner (im4, im5)" in out
    assert "left out: 2 --maps file(s) without a partner (im4, im5)" in out
    # the same values as scoring exactly the matched files (sAUC's other images are the matched ones too)
    sub = tmp_path / "sub"
    for d, ext in ((pred, ".npy"), (fix, ".npy"), (maps, ".png")):
        (sub / d.name).mkdir(parents=True)
        for i in range(4):
            shutil.copy(d / f"im{i}{ext}", sub / d.name / f"im{i}{ext}")
    assert main(["score", "--pred", str(sub / "pred"), "--fixations", str(sub / "fix"), "--maps", str(sub / "maps"),
                 "--json", str(tmp_path / "s.json")]) == 0
    matched, alone = (json.loads((tmp_path / f).read_text()) for f in ("m.json", "s.json"))
    assert matched["per_image"] == alone["per_image"] and sorted(matched["per_image"]) == ["im0", "im1", "im2", "im3"]
    assert matched["left_out"] == {"--pred": ["extra"], "--fixations": ["im4", "im5"], "--maps": ["im4", "im5"]}


def test_only_matched_with_nothing_in_common_is_an_error(tmp_path, capsys):
    pred, fix, maps, _ = make_folders(tmp_path, n=2)
    for p in pred.iterdir():
        p.rename(pred / f"other-{p.name}")
    assert main(["score", "--pred", str(pred), "--maps", str(maps), "--only-matched"]) == 2
    assert capsys.readouterr().err.startswith("error: no file stem is in every folder (--pred, --maps)")


def test_undefined_values_say_why(tmp_path, capsys):
    pred, fix, maps, _ = make_folders(tmp_path, n=4)
    np.save(pred / "im1.npy", np.full((24, 32), 0.3))  # a constant prediction
    np.save(fix / "im2.npy", np.zeros((0, 2), np.int64))  # an image nobody looked at
    assert main(["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps),
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "s.json").read_text())
    why = data["why_undefined"]
    assert why["im1"] == dict.fromkeys(("auc_borji", "sauc", "nss", "cc", "sim", "ig"), "constant prediction")
    assert why["im2"] == dict.fromkeys(FIX_METRICS, "no fixations")
    assert sorted(why) == ["im1", "im2"]
    assert data["summary"]["nss"]["why_undefined"] == {"constant prediction": 1, "no fixations": 1}
    assert data["summary"]["cc"]["why_undefined"] == {"constant prediction": 1}
    line = next(ln for ln in out.splitlines() if ln.startswith("nss"))
    assert line.endswith("2  1 constant prediction, 1 no fixations")


def test_sauc_without_other_images_and_a_constant_ground_truth(tmp_path, capsys):
    pred, fix, maps, _ = make_folders(tmp_path, n=1)
    np.save(maps / "im0.npy", np.full((48, 64), 0.5))
    (maps / "im0.png").unlink()
    assert main(["score", "--pred", str(pred), "--fixations", str(fix), "--maps", str(maps),
                 "--json", str(tmp_path / "s.json")]) == 0
    why = json.loads((tmp_path / "s.json").read_text())["why_undefined"]["im0"]
    assert why == {"sauc": "no other images' fixations (sAUC)", "cc": "constant ground-truth map",
                   "sim": "constant ground-truth map"}


def test_errors_have_one_prefix(tmp_path, capsys):
    pred, fix, _, _ = make_folders(tmp_path, n=2)
    for argv in (["score", "--pred", str(pred)], ["score", "--pred", str(pred), "--fixations", str(fix),
                                                 "--metrics", "nosuch"], ["score", "--pred", str(tmp_path / "no")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
