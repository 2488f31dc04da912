"""Files a colleague can read: every file that packing, training, a run's evaluation, scoring and the sweep
pictures write gets the mode the umask gives (0o644 under 022, 0o640 under 027), folders 0o755 / 0o750 —
config.yaml included (it was written by mkstemp, 0o600)."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from test_folder_dataset import make_folder

from salnet.atomic import atomic_write, current_umask, umask_mode
from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.sweeps.plots import atomic_bytes
from salnet.train.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
REPO = Path(__file__).resolve().parents[1]


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def modes(root: Path) -> dict[str, set[str]]:
    """{octal mode: names} of every file and folder under root (symlinks left out: their mode is always 777)."""
    out: dict[str, set[str]] = {}
    for p in root.rglob("*"):
        if not p.is_symlink():
            out.setdefault(oct(stat.S_IMODE(p.lstat().st_mode)), set()).add(str(p.relative_to(root)))
    return out


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_everything_written_follows_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        assert current_umask() == mask and umask_mode() == file_mode
        make_folder(tmp_path / "raw", n=12, seed=2)
        (tmp_path / "raw" / "val.txt").write_text("im08\nim09\n")
        (tmp_path / "raw" / "test.txt").write_text("im10\nim11\n")
        (tmp_path / "raw" / "train.txt").write_text("".join(f"im{i:02d}\n" for i in range(8)))
        out = tmp_path / "out"
        assert job("pack").main(["folder", "--root", str(tmp_path / "raw"), "--out", str(out / "shards"),
                                 "--sigma", "4", "--workers", "1", "--no-progress"]) == 0
        cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={out / 'shards'}", "train.epochs=1",
                                         "data.input_size=[32, 48]", "train.procedure=content",
                                         "train.optimizer=adam"])
        Trainer(cfg, run_dir=out / "run").fit()
        assert job("evaluate").main(["--run", str(out / "run"), "--split", "test", "--per-image",
                                     "--device", "cpu"]) == 0
        np.save(out / "pred.npy", np.ones((4, 4)))
        atomic_bytes(out / "summary.png", b"\x89PNG not really")
        atomic_write(out / "note.txt", "text\n")
    finally:
        os.umask(old)
    seen = modes(out)
    files = {n for names in seen.values() for n in names if (out / n).is_file()}
    assert {"run/config.yaml", "run/metrics.jsonl", "run/final.json", "shards/manifest.json",
            "run/evaluation-test/summary.json", "run/evaluation-test/per_image.csv", "summary.png",
            "note.txt"} <= files
    assert {n for n in files if stat.S_IMODE((out / n).stat().st_mode) != file_mode} == set()
    dirs = {n for names in seen.values() for n in names if (out / n).is_dir()}
    assert "run/tb" in dirs and {n for n in dirs if stat.S_IMODE((out / n).stat().st_mode) != dir_mode} == set()
