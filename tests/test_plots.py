"""summary.png and predictions.png of a sweep's final evaluation: every scored trial at its searched value and
metric, the paper's numbers as lines, categories for labelled points, the panel's pixels exactly."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from salnet.sweeps.plots import sweep_figure, write_sweep_plots

METRICS = ["auc_judd", "cc", "kld"]


def row(trial, params, means, **extra):
    return {"trial": trial, "params": params, "status": "done" if means else "failed", "means": means, **extra}


def scatter_points(ax):
    return [tuple(p) for c in ax.collections for p in np.asarray(c.get_offsets())]


def hlines(ax):
    return sorted(float(line.get_ydata()[0]) for line in ax.get_lines())


def test_numeric_sweep_trials_and_reference_lines(tmp_path):
    rows = [row("t0", {"train.alpha": 0.005}, {"auc_judd": 0.80, "cc": 0.60, "kld": 1.1}),
            row("t1", {"train.alpha": 0.05}, {"auc_judd": 0.84, "cc": 0.70, "kld": 0.9}),
            row("t2", {"train.alpha": 0.5}, {"auc_judd": 0.82, "cc": 0.65}),  # kld undefined
            row("t3", {"train.alpha": 0.2}, None)]  # failed: not drawn
    refs = [{"label": "GAN/4 α=0.05", "source": "SalGAN Table 3", "cc": 0.786, "auc_judd": 0.86}]
    fig = sweep_figure(rows, METRICS, refs, best="t1", title="Sweep alpha: val split")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["AUC-J ↑", "CC ↑", "KLD ↓"]
    by_title = {ax.get_title(): ax for ax in axes}
    assert sorted(scatter_points(by_title["CC ↑"])) == [(0.005, 0.60), (0.05, 0.70), (0.5, 0.65)]
    assert sorted(scatter_points(by_title["KLD ↓"])) == [(0.005, 1.1), (0.05, 0.9)]
    assert hlines(by_title["CC ↑"]) == [0.786] and hlines(by_title["AUC-J ↑"]) == [0.86]
    assert hlines(by_title["KLD ↓"]) == []  # the paper row has no KLD
    assert all(ax.get_xscale() == "log" for ax in axes)  # 0.005 … 0.5 spans a factor 100
    colours = by_title["CC ↑"].collections[0].get_facecolors()
    assert [tuple(np.round(c[:3], 3)) for c in colours].count((0.839, 0.153, 0.157)) == 1  # one red: the best
    texts = [t.get_text() for t in by_title["CC ↑"].texts]
    assert "GAN/4 α=0.05 (SalGAN Table 3): 0.786" in texts and {"t0", "t1", "t2"} <= set(texts)


def test_points_sweep_is_categorical_with_labels_and_baselines():
    rows = [row("p0", {"point": "BCE/4"}, {"cc": 0.70}), row("p1", {"point": "GAN/4 α=0.05"}, {"cc": 0.75}),
            row("p2", {"point": "MSE", "train.lr": 1e-3}, {"cc": 0.6}, label="MSE")]
    fig = sweep_figure(rows, ["cc"], [], best="p1", baselines=[{"name": "centre bias", "means": {"cc": 0.4}}])
    ax_point, ax_lr = [ax for ax in fig.axes if ax.get_visible()]
    assert [t.get_text() for t in ax_point.get_xticklabels()] == ["BCE/4", "GAN/4 α=0.05", "MSE"]
    assert sorted(scatter_points(ax_point)) == [(0, 0.70), (1, 0.75), (2, 0.6)]
    assert hlines(ax_point) == [0.4] and "centre bias: 0.4" in [t.get_text() for t in ax_point.texts]
    # a parameter only one trial has: the others sit in its "None" category
    assert [t.get_text() for t in ax_lr.get_xticklabels()] == ["null", "0.001"]


def test_files_written_beside_the_summary(tmp_path):
    panel = torch.rand(3, 20, 30)
    result = {"sweep": "s", "split": "test", "metrics": ["cc"], "best": {"trial": "a", "value": 0.5},
              "trials": [row("a", {"train.alpha": 0.1}, {"cc": 0.5})],
              "reference": [{"label": "paper", "source": "T", "cc": 0.6}]}
    written = write_sweep_plots(tmp_path, result, panel)
    assert written == [tmp_path / "summary.png", tmp_path / "predictions.png"]
    with Image.open(tmp_path / "summary.png") as im:
        assert im.format == "PNG" and im.width >= 400 and im.height >= 250
    with Image.open(tmp_path / "predictions.png") as im:
        # panel_png scales in float64: a float32 product could round the other way at .5
        expected = np.rint(panel.permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(im), expected)
    assert not list(tmp_path.glob("*.tmp"))


def test_no_scored_trial_still_writes_a_figure(tmp_path):
    result = {"sweep": "s", "split": "val", "metrics": ["cc"], "best": None, "trials": [row("a", {}, None)]}
    assert write_sweep_plots(tmp_path, result) == [tmp_path / "summary.png"]
    png = (tmp_path / "summary.png").read_bytes()
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (600, 200)


@pytest.mark.parametrize("values, log", [([0.1, 0.2, 0.3], False), ([-1.0, 1.0, 10.0], False),
                                         ([1e-4, 1e-2], True)])
def test_log_axis_only_for_positive_wide_ranges(values, log):
    rows = [row(f"t{i}", {"x": v}, {"cc": 0.1 * i}) for i, v in enumerate(values)]
    fig = sweep_figure(rows, ["cc"])
    assert (fig.axes[0].get_xscale() == "log") == log


def test_only_the_parameters_that_differ_get_an_axis():
    rows = [row("a", {"train.lr": 1e-3, "train.optimizer": "adam"}, {"cc": 0.1}),
            row("b", {"train.lr": 3e-3, "train.optimizer": "adam"}, {"cc": 0.2})]
    fig = sweep_figure(rows, ["cc"])
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_visible()] == ["train.lr"]


def test_points_carry_the_interval_of_their_difference_to_the_control():
    """Two seeds per point: train.seed gets no axis. The control's mean (0.60) is a solid line; GAN (mean 0.70,
    Δ +0.10 in [+0.04, +0.13]) has an error bar from 0.64 to 0.73 at its category."""
    rows = [row("t0", {"point": "BCE/4", "train.seed": 0}, {"cc": 0.59}),
            row("t1", {"point": "GAN", "train.seed": 0}, {"cc": 0.69}),
            row("t2", {"point": "BCE/4", "train.seed": 1}, {"cc": 0.61}),
            row("t3", {"point": "GAN", "train.seed": 1}, {"cc": 0.71})]
    points = [{"point": "BCE/4", "scored": ["t0", "t2"], "mean": {"cc": 0.60}, "comparison": None},
              {"point": "GAN", "scored": ["t1", "t3"], "mean": {"cc": 0.70},
               "comparison": {"cc": {"delta": 0.10, "low": 0.04, "high": 0.13}}}]
    fig = sweep_figure(rows, ["cc"], points=points, control="BCE/4")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert ax.get_xlabel() == "point" and [t.get_text() for t in ax.get_xticklabels()] == ["BCE/4", "GAN"]
    assert hlines(ax) == pytest.approx([0.60, 0.64, 0.73])  # the control's line, then the bar's two caps
    assert "control BCE/4: 0.6" in [t.get_text() for t in ax.texts]
    (bar,) = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    (segment,) = bar.get_segments()
    np.testing.assert_allclose(segment, [[1, 0.64], [1, 0.73]], atol=1e-12)
    assert "bars: 95 % interval of Δ to BCE/4" in fig._suptitle.get_text()
