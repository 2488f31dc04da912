"""jobs/osie_recipe.py end to end at tiny scale on synthetic shards: the readout, the bootstrap, BCE/4 alone and
the adversarial stage from the bootstrap, and a summary with both models, the centre bias and the readout."""

import json
import subprocess
from pathlib import Path

import pytest
from helpers import synthetic_shards
from PIL import Image

from salnet.config import Config, apply_overrides, save_config
from salnet.inference.evaluate import evaluate_run
from salnet.metrics import METRICS
from salnet.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")


@pytest.fixture
def recipe(script_here):
    """``recipe(out, shards, *extra)``: jobs/osie_recipe.py at tiny sizes, in this process (conftest's script_here)."""
    def run(out: Path, shards: Path, *extra: str) -> subprocess.CompletedProcess:
        return script_here("osie_recipe", "--out", str(out), "--shards", str(shards), "--weights", "none",
                           "--bootstrap-epochs", "1", "--epochs", "1", "--passes", "2", "--readout-epochs", "2",
                           "--device", "cpu", "model.width=0.0625", "data.input_size=[32, 48]", "data.batch_size=4",
                           "data.workers=0", "train.bf16=false", *extra)
    return run


def test_recipe_on_synthetic_shards(tmp_path, recipe):
    shards = synthetic_shards(tmp_path, {"train": 8, "val": 4}, (32, 48), 0.05)
    out = recipe(tmp_path / "osie", shards)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "osie" / "sweep"
    result = json.loads((sweep / "evaluation.json").read_text())
    assert [t["params"]["point"] for t in result["trials"]] == ["BCE/4", "GAN/4 α=0.05"]
    assert [b["name"] for b in result["baselines"]] == ["centre bias", "readout"]
    assert result["split"] == "val" and all(set(t["means"]) == set(METRICS) for t in result["trials"])
    readout = evaluate_run(tmp_path / "osie" / "readout", split="val", device="cpu")
    assert result["baselines"][1]["means"] == readout["means"]
    with Image.open(sweep / "cc_by_epoch.png") as im:  # both trials' CC by epoch, the baselines as lines
        assert im.format == "PNG" and im.width >= 600
    text = (sweep / "summary.md").read_text().splitlines()
    first = next(i for i, ln in enumerate(text) if ln.startswith("| "))
    table = []  # the first table: the trials and the baselines (the comparison with the control comes later)
    for ln in text[first:]:
        if not ln.startswith("|"):
            break
        table.append(ln)
    assert [ln.split("|")[1].strip().removesuffix(" ★") for ln in table[1:] if ln.startswith("| ")] == \
        ["bce4", "gan4", "centre bias", "readout"]
    assert "GAN/4 α=0.05" in (sweep / "summary.md").read_text().split("Against the control", 1)[-1]
    # an epoch is two passes over the 8 training images: 4 steps of 4; both trials start from the bootstrap's best
    # generator
    boot = load_checkpoint(tmp_path / "osie" / "bootstrap" / "best.pt")["step"]
    assert boot == 4 and load_checkpoint(tmp_path / "osie" / "sweep" / "trials" / "gan4" / "latest.pt")["step"] == 4
    again = recipe(tmp_path / "osie", shards)
    assert again.returncode == 0 and again.stdout.count("done already") == 4  # every stage resumes as finished
    other = recipe(tmp_path / "osie", shards, "--passes", "1")  # a finished stage is not reused for other arguments
    assert other.returncode == 2 and "osie/bootstrap: finished with another configuration" in other.stderr
    readout = recipe(tmp_path / "osie", shards, "--readout-epochs", "3")
    assert readout.returncode == 2 and "osie/readout: finished with another configuration" in readout.stderr
    assert "train.epochs 2 (now 3)" in readout.stderr and "--readout-epochs" in readout.stderr
    # a larger --epochs continues both trials (4 more steps each) from the same bootstrap
    longer = recipe(tmp_path / "osie", shards, "--epochs", "2")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert longer.stdout.count("done already") == 2 and longer.stdout.count("continues to 2 epochs") == 2
    for trial in ("bce4", "gan4"):
        assert load_checkpoint(sweep / "trials" / trial / "latest.pt")["step"] == 8
        assert (sweep / "trials" / trial / "final-1-epochs.json").is_file()
    assert load_checkpoint(tmp_path / "osie" / "bootstrap" / "latest.pt")["step"] == 4
    fewer = recipe(tmp_path / "osie", shards, "--bootstrap-epochs", "2", "--epochs", "2")
    assert fewer.returncode == 2 and "osie/bootstrap: finished with another configuration" in fewer.stderr
    shorter = recipe(tmp_path / "osie", shards)  # fewer trial epochs than they have: no silent reuse or cut
    assert shorter.returncode == 2 and "trials/bce4: finished with another configuration" in shorter.stderr
    assert load_checkpoint(sweep / "trials" / "bce4" / "latest.pt")["step"] == 8


def test_a_stage_started_with_other_arguments_is_an_error(tmp_path, recipe):
    """A stage folder whose run was made with other arguments is refused, finished or not, naming the folder."""
    shards = synthetic_shards(tmp_path, {"train": 8, "val": 4}, (32, 48), 0.05)
    (tmp_path / "osie" / "bootstrap").mkdir(parents=True)
    save_config(apply_overrides(Config(), ["train.alpha=0.5"]), tmp_path / "osie" / "bootstrap" / "config.yaml")
    out = recipe(tmp_path / "osie", shards)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "osie/bootstrap: started with another configuration" in out.stderr and "--passes" in out.stderr


@pytest.mark.parametrize("args, named", [
    (["--data", "{tmp}/no-osie"], "no-osie: no OSIE release here"),
    (["--shards", "{tmp}", "--weights", "{tmp}/vgg.pth"], "vgg.pth: VGG-16 encoder weights not found"),
    (["--shards", "{tmp}", "--weights", "none", "train.nope=1"], "train.nope"),
    (["--shards", "{tmp}", "--weights", "none", "--passes", "0"],
     "--passes 0: passes over the training images per epoch must be 1 to 100"),
])
def test_bad_input_is_a_clear_error_before_any_training(tmp_path, args, named, script_here):
    out = script_here("osie_recipe", "--out", str(tmp_path / "out"), *[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2 and out.stderr.startswith("error: ") and named in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "out" / "readout").exists()  # stopped before the first step


def test_a_stop_before_a_stage_starts_no_training(tmp_path):
    """The recipe's stop flag set (a signal between two stages): the next stage raises Stopped, writes nothing."""
    from salnet.recipes.osie import Stopped, run
    from salnet.train.loop import StopFlag

    stop = StopFlag()
    stop.set("SIGUSR2")
    with pytest.raises(Stopped, match="bootstrap: not started \\(SIGUSR2 received\\)"):
        run(Config(), tmp_path / "bootstrap", stop=stop)
    assert not (tmp_path / "bootstrap").exists()
