"""Bad input at the edges the suite reads: each is a clear error naming the file and what to do, or skipped and
counted where skipping is right; no file is deleted or changed.

- metrics.jsonl whose last line was cut off (its writer killed) → that line ignored, the epochs before it count;
- trial.json that is not JSON → an error naming it and what to do; status lists the trial as unreadable and goes
  on with the others, cancel goes on and says so;
- a shard whose sha256 differs from the manifest → ``jobs/pack.py --verify`` names it and says to delete it and
  pack again, which then verifies clean;
- a config file with an unknown key → an error naming the file and the closest key;
- a sweep file whose metric the run does not log → an error at its file:line listing the metrics, before
  anything is written.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from salnet.config import ConfigError, load_config
from salnet.sweeps.folder import JobRecord, SweepFolder, SweepPlan, read_metrics

REPO = Path(__file__).resolve().parents[1]
ROW = {"epoch": 1, "step": 3, "stage": "content", "train": {"loss": 1.0}, "val": {"cc": 0.25}, "time": 1.0}


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its sha256: "nothing deleted or changed" is this staying the same."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sweep(tmp_path: Path) -> SweepFolder:
    folder = SweepFolder(tmp_path / "sweep")
    folder.write_plan(SweepPlan())
    for t, status in (("t0", "done"), ("t1", "running"), ("t2", "running")):
        folder.update_trial(t, status=status, attempts=1, jobs=[JobRecord(id="7", backend="debug")])
        (folder.trial_dir(t) / "metrics.jsonl").write_text(json.dumps(ROW) + "\n")
    return folder


def test_a_cut_off_metrics_line_is_ignored_and_nothing_changes(tmp_path):
    from salnet.run.status import sweep_status

    folder = sweep(tmp_path)
    with open(folder.trial_dir("t1") / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**ROW, "epoch": 2})[:40])  # the writer was killed mid-line
    before = digest(folder.path)
    assert read_metrics(folder.trial_dir("t1")) == {1: ROW}
    assert [t["epochs"] for t in sweep_status(folder)["trials"]] == [1, 1, 1]
    assert digest(folder.path) == before


def test_a_trial_json_that_is_not_json_is_named_and_the_rest_goes_on(tmp_path, capsys, caplog, script_here):
    from salnet.run.cancel import cancel_sweep
    from salnet.run.status import sweep_status, table

    folder = sweep(tmp_path)
    bad = folder.trial_dir("t1") / "trial.json"
    bad.write_text('{"trial": "t1", "status": "runn')  # damaged by another program
    before = digest(folder.path)
    with pytest.raises(ConfigError, match=rf"{bad}: not valid JSON .*restore it, or move it aside and relaunch"):
        folder.read_trial("t1")
    status = sweep_status(folder)
    assert [(t["trial"], t["status"]) for t in status["trials"]] == [("t0", "done"), ("t1", "unreadable"),
                                                                      ("t2", "running")]
    assert f"t1: {bad}: not valid JSON" in table(status)
    assert digest(folder.path) == before  # reading changed nothing
    cancel_sweep(folder)
    said = capsys.readouterr()
    assert f"{bad}: not valid JSON" in said.out + said.err + caplog.text  # printed or logged, said either way
    assert folder.read_trial("t2").status == "cancelled" and bad.read_text() == '{"trial": "t1", "status": "runn'
    out = script_here("status", str(folder.path))
    assert out.returncode == 0 and "unreadable" in out.stdout and str(bad) in out.stdout, out.stderr


def pack_job():
    spec = importlib.util.spec_from_file_location("pack_job", REPO / "jobs" / "pack.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def test_a_shard_that_changed_after_packing_is_named_with_what_to_do(tmp_path, capsys):
    job = pack_job()
    args = ["synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "s"), "--shard-size", "0.03",
            "--workers", "1", "--no-progress"]
    assert job.main([*args, "--synthetic", "6", "2"]) == 0
    shard = tmp_path / "s" / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # one flipped byte inside a member: the same size, another sha256
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert job.main([*args, "--verify"]) == 1
    err = capsys.readouterr().err
    assert (f"verify: train-000000.tar: sha256 differs from the manifest (the file changed after packing): delete "
            f"{shard} and run jobs/pack.py again with the same arguments") in err
    assert shard.read_bytes() == bytes(data)  # reported, not touched
    shard.unlink()  # what the message says to do
    assert job.main([*args, "--verify"]) == 0
    assert "verified 8 samples in" in capsys.readouterr().out


def test_a_config_file_with_an_unknown_key_names_the_file(tmp_path, script_here):
    p = tmp_path / "mine.yaml"
    p.write_text("train:\n  epochs: 3\n  alhpa: 0.1\n")
    with pytest.raises(ConfigError, match=rf"{p}: unknown config key 'train.alhpa'; did you mean 'alpha'"):
        load_config(p)
    out = script_here("train", "--config", str(p))
    assert out.returncode == 2 and f"{p}: unknown config key 'train.alhpa'" in out.stderr, out.stderr


def test_a_sweep_whose_metric_the_run_does_not_log_fails_before_writing(tmp_path, script_here):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nbase: salgan\nspace:\n  train.lr: {grid: [0.001]}\nmetric: auc\nmode: max\n")
    out = script_here("launch", "--sweep", str(p), "--backend", "local", "--tiny", "--out", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{p}:5: metric 'auc' is not a metric; choose one of auc_judd, auc_borji, sauc" in out.stderr
    assert not (tmp_path / "runs").exists()
