"""summary.png and predictions.png of a sweep's final evaluation: every scored trial at its searched value and
metric, the paper's numbers as lines, categories for labelled points; predictions.png's titled columns holding the
given pixels; a run's curve by epoch read from metrics.jsonl."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from salnet.sweeps.plots import curves_figure, predictions_figure, sweep_figure, write_curves, write_sweep_plots

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


def shown(n_images=2, h=20, w=30):
    g = torch.Generator().manual_seed(0)
    return {"images": [torch.rand(3, h, w, generator=g) for _ in range(n_images)],
            "truth": [torch.rand(1, h, w, generator=g) for _ in range(n_images)],
            "columns": [("BCE/4 ★", [torch.rand(1, h, w, generator=g) for _ in range(n_images)]),
                        ("GAN/4 α=0.05", [torch.rand(1, h, w, generator=g) for _ in range(n_images)])]}


def test_files_written_beside_the_summary(tmp_path):
    result = {"sweep": "s", "split": "test", "metrics": ["cc"], "best": {"trial": "a", "value": 0.5},
              "trials": [row("a", {"train.alpha": 0.1}, {"cc": 0.5})],
              "reference": [{"label": "paper", "source": "T", "cc": 0.6}]}
    written = write_sweep_plots(tmp_path, result, shown())
    assert written == [tmp_path / "summary.png", tmp_path / "predictions.png"]
    with Image.open(tmp_path / "summary.png") as im:
        assert im.format == "PNG" and im.width >= 400 and im.height >= 250
    with Image.open(tmp_path / "predictions.png") as im:  # four titled columns of about 240 pixels each
        assert im.format == "PNG" and im.width >= 4 * 200 and im.height >= 2 * 120
    assert not list(tmp_path.glob("*.tmp"))


def test_predictions_figure_titles_each_column_and_shows_the_given_maps():
    import matplotlib.pyplot as plt

    s = shown()
    fig = predictions_figure(s["images"], s["truth"], s["columns"])
    axes = np.asarray(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["image", "BCE/4 ★", "GAN/4 α=0.05", "ground truth"]
    assert [ax.get_title() for ax in axes[1]] == ["", "", "", ""]
    for i in range(2):
        np.testing.assert_array_equal(axes[i, 0].images[0].get_array(), s["images"][i].numpy().transpose(1, 2, 0))
        np.testing.assert_array_equal(axes[i, 2].images[0].get_array(), s["columns"][1][1][i].numpy()[0])
        np.testing.assert_array_equal(axes[i, 3].images[0].get_array(), s["truth"][i].numpy()[0])
    plt.close(fig)


def test_curves_read_metrics_jsonl_by_epoch_with_baselines_as_lines(tmp_path):
    import json

    import matplotlib.pyplot as plt

    for run, ccs in (("a", [0.1, 0.3, 0.4]), ("b", [0.2, 0.25])):
        (tmp_path / run).mkdir()
        rows = [{"epoch": e, "step": e, "stage": "content", "val": {"cc": v}} for e, v in enumerate(ccs, 1)]
        (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = write_curves(tmp_path / "cc.png", {"BCE/4": tmp_path / "a", "GAN/4": tmp_path / "b"},
                       {"centre bias": 0.29, "readout": 0.61})
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 600
    fig = curves_figure({"BCE/4": {1: 0.1, 2: 0.3, 3: 0.4}, "GAN/4": {1: 0.2, 2: 0.25}},
                        {"centre bias": 0.29, "readout": 0.61})
    (ax,) = fig.axes
    curves = [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
              if not line.get_label().startswith("_")]
    assert curves == [("BCE/4", [1, 2, 3], [0.1, 0.3, 0.4]), ("GAN/4", [1, 2], [0.2, 0.25])]
    assert hlines(ax) == [0.1, 0.2, 0.29, 0.61]  # the curves' first points, then the two lines
    assert {"centre bias: 0.29", "readout: 0.61"} <= {t.get_text() for t in ax.texts}
    plt.close(fig)


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
