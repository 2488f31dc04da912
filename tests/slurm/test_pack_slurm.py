"""jobs/pack.py --backend slurm on the real local cluster: a submitit array job, same bytes as in-process."""

import subprocess
import sys
from pathlib import Path

import pytest

from salnet.data import get_reader
from salnet.data.shards import pack
from salnet.data.synthetic import write_synthetic

PACK = Path(__file__).resolve().parents[2] / "jobs" / "pack.py"
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]


def test_pack_as_slurm_array_equals_in_process(slurm, tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 12, "val": 4}, size=(32, 48))
    pack(get_reader("synthetic", tmp_path / "raw"), tmp_path / "local", shard_size_mb=0.02, workers=1)
    run = subprocess.run(
        [sys.executable, str(PACK), "synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "slurm"),
         "--shard-size", "0.02", "--backend", "slurm", "--partition", "cpu", "--array-tasks", "3",
         "--cpus-per-task", "1", "--mem-gb", "1", "--time-min", "5", "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "submitted 3 slurm task(s)" in run.stdout
    local = sorted(p.name for p in (tmp_path / "local").glob("*.tar"))
    assert local == sorted(p.name for p in (tmp_path / "slurm").glob("*.tar")) and len(local) >= 3
    for name in [*local, "manifest.json"]:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "slurm" / name).read_bytes(), name
