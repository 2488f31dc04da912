"""summarize_sweep on a tiny sweep trained here (two finished trials, one stopped before its first epoch ended,
one failed without a checkpoint): its tables equal evaluate_run, the best trial follows the sweep's metric and
mode, and the TensorBoard files read back with the curves of metrics.jsonl, hparams rows and the best panel."""

import csv
import json
import math

import pytest
import yaml
from helpers import synthetic_shards

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.inference.evaluate import evaluate_run
from salnet.metrics import METRICS
from salnet.sweeps.board import COMPARISON_TAG
from salnet.sweeps.stats import paired_difference
from salnet.sweeps.summary import PANEL_TAG, PAPER_COLUMNS, best_trial, hparam_values, read_spec, summarize_sweep
from salnet.sweeps.tables import STAT_COLUMNS
from salnet.train.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
ORDER = ["auc_judd", "sauc", "auc_borji", "nss", "cc", "sim", "kld", "emd", "ig"]
TRIALS = {  # name: (lr, extra overrides, status)
    "t0-lr1e-4": (1e-4, [], "done"),
    "t1-lr3e-3": (3e-3, [], "done"),
    "t2-stopped": (1e-3, ["train.max_steps=1"], "stopped"),  # latest.pt only, no metrics.jsonl line
}


REFERENCE = {"label": "paper model", "source": "a table", "cc": 0.5, "kld": 1.25}


def trial_json(folder, name, lr, status, error=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps({
        "trial": name, "params": {"train.lr": lr, "train.optimizer": "adam"}, "status": status, "attempts": 1,
        "error": error, "jobs": []}))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """(sweep folder, summarize_sweep's result, {trial: evaluate_run result}) of a 4-trial sweep, metric kld/min."""
    root = tmp_path_factory.mktemp("summary")
    shards = synthetic_shards(root, {"train": 8, "val": 4, "test": 5}, (32, 48), 0.05)
    sweep = root / "sweep"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"spec": {"name": "lr-check", "metric": "kld", "mode": "min",
                                                               "reference": [REFERENCE]}}))
    for name, (lr, extra, status) in TRIALS.items():
        cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                         "train.procedure=content", "train.optimizer=adam", f"train.lr={lr}", *extra])
        assert Trainer(cfg, run_dir=sweep / "trials" / name).fit()["status"] == status
        trial_json(sweep / "trials" / name, name, lr, status)
    trial_json(sweep / "trials" / "t3-failed", "t3-failed", 0.1, "failed", error="CUDA out of memory")
    result = summarize_sweep(sweep, device="cpu")
    expect = {n: evaluate_run(sweep / "trials" / n, split="test", device="cpu") for n in TRIALS}
    return sweep, result, expect


def test_csv_and_json_equal_evaluate_run(sweep):
    folder, result, expect = sweep
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert list(rows[0]) == ["trial", "train.lr", "train.optimizer", "status", "epochs", "checkpoint_step", *ORDER,
                             "control", *(f"{m}_{s}" for m in ORDER for s in STAT_COLUMNS)]
    assert [r["trial"] for r in rows] == ["t0-lr1e-4", "t1-lr3e-3", "t2-stopped", "t3-failed"]
    assert [r["status"] for r in rows] == ["done", "done", "stopped", "failed"]
    assert [r["epochs"] for r in rows] == ["2", "2", "0", "0"]
    for r in rows[:3]:
        ev = expect[r["trial"]]
        assert set(ev["means"]) == set(METRICS)
        assert {m: float(r[m]) for m in ORDER} == ev["means"]  # bit for bit
        assert int(r["checkpoint_step"]) == int(ev["checkpoint"].rsplit("ckpt-", 1)[1][:-3])
        assert float(r["train.lr"]) == TRIALS[r["trial"]][0]
    # a finished trial is scored with best.pt, the stopped one with latest.pt (step 1 of max_steps=1)
    for r in rows[:2]:
        assert expect[r["trial"]]["checkpoint"] == str((folder / "trials" / r["trial"] / "best.pt").resolve())
    assert rows[2]["checkpoint_step"] == "1" and not (folder / "trials" / "t2-stopped" / "best.pt").exists()
    assert expect["t2-stopped"]["checkpoint"].endswith("ckpt-000000001.pt")
    failed = rows[3]
    assert failed["checkpoint_step"] == "" and all(failed[m] == "" for m in ORDER)
    assert json.loads((folder / "evaluation.json").read_text()) == result
    by_name = {t["trial"]: t for t in result["trials"]}
    assert by_name["t3-failed"]["means"] is None and by_name["t3-failed"]["error"] == "CUDA out of memory"
    for n, ev in expect.items():
        t = by_name[n]
        assert t["means"] == ev["means"] and t["checkpoint"] == ev["checkpoint"]
        assert (t["images"], t["bad_samples"], t["shards"]) == (5, 0, ev["shards"])
    assert not list(folder.glob("*.tmp"))


def test_best_trial_follows_the_sweep_metric_and_mode(sweep):
    folder, result, expect = sweep
    lowest = min(expect, key=lambda n: expect[n]["means"]["kld"])  # kld: lower is better, mode min
    assert (result["metric"], result["mode"], result["sweep"]) == ("kld", "min", "lr-check")
    assert result["best"] == {"trial": lowest, "value": expect[lowest]["means"]["kld"]}
    rows = [{"trial": "a", "means": {"cc": 0.2}}, {"trial": "b", "means": None}, {"trial": "c", "means": {"cc": 0.5}},
            {"trial": "d", "means": {"cc": 0.5}}, {"trial": "e", "means": {"kld": 0.1}}]
    assert best_trial(rows, "cc", "max")["trial"] == "c"  # ties: the first
    assert best_trial(rows, "cc", "min")["trial"] == "a"
    assert best_trial(rows, "nss", "max") is None


def md_table(text):
    lines = [x for x in text.splitlines() if x.startswith("|")]
    split = [[c.strip() for c in x.strip("|").split("|")] for x in lines]
    return split[0], split[2:]


def test_markdown_table(sweep):
    folder, result, expect = sweep
    text = (folder / "summary.md").read_text()
    assert text.splitlines()[0] == "# Sweep lr-check: test split"
    head, body = md_table(text)
    assert head == ["trial", "train.lr", "train.optimizer", "status", "AUC-J ↑", "sAUC ↑", "AUC-B ↑", "NSS ↑", "CC ↑",
                    "SIM ↑", "KLD ↓", "EMD ↓", "IG ↑"]
    names = [r[0].removesuffix(" ★") for r in body]
    assert names[:6] == ["t0-lr1e-4", "t1-lr3e-3", "t2-stopped", "t3-failed", "centre bias",
                         "paper: paper model (a table)"]
    centre, paper = body[4], body[5]
    assert centre[1:4] == ["–", "–", "baseline"] and paper[1:4] == ["–", "–", "reported"]
    base = result["baselines"][0]["means"]
    assert centre[4:] == [f"{base[m]:.3f}" for m in ORDER]
    assert [paper[4 + ORDER.index(m)] for m in ("cc", "kld", "nss")] == ["0.500", "1.250", "–"]
    # one reference row: every scored trial is compared to it
    paper_part = text.split("Against the paper")[1].split("## Against the control")[0]
    delta = [x for x in paper_part.splitlines() if x.startswith("| t") and "paper row" not in x]
    assert len(delta) == 3
    for line, n in zip(delta, names[:3]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [n, f"{TRIALS[n][0]:.4g}", "adam", "paper model"]
        assert cells[4:] == [f"{expect[n]['means']['cc'] - 0.5:+.3f}", f"{expect[n]['means']['kld'] - 1.25:+.3f}"]
    assert [r[0] for r in body if r[0].endswith("★")] == [result["best"]["trial"] + " ★"]
    assert body[3][3:] == ["failed"] + ["–"] * 9
    for j, m in enumerate(ORDER):
        col = [r[4 + j] for r in body[:3]]
        assert [c.strip("*") for c in col] == [f"{expect[n]['means'][m]:.3f}" for n in names[:3]]
        pick = max if METRICS[m].higher_is_better else min
        best = pick(names[:3], key=lambda n: expect[n]["means"][m])
        bold = [n for n, c in zip(names, col) if c.startswith("**")]
        assert best in bold and all(col[names.index(n)] == col[names.index(best)] for n in bold), m
    assert "5 test images, 0 bad samples skipped; 3 of 4 trials scored" in text
    assert "★ best trial by KLD (min)" in text
    for n in names[:3]:  # random-weight tiny networks: each trial says where the centre bias beats it
        behind = [m for m in ORDER if not (expect[n]["means"][m] > base[m] if METRICS[m].higher_is_better
                                           else expect[n]["means"][m] < base[m])]
        assert (f"{n} is not better than the centre bias on: {', '.join(PAPER_COLUMNS[m] for m in behind)}."
                in text) == bool(behind)


def test_the_centre_bias_row_is_the_baseline_model_scored_like_the_trials(sweep):
    import torch

    from salnet.inference.evaluate import evaluate_model
    from salnet.models.baselines import CenterBiasModel

    folder, result, expect = sweep
    (centre,) = result["baselines"]
    ev = evaluate_model(CenterBiasModel(), expect["t0-lr1e-4"]["shards"], "test", (32, 48), device=torch.device("cpu"),
                        batch_size=4)
    assert centre["name"] == "centre bias" and centre["images"] == 5 and centre["means"] == ev["means"]
    assert result["reference"] == [REFERENCE]


def test_tensorboard_curves_hparams_and_best_panel(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    folder, result, expect = sweep
    assert sorted(p.name for p in (folder / "tb").iterdir()) == ["t0-lr1e-4", "t1-lr3e-3", "t2-stopped"]
    for name in TRIALS:
        ev = EventAccumulator(str(folder / "tb" / name), size_guidance={"images": 0, "scalars": 0}).Reload()
        lines = [json.loads(x) for x in (folder / "trials" / name / "metrics.jsonl").read_text().splitlines()] \
            if (folder / "trials" / name / "metrics.jsonl").exists() else []
        assert len(lines) == (0 if name == "t2-stopped" else 2)
        for m in ORDER:
            if lines:
                got = ev.Scalars(f"val/{m}")
                assert [e.step for e in got] == [x["epoch"] for x in lines] == [1, 2]
                assert [e.value for e in got] == pytest.approx([x["val"][m] for x in lines], rel=1e-6, abs=1e-7)
            else:
                assert f"val/{m}" not in ev.Tags()["scalars"]
            assert [e.value for e in ev.Scalars(f"test/{m}")] == pytest.approx([expect[name]["means"][m]], rel=1e-6)
        hp = ev.PluginTagToContent("hparams")
        info = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
        assert info.hparams["train.lr"].number_value == pytest.approx(TRIALS[name][0])
        assert info.hparams["train.optimizer"].string_value == "adam"
        assert info.hparams["status"].string_value == TRIALS[name][2]
        exp = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/experiment"]).experiment
        assert [i.name.tag for i in exp.metric_infos] == [f"test/{m}" for m in ORDER]
        status = next(h for h in exp.hparam_infos if h.name == "status")
        assert [v.string_value for v in status.domain_discrete.values] == ["done", "stopped"]
        images = ev.Tags()["images"]
        if name == result["best"]["trial"]:
            assert images == [PANEL_TAG.format(name)] == [f"best/{name} (image | prediction | ground truth)"]
            img = ev.Images(images[0])[-1]
            assert (img.width, img.height) == (3 * 48, 4 * 32)  # 4 rows of image | prediction | ground truth
        else:
            assert images == []


def test_missing_split_is_a_clear_error(sweep):
    folder, _, expect = sweep
    shards = expect["t0-lr1e-4"]["shards"]
    with pytest.raises(ValueError, match=rf"{shards}: no split 'nosuch'.*has \['test', 'train', 'val'\]"):
        summarize_sweep(folder, split="nosuch", device="cpu")
    with pytest.raises(ValueError, match="sweep's metric 'kld'.*include it in metrics="):
        summarize_sweep(folder, metrics=["cc"], device="cpu")


def test_spec_defaults_and_hparam_types(tmp_path):
    assert read_spec(tmp_path) == (tmp_path.name, "cc", "max")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"spec": {"metric": "emd"}}))
    assert read_spec(tmp_path) == (tmp_path.name, "emd", "min")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"spec": {"metric": "bogus", "mode": "max"}}))
    with pytest.raises(ValueError, match="metric 'bogus'"):
        read_spec(tmp_path)
    rows = [{"params": {"a": 0.1, "b": 1, "loss": {"kld": 1}}, "status": "done"},
            {"params": {"a": 0.2, "b": None, "loss": {"cc": -1}}, "status": "stopped"}]
    table, domains = hparam_values(rows)
    assert table == [{"a": 0.1, "b": "1", "loss": '{"kld": 1}', "status": "done"},
                     {"a": 0.2, "b": "None", "loss": '{"cc": -1}', "status": "stopped"}]
    assert domains == {"b": ["1", "None"], "loss": ['{"cc": -1}', '{"kld": 1}'], "status": ["done", "stopped"]}
    assert list(PAPER_COLUMNS) == ORDER


def test_per_image_values_are_written_beside_the_summary(sweep):
    folder, result, expect = sweep
    rows = list(csv.DictReader((folder / "per_image.csv").open()))
    assert list(rows[0]) == ["trial", "point", "seed", "id", "height", "width", *ORDER]
    assert [r["trial"] for r in rows] == [n for n in TRIALS for _ in range(5)] + ["centre bias"] * 5
    for n, ev in expect.items():
        mine = [r for r in rows if r["trial"] == n]
        assert {r["point"] for r in mine} == {f"train.lr={TRIALS[n][0]:.4g}"}
        assert [r["id"] for r in mine] == [x["id"] for x in ev["per_image"]]
        for r, x in zip(mine, ev["per_image"]):
            assert (int(r["height"]), int(r["width"])) == (x["height"], x["width"])
            assert all((r[m] == "") == math.isnan(x[m]) for m in ORDER)
            assert {m: float(r[m]) for m in ORDER if r[m]} == {m: x[m] for m in ORDER if not math.isnan(x[m])}


def test_every_point_is_compared_with_the_control(sweep):
    """No control in sweep.yaml: the best point by KLD. Each other scored point's Δ equals the paired bootstrap of
    evaluate_run's per-image values; summary.md, summary.csv and each trial's TensorBoard text page show it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, result, expect = sweep
    best = result["best"]["trial"]
    label = {n: f"train.lr={TRIALS[n][0]:.4g}" for n in TRIALS}
    assert result["control"]["point"] == label[best] and result["control"]["rule"] is None
    assert result["control"]["how"].startswith("the sweep file names no control; the best point by kld (min)")
    points = {p["point"]: p for p in result["points"]}
    assert points[label[best]]["comparison"] is None and points["train.lr=0.1"]["scored"] == []
    text = (folder / "summary.md").read_text()
    assert f"## Against the control: {label[best]}" in text and "Holm-adjusted over the 2 points" in text
    table = {x.split("|")[1].strip(): x for x in text.splitlines() if x.startswith("| train.lr=")}
    csv_rows = {r["trial"]: r for r in csv.DictReader((folder / "summary.csv").open())}
    for n in (n for n in TRIALS if n != best):
        c = points[label[n]]["comparison"]
        for m in ORDER:
            mine = {x["id"]: x[m] for x in expect[n]["per_image"]}
            base = {x["id"]: x[m] for x in expect[best]["per_image"]}
            assert c[m] == {**paired_difference(mine, base), "p_holm": c[m]["p_holm"], "seed_sd": None,
                            "mark": c[m]["mark"]}
            assert c[m]["p_holm"] >= c[m]["p"]
            if c[m]["pairs"] == 5:  # defined everywhere: the difference of the two means
                assert c[m]["delta"] == pytest.approx(expect[n]["means"][m] - expect[best]["means"][m], abs=1e-12)
            cell = f"{c[m]['delta']:+.3f} [{c[m]['low']:+.3f}, {c[m]['high']:+.3f}] {c[m]['mark']}"
            assert cell in table[label[n]]
            row = csv_rows[n]
            assert row["control"] == label[best] and float(row[f"{m}_delta"]) == c[m]["delta"]
            assert (float(row[f"{m}_low"]), float(row[f"{m}_high"])) == (c[m]["low"], c[m]["high"])
            assert row[f"{m}_mark"] == c[m]["mark"] and row[f"{m}_seed_sd"] == "" and row[f"{m}_sd"] == ""
            assert float(row[f"{m}_mean"]) == expect[n]["means"][m]
        board = EventAccumulator(str(folder / "tb" / n), size_guidance={"tensors": 0}).Reload()
        page = board.Tensors(f"{COMPARISON_TAG}/text_summary")[-1].tensor_proto.string_val[0].decode()
        assert page.startswith(f"Point {label[n]} (seeds: 1) against the control {label[best]}:")
        assert f"| CC ↑ | {expect[n]['means']['cc']:.3f} ± – | " in page
    assert csv_rows[best]["cc_delta"] == "" and csv_rows["t3-failed"]["control"] == label[best]


def test_summarizing_again_rewrites_the_board(sweep):
    """Last in the file: it rewrites the sweep's outputs (without a panel) that the tests above read."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, result, _ = sweep
    again = summarize_sweep(folder, device="cpu", images=0)
    assert again == result
    ev = EventAccumulator(str(folder / "tb" / "t1-lr3e-3"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert [e.step for e in ev.Scalars("val/cc")] == [1, 2] and len(ev.Scalars("test/cc")) == 1
    best = EventAccumulator(str(folder / "tb" / result["best"]["trial"]), size_guidance={"images": 0}).Reload()
    assert best.Tags()["images"] == [] and len(list((folder / "tb").glob("*/events.*"))) == 6


def test_paper_rows_of_another_dataset_are_listed_without_a_delta(sweep):
    from salnet.sweeps.summary import references_for, to_markdown

    folder, result, _ = sweep
    rows = result["trials"]
    salicon = {"label": "GAN/4", "source": "SalGAN Table 3", "dataset": "salicon", "cc": 0.786}
    synthetic = {"label": "made up", "dataset": "synthetic", "cc": 0.5}
    assert references_for(rows, [salicon, synthetic, REFERENCE]) == ([synthetic, REFERENCE], [salicon])
    text = to_markdown({**result, "reference": [], "reference_elsewhere": [salicon]}, ["train.lr", "train.optimizer"],
                       ORDER)
    assert "| paper: GAN/4 (SalGAN Table 3, salicon) | – | – | reported |" in text and "Against the paper" not in text
    assert "The paper's rows on salicon are for reference only: these trials ran on another dataset" in text


def test_points_with_seeds_show_the_mean_sd_over_seeds_and_the_seed_spread():
    """Two points × two seeds on 20 images (no training). BCE/4: CC 0.4 + 0.01·j with seed 0, 0.02 more with seed 1
    (means 0.495, 0.515: 0.505 ± 0.0141); GAN: BCE/4's values + 0.05 (seed 0) and + 0.03 (seed 1), so each image's
    seed average is 0.04 above (GAN: 0.545 with either seed): Δ +0.040, seed spread sd(0.05, 0.03) = 0.0141,
    better. KLD the same for both."""
    from salnet.sweeps.summary import compare_to_control
    from salnet.sweeps.tables import comparison_cell, to_csv, to_markdown

    def rows_of(shift, seed):
        return [{"id": f"i{j:02d}", "cc": 0.4 + 0.01 * j + 0.02 * seed + shift, "kld": 1.0 + 0.1 * j}
                for j in range(20)]

    per_image = {"t0": rows_of(0, 0), "t1": rows_of(0.05, 0), "t2": rows_of(0, 1), "t3": rows_of(0.03, 1)}
    rows = [{"trial": t, "params": {"point": p, "train.seed": s}, "status": "done", "epochs": 1, "checkpoint_step": 1,
             "means": {m: sum(r[m] for r in per_image[t]) / 20 for m in ("cc", "kld")}, "images": 20,
             "bad_samples": 0} for t, p, s in (("t0", "BCE/4", 0), ("t1", "GAN", 0), ("t2", "BCE/4", 1),
                                                ("t3", "GAN", 1))]
    points, control = compare_to_control(rows, per_image, "BCE/4", "cc", "max", ["cc", "kld"])
    assert control == {"point": "BCE/4", "how": "the sweep file's control", "rule": "BCE/4"}
    bce, gan = points
    assert (bce["trials"], bce["seeds"], gan["trials"], gan["seeds"]) == (["t0", "t2"], [0, 1], ["t1", "t3"], [0, 1])
    assert bce["mean"]["cc"] == pytest.approx(0.505) and bce["sd"]["cc"] == pytest.approx(0.02 / math.sqrt(2))
    cc, kld = gan["comparison"]["cc"], gan["comparison"]["kld"]
    assert (cc["delta"], cc["low"], cc["high"]) == pytest.approx((0.04, 0.04, 0.04), abs=1e-12)
    assert cc["seed_sd"] == pytest.approx(0.02 / math.sqrt(2)) and cc["mark"] == "better" and cc["pairs"] == 20
    assert (kld["delta"], kld["low"], kld["high"], kld["seed_sd"], kld["mark"]) == (0, 0, 0, 0, "not resolved")
    result = {"sweep": "s", "split": "test", "metric": "cc", "mode": "max", "best": None, "trials": rows,
              "points": points, "control": control, "statistics": {"n_boot": 4000, "level": 0.95, "alpha": 0.05}}
    text = to_markdown(result, ["point", "train.seed"], ["cc", "kld"])
    assert "| GAN | 2 (0, 1) | +0.040 ±0.014 [+0.040, +0.040] better | +0.000 ±0.000 [+0.000, +0.000] not resolved |" \
        in text
    assert "| BCE/4 | 2 (0, 1) | 0.505 ± 0.014 | 1.950 ± 0.000 |" in text
    assert "| GAN | 2 (0, 1) | 0.545 ± 0.000 | 1.950 ± 0.000 |" in text
    table = list(csv.DictReader(to_csv(rows, ["point", "train.seed"], ["cc", "kld"], result).splitlines()))
    assert [r["cc_mean"] for r in table] == [repr(bce["mean"]["cc"]), repr(gan["mean"]["cc"])] * 2
    assert [r["cc_mark"] for r in table] == ["", "better"] * 2 and {r["control"] for r in table} == {"BCE/4"}
    single = {"delta": 0.2, "low": None, "high": None, "mark": "not resolved"}  # one image pair: no interval
    assert comparison_cell(single) == "+0.200 [–] not resolved" and comparison_cell(None) == "–"
