"""What the real-Slurm sweep tests share: the tiny training overrides, the launcher's Slurm flags, a sweep file,
launching, waiting on a state (never a fixed sleep), reading trial.json / state.json, and sacct."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.width=0.0625", "data.input_size=[32, 48]", "data.batch_size=4", "data.workers=0",
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
