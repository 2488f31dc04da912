"""The streaming loader: epoch coverage across ranks and workers, fixed batch counts on uneven shards,
validation exactly once, exact values against the raw data, flips, and corrupt/truncated shards."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salnet.data import get_reader, write_synthetic
from salnet.data.loader import BadFractionError, LoaderConfig, TrainLoader, ValLoader, epoch_order
from salnet.data.maps import fixation_map
from salnet.data.shards import decode_record, iter_tar, pack
from salnet.data.synthetic import Synthetic
from salnet.data.transform import BatchPool, Transform
from salnet.imresize import band_resize, imresize

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RAW = (32, 48)


def packed(tmp: Path, counts: dict, per_shard: int, reader_cls=Synthetic, seed: int = 0) -> Path:
    """Synthetic shards of exactly per_shard samples (size hints fixed at 1000 bytes)."""
    write_synthetic(tmp / "raw", counts, size=RAW, seed=seed)
    reader = reader_cls(tmp / "raw")
    reader.size_hint = lambda split, id: 1000
    pack(reader, tmp / "shards", shard_size_mb=per_shard * 1000 / 1e6 + 1e-9)
    return tmp / "shards"


def cfg(**kw) -> LoaderConfig:
    base = dict(size=(24, 32), batch_size=4, workers=2, shuffle_buffer=5, min_seen_for_check=10_000)
    return LoaderConfig(**{**base, **kw})


def epoch_ids(folder, c, world, epoch, split="train"):
    per_rank = []
    for rank in range(world):
        loader = TrainLoader(folder, split, c, rank=rank, world_size=world)
        loader.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        per_rank.append([i for b in batches for i in b["id"]])
    return per_rank


def test_two_ranks_two_workers_cover_an_epoch_disjointly(tmp_path):
    folder = packed(tmp_path, {"train": 64}, per_shard=8)
    c = cfg()
    e0 = epoch_ids(folder, c, 2, 0)
    assert [len(r) for r in e0] == [32, 32]
    assert not set(e0[0]) & set(e0[1]) and sorted(e0[0] + e0[1]) == [f"{i:06d}" for i in range(64)]
    e1 = epoch_ids(folder, c, 2, 1)
    assert sorted(e1[0] + e1[1]) == sorted(e0[0] + e0[1]) and e1 != e0  # reshuffled, still a partition
    assert epoch_ids(folder, c, 2, 1) == e1  # deterministic given (seed, epoch)


def test_an_epoch_of_several_passes_covers_the_split_that_many_times(tmp_path):
    """passes=3 on equal shares (8 shards of 8, 2 ranks x 2 workers): each rank takes three times the batches;
    every sample comes three times per epoch, the first pass is the one-pass epoch and the later passes come in
    new orders; across ranks each pass is a partition."""
    folder = packed(tmp_path, {"train": 64}, per_shard=8)
    one = epoch_ids(folder, cfg(), 2, 0)
    three = epoch_ids(folder, cfg(passes=3), 2, 0)
    assert [len(r) for r in three] == [96, 96]
    assert Counter(three[0] + three[1]) == {f"{i:06d}": 3 for i in range(64)}
    for p in range(3):
        assert sorted(three[0][32 * p:32 * p + 32] + three[1][32 * p:32 * p + 32]) == [f"{i:06d}" for i in range(64)]
    assert [r[:32] for r in three] == one
    assert all(r[32:64] != r[:32] for r in three)  # a new shard order: a rank may get other shards
    for bad in (0, 101):
        with pytest.raises(ValueError, match=f"passes={bad} per epoch; it must be 1 to 100"):
            TrainLoader(folder, "train", cfg(passes=bad))


def test_shard_order_is_a_function_of_seed_and_epoch_only():
    shards = [f"s{i}" for i in range(10)]
    assert epoch_order(shards, 0, 3) == epoch_order(list(shards), 0, 3)
    assert sorted(epoch_order(shards, 0, 3)) == shards and epoch_order(shards, 0, 3) != epoch_order(shards, 0, 4)


def test_fewer_shards_than_slots_split_by_sample(tmp_path):
    folder = packed(tmp_path, {"train": 16}, per_shard=16)
    ids = epoch_ids(folder, cfg(batch_size=2), 2, 0)
    assert sorted(ids[0] + ids[1]) == [f"{i:06d}" for i in range(16)]


def test_uneven_shards_give_every_rank_the_same_batch_count(tmp_path):
    folder = packed(tmp_path, {"train": 20}, per_shard=8)  # shards of 8, 8, 4
    c = cfg(batch_size=3, workers=1)
    for epoch in range(3):
        ids = epoch_ids(folder, c, 2, epoch)
        assert [len(r) for r in ids] == [9, 9]  # 20 // (2 x 3) = 3 batches each, whatever shards they got


def test_validation_reads_each_sample_once_with_exact_values(tmp_path):
    folder = packed(tmp_path, {"val": 20}, per_shard=7)
    raw = get_reader("synthetic", tmp_path / "raw")
    seen = []
    for rank in range(3):
        for b in ValLoader(folder, "val", cfg(batch_size=3), rank=rank, world_size=3):
            seen += b["id"]
            for k, id in enumerate(b["id"]):
                s = raw.load("val", id)
                rgb = torch.from_numpy(np.array(Image.open(io.BytesIO(s.image)))).permute(2, 0, 1).double()
                ref = imresize(rgb, (24, 32), "area") / 255
                assert torch.allclose(b["image"][k].double(), ref, atol=1e-5)
                assert torch.equal(b["map_orig"][k], torch.from_numpy(s.map.astype(np.float32) / 65535)[None])
                assert torch.equal(b["points"][k], torch.from_numpy(s.fixations.astype(np.int64)))
                assert torch.equal(b["fixations"][k, 0], torch.from_numpy(fixation_map(s.fixations, RAW, (24, 32))))
    assert sorted(seen) == [f"{i:06d}" for i in range(20)]


def test_native_size_round_trip_is_exact(tmp_path):
    folder = packed(tmp_path, {"val": 5}, per_shard=5)
    raw = get_reader("synthetic", tmp_path / "raw")
    for b in ValLoader(folder, "val", cfg(size=RAW, batch_size=5, workers=0), rank=0, world_size=1):
        for k, id in enumerate(b["id"]):
            s = raw.load("val", id)
            pixels = np.asarray(Image.open(io.BytesIO(s.image))).transpose(2, 0, 1)
            assert torch.equal(b["image"][k], torch.from_numpy(pixels.astype(np.float32)) / 255)
            assert torch.equal(b["map"][k, 0], torch.from_numpy(s.map.astype(np.float32) / 65535))
            ys, xs = np.nonzero(b["fixations"][k, 0].numpy())
            assert set(zip(ys, xs)) == {(y, x) for y, x, _ in s.fixations}


def test_flip_applies_to_image_map_and_fixations_alike(tmp_path):
    folder = packed(tmp_path, {"train": 2}, per_shard=2)
    rec = next(iter_tar(folder / "train-000000.tar"))
    t = Transform((24, 32), "area", keep_original=False)
    a, b = t(rec, flip=False), t(rec, flip=True)
    for k in ("image", "map", "fixations"):
        assert torch.equal(b[k], a[k].flip(-1))
    assert a["fixations"].sum() > 0 and not torch.equal(a["image"], b["image"])


def test_shared_salicon_val_round_trip_at_native_size(tmp_path):
    root = SHARED / "data" / "salicon-2014-examples"
    if not root.exists():
        pytest.skip(f"shared sample {root} absent (the repo's sibling ../shared/data)")
    reader = get_reader("salicon", root)
    pack(reader, tmp_path, ["val"], shard_size_mb=2)
    n = 0
    for b in ValLoader(tmp_path, "val", cfg(size=(480, 640), batch_size=2, workers=0), rank=0, world_size=1):
        for k, id in enumerate(b["id"]):
            s = reader.load("val", id)
            pixels = np.asarray(Image.open(root / "images" / "val2014examples" / f"{id}.jpg").convert("RGB"))
            assert torch.equal(b["image"][k], torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32)) / 255)
            assert torch.equal(b["points"][k], torch.from_numpy(s.fixations.astype(np.int64)))
            assert torch.equal(b["map"][k, 0], torch.from_numpy(s.map.astype(np.float32) / 65535))
            n += 1
    assert n == 10


class JpegSynthetic(Synthetic):
    """Synthetic samples re-encoded as JPEG; sample 000003 carries a corrupt JPEG."""

    def load(self, split, id):
        s = super().load(split, id)
        buf = io.BytesIO()
        Image.open(io.BytesIO(s.image)).save(buf, format="JPEG", quality=90)
        s.image, s.image_ext = buf.getvalue(), "jpg"
        if id == "000003":
            s.image = s.image[:200] + b"\x00garbage" * 20
        return s


def corrupted(tmp_path, in_header: bool = False) -> Path:
    """16 samples in 2 shards: one corrupt JPEG in the first, the second cut inside its 4th sample (in
    the data of its json member, or in_header: inside that member's tar header)."""
    folder = packed(tmp_path, {"val": 16, "train": 16}, per_shard=8, reader_cls=JpegSynthetic)
    for split in ("val", "train"):
        tar = folder / f"{split}-000001.tar"
        with tarfile.open(tar) as tf:
            members = tf.getmembers()
        member = next(m for m in members if m.name.endswith("000011.json"))
        cut = member.offset + 100 if in_header else member.offset_data + 5
        tar.write_bytes(tar.read_bytes()[:cut])
    return folder


def test_truncated_tar_and_corrupt_jpeg_are_skipped_and_counted(tmp_path):
    folder = corrupted(tmp_path)
    loader = ValLoader(folder, "val", cfg(max_bad_fraction=0.5), rank=0, world_size=1)
    ids = [i for b in loader for i in b["id"]]
    # shard 0: 7 good + the corrupt JPEG; shard 1: 000008-000010 intact, 000011 cut, 000012-000015 lost
    assert sorted(ids) == [f"{i:06d}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert loader.stats == {"good": 10, "bad": 6}
    with pytest.raises(BadFractionError, match="6 of 16 samples corrupt or lost"):
        list(ValLoader(folder, "val", cfg(max_bad_fraction=0.2), rank=0, world_size=1))


def test_training_skips_bad_samples_and_stops_past_the_threshold(tmp_path):
    folder = corrupted(tmp_path)
    loader = TrainLoader(folder, "train", cfg(max_bad_fraction=0.5, workers=0, batch_size=2), rank=0, world_size=1)
    batches = list(loader)
    assert len(batches) == 8 and all(len(b["id"]) == 2 and "000003" not in b["id"] for b in batches)
    assert loader.stats["bad"] >= 6 and loader.stats["good"] == 16
    strict = TrainLoader(folder, "train", cfg(max_bad_fraction=0.2, workers=0, batch_size=2), rank=0, world_size=1)
    with pytest.raises(BadFractionError, match="max_bad_fraction 20.0%"):
        list(strict)


@pytest.mark.parametrize("src, dst, method", [
    ((480, 640), (192, 256), "area"),  # periodic blocks (5 -> 2)
    ((480, 640), (300, 400), "area"),
    ((675, 1024), (192, 256), "area"),  # no short period: banded taps
    ((48, 64), (96, 128), "area"),  # enlarging
    ((480, 640), (300, 400), "bicubic"),
])
def test_band_resize_equals_imresize(src, dst, method):
    x = torch.rand(3, *src, generator=torch.Generator().manual_seed(0))
    ref = imresize(x.double(), dst, method)
    assert torch.allclose(band_resize(x, dst, method).double(), ref, atol=2e-6)
    hwc = band_resize(x.permute(1, 2, 0).contiguous(), dst, method, channels_last=True)
    assert torch.allclose(hwc.permute(2, 0, 1).double(), ref, atol=2e-6)


def test_fast_decode_stays_close_to_the_exact_path(tmp_path):
    folder = packed(tmp_path, {"train": 2}, per_shard=2, reader_cls=JpegSynthetic)
    rec = next(iter_tar(folder / "train-000000.tar"))
    exact = Transform((8, 12), "area", keep_original=False)(rec, flip=False)
    fast = Transform((8, 12), "area", keep_original=False, fast_decode=True)(rec, flip=False)
    assert exact["image"].shape == fast["image"].shape == (3, 8, 12)
    assert (exact["image"] - fast["image"]).abs().mean() < 0.02
    assert torch.equal(exact["map"], fast["map"]) and torch.equal(exact["fixations"], fast["fixations"])


def test_epoch_order_is_the_pipelines_webdataset_shard_list():
    import webdataset as wds

    from salnet.data.loader import epoch_seed

    urls = [f"/s/train-{i:06d}.tar" for i in range(13)]
    for seed, epoch in [(0, 0), (0, 5), (7, 2003)]:
        got = [d["url"] for d in wds.SimpleShardList(urls, seed=epoch_seed(seed, epoch))]
        assert got == epoch_order(urls, seed, epoch)


def test_map_to_float_equals_the_two_pass_reference_for_every_value():
    from salnet.data.sample import map_to_float

    every16, every8 = np.arange(65536, dtype=np.uint16), np.arange(256, dtype=np.uint8)
    for arr, scale in ((every16.reshape(256, 256), 65535.0), (every8.reshape(16, 16), 255.0)):
        got = map_to_float(arr)
        assert got.dtype == np.float32 and np.array_equal(got, arr.astype(np.float32) / np.float32(scale))
        assert got.flat[0] == 0 and got.flat[-1] == 1


def test_missing_shard_counts_every_sample_it_held(tmp_path):
    folder = packed(tmp_path, {"val": 12, "train": 12}, per_shard=4)
    (folder / "val-000001.tar").unlink()
    (folder / "train-000002.tar").unlink()
    val = ValLoader(folder, "val", cfg(max_bad_fraction=0.5, batch_size=3), rank=0, world_size=1)
    ids = [i for b in val for i in b["id"]]
    assert sorted(ids) == [f"{i:06d}" for i in (0, 1, 2, 3, 8, 9, 10, 11)]
    assert val.stats == {"good": 8, "bad": 4}
    c = cfg(max_bad_fraction=0.5, batch_size=2, workers=0)
    train = TrainLoader(folder, "train", c, rank=0, world_size=1)
    batches = list(train)  # pass 0: 8 good + 4 lost; a second pass tops up the 6th batch
    seen = {i for b in batches for i in b["id"]}
    assert len(batches) == 6 and not {"000008", "000009", "000010", "000011"} & seen
    # the second pass counts the missing shard again only if it reached it before the 6th batch
    assert train.stats["good"] == 12 and train.stats["bad"] in (4, 8)


def test_training_batches_are_a_function_of_seed_epoch_rank_worker(tmp_path):
    folder = packed(tmp_path, {"train": 24}, per_shard=4)
    c = cfg(batch_size=3, flip=True)
    runs = []
    for _ in range(2):
        loader = TrainLoader(folder, "train", c, rank=1, world_size=2)
        loader.set_epoch(3)
        runs.append(list(loader))
    assert len(runs[0]) == len(runs[1]) == 4
    for a, b in zip(*runs):
        assert a["id"] == b["id"]
        for k in ("image", "map", "fixations"):
            assert torch.equal(a[k], b[k])
    other = TrainLoader(folder, "train", c, rank=1, world_size=2)
    other.set_epoch(4)
    assert [b["id"] for b in other] != [b["id"] for b in runs[0]]


def test_transform_output_layout_and_values(tmp_path):
    """The one-pass divide into (3, H, W) and the in-place map clamp give the reference values."""
    folder = packed(tmp_path, {"train": 2}, per_shard=2)
    rec = next(iter_tar(folder / "train-000000.tar"))
    out = Transform((24, 32), "area", keep_original=True)(rec, flip=False)
    raw = get_reader("synthetic", tmp_path / "raw").load("train", out["id"])
    rgb = torch.from_numpy(np.array(Image.open(io.BytesIO(raw.image)))).permute(2, 0, 1).double()
    assert out["image"].is_contiguous() and out["image"].shape == (3, 24, 32)
    assert torch.allclose(out["image"].double(), imresize(rgb, (24, 32), "area") / 255, atol=1e-6)
    full = torch.from_numpy(raw.map.astype(np.float64) / 65535)
    assert torch.allclose(out["map"][0].double(), imresize(full, (24, 32), "area"), atol=1e-6)
    assert torch.equal(out["map_orig"][0], full.float())  # the original map is not clamped in place


def test_pin_memory_defaults_to_cuda_availability():
    assert LoaderConfig().pin_memory == torch.cuda.is_available()
    assert LoaderConfig(pin_memory=False).pin_memory is False


@pytest.mark.gpu
def test_batches_come_pinned_on_a_cuda_machine(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (page-locked memory)")
    folder = packed(tmp_path, {"train": 8}, per_shard=4)
    batch = next(iter(TrainLoader(folder, "train", cfg(pin_memory=True), rank=0, world_size=1)))
    assert all(batch[k].is_pinned() for k in ("image", "map", "fixations"))


def test_tar_cut_inside_a_header_loses_exactly_the_samples_after_it(tmp_path):
    folder = corrupted(tmp_path, in_header=True)
    loader = ValLoader(folder, "val", cfg(max_bad_fraction=0.5, workers=1), rank=0, world_size=1)
    ids = [i for b in loader for i in b["id"]]
    assert sorted(ids) == [f"{i:06d}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert loader.stats == {"good": 10, "bad": 6}


@pytest.mark.parametrize("src, dst", [((480, 640), (192, 256)), ((480, 640), (300, 400)), ((40, 60), (16, 24))])
@pytest.mark.parametrize("dtype, full", [(torch.uint8, 255), (torch.uint16, 65535)])
def test_integer_area_resize_equals_imresize(src, dst, dtype, full):
    from salnet.imresize import area_resize_int

    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, full + 1, (*src, 3), generator=gen, dtype=torch.int32).to(dtype)
    ref = imresize(x.permute(2, 0, 1).double() / full, dst, "area")
    out = area_resize_int(x, dst)
    assert out.shape == (3, *dst) and out.dtype == torch.float32
    assert (out.double() - ref).abs().max() < 1e-7  # exact integer sums: only the final float32 rounding
    assert area_resize_int(x, src) is None and area_resize_int(x[:, :-1], dst) is None  # no block: band path


def test_batch_pool_reuses_only_memory_nobody_holds():
    pool = BatchPool(Transform((4, 6), "area", keep_original=False), keep=2)
    a, b = pool.new_batch(3), pool.new_batch(3)
    pa, pb = a["image"].data_ptr(), b["image"].data_ptr()
    assert pa != pb and a["fixations"].data_ptr() - pa == 4 * 3 * 4 * 6 * 4  # one buffer: image, map, fixations
    view = a["map"][1:]  # a slice of a's memory keeps all of it
    del a
    assert pool.new_batch(3)["image"].data_ptr() not in (pa, pb)  # both busy: memory of its own
    del view
    d = pool.new_batch(3)
    assert d["image"].data_ptr() == pa
    array = d["image"].numpy()  # numpy's view holds it too
    del d
    assert pool.new_batch(3)["image"].data_ptr() not in (pa, pb)
    del array, b
    other = pool.new_batch(2)  # another size, and the pool is full: memory of its own
    assert other["image"].data_ptr() not in (pa, pb) and pool.new_batch(3)["image"].data_ptr() == pa


@pytest.mark.parametrize("resize", ["area", "bicubic"])
def test_held_batches_keep_their_values_while_the_loader_goes_on(tmp_path, resize):
    """Batches written into recycled memory: each equals its samples transformed one by one, also when the
    consumer holds every batch of the epoch (no buffer may be reused while held)."""
    folder = packed(tmp_path, {"train": 24}, per_shard=4)
    c = cfg(batch_size=3, flip=True, workers=0, resize=resize)
    held = list(TrainLoader(folder, "train", c, rank=0, world_size=1))
    cloned = [{k: v.clone() if torch.is_tensor(v) else v for k, v in b.items()}
              for b in TrainLoader(folder, "train", c, rank=0, world_size=1)]
    assert len({b["image"].data_ptr() for b in held}) == len(held) == 8
    records = {decode_record(rec).id: rec for p in folder.glob("train-*.tar") for rec in iter_tar(p)}
    t = Transform((24, 32), resize, keep_original=False)
    for a, b in zip(held, cloned):
        assert a["id"] == b["id"]
        for k, id in enumerate(a["id"]):
            want = [t(records[id], flip) for flip in (False, True)]
            flipped = torch.equal(a["image"][k], want[1]["image"])
            for name in ("image", "map", "fixations"):
                assert torch.equal(a[name][k], b[name][k]) and torch.equal(a[name][k], want[flipped][name])
