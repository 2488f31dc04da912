"""salnet.sweeps.stats on values whose answers are known: paired bootstrap intervals, Holm's adjustment, the marks,
trials grouped into points by their params without train.seed, the control's resolution and the sweep file's check."""

import math
from pathlib import Path

import numpy as np
import pytest

from salnet.sweeps import stats
from salnet.sweeps.load import SweepError, load_sweep

HIGHER = {"cc": True, "kld": False}


def values(xs, start=0):
    return {f"img{i + start:03d}": float(x) for i, x in enumerate(xs)}


def test_identical_predictions_give_zero_and_a_zero_interval():
    v = values(np.random.default_rng(1).uniform(0, 1, 50))
    d = stats.paired_difference(v, dict(v))
    assert (d["delta"], d["low"], d["high"], d["p"]) == (0.0, 0.0, 0.0, 1.0)
    assert (d["pairs"], d["dropped"]) == (50, 0)
    assert stats.mark(d["delta"], d["p"], True) == "not resolved"


def test_a_constant_shift_gives_the_constant_and_an_interval_without_zero():
    base = np.random.default_rng(2).uniform(0, 1, 40)
    exact = stats.paired_difference(values(np.full(40, 0.75)), values(np.full(40, 0.5)))  # every difference 0.25
    assert (exact["delta"], exact["low"], exact["high"]) == (0.25, 0.25, 0.25)
    assert exact["p"] == pytest.approx(2 / (stats.N_BOOT + 1))  # no resample reaches 0
    shifted = stats.paired_difference(values(base + 0.02), values(base))  # 0.02 up to rounding
    assert shifted["delta"] == pytest.approx(0.02, abs=1e-12)
    assert shifted["low"] == pytest.approx(0.02, abs=1e-12) and shifted["high"] == pytest.approx(0.02, abs=1e-12)
    assert stats.mark(shifted["delta"], shifted["p"], True) == "better"
    assert stats.mark(shifted["delta"], shifted["p"], False) == "worse"  # a lower-is-better metric went up


@pytest.mark.parametrize("seed", [0, 7])
def test_interval_width_matches_normal_theory(seed):
    """2,000 differences drawn N(0.01, 0.1²): the 95 % bootstrap interval's width is 2·1.96·σ/√n within 5 % (σ the
    true 0.1; the sample sd of 2,000 draws is within ~3 % of it, the 4,000 resamples' quantiles within ~2 %), and
    within 3 % of the width with the sample's own sd. The interval is centred on the sample mean."""
    rng = np.random.default_rng(100 + seed)
    diff = rng.normal(0.01, 0.1, 2000)
    control = rng.uniform(0, 1, 2000)
    d = stats.paired_difference(values(control + diff), values(control), seed=seed)
    width = d["high"] - d["low"]
    assert width == pytest.approx(2 * 1.959964 * 0.1 / math.sqrt(2000), rel=0.05)
    assert width == pytest.approx(2 * 1.959964 * diff.std(ddof=1) / math.sqrt(2000), rel=0.03)
    assert d["delta"] == pytest.approx(diff.mean(), abs=1e-12)
    assert (d["low"] + d["high"]) / 2 == pytest.approx(diff.mean(), abs=0.1 * width)


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(3)
    a, b = values(rng.normal(0.5, 0.2, 60)), values(rng.normal(0.5, 0.2, 60))
    first, again = stats.paired_difference(a, b, seed=5), stats.paired_difference(a, b, seed=5)
    assert first == again
    other = stats.paired_difference(a, b, seed=6)
    assert other["delta"] == first["delta"] and (other["low"], other["high"]) != (first["low"], first["high"])


def test_undefined_values_are_dropped_pairwise_and_counted():
    point = values([0.5, math.nan, 0.7, 0.9, 0.2, 0.4])
    control = values([0.1, 0.2, math.nan, 0.3, 0.1, 0.2])
    control["img999"] = 0.5  # an image the point was not scored on
    d = stats.paired_difference(point, control)
    assert (d["pairs"], d["dropped"]) == (4, 3)
    assert d["delta"] == pytest.approx(np.mean([0.4, 0.6, 0.1, 0.2]), abs=1e-15)
    one = stats.paired_difference(values([0.5, math.nan]), values([0.3, 0.2]))  # one pair: nothing to resample
    assert one == {"pairs": 1, "dropped": 1, "delta": pytest.approx(0.2), "low": None, "high": None, "p": None}
    nothing = stats.paired_difference(values([math.nan]), values([0.3]))
    assert nothing == {"pairs": 0, "dropped": 1, "delta": None, "low": None, "high": None, "p": None}


def test_holm_adjustment_and_marks():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.02, None, 0.5]) == [0.04, None, 0.5]
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]  # capped, and monotone in the raw order
    assert stats.mark(-0.1, 0.01, False) == "better" and stats.mark(0.1, 0.049, True) == "better"
    assert stats.mark(0.1, 0.05, True) == "not resolved" and stats.mark(None, None, True) == "not resolved"


def test_trials_group_into_points_by_params_without_the_seed():
    rows = [{"trial": "t0", "params": {"point": "A", "train.seed": 0}, "means": {"cc": 0.5}},
            {"trial": "t1", "params": {"point": "B", "train.seed": 0}, "means": {"cc": 0.4}},
            {"trial": "t2", "params": {"point": "A", "train.seed": 1}, "means": {"cc": 0.7}},
            {"trial": "t3", "params": {"point": "B", "train.seed": 1}, "means": None},
            {"trial": "t4", "params": {"point": "C"}, "means": None}]
    groups = stats.group_points(rows)
    assert [(g["point"], g["trials"], g["scored"], g["seeds"]) for g in groups] == [
        ("A", ["t0", "t2"], ["t0", "t2"], [0, 1]), ("B", ["t1", "t3"], ["t1"], [0]), ("C", ["t4"], [], [])]
    assert groups[0]["params"] == {"point": "A"}
    searched = stats.group_points([  # named by what differs: train.lr, the same everywhere, is left out
        {"trial": "t0", "params": {"train.alpha": 0.0123456, "train.lr": 0.1, "train.seed": 3}},
        {"trial": "t1", "params": {"train.alpha": 0.0123457, "train.lr": 0.1}},
        {"trial": "t2", "params": {"train.alpha": 0.0123456, "train.lr": 0.1, "train.seed": 4}}])
    assert [(g["point"], g["trials"]) for g in searched] == [("train.alpha=0.01235", ["t0", "t2"]),
                                                             ("train.alpha=0.01235 (t1)", ["t1"])]
    # a random search's fixed trial (alpha: the paper's α = 0.05, run first) is named as its sweep file's control
    sampled = stats.group_points([{"trial": f"t{i}", "params": {"train.alpha": a, "train.seed": s}}
                                  for i, (a, s) in enumerate([(0.05, 0), (0.05, 1), (0.0123, 0), (0.0123, 1)])])
    assert [g["point"] for g in sampled] == [stats.point_label({"train.alpha": 0.05}), "train.alpha=0.0123"]
    assert sampled[0]["point"] == "train.alpha=0.05" and sampled[0]["trials"] == ["t0", "t1"]
    assert stats.seed_summary([{"cc": 0.5}, {"cc": 0.7}], "cc") == pytest.approx((0.6, math.sqrt(0.02)))
    assert stats.seed_summary([{"cc": 0.5}], "cc") == (0.5, None) and stats.seed_summary([{}], "cc") == (None, None)


def point(label, seeds, per_seed):
    """A point with one list of per-image rows per seed ({"id", "cc", "kld"})."""
    rows = [[{"id": f"i{j}", "cc": cc, "kld": kld} for j, (cc, kld) in enumerate(s)] for s in per_seed]
    means = [{m: float(np.nanmean([r[m] for r in rs])) for m in ("cc", "kld")} for rs in rows]
    return {"point": label, "seeds": seeds, "means": means, "per_image": rows}


def test_points_against_the_control_average_each_image_over_seeds():
    """Control: cc 0.5 on every image, both seeds. Point P: cc 0.6 with seed 0 and 0.8 with seed 1 on every image
    (per image 0.7: Δ = +0.2 exactly; seed spread of the per-seed Δ 0.1 and 0.3: sd √0.02), kld lowered by 0.1
    (better). Point Q: identical to the control (Δ 0, not resolved)."""
    n = 30
    ctrl = point("C", [0, 1], [[(0.5, 1.0 + 0.01 * j) for j in range(n)]] * 2)
    p = point("P", [0, 1], [[(0.6, 0.9 + 0.01 * j) for j in range(n)], [(0.8, 0.9 + 0.01 * j) for j in range(n)]])
    q = point("Q", [0, 1], [[(r["cc"], r["kld"]) for r in rows] for rows in ctrl["per_image"]])
    found = stats.compare_points([ctrl, p, q], "C", ["cc", "kld"], HIGHER)
    assert set(found) == {"P", "Q"}
    cc = found["P"]["cc"]
    assert cc["delta"] == pytest.approx(0.2) and cc["low"] == pytest.approx(0.2) and cc["pairs"] == n
    assert cc["seed_sd"] == pytest.approx(math.sqrt(0.02)) and cc["mark"] == "better"
    assert found["P"]["kld"]["delta"] == pytest.approx(-0.1) and found["P"]["kld"]["mark"] == "better"
    # Holm over the two points: P's p (2 / (N_BOOT + 1)) doubled, Q's p = 1
    assert cc["p_holm"] == pytest.approx(4 / (stats.N_BOOT + 1)) and found["Q"]["cc"]["p_holm"] == 1.0
    assert (found["Q"]["cc"]["delta"], found["Q"]["cc"]["mark"], found["Q"]["cc"]["seed_sd"]) == (0.0, "not resolved",
                                                                                                0.0)
    one_seed = point("R", [None], [[(0.6, 1.0)] * n])
    assert stats.compare_points([ctrl, one_seed], "C", ["cc"], HIGHER)["R"]["cc"]["seed_sd"] is None


def test_the_control_is_the_named_point_or_the_best():
    pts = [point("A", [None], [[(0.5, 1.0)]]), point("B", [None], [[(0.7, 1.2)]]), point("U", [], [])]
    assert stats.resolve_control(pts, "A", "cc", "max") == ("A", "the sweep file's control")
    label, how = stats.resolve_control(pts, None, "cc", "max")
    assert label == "B" and how.startswith("the sweep file names no control; the best point by cc (max)")
    assert stats.resolve_control(pts, "best", "kld", "min")[0] == "A"
    label, how = stats.resolve_control(pts, "U", "cc", "max")  # named but never scored
    assert label == "B" and how.startswith("the sweep file's control 'U' has no scored trial; the best point")
    assert stats.resolve_control([pts[2]], None, "cc", "max") == (None, "the sweep file names no control; no point "
                                                                       "was scored")


def test_a_sweep_file_names_a_point_or_best_as_its_control(tmp_path):
    assert load_sweep("salgan_gan").control == "BCE/4" and load_sweep("loss_study").control == "MSE"
    assert load_sweep("alpha").control == "train.alpha=0.05" and load_sweep("lc1").control is None
    text = Path(load_sweep("salgan_gan").path).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("control: BCE/4", "control: BCE/5"))
    line = bad.read_text().splitlines().index(next(x for x in bad.read_text().splitlines() if x.startswith("control")))
    with pytest.raises(SweepError, match=rf"bad.yaml:{line + 1}: control 'BCE/5': name a point's label \(BCE/4, "):
        load_sweep(bad)
    searched = tmp_path / "searched.yaml"
    alpha = Path(load_sweep("alpha").path).read_text()
    searched.write_text(alpha.replace('control: "train.alpha=0.05"', "control: GAN/4"))
    with pytest.raises(SweepError, match=r"control 'GAN/4': name a point's label \(train.alpha=0.05\) or best"):
        load_sweep(searched)
    plain = tmp_path / "plain.yaml"  # a random search without fixed trials: best only
    plain.write_text(alpha.replace('control: "train.alpha=0.05"', "control: GAN/4").replace("fixed:", "")
                     .replace("  - {train.alpha: 0.05}\n", ""))
    with pytest.raises(SweepError, match="without points or fixed trials, only best"):
        load_sweep(plain)
