"""Packing: exact round trips raw -> shards, byte-identical repacks, resume, manifest, verify, the CLI
(in-process and submitit's local executor), and WebDataset compatibility."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from fixtures import raw_releases

from salnet.data import get_reader, write_synthetic
from salnet.data.shards import compare, decode_record, iter_tar, pack, read_manifest, sample_key, verify

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def all_records(folder: Path) -> list:
    m = read_manifest(folder)
    return [decode_record(r) for s in m["shards"] for r in iter_tar(folder / s["name"])]


@pytest.mark.parametrize("name, sub, splits, limit", [
    ("salicon", "salicon-2014-examples", None, None),
    ("osie", "osie", None, 25),  # the first 25 of 100: each OSIE map is a 0.1 s blur at 800x600
    ("mit1003", "mit1003-iccv100", ["val"], None),
    ("mit1003", "mit-benchmark-demo", ["all"], None),
])
def test_shared_real_samples_round_trip_exactly(tmp_path, name, sub, splits, limit):
    root = DATA / sub
    if not root.exists():
        pytest.skip(f"shared sample {root} absent (the repo's sibling ../shared/data)")
    reader = get_reader(name, root)
    if limit:
        for s in reader.available_splits():
            reader._indexes[s] = {i: reader.index(s)[i] for i in reader.ids(s)[:limit]}
    m = pack(reader, tmp_path, splits, shard_size_mb=3, workers=1)
    samples = all_records(tmp_path)
    expected = [(s, i) for s in (splits or reader.default_splits()) for i in reader.ids(s)]
    assert [(s.split, s.id) for s in samples] == expected
    for s in samples:  # every pixel, every fixation, the image bytes as released
        assert compare(s, reader.load(s.split, s.id)) == []
    assert sum(v["count"] for v in m["splits"].values()) == len(expected)


def test_fixture_formats_round_trip(tmp_path):
    for name, writer in (("salicon", raw_releases.salicon2017), ("mit1003", raw_releases.mit1003_release),
                         ("cat2000", raw_releases.cat2000), ("mit300", raw_releases.mit300)):
        writer(tmp_path / "raw" / name)
        reader = get_reader(name, tmp_path / "raw" / name)
        splits = ["all"] if name == "mit1003" else None
        pack(reader, tmp_path / name, splits, shard_size_mb=0.01, workers=1)
        assert verify(tmp_path / name, reader)["errors"] == []
        got = {(s.split, s.id): s for s in all_records(tmp_path / name)}
        assert len(got) == sum(len(reader.ids(s)) for s in (splits or reader.available_splits()))
    cat = {(s.split, s.id) for s in all_records(tmp_path / "cat2000")}
    assert ("train", "Line.Drawing/002.v2") in cat  # dotted ids survive the tar key sanitising
    assert sample_key("cat2000", "train", "Line.Drawing/002.v2") == "cat2000/train/Line_Drawing_002_v2"


def test_packing_twice_gives_identical_bytes_and_a_correct_manifest(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 12, "val": 5}, size=(32, 48), seed=1)
    reader = get_reader("synthetic", tmp_path / "raw")
    pack(reader, tmp_path / "a", shard_size_mb=0.03, workers=1)
    pack(get_reader("synthetic", tmp_path / "raw"), tmp_path / "b", shard_size_mb=0.03, workers=2)
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert a == b and len(a) > 3  # every shard and the manifest, byte for byte
    m = json.loads(a["manifest.json"])
    assert {s: v["count"] for s, v in m["splits"].items()} == {"train": 12, "val": 5}
    for rec in m["shards"]:
        assert hashlib.sha256(a[rec["name"]]).hexdigest() == rec["sha256"] and rec["bytes"] == len(a[rec["name"]])
    assert m["packer_version"] == "1" and m["source_root"] == str((tmp_path / "raw").resolve())


def test_packing_resumes_after_an_interruption(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 12}, size=(32, 48), seed=2)
    reader = get_reader("synthetic", tmp_path / "raw")
    clean = tmp_path / "clean"
    pack(reader, clean, shard_size_mb=0.03)
    n_shards = len(read_manifest(clean)["shards"])

    class Crashing(type(reader)):
        calls = 0

        def load(self, split, id):
            Crashing.calls += 1
            if Crashing.calls > 5:
                raise OSError("node went down")
            return super().load(split, id)

    out = tmp_path / "out"
    with pytest.raises(OSError, match="node went down"):
        pack(Crashing(tmp_path / "raw"), out, shard_size_mb=0.03)
    done = sorted(p.name for p in out.glob("*.tar"))
    assert 0 < len(done) < n_shards and not (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp")) or all(p.suffix == ".tmp" for p in out.glob("*.tmp"))
    stamps = {n: (out / n).stat().st_mtime_ns for n in done}
    pack(reader, out, shard_size_mb=0.03)
    assert {n: (out / n).stat().st_mtime_ns for n in done} == stamps  # finished shards were skipped
    assert shard_bytes(out) == shard_bytes(clean)
    with pytest.raises(ValueError, match="another configuration"):
        pack(reader, out, shard_size_mb=1.0)


def test_verify_detects_a_changed_shard(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 4}, size=(32, 48), seed=3)
    reader = get_reader("synthetic", tmp_path / "raw")
    pack(reader, tmp_path / "s", shard_size_mb=10)
    assert verify(tmp_path / "s", reader) == {"shards": 1, "samples": 4, "errors": []}
    np.save(tmp_path / "raw" / "train" / "fixations" / "000002.npy", np.zeros((1, 3), np.int32))
    errors = verify(tmp_path / "s", get_reader("synthetic", tmp_path / "raw"))["errors"]
    assert errors == ["train-000000.tar/000002: fixations differ (48 vs 1)"]
    tar = tmp_path / "s" / "train-000000.tar"
    tar.write_bytes(tar.read_bytes()[:-3000])
    assert "sha256 differs" in " ".join(verify(tmp_path / "s")["errors"])


def test_shards_read_with_webdataset(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 3}, size=(32, 48), seed=4)
    pack(get_reader("synthetic", tmp_path / "raw"), tmp_path / "s")
    recs = list(wds.WebDataset(str(tmp_path / "s" / "train-000000.tar"), shardshuffle=False))
    assert [r["__key__"] for r in recs] == [f"synthetic/train/{i:06d}" for i in range(3)]
    assert all({"png", "map.png", "fix.npy", "json"} <= set(r) for r in recs)


def test_cli_inprocess_verify_and_errors(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pack_job", REPO / "jobs" / "pack.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    rc = job.main(["synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "s"), "--synthetic", "6",
                   "2", "--workers", "1", "--shard-size", "0.03", "--verify", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "packed synthetic: train 6, val 2" in out and "verified 8 samples" in out
    assert job.main(["nosuch", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nosuch'" in capsys.readouterr().err
    assert job.main(["cat2000", "--root", str(tmp_path / "raw")]) == 2
    assert "neither trainSet/Stimuli nor testSet/Stimuli" in capsys.readouterr().err
    # submitit's local executor: real separate processes, one per shard range, then the manifest
    rc = job.main(["synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "loc"),
                   "--shard-size", "0.03", "--backend", "local", "--array-tasks", "2", "--cpus-per-task", "1"])
    assert rc == 0
    assert shard_bytes(tmp_path / "loc") == shard_bytes(tmp_path / "s")
