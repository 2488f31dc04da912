"""One run scored from the command line (``jobs/evaluate.py --run RUN --shards S --split test``) on a lab's folder
packed with ``jobs/pack.py folder``: the written means equal evaluate_run's and the centre bias's, per-image rows
with --per-image, a maps-only split names what it lacks once and leaves those metrics undefined, training logs a
progress line every train.log_every steps and names the epoch its final values come from; bad input is one
line with the ``error:`` prefix."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from test_folder_dataset import make_folder

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.inference.evaluate import evaluate_model, evaluate_run
from salnet.metrics import METRICS
from salnet.models.baselines import CenterBiasModel
from salnet.train.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
REPO = Path(__file__).resolve().parents[1]
NINE = list(METRICS)
FIX_METRICS = ["auc_judd", "auc_borji", "sauc", "nss", "ig"]


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Messages(logging.Handler):
    """The salnet logger's messages while installed (setup_logging stops propagation to the root)."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, str]] = []

    def emit(self, record):
        self.seen.append((record.levelno, record.getMessage()))

    def __enter__(self):
        logging.getLogger("salnet").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("salnet").removeHandler(self)


def write_splits(raw: Path) -> None:
    (raw / "train.txt").write_text("".join(f"im{i:02d}\n" for i in range(8)))
    (raw / "val.txt").write_text("".join(f"im{i:02d}\n" for i in range(8, 12)))
    (raw / "test.txt").write_text("".join(f"im{i:02d}\n" for i in range(12, 16)))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(run folder, shards with fixations, maps-only shards, training messages) of a one-epoch run on a packed
    folder of 16 images (8 train, 4 val, 4 test), logging every step."""
    root = tmp_path_factory.mktemp("lab")
    make_folder(root / "raw", n=16)
    make_folder(root / "mapsonly", n=16, maps=True, fixations=False, seed=1)
    for raw in (root / "raw", root / "mapsonly"):
        write_splits(raw)
    pack = job("pack")
    assert pack.main(["folder", "--root", str(root / "raw"), "--out", str(root / "s"), "--sigma", "4",
                      "--workers", "1", "--no-progress"]) == 0
    assert pack.main(["folder", "--root", str(root / "mapsonly"), "--out", str(root / "m"), "--workers", "1",
                      "--no-progress"]) == 0
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={root / 'm'}", "data.input_size=[32, 48]",
                                     "train.procedure=content", "train.epochs=1", "train.optimizer=adam",
                                     "train.log_every=1"])
    with Messages() as m:
        result = Trainer(cfg, run_dir=root / "run").fit()
    return root / "run", root / "s", root / "m", result, m.seen


def test_run_scored_from_the_command_line_equals_evaluate_run(lab, tmp_path, capsys):
    run, shards, _, _, _ = lab
    rc = job("evaluate").main(["--run", str(run), "--shards", str(shards), "--split", "test", "--per-image",
                               "--results", str(tmp_path / "ev"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and f"wrote {tmp_path / 'ev'}" in out
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    ev = evaluate_run(run, shards, "test", device="cpu")
    centre = evaluate_model(CenterBiasModel(), shards, "test", (32, 48), batch_size=4, seed=0,
                            postprocess="released")
    assert summary["means"] == ev["means"] and sorted(summary["means"]) == sorted(NINE)
    assert summary["centre_bias"] == centre["means"] and summary["images"] == 4 and summary["epoch"] == 1
    assert summary["lacks"] == [] and Path(summary["checkpoint"]) == (run / "best.pt").resolve()
    md = (tmp_path / "ev" / "summary.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith(f"| {run.name} |") or ln.startswith("| centre bias |")]
    assert len(rows) == 2 and all(len(r.strip("|").split("|")) == 10 for r in rows) and "–" not in rows[0]
    assert rows[0] in out  # the table is printed too
    with open(tmp_path / "ev" / "per_image.csv") as f:
        per = list(csv.DictReader(f))
    assert [r["trial"] for r in per] == [run.name] * 4 + ["centre bias"] * 4
    mine = {r["id"]: r for r in per if r["trial"] == run.name}
    for row in ev["per_image"]:
        assert all(float(mine[row["id"]][m]) == row[m] for m in NINE)


def test_maps_only_split_says_once_what_it_lacks(lab, tmp_path):
    run, _, mapsonly, _, trained = lab
    lacks = ("test: 4 of 4 samples have no fixations: auc_judd, auc_borji, sauc, nss, ig are undefined on them")
    with Messages() as m:
        assert job("evaluate").main(["--run", str(run), "--shards", str(mapsonly), "--results",
                                     str(tmp_path / "ev"), "--device", "cpu"]) == 0
    assert [msg for lvl, msg in m.seen if lvl == logging.WARNING] == [f"m: {lacks}"]
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert sorted(summary["means"]) == sorted(set(NINE) - set(FIX_METRICS)) and summary["lacks"] == [lacks]
    md = (tmp_path / "ev" / "summary.md").read_text()
    assert "Undefined on every image: AUC-J, sAUC, AUC-B, NSS, IG." in md and f"| {run.name} | – | – | – | – | " in md
    # training on the maps-only shards said it once for train and val, not per epoch
    warned = [msg for lvl, msg in trained if lvl == logging.WARNING and "have no fixations" in msg]
    assert warned == [f"{mapsonly}: train: 8 of 8 samples have no fixations: auc_judd, auc_borji, sauc, nss, ig are "
                      "undefined on them", f"{mapsonly}: val: 4 of 4 samples have no fixations: auc_judd, "
                      "auc_borji, sauc, nss, ig are undefined on them"]


def test_training_logs_progress_and_names_the_epoch_of_its_values(lab):
    run, _, _, result, seen = lab
    progress = [msg for _, msg in seen if " left in the epoch" in msg]
    assert [p.split(":")[0] for p in progress] == ["epoch 1/1 step 1/2", "epoch 1/1 step 2/2"]
    assert all(" img/s, content " in p for p in progress) and progress[-1].endswith("; 0s left in the epoch")
    final = json.loads((run / "final.json").read_text())
    assert result["val_epoch"] == final["val_epoch"] == 1 and final["epochs"] == 1
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == final["val_epoch"]
    assert all(not math.isnan(v) for v in final["val"].values())


@pytest.mark.parametrize("argv, message", [
    (["--run", "nosuch"], "error: nosuch: no such run folder or checkpoint file"),
    (["SWEEP", "--run", "RUN"], "error: give a sweep (folder or name) or --run RUN, not both"),
    ([], "error: give a sweep (folder or name) or --run RUN, not both"),
    (["--run", "RUN", "--backend", "slurm"], "error: --run scores in this process; --backend local/slurm apply"),
    (["--run", "RUN", "--split", "nosuch"], "has no split 'nosuch' (it has test, train, val); pass --split"),
    (["--run", "RUN", "--shards", "EMPTY"], "manifest.json not found: pack the dataset first"),
    (["nosuch-sweep", "--time", "soon"], "error: --time 'soon': use a positive time"),
])
def test_bad_input_is_one_line(lab, tmp_path, capsys, argv, message):
    run, shards, _, _, _ = lab
    (tmp_path / "empty").mkdir()
    subst = {"RUN": str(run), "EMPTY": str(tmp_path / "empty")}
    argv = [subst.get(a, a) for a in argv]
    if "--shards" not in argv:
        argv += ["--shards", str(shards)]
    assert job("evaluate").main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_run_folder_given_as_the_sweep_is_scored_as_a_run(lab, tmp_path, capsys):
    run, shards, _, _, _ = lab
    assert job("evaluate").main([str(run), "--shards", str(shards), "--results", str(tmp_path / "ev"),
                                 "--device", "cpu"]) == 0
    first = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert first["split"] == "test" and first["images"] == 4 and sorted(first["means"]) == sorted(NINE)
