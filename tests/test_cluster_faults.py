"""Faults that only a cluster (GPUs, Slurm signals, srun) would show, made here without one: a loader worker signalled
by someone other than its parent, srun's CPUs per task, the loss study's targets under bf16 autocast, a checkpoint's
CUDA RNG states resumed where fewer devices are visible, and the host synchronisations of the fixation masks.
The real-Slurm halves are in tests/slurm/test_preempt_workers_slurm.py."""

import multiprocessing.process
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import synthetic_shards
from torch import nn

import salnet.losses.base as loss_base
from salnet.config import DEBUG_OVERRIDES, apply_overrides, loss_study
from salnet.data.loader import LoaderConfig, TrainLoader
from salnet.run.submission import make_executor
from salnet.sweeps.folder import JobResources
from salnet.train import checkpoint, steps
from salnet.train.build import build_content_loss, build_generator
from salnet.train.loop import StopFlag

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("cluster"), {"train": 24, "val": 4}, (32, 48), 0.01)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (every thread's /proc children list)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended since the listing (a finished loader's pin thread)
            continue
    return out


def signal_mask(pid: int, field: str) -> int:
    """A process's SigIgn/SigBlk/... bit mask from /proc/PID/status."""
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(field + ":"))
    return int(line.split()[1], 16)


def test_loader_workers_ignore_slurms_stop_signals_and_the_epoch_is_unchanged(shards):
    """Slurm signals every process of a step; torch's workers die from a SIGTERM their parent did not send (the
    main process then raised 'DataLoader worker ... killed by signal' before its stop flag was read). Sent by
    another process (kill), the workers live on and the epoch's batches are those of an undisturbed epoch."""
    cfg = LoaderConfig(size=(32, 48), batch_size=2, workers=2, pin_memory=False, flip=True)
    undisturbed = [(b["id"], b["image"]) for b in TrainLoader(shards, cfg=cfg)]
    loader = TrainLoader(shards, cfg=cfg)
    # other children of this process (another test's server, the first loader's workers not yet reaped) are not
    # this loader's workers and get no signal
    before = set(children(os.getpid()))
    got, ignored = [], []
    for i, b in enumerate(loader):
        got.append((b["id"], b["image"]))
        if i == 1:  # the workers exist and are mid-epoch
            workers = [p for p in children(os.getpid()) if p not in before]
            assert len(workers) == 2, workers
            for pid in workers:
                ignored.append(signal_mask(pid, "SigIgn"))
                for sig in ("TERM", "USR2"):
                    subprocess.run(["kill", f"-{sig}", str(pid)], check=True, timeout=30)
    assert len(got) == len(undisturbed) == len(loader) == 12
    bits = 1 << (signal.SIGTERM - 1) | 1 << (signal.SIGUSR2 - 1)
    assert [m & bits for m in ignored] == [bits, bits], [hex(m) for m in ignored]
    for (ids_a, img_a), (ids_b, img_b) in zip(got, undisturbed, strict=True):
        assert ids_a == ids_b and torch.equal(img_a, img_b)


def test_a_stop_signal_while_the_workers_start_is_ignored_and_the_epochs_are_unchanged(shards, monkeypatch):
    """A preemption can come while a loader starts its workers (every epoch and every validation): between the fork
    and the worker_init_fn a worker had the default SIGTERM action, then torch's handler (which kills a worker on a
    SIGTERM its parent did not send), and the main process raised 'DataLoader worker ... killed by signal'. Each
    worker here gets SIGTERM and SIGUSR2 the moment it is started, in two epochs; both epochs are undisturbed."""
    cfg = LoaderConfig(size=(32, 48), batch_size=2, workers=2, pin_memory=False, flip=True)
    quiet = TrainLoader(shards, cfg=cfg)
    undisturbed = [(b["id"], b["image"]) for _ in range(2) for b in quiet]  # epochs 0 and 1
    started = []
    real_start = multiprocessing.process.BaseProcess.start

    def start_then_signal(process):
        real_start(process)
        started.append(process.pid)
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            os.kill(process.pid, sig)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_then_signal)
    loader = TrainLoader(shards, cfg=cfg)
    got = [(b["id"], b["image"]) for _ in range(2) for b in loader]
    assert len(started) == 4 and len(got) == len(undisturbed) == 24
    for (ids_a, img_a), (ids_b, img_b) in zip(got, undisturbed, strict=True):
        assert ids_a == ids_b and torch.equal(img_a, img_b)
    blocked = 1 << (signal.SIGTERM - 1) | 1 << (signal.SIGUSR2 - 1)
    assert signal_mask(os.getpid(), "SigBlk") & blocked == 0  # the main process blocks them only while it forks


def test_a_requeue_survives_a_repeated_stop_signal():
    """Once the checkpoint is written the job hands over to submitit's SIGUSR2 handler, which runs ``scontrol
    requeue``. Slurm signals every process of a step, and a preemption sends SIGTERM and SIGUSR2: one arriving then
    killed scontrol ('died with <Signals.SIGUSR2: 12>') and the job failed instead of being requeued. The handler's
    command here signals itself with both, as Slurm would; it lives and the handler gets its output."""
    ran = []

    def requeue(signum, _frame):  # stands in for submitit's handler: a command in a child process
        cmd = ["sh", "-c", "kill -USR2 $$; kill -TERM $$; echo requeued"]
        ran.append((signum, subprocess.run(cmd, capture_output=True, text=True, timeout=30)))

    stop = StopFlag()
    stop.previous[signal.SIGUSR2] = requeue
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        stop.hand_over()
        now = {sig: signal.getsignal(sig) for sig in before}
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert [(s, p.returncode, p.stdout) for s, p in ran] == [(signal.SIGUSR2, 0, "requeued\n")], ran
    assert now == {signal.SIGTERM: signal.SIG_IGN, signal.SIGUSR2: signal.SIG_IGN}


def slurm_job(**kw) -> JobResources:
    return JobResources(**{"backend": "slurm", "partition": "gpu", "gpus_per_node": 2, "cpus_per_task": 3,
                           "time_min": 10, **kw})


def test_every_srun_step_gets_the_jobs_cpus_per_task(tmp_path, monkeypatch):
    """From Slurm 22.05 srun does not take --cpus-per-task from the allocation: without it on the srun line a rank
    is bound to one CPU. The sbatch script submitit would write carries it on the srun line."""
    monkeypatch.delenv("SALNET_SLURM_GPUS", raising=False)
    ex = make_executor(tmp_path, slurm_job(), "cpus")
    text = ex._executor._make_submission_file_text("python -c pass", "uid")
    srun = next(ln for ln in text.splitlines() if ln.startswith("srun "))
    assert "--cpus-per-task=3" in srun.split() and "--kill-on-bad-exit=1" in srun.split()
    assert "#SBATCH --cpus-per-task=3" in text and "#SBATCH --gpus-per-node=2" in text and "--gres" not in text


def test_gres_only_clusters_get_gres(tmp_path, monkeypatch):
    monkeypatch.setenv("SALNET_SLURM_GPUS", "gres")
    text = make_executor(tmp_path, slurm_job(), "gres")._executor._make_submission_file_text("python -c pass", "uid")
    assert "#SBATCH --gres=gpu:2" in text and "--gpus-per-node" not in text
    monkeypatch.setenv("SALNET_SLURM_GPUS", "gpu")
    with pytest.raises(ValueError, match="SALNET_SLURM_GPUS='gpu': choose gres or gpus-per-node"):
        make_executor(tmp_path, slurm_job(), "gres")


class Recorder(nn.Module):
    """The real content loss, keeping the targets it was given."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss, self.seen = loss, []

    def forward(self, pred, target, output):
        self.seen.append({k: v.detach().clone() for k, v in target.items()})
        return self.loss(pred, target, output)


def test_loss_study_targets_are_float32_under_bf16_autocast():
    """The loss study's network is smaller at its output than at its input: the targets are area-resized, a matmul,
    which bf16 autocast rounded to bf16 (as on every GPU step). They are float32 and equal the fp32 path's."""
    torch.manual_seed(0)
    cfg = apply_overrides(loss_study(), [*DEBUG_OVERRIDES, "data.input_size=[48, 64]", "train.loss={kld: 10.0, "
                                         "cc: -2.0, nss: -1.0}"])
    G = build_generator(cfg)
    loss = Recorder(build_content_loss(cfg))
    opt = torch.optim.SGD(G.parameters(), lr=0.0)  # lr 0: both steps see the same network
    fix = (torch.rand(2, 1, 48, 64) < 0.02).float()
    fix[:, :, 10, 10] = 1
    batch = {"image": torch.rand(2, 3, 48, 64), "map": torch.rand(2, 1, 48, 64), "fixations": fix}
    steps.content_step(G, opt, loss, batch, torch.device("cpu"), bf16=True)
    steps.content_step(G, opt, loss, batch, torch.device("cpu"), bf16=False)
    under_autocast, fp32 = loss.seen
    size = tuple(G(batch["image"]).logits.shape[-2:])
    assert size != (48, 64)  # a real resize
    expected = steps.targets_at(batch, size)
    for k in ("map", "fixations", "image"):
        assert under_autocast[k].dtype == fp32[k].dtype == torch.float32, k
        assert torch.equal(under_autocast[k], expected[k]) and torch.equal(fp32[k], expected[k]), k


class FakeCuda:
    """The CUDA RNG calls of ``n`` visible devices (no GPU here): a state per device; an index past the visible
    devices raises IndexError as ``torch.cuda.default_generators[idx]`` does."""

    def __init__(self, monkeypatch, n: int, current: int = 0):
        self.n, self.current = n, current
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(n)}
        for name in ("is_available", "device_count", "current_device", "get_rng_state", "set_rng_state",
                     "get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.n

    def current_device(self) -> int:
        return self.current

    def _index(self, device) -> int:
        idx = self.current if device in ("cuda", None) else int(device)
        if idx >= self.n:
            raise IndexError("tuple index out of range")
        return idx

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self.states[self._index(device)].clone()

    def set_rng_state(self, state: torch.Tensor, device="cuda") -> None:
        self.states[self._index(device)] = state.clone()

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [self.get_rng_state(i) for i in range(self.n)]

    def set_rng_state_all(self, states) -> None:
        for i, s in enumerate(states):
            self.set_rng_state(s, i)


def test_a_checkpoint_from_more_gpus_resumes_where_fewer_are_visible(tmp_path, monkeypatch):
    """Saved by a rank on device 3 of a 4-GPU node (the old format held all four states); resumed by a rank that
    sees one GPU (per-task binding): the saved device's state goes to the visible device, nothing raises."""
    saver = FakeCuda(monkeypatch, 4, current=3)
    saved = checkpoint.CheckpointManager(tmp_path).save({"rng": checkpoint.rng_state()}, 1)
    resumer = FakeCuda(monkeypatch, 1, current=0)
    checkpoint.set_rng_state(checkpoint.load_checkpoint(saved)["rng"])  # weights_only; raised IndexError before
    assert torch.equal(resumer.states[0], saver.states[3])
    # a checkpoint of the older format (every visible device's state): the current device's entry, if any
    old = {**checkpoint.rng_state(), "cuda": [torch.full((16,), 7 + i, dtype=torch.uint8) for i in range(4)]}
    checkpoint.set_rng_state(old)
    assert torch.equal(resumer.states[0], old["cuda"][0])
    FakeCuda(monkeypatch, 8, current=5)
    checkpoint.set_rng_state(old)  # device 5 has no entry in a 4-device list: left as it is


def test_fixation_means_need_no_host_synchronisation(monkeypatch):
    """NSS and NLL's fixation mean: the same values as the mean over the images that have fixations, an error for
    a batch without any on CPU, and on a device no data-dependent operation (meta tensors have no data: a mask
    count or a boolean index raised there)."""
    torch.manual_seed(0)
    values = torch.randn(4, 1, 6, 8, dtype=torch.float64)
    fix = (torch.rand(4, 1, 6, 8) < 0.2).double()
    fix[1] = 0  # an image without fixations is left out
    fix[0, 0, 0, 0] = 1
    has = [i for i in range(4) if fix[i].sum() > 0]
    assert 1 not in has and len(has) >= 2
    expected = torch.stack([(values[i] * fix[i]).sum() / fix[i].sum() for i in has]).mean()
    assert torch.allclose(loss_base.fixation_mean(values, fix, "nss"), expected, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="'nss' needs fixations"):
        loss_base.fixation_mean(values, torch.zeros_like(fix), "nss")
    monkeypatch.setattr(loss_base, "_device_checked", True, raising=False)  # the first device batch was checked
    out = loss_base.fixation_mean(values.to("meta"), fix.to("meta"), "nll")
    assert out.device.type == "meta" and out.shape == ()
