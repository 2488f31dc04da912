"""The sweep folder (salnet.sweeps.folder): the plan and the records read back typed and equal, metrics.jsonl
read the same way by the driver, status and the summary (a torn last line ignored, a bad line skipped with a
warning), cancel marks what it stops."""

import json
import warnings
from pathlib import Path

import pytest
import yaml

from salnet.config import ConfigError
from salnet.sweeps.folder import JobRecord, JobResources, SweepFolder, SweepPlan, read_metrics
from salnet.sweeps.load import load_sweep, sweep_id, with_budget

LINES = [
    {"epoch": 1, "step": 2, "stage": "content", "val": {"cc": 0.25, "kld": 2.0}},
    {"epoch": 2, "step": 4, "stage": "content", "val": {"cc": 0.5, "kld": 1.5}},
    # a job killed after epoch 2's line, before its checkpoint, repeats epoch 2 when it resumes
    {"epoch": 2, "step": 4, "stage": "content", "val": {"cc": 0.375, "kld": 1.75}},
]
TORN = '{"epoch": 3, "step": 6, "stage": "content", "val": {"cc": 0.6'  # the writer was killed mid-line


def plan(tmp_path: Path) -> tuple[SweepFolder, SweepPlan]:
    spec = with_budget(load_sweep("alpha"), trials=2)
    overrides = {"train.epochs": 3, "data.shards": str(tmp_path / "shards")}
    res = JobResources(backend="local", partition="gpu", nodes=2, gpus_per_node=4, cpus_per_task=6, time_min=90,
                       mem_gb=32.0, account="lab", max_num_timeout=1)
    folder = SweepFolder.of(spec, overrides, tmp_path / "runs")
    return folder, SweepPlan(spec=spec, overrides=overrides, resources=res, driver_partition="cpu", split="val",
                             meta={"sweep_id": folder.path.name})


def test_plan_round_trip_is_typed(tmp_path):
    folder, written = plan(tmp_path)
    assert folder.path == (tmp_path / "runs" / "sweeps" / sweep_id(written.spec, written.overrides)).resolve()
    folder.write_plan(written)
    doc = yaml.safe_load(folder.plan_file.read_text())
    assert list(doc) == ["spec", "overrides", "resources", "driver_partition", "evaluate", "split", "meta"]
    assert doc["resources"] == {"backend": "local", "partition": "gpu", "nodes": 2, "gpus_per_node": 4,
                                "cpus_per_task": 6, "time_min": 90, "mem_gb": 32.0, "account": "lab", "qos": None,
                                "constraint": None, "max_num_timeout": 1}
    read = folder.read_plan()
    assert read == written and isinstance(read.resources, JobResources) and read.spec.budget.trials == 2
    assert SweepFolder.find(folder.path.name.split("-")[0], tmp_path / "runs") == folder
    doc["resources"]["gpus_per_node"] = "four"
    folder.plan_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=rf"{folder.plan_file}: resources.gpus_per_node: expected an integer"):
        folder.read_plan()


def test_trial_and_state_records_round_trip(tmp_path):
    folder = SweepFolder(tmp_path / "sweep")
    assert folder.read_trial("t0").status == "pending" and folder.read_state().status == "new"
    job = JobRecord(id="123", backend="slurm", folder=str(folder.jobs_dir), submitted=5.0)
    rec = folder.update_trial("t0", params={"train.alpha": 0.1}, status="running", attempts=1, jobs=[job])
    assert folder.read_trial("t0") == rec and folder.trials() == ["t0"]
    doc = json.loads((folder.trial_dir("t0") / "trial.json").read_text())
    assert doc["jobs"] == [{"id": "123", "backend": "slurm", "folder": str(folder.jobs_dir), "submitted": 5.0,
                           "requeues": 0}]
    state = folder.update_state(status="running", driver=job, best={"trial": "t0", "cc": 0.5})
    assert folder.read_state() == state and folder.read_state().driver == job and state.evaluation is None
    with pytest.raises(TypeError):
        folder.update_trial("t0", statuss="done")  # a misspelt field is an error, not a new key
    (folder.trial_dir("t0") / "trial.json").write_text('{"trial": "t0", "stat": "done"}')
    with pytest.raises(ConfigError, match=r"t0/trial.json: unknown key 'stat'; did you mean 'status'"):
        folder.read_trial("t0")


def write_metrics(run_dir: Path, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text(text)


def test_a_torn_last_line_is_ignored_the_same_way_everywhere(tmp_path):
    from salnet.run.status import sweep_status
    from salnet.sweeps.summary import read_epochs

    folder, p = plan(tmp_path)
    folder.write_plan(p)
    folder.update_trial("t0", status="running")
    write_metrics(folder.trial_dir("t0"), "".join(json.dumps(r) + "\n" for r in LINES) + TORN)
    expect = {1: LINES[0], 2: LINES[2]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a line being written is no reason to warn
        assert read_metrics(folder.trial_dir("t0")) == expect
        assert folder.epochs("t0") == expect  # what the driver reports to Tune
        assert read_epochs(folder.trial_dir("t0")) == [LINES[0], LINES[2]]  # what the summary scores
        (trial,) = sweep_status(folder)["trials"]
    assert (trial["epochs"], trial["last"], trial["best"]) == (2, 0.375, 0.375)
    assert read_metrics(tmp_path / "nowhere") == {}


@pytest.mark.parametrize("bad", ["not json", '{"step": 3}', '{"epoch": "2"}', "[1, 2]"])
def test_a_bad_complete_line_is_skipped_with_a_warning(tmp_path, bad):
    write_metrics(tmp_path, json.dumps(LINES[0]) + "\n" + bad + "\n" + json.dumps(LINES[1]) + "\n")
    with pytest.warns(UserWarning, match=rf"{tmp_path / 'metrics.jsonl'}:2: not an epoch record"):
        assert read_metrics(tmp_path) == {1: LINES[0], 2: LINES[1]}


def test_epochs_count_from_one_and_a_file_that_counted_from_zero_is_read_shifted(tmp_path):
    from salnet.run.tuner import result_of

    old = [{**row, "epoch": row["epoch"] - 1} for row in LINES]  # as written before epochs counted from 1
    write_metrics(tmp_path, "".join(json.dumps(r) + "\n" for r in old))
    assert read_metrics(tmp_path) == {1: LINES[0], 2: LINES[2]}
    assert result_of(LINES[2])["epoch"] == 2  # Tune's epoch is the record's


def test_cancel_marks_open_trials_and_the_sweep(tmp_path):
    from salnet.run.cancel import cancel_sweep

    folder, p = plan(tmp_path)
    folder.write_plan(p)
    debug = JobRecord(id="7", backend="debug")  # in-process jobs: nothing to send a cancel to
    folder.update_trial("t0", status="running", jobs=[debug])
    folder.update_trial("t1", status="done", jobs=[debug])
    folder.update_trial("t2", status="pending")
    assert cancel_sweep(folder) == []
    assert [folder.read_trial(t).status for t in folder.trials()] == ["cancelled", "done", "cancelled"]
    assert folder.read_state().status == "cancelled"
