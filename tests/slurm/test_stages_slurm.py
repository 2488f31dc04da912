"""One bootstrap per sweep on the real local Slurm: salgan_gan's shape (BCE/4 alone and GAN/4 at two α) at tiny
scale. The driver trains the shared bootstrap once, as one Slurm job in one run folder; every trial starts from its
checkpoint and ends equal (to float32 rounding across processes) to the same trial trained with a bootstrap of its
own (same seed ⇒ same bootstrap)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import synthetic_shards
from sweep_helpers import SLURM, TINY, launch, state, sweep_dir_of, trial, wait_for

from salnet.config import Config, from_dict
from salnet.train.loop import Trainer

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

SWEEP = """name: stg
base: salgan
overrides: {train.epochs: 3, train.bootstrap_epochs: 2}
search: {algorithm: points}
points:
  - {label: BCE/4, train.adversarial: false}
  - {label: "GAN/4 α=0.05", train.alpha: 0.05}
  - {label: "GAN/4 α=0.5", train.alpha: 0.5}
metric: cc
mode: max
scheduler: {name: fifo}
budget: {trials: 1, max_concurrent: 3, retries: 0}
resources: {gpus_per_trial: 0, cpus_per_task: 1, time_min: 15}
"""


def job_names(sweep) -> list[str]:
    """The Slurm job names of every job this sweep submitted (its submitit folder holds one log per job)."""
    ids = sorted({p.name.split("_")[0] for p in (sweep / "jobs").glob("*_log.out")})
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobName"], capture_output=True,
                         text=True, timeout=60)
    return out.stdout.split()


def job_threads() -> int:
    """torch's thread count inside a 1-CPU job on the cpu partition (what the trial jobs trained with)."""
    out = subprocess.run(["srun", "-p", "cpu", "-c", "1", "-t", "2", sys.executable, "-c",
                          "import torch; print(torch.get_num_threads())"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_the_trials_share_one_bootstrap_job_and_equal_trials_with_their_own(slurm, tmp_path):
    shards = synthetic_shards(tmp_path / "data", {"train": 16, "val": 6}, (32, 48), 0.05)
    spec = tmp_path / "stg.yaml"
    spec.write_text(SWEEP)
    out = launch("--sweep", str(spec), "--out", str(tmp_path / "runs"), "--no-evaluate", *SLURM, *TINY,
                 f"data.shards={shards}").stdout
    sweep = sweep_dir_of(out)
    wait_for(lambda: state(sweep).get("status") in ("done", "failed"), 600, "the sweep", sweep)
    assert state(sweep)["status"] == "done", state(sweep)

    (stage,) = sorted((sweep / "stages").iterdir())  # one bootstrap run folder
    assert state(sweep)["stages"] == {stage.name: "done"}
    names = job_names(sweep)
    assert names.count("stg-salgan-bootstrap") == 1 and len(names) == 5, names  # driver, 1 bootstrap, 3 trials
    assert [json.loads(r)["epoch"] for r in (stage / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    for name in ("t00000", "t00001", "t00002"):
        assert trial(sweep, name)["status"] == "done"
        run = sweep / "trials" / name
        doc = yaml.safe_load((run / "config.yaml").read_text())
        assert doc["config"]["train"]["init_from"] == str(stage)  # every trial starts from the bootstrap
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # the stage's 2 epochs, then its own
        cfg = from_dict(Config, doc["config"])
        own = from_dict(Config, {**doc["config"], "train": {**doc["config"]["train"], "init_from": None}})
        threads = torch.get_num_threads()
        torch.set_num_threads(job_threads())  # as in the jobs: a float sum's order depends on the thread count
        try:
            alone = Trainer(own, run_dir=tmp_path / "alone" / name)  # the same trial, bootstrap included
            assert alone.fit()["status"] == "done"
        finally:
            torch.set_num_threads(threads)
        shared = torch.load(run / "latest.pt", weights_only=True)  # each run's last step (fit() ends on the best)
        mine = torch.load(tmp_path / "alone" / name / "latest.pt", weights_only=True)
        assert shared["step"] == mine["step"] == alone.step and cfg.train.epochs == 3
        for net in ("G", "D"):  # equal up to float32 rounding: another process may take other CPU kernel paths,
            # and 12 steps grow a last-bit difference to ~5e-6 (in one process the two are bit-equal:
            # tests/test_stages.py); another α's trial from the same bootstrap differs by ~3e-3
            worst = max((shared[net][k] - mine[net][k]).abs().max().item() for k in mine[net])
            assert worst <= 1e-4, (name, net, worst)
