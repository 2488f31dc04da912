"""Shards packed at the model's input size and the raw .npy map codec: batches equal to today's exact path
(full-size shards, decoded and resized by the loader) bit for bit, for training (with flips) and for
validation (original-size maps and points); the loader's input-size check; verify; training never reads
the original-size maps."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from salnet.data import get_reader, write_synthetic
from salnet.data.loader import LoaderConfig, TrainLoader, ValLoader
from salnet.data.records import load_npy, parse_input_size
from salnet.data.shards import decode_record, iter_tar, pack, read_manifest, verify

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RAW = (48, 64)


def both(tmp: Path, size, counts=None, **kw) -> tuple[Path, Path]:
    """The same synthetic release packed full-size (PNG maps) and at model input ``size``."""
    if not (tmp / "raw").exists():
        write_synthetic(tmp / "raw", counts or {"train": 24, "val": 7}, size=RAW, seed=5)
    reader = get_reader("synthetic", tmp / "raw")
    reader.size_hint = lambda split, id: 1000  # 8 samples per shard, the same plan for both kinds
    full = tmp / "full"
    if not full.exists():
        pack(reader, full, shard_size_mb=0.008)
    model = tmp / f"model{size[0]}x{size[1]}"
    pack(reader, model, shard_size_mb=0.008, input_size=size, **kw)
    return full, model


def cfg(size, **kw) -> LoaderConfig:
    return LoaderConfig(**{**dict(size=size, batch_size=4, workers=0, shuffle_buffer=5, flip=True), **kw})


def assert_same_batches(a_loader, b_loader, keys=("image", "map", "fixations")) -> int:
    n = 0
    for a, b in zip(a_loader, b_loader, strict=True):
        assert a["id"] == b["id"]
        for k in keys:
            assert torch.equal(a[k], b[k]), k
        for k in ("map_orig", "points"):
            assert (k in a) == (k in b)
            assert all(torch.equal(x, y) for x, y in zip(a.get(k, []), b.get(k, [])))
        n += len(a["id"])
    return n


@pytest.mark.parametrize("size, stored", [((24, 32), np.int16), ((20, 30), np.float32)])
def test_model_size_batches_equal_the_exact_path_bit_for_bit(tmp_path, size, stored):
    """(24, 32): INTER_AREA in exact integer sums, stored as the sums; (20, 30): 64 -> 30 has no short block,
    the banded float path runs and float32 values are stored. Either way the batches are the same."""
    full, model = both(tmp_path, size)
    rec = next(iter_tar(model / "train-000000.tar"))
    assert load_npy(rec["input.npy"]).dtype == stored and load_npy(rec["target.npy"]).shape == size
    assert load_npy(rec["map.npy"]).shape == RAW and "png" not in rec  # original map kept, image not
    for epoch, workers in ((0, 0), (1, 2)):  # in DataLoader worker processes too
        a = TrainLoader(full, "train", cfg(size, workers=workers), rank=0, world_size=1)
        b = TrainLoader(model, "train", cfg(size, workers=workers), rank=0, world_size=1)
        a.set_epoch(epoch), b.set_epoch(epoch)
        assert assert_same_batches(a, b) == 24  # flips included: the same draws, the same mirrored values
    val = cfg(size, flip=False, batch_size=3)
    assert assert_same_batches(ValLoader(full, "val", val), ValLoader(model, "val", val)) == 7


def test_npy_map_codec_gives_the_png_batches(tmp_path):
    write_synthetic(tmp_path / "raw", {"train": 8, "val": 3}, size=RAW, seed=6)
    reader = get_reader("synthetic", tmp_path / "raw")
    pack(reader, tmp_path / "png")
    pack(reader, tmp_path / "npy", map_codec="npy")
    assert read_manifest(tmp_path / "npy")["map_codec"] == "npy"
    assert read_manifest(tmp_path / "png")["map_codec"] == "png"
    recs = list(iter_tar(tmp_path / "npy" / "train-000000.tar"))
    assert all("map.npy" in r and "map.png" not in r for r in recs)
    for r in recs:
        s = decode_record(r)
        assert np.array_equal(s.map, reader.load("train", s.id).map) and s.map.dtype == np.uint16
    c = cfg((24, 32))
    assert assert_same_batches(TrainLoader(tmp_path / "png", "train", c), TrainLoader(tmp_path / "npy", "train", c)
                               ) == 8
    v = cfg((24, 32), flip=False)
    assert assert_same_batches(ValLoader(tmp_path / "png", "val", v), ValLoader(tmp_path / "npy", "val", v)) == 3
    assert verify(tmp_path / "npy", reader)["errors"] == []


def test_loader_refuses_shards_packed_for_another_input_size(tmp_path):
    _, model = both(tmp_path, (24, 32), {"train": 8, "val": 2})
    for kw in ({"size": (20, 30)}, {"size": (24, 32), "resize": "bicubic"}):
        with pytest.raises(ValueError, match=r"packed at the model input size 32x24 .*--input-size"):
            TrainLoader(model, "train", cfg(**kw))
        with pytest.raises(ValueError, match="packed at the model input size 32x24"):
            ValLoader(model, "val", cfg(**kw))
    assert read_manifest(model)["input_size"] == [24, 32]


def test_verify_compares_model_size_shards_with_the_raw_release(tmp_path):
    _, model = both(tmp_path, (24, 32), {"train": 8})
    reader = get_reader("synthetic", tmp_path / "raw")
    assert verify(model, reader) == {"shards": 1, "samples": 8, "errors": []}
    np.save(tmp_path / "raw" / "train" / "fixations" / "000002.npy", np.zeros((1, 3), np.int32))
    image = tmp_path / "raw" / "train" / "images" / "000003.png"
    from PIL import Image

    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 255
    Image.fromarray(pixels).save(image)
    errors = verify(model, get_reader("synthetic", tmp_path / "raw"))["errors"]
    assert errors == ["train-000000.tar/000002: fixations differ (48 vs 1)",
                      "train-000000.tar/000003: input.npy differs from the raw sample resized"]


def test_training_skips_the_original_maps(tmp_path):
    """Training's tar stage seeks over the original-size maps (never read); a damaged one costs validation
    that sample and training nothing."""
    _, model = both(tmp_path, (24, 32), {"train": 8, "val": 8})
    for split in ("train", "val"):
        tar = model / f"{split}-000000.tar"
        with tarfile.open(tar) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith("000001.map.npy"))
        data = bytearray(tar.read_bytes())
        data[member.offset_data: member.offset_data + 6] = b"garbag"  # no .npy magic any more
        tar.write_bytes(bytes(data))
    train = TrainLoader(model, "train", cfg((24, 32), max_bad_fraction=0.5))
    assert train.dataset.skip == {"map.npy"}
    recs = list(iter_tar(model / "train-000000.tar", skip=train.dataset.skip))
    assert len(recs) == 8 and not any("map.npy" in r for r in recs) and all("target.npy" in r for r in recs)
    assert sum(len(b["id"]) for b in train) == 8 and train.stats == {"good": 8, "bad": 0}
    val = ValLoader(model, "val", cfg((24, 32), flip=False, max_bad_fraction=0.5))
    assert sorted(i for b in val for i in b["id"]) == [f"{i:06d}" for i in range(8) if i != 1]
    assert val.stats == {"good": 7, "bad": 1}


def test_parse_input_size_and_the_pack_flag(tmp_path, capsys):
    assert parse_input_size("256x192") == (192, 256) and parse_input_size("400X300") == (300, 400)
    for bad in ("256", "256x", "0x10", "ax3"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_input_size(bad)
    spec = importlib.util.spec_from_file_location("pack_job", REPO / "jobs" / "pack.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    rc = job.main(["synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "s"), "--synthetic", "3", "1",
                   "--workers", "1", "--input-size", "32x24", "--verify", "--no-progress"])
    assert rc == 0 and "verified 4 samples" in capsys.readouterr().out
    assert read_manifest(tmp_path / "s")["input_size"] == [24, 32]
    assert job.main(["synthetic", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "t"),
                     "--input-size", "32by24"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_shared_salicon_val_at_256x192_equals_the_exact_path(tmp_path):
    """Real SALICON JPEGs (640x480) and 16-bit maps: SalGAN's input size, bit for bit."""
    root = SHARED / "data" / "salicon-2014-examples"
    if not root.exists():
        pytest.skip(f"shared sample {root} absent (the repo's sibling ../shared/data)")
    reader = get_reader("salicon", root)
    pack(reader, tmp_path / "full", ["val"], shard_size_mb=2)
    pack(reader, tmp_path / "model", ["val"], shard_size_mb=2, input_size=(192, 256))
    c = cfg((192, 256), flip=False, batch_size=5)
    assert assert_same_batches(ValLoader(tmp_path / "full", "val", c), ValLoader(tmp_path / "model", "val", c)) == 10
