"""What the real-Slurm tests share: the tiny training overrides, the launcher's Slurm flags, a sweep file,
launching, waiting on a state (never a fixed sleep), reading trial.json / state.json, sacct, the step a job's
training started at, and a training job that keeps each task's own weights."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.width=0.0625", "model.weights=random", "data.input_size=[32, 48]", "data.batch_size=4",
        "data.workers=0",
        "data.val_subset=6", "train.bf16=false", "train.log_every=1"]
SLURM = ["--backend", "slurm", "--partition", "cpu", "--driver-partition", "cpu", "--driver-cpus", "1",
         "--cpus-per-task", "1", "--gpus-per-node", "0", "--mem", "2", "--time", "15"]


def sweep_file(tmp_path: Path, name: str, space: str, scheduler: str, budget: str,
               resources: str = "{gpus_per_trial: 0, cpus_per_task: 1, time_min: 15}") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
base: salgan
overrides: {{train.procedure: content, train.optimizer: adam, train.bootstrap_epochs: 0,
            train.loss: {{kld: 1.0, cc: -1.0}}}}
space:
  train.lr: {{grid: {space}}}
search: {{algorithm: grid}}
metric: cc
mode: max
scheduler: {scheduler}
budget: {budget}
resources: {resources}
""")
    return p


def launch(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "jobs/launch.py", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def wait_for(cond, timeout: float, what: str, folder: Path, poll_s: float = 1.0):
    """Poll ``cond`` until it holds; after ``timeout`` seconds fail with the jobs' error logs."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            logs = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((folder / "jobs").glob("*.err")))
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(poll_s)


def trial(sweep: Path, name: str) -> dict:
    return json.loads((sweep / "trials" / name / "trial.json").read_text())


def state(sweep: Path) -> dict:
    p = sweep / "state.json"
    return json.loads(p.read_text()) if p.exists() else {}


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.split()[0] if out.stdout.split() else "?"


def sweep_dir_of(stdout: str) -> Path:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("sweep folder: "))
    return Path(line.removeprefix("sweep folder: "))


def start_steps(log: str) -> list[int]:
    """The global step at which each training run in a job's log started (Trainer.fit's first INFO line,
    ``training <run>: epoch E of N, step S, ...``): 0 for a fresh run, > 0 for one resumed from a checkpoint."""
    return [int(m) for m in re.findall(r"training \S+: epoch \d+ of \d+, step (\d+),", log)]


def job_log(folder: Path, job_id: str, task: int = 0) -> str:
    """Task ``task``'s stdout and stderr of a job under ``folder`` (submitit's ``<id>_<task>_log.out/.err``)."""
    return "".join(p.read_text() for p in sorted(folder.glob(f"{job_id}_{task}_log.*")))


def train_keeping_own_weights(config: dict, run_dir: str) -> dict:
    """``TrainJob()(config, run_dir)`` whose tasks each save their own G and D after every epoch's last step to
    ``run_dir/own-rank<R>.pt`` (after fit() the ranks hold rank 0's best checkpoint, equal whatever DDP did).
    Submitted by value (cloudpickle.register_pickle_by_value on this module): the job cannot import tests/."""
    import torch

    import salnet.train.loop as loop
    from salnet.run.jobs import TrainJob

    class KeepingOwnWeights(loop.Trainer):
        def _epoch(self, board):
            status = super()._epoch(board)
            own = {f"{net}.{k}": v.detach().cpu().clone() for net in ("G", "D")
                   for k, v in getattr(self, net).state_dict().items()}
            torch.save(own, Path(self.run_dir) / f"own-rank{self.env.rank}.pt")
            return status

    trainer = loop.Trainer
    loop.Trainer = KeepingOwnWeights  # TrainJob imports it from the module when called
    try:
        return TrainJob()(config, run_dir)
    finally:
        loop.Trainer = trainer
