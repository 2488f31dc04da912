"""Checkpoints under real faults, each with a real process or a real file system:

- the training process killed with SIGKILL between a checkpoint's write and its rename → the previous checkpoint
  loads, the run resumes and ends equal to an uninterrupted run;
- a writer killed with SIGKILL at random instants → ``latest.pt`` always loads and holds every step reported
  saved; the writer's orphaned temporary file is removed by its next save;
- a full disk during the write (a small tmpfs, or a file size limit) → CheckpointWriteError naming the file,
  no temporary file left, the previous ``latest.pt`` intact;
- a damaged ``latest.pt`` → the run resumes from the newest checkpoint that loads, says so, and ends equal to an
  uninterrupted run; nothing is deleted.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from helpers import synthetic_shards

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.train.checkpoint import (
    LATEST,
    PARTIAL,
    CheckpointFallback,
    CheckpointManager,
    CheckpointWriteError,
    load_checkpoint,
)

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")]
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same float results in every child


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic_shards(root, {"train": 12, "val": 4}, (32, 48), 0.05)
    return root / "shards"


def overrides(shards) -> list[str]:
    return [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]", "train.epochs=3",
            "train.log_every=1"]


# a training run in a child process; with KILL_AT=n it SIGKILLs itself when the n-th checkpoint file has been
# written and fsynced but not yet renamed into place
TRAIN = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    import salnet.train.checkpoint as ck
    from salnet.config import Config, apply_overrides
    from salnet.train.loop import Trainer
    kill_at, seen, replace = int(os.environ.get("KILL_AT", "0")), [0], os.replace
    def faulty_replace(src, dst):
        if os.path.basename(str(dst)).startswith("ckpt-"):
            seen[0] += 1
            if seen[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    ck.os.replace = faulty_replace
    print(Trainer(apply_overrides(Config(), sys.argv[2:]), run_dir=sys.argv[1]).fit()["status"], flush=True)
""")


def train(run_dir: Path, shards, kill_at: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRAIN, str(run_dir), *overrides(shards)], capture_output=True,
                          text=True, timeout=300, env={**ENV, "KILL_AT": str(kill_at)}, cwd=REPO)


def weights(run_dir: Path) -> dict:
    state = load_checkpoint(run_dir / LATEST)
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items()}


def assert_equal_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def partial_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if PARTIAL.fullmatch(p.name))


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    out = train(run, shards)
    assert out.returncode == 0 and out.stdout.split()[-1] == "done", out.stderr[-3000:]
    return run


def test_kill_between_write_and_rename_resumes_from_the_previous_checkpoint(shards, uninterrupted, tmp_path):
    run = tmp_path / "run"
    killed = train(run, shards, kill_at=2)  # the second epoch's checkpoint: written, not renamed
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(partial_files(run)) == 1  # the orphaned temporary file of the killed writer
    first = load_checkpoint(run / LATEST)
    assert first["epoch"] == 1 and sorted(p.name for p in run.glob("ckpt-*.pt")) == [f"ckpt-{first['step']:09d}.pt"]
    resumed = train(run, shards)
    assert resumed.returncode == 0 and resumed.stdout.split()[-1] == "done", resumed.stderr[-3000:]
    assert partial_files(run) == []  # the next save removed it
    assert_equal_weights(uninterrupted, run)


# a writer that saves ~4 MB checkpoints as fast as it can and reports each step once it is saved
WRITER = textwrap.dedent("""
    import sys, torch
    from salnet.train.checkpoint import CheckpointManager
    m = CheckpointManager(sys.argv[1], keep_last=2)
    state = m.load()
    step = state["step"] if state else 0
    while True:
        step += 1
        m.save({"step": step, "w": torch.full((1024, 1024), float(step))}, step, is_best=step % 3 == 0)
        print(step, flush=True)
""")


def test_kill_at_random_instants_always_leaves_a_loadable_latest(tmp_path):
    rng = random.Random(18)
    last = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                env=ENV, cwd=REPO)
        # wait for a state: this run's first checkpoint written, then kill it at a random instant after it
        first = proc.stdout.readline()
        assert first.strip(), "the writer did not start"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        saved = [int(x) for x in [first, *proc.stdout.read().split()] if str(x).strip()]
        assert proc.wait(timeout=30) == -signal.SIGKILL
        with warnings.catch_warnings():
            warnings.simplefilter("error", CheckpointFallback)  # latest.pt itself loads: no fall back needed
            state = CheckpointManager(tmp_path).load()
        assert state["step"] >= max(saved) > last  # every step reported saved survived the kill
        assert torch.equal(state["w"], torch.full((1024, 1024), float(state["step"])))
        last = max(saved)
    m = CheckpointManager(tmp_path, keep_last=2)
    m.save({"step": last + 100}, last + 100)
    assert partial_files(tmp_path) == []
    assert load_checkpoint(tmp_path / "best.pt")["step"] % 3 == 0


def big_state(step: int, mib: float) -> dict:
    return {"step": step, "w": torch.rand(int(mib * 2**20 / 4), generator=torch.Generator().manual_seed(step))}


def check_full_disk_outcome(folder: Path, message: str, saved_step: int) -> None:
    assert "could not be written" in message and "Free space" in message and "ckpt-" in message, message
    assert partial_files(folder) == []  # nothing half-written left
    assert load_checkpoint(folder / LATEST)["step"] == saved_step  # the previous checkpoint, intact
    assert torch.equal(load_checkpoint(folder / LATEST)["w"], big_state(saved_step, 1.0)["w"])


@pytest.fixture
def tmpfs(tmp_path):
    """A 3 MiB tmpfs mounted on a fresh folder (root only), unmounted afterwards."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a real full disk needs root to mount a small tmpfs; the file-size-limit variant runs instead")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_full_disk_during_the_write_leaves_the_previous_checkpoint(tmpfs):
    m = CheckpointManager(tmpfs, keep_last=3)
    m.save(big_state(1, 1.0), 1)
    with pytest.raises(CheckpointWriteError) as err:
        m.save(big_state(2, 2.5), 2)  # 1 + 2.5 MiB > 3 MiB: ENOSPC half-way through the write
    check_full_disk_outcome(tmpfs, str(err.value), 1)
    assert sorted(p.name for p in tmpfs.iterdir()) == ["ckpt-000000001.pt", LATEST]


# the same with a per-process file size limit (no root needed): the write fails with EFBIG
FSIZE = textwrap.dedent("""
    import resource, signal, sys, torch
    from salnet.train.checkpoint import CheckpointManager, CheckpointWriteError
    m = CheckpointManager(sys.argv[1])
    m.save({"step": 1, "w": torch.rand(2**18, generator=torch.Generator().manual_seed(1))}, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20 + 2**19, 2**20 + 2**19))
    try:
        m.save({"step": 2, "w": torch.rand(2**20)}, 2)
    except CheckpointWriteError as exn:
        print(exn)
""")


def test_file_size_limit_during_the_write_leaves_the_previous_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-c", FSIZE, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env=ENV, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    check_full_disk_outcome(tmp_path, out.stdout, 1)


def test_a_damaged_latest_falls_back_to_the_newest_intact_checkpoint(shards, uninterrupted, tmp_path):
    from salnet.train.loop import Trainer

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run, symlinks=True)
    newest = (run / LATEST).resolve()
    good = newest.read_bytes()
    newest.write_bytes(good[: len(good) // 2])  # damaged after it was written (a bad disk, a partial copy)
    cfg = apply_overrides(Config(), overrides(shards))
    with pytest.warns(CheckpointFallback, match=rf"latest.pt -> {newest.name}: .*resuming from ckpt-\d+\.pt"):
        trainer = Trainer(cfg, run_dir=run)
    assert trainer.epoch == 2 and newest.exists()  # the previous epoch's checkpoint; nothing deleted
    out = train(run, shards)  # the run redoes the last epoch and ends as the uninterrupted run did
    assert out.returncode == 0 and out.stdout.split()[-1] == "done", out.stderr[-3000:]
    assert "CheckpointFallback" in out.stderr and f"latest.pt -> {newest.name}" in out.stderr
    assert_equal_weights(uninterrupted, run)


def test_fallback_cases_of_the_checkpoint_manager(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=5)
    for step in (1, 2, 3):
        m.save({"step": step}, step)
    (tmp_path / "ckpt-000000003.pt").unlink()  # latest.pt dangles
    with pytest.warns(CheckpointFallback, match="latest.pt is missing; resuming from ckpt-000000002.pt"):
        assert m.load()["step"] == 2
    (tmp_path / "ckpt-000000002.pt").write_bytes(b"garbage")
    with pytest.warns(CheckpointFallback, match=r"ckpt-000000002.pt: UnpicklingError.*resuming from ckpt-000000001"):
        assert m.load()["step"] == 1
    (tmp_path / "ckpt-000000001.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no checkpoint loads \(ckpt-0+2.pt: .*ckpt-0+1.pt: .*--no-resume"):
        m.load()
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000000001.pt", "ckpt-000000002.pt"]


@pytest.mark.gpu
def test_a_cuda_run_resumes_from_the_fallback_checkpoint(shards, tmp_path):
    """On a GPU the checkpoint is read onto the device (RNG states included) and the run still resumes."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: resuming reads the checkpoint onto the GPU")
    from salnet.train.loop import Trainer

    cfg = apply_overrides(Config(), overrides(shards))
    assert Trainer(cfg, run_dir=tmp_path).fit()["status"] == "done"
    newest = (tmp_path / LATEST).resolve()
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(CheckpointFallback):
        trainer = Trainer(cfg, run_dir=tmp_path)
    assert trainer.device.type == "cuda" and trainer.epoch == 2
    assert trainer.fit()["status"] == "done" and load_checkpoint(tmp_path / LATEST)["epoch"] == 3
