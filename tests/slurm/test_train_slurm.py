"""Training jobs on the real local Slurm through submitit: a 2-task DDP job, and a job preempted with
``job._interrupt()`` (SIGUSR2), requeued and resumed, ending with the weights of an uninterrupted job."""

import time

import pytest
import torch
from helpers import synthetic_shards

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides, to_dict
from salnet.run.jobs import TrainJob
from salnet.run.submission import make_executor
from salnet.sweeps.folder import JobResources
from salnet.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic_shards(root, {"train": 24, "val": 6}, (32, 48), 0.05)
    return root / "shards"


def cpu_job() -> JobResources:
    return JobResources(backend="slurm", partition="cpu", gpus_per_node=0, cpus_per_task=1, time_min=10, mem_gb=2)


def config(shards, *extra):
    return to_dict(apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                              "data.batch_size=2", "train.log_every=1", *extra]))


def test_two_task_ddp_job(slurm, shards, tmp_path):
    """Each task's own G and D after its last step are bitwise equal: DDP averaged the gradients of both."""
    import cloudpickle
    import sweep_helpers

    cloudpickle.register_pickle_by_value(sweep_helpers)
    try:
        ex = make_executor(tmp_path / "logs", cpu_job(), "ddp", tasks_per_node=2)
        job = ex.submit(sweep_helpers.train_keeping_own_weights, config(shards), str(tmp_path / "run"))
        results = job.results()  # one per task
    finally:
        cloudpickle.unregister_pickle_by_value(sweep_helpers)
    assert len(results) == 2 and all(r["status"] == "done" for r in results)
    assert results[0]["val"] == results[1]["val"] and results[0]["val"]["images"] == 6
    assert results[0]["step"] == 2 * 24 // (2 * 2)  # 2 epochs × 6 batches per rank
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2  # rank 0 writes, once
    own = [torch.load(tmp_path / "run" / f"own-rank{r}.pt", weights_only=True) for r in range(2)]
    assert own[0].keys() == own[1].keys() and any(k.startswith("D.") for k in own[0])
    differ = [k for k in own[0] if not torch.equal(own[0][k], own[1][k])]
    assert not differ, f"{len(differ)} of {len(own[0])} tensors differ between the tasks: {differ[:5]}"


def test_preempted_job_is_requeued_and_resumes_exactly(slurm, shards, tmp_path):
    cfg = config(shards, "train.epochs=6", "train.bootstrap_epochs=2")
    ex = make_executor(tmp_path / "logs", cpu_job(), "preempt")
    full = ex.submit(TrainJob(), cfg, str(tmp_path / "full"))  # same resources: same float results
    cut = ex.submit(TrainJob(), cfg, str(tmp_path / "cut"))
    deadline = time.time() + 240
    while not (tmp_path / "cut" / "latest.pt").exists():  # wait until it has trained for a while
        assert time.time() < deadline and not cut.done(), cut.stderr()
        time.sleep(0.2)
    cut._interrupt()  # SIGUSR2, as Slurm sends before preemption
    assert full.result()["status"] == "done"
    result = cut.result()
    assert result["status"] == "done" and result["step"] == 6 * 12
    log = cut.stdout() + cut.stderr()
    assert "Requeued" in log or "requeue" in log.lower(), log[-2000:]
    a = load_checkpoint(tmp_path / "full" / "latest.pt")
    b = load_checkpoint(tmp_path / "cut" / "latest.pt")
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"
