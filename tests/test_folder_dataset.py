"""The ``folder`` dataset (a lab's own images/ + maps/ and/or fixations/): packed through jobs/pack.py, the shards
hold exactly the files' pixels and points, maps blurred from fixations with the stated σ, the three ways of
splitting, every bad input named in one line, and a real folder built from the shared OSIE sample equal to the
OSIE reader's samples."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import shared_path
from PIL import Image

from salnet.data import get_reader
from salnet.data.maps import blur_fixations, quantize16
from salnet.data.records import decode_record
from salnet.data.shards import pack, read_manifest
from salnet.data.tario import iter_tar

REPO = Path(__file__).resolve().parents[1]
FIX_METRICS = ["auc_judd", "auc_borji", "sauc", "nss", "ig"]


def pack_job():
    spec = importlib.util.spec_from_file_location("pack_job", REPO / "jobs" / "pack.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


@pytest.fixture
def warnings_seen():
    """The salnet logger's WARNING messages during the test (setup_logging stops propagation to the root)."""
    seen: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                seen.append(record.getMessage())

    h = ListHandler()
    logging.getLogger("salnet").addHandler(h)
    yield seen
    logging.getLogger("salnet").removeHandler(h)


def make_folder(root: Path, n: int = 10, maps: bool = False, fixations: bool = True, seed: int = 0) -> dict:
    """A folder of n PNG images of two sizes with (N, 2) int fixation points and/or 8-bit PNG maps;
    returns {stem: (image array, points or None, map or None)}."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    if fixations:
        (root / "fixations").mkdir()
    if maps:
        (root / "maps").mkdir()
    out = {}
    for i in range(n):
        h, w = (40, 60) if i % 2 else (48, 32)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"im{i:02d}.png")
        pts = m = None
        if fixations:
            pts = np.stack([rng.integers(0, h, 9), rng.integers(0, w, 9)], 1)
            np.save(root / "fixations" / f"im{i:02d}.npy", pts)
        if maps:
            m = rng.integers(0, 256, (h, w), dtype=np.uint8)
            Image.fromarray(m).save(root / "maps" / f"im{i:02d}.png")
        out[f"im{i:02d}"] = (img, pts, m)
    return out


def samples(shards: Path) -> dict:
    """{(split, id): decoded sample} of every shard in a packed folder."""
    out = {}
    for tar in sorted(shards.glob("*.tar")):
        for rec in iter_tar(tar):
            s = decode_record(rec)
            out[(s.split, s.id)] = s
    return out


def test_fixations_only_folder_packs_with_maps_blurred_at_sigma(tmp_path, capsys):
    truth = make_folder(tmp_path / "raw")
    rc = pack_job().main(["folder", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "s"), "--sigma", "5",
                          "--val-fraction", "0.2", "--test-fraction", "0.1", "--workers", "1", "--no-progress"])
    assert rc == 0 and "packed folder: train 7, val 2, test 1 in 3 shard(s)" in capsys.readouterr().out
    got = samples(tmp_path / "s")
    assert sorted(i for _, i in got) == sorted(truth)
    for (_, sid), s in got.items():
        img, pts, _ = truth[sid]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "raw" / "images" / f"{sid}.png")), img)
        assert s.image == (tmp_path / "raw" / "images" / f"{sid}.png").read_bytes()
        assert np.array_equal(s.fixations[:, :2], pts) and (s.fixations[:, 2] == -1).all()
        assert np.array_equal(s.map, quantize16(blur_fixations(s.fixations, img.shape[:2], 5.0)))
        assert s.meta["sigma"] == 5.0 and s.meta["map_source"] == "fixations"
    manifest = read_manifest(tmp_path / "s")
    assert manifest["lacks"] == {} and manifest["config"]["reader_options"]["sigma"] == 5.0
    # the seeded partition is a function of the seed alone: packing again gives the same splits
    again = get_reader("folder", tmp_path / "raw", sigma=5, val_fraction=0.2, test_fraction=0.1)
    assert sorted(again.ids("val")) == sorted(i for sp, i in got if sp == "val")


def test_maps_only_folder_says_once_what_it_lacks(tmp_path, warnings_seen):
    truth = make_folder(tmp_path / "raw", n=6, maps=True, fixations=False)
    (tmp_path / "raw" / "train.txt").write_text("im00\nim01.png\nim02\nim03\n")
    (tmp_path / "raw" / "val.txt").write_text("im04\nim05\n")
    rc = pack_job().main(["folder", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "s"),
                          "--workers", "1", "--no-progress"])
    assert rc == 0
    manifest = read_manifest(tmp_path / "s")
    assert manifest["lacks"] == {"fixations": FIX_METRICS}
    assert manifest["splits"]["train"]["without_fixations"] == 4 and manifest["splits"]["val"]["without_map"] == 0
    lines = [w for w in warnings_seen if "have no fixations" in w]
    assert lines == ["folder: train: 4 of 4 samples have no fixations: auc_judd, auc_borji, sauc, nss, ig are "
                     "undefined on them", "folder: val: 2 of 2 samples have no fixations: auc_judd, auc_borji, "
                     "sauc, nss, ig are undefined on them"]
    got = samples(tmp_path / "s")
    assert sorted(got) == [("train", "im00"), ("train", "im01"), ("train", "im02"), ("train", "im03"),
                           ("val", "im04"), ("val", "im05")]
    for (_, sid), s in got.items():
        assert s.map.dtype == np.uint8 and np.array_equal(s.map, truth[sid][2]) and len(s.fixations) == 0


def test_splits_json_mat_and_binary_fixations_npy_maps(tmp_path):
    raw = tmp_path / "raw"
    truth = make_folder(raw, n=4, fixations=False)
    (raw / "fixations").mkdir()
    (raw / "maps").mkdir()
    for sid, (img, _, _) in truth.items():
        h, w = img.shape[:2]
        binary = np.zeros((h, w), np.uint8)
        binary[[1, 5, h - 1], [2, 7, w - 1]] = 1
        if sid == "im00":
            scipy.io.savemat(raw / "fixations" / "im00.mat", {"fixations": binary})
        else:
            Image.fromarray(binary * 255).save(raw / "fixations" / f"{sid}.png")
    smap = np.linspace(0, 2.0, 48 * 32).reshape(48, 32)
    np.save(raw / "maps" / "im00.npy", smap)  # a float map: scaled by its maximum, stored as uint16
    (raw / "splits.json").write_text(json.dumps({"train": ["im00", "im01"], "val": ["im02.png"], "test": ["im03"]}))
    reader = get_reader("folder", raw, sigma=3)
    assert reader.ids("train") == ["im00", "im01"] and reader.ids("val") == ["im02"] and reader.ids("test") == ["im03"]
    s = reader.load("train", "im00")
    assert s.fixations[:, :2].tolist() == [[1, 2], [5, 7], [47, 31]]
    assert np.array_equal(s.map, quantize16(smap / 2.0)) and s.meta["map_source"] == "release"
    s1 = reader.load("train", "im01")
    assert s1.fixations[:, :2].tolist() == [[1, 2], [5, 7], [39, 59]] and s1.meta["map_source"] == "fixations"


def test_missing_partners_are_skipped_counted_and_named(tmp_path, warnings_seen):
    raw = tmp_path / "raw"
    make_folder(raw, n=5, maps=True)
    (raw / "fixations" / "im01.npy").unlink()  # an image without its fixations
    (raw / "maps" / "im02.png").unlink()  # no map, but fixations and a sigma: the map is blurred from them
    np.save(raw / "fixations" / "stray.npy", np.zeros((1, 2), np.int64))  # a partner without an image
    reader = get_reader("folder", raw, val_fraction=0.0)
    assert reader.ids("train") == ["im00", "im03", "im04"]  # im02 needs --sigma: skipped too
    assert reader.skipped == {"no fixations file": ["im01"], "no map (give --sigma)": ["im02"]}
    assert reader.orphans == ["stray"]
    assert "folder: skipped 1 image(s) with no fixations file: im01" in warnings_seen
    assert "folder: 1 map/fixation file(s) without an image in images/: stray" in warnings_seen
    assert get_reader("folder", raw, sigma=4, val_fraction=0.0).ids("train") == ["im00", "im02", "im03", "im04"]


@pytest.mark.parametrize("case, message", [
    ("no images dir", "has no images/ folder"),
    ("no partners dir", "has neither maps/ nor fixations/"),
    ("no sigma", "has fixations but no maps: give --sigma PIXELS"),
    ("bad sigma", "--sigma must be a positive number of pixels, got -1.0"),
    ("fractions", "--val-fraction + --test-fraction = 1.0 leaves no training images"),
    ("unknown in split", "the val list names 1 image(s) not in images/: nosuch"),
    ("two splits", "image 'im00' is in both the train and the val lists"),
    ("bad json", 'expected {"train": [stems]'),
    ("unreadable image", "im00.png: not a readable image"),
    ("map size", "im01.png: map is 10x10 (h x w) but its image is 40x60; maps must have their image's size"),
    ("fixation shape", "im00.npy: fixations must be (N, 2) (y, x) or (N, 3) (y, x, observer) points"),
    ("options elsewhere", "dataset 'synthetic' takes no options (sigma); they apply to 'folder'"),
    ("bad time", "--time 'soon': use a positive time: minutes (90), HH:MM:SS or D-HH:MM:SS"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, capsys, case, message):
    raw = tmp_path / "raw"
    make_folder(raw, n=3, maps=case in ("map size",), fixations=case != "map size")
    args = ["folder", "--root", str(raw), "--out", str(tmp_path / "s"), "--sigma", "4", "--workers", "1",
            "--no-progress"]
    if case == "no images dir":
        (raw / "images").rename(raw / "pics")
    elif case == "no partners dir":
        (raw / "fixations").rename(raw / "fix")
    elif case == "no sigma":
        args.remove("--sigma"), args.remove("4")
    elif case == "bad sigma":
        args[args.index("4")] = "-1"
    elif case == "fractions":
        args += ["--val-fraction", "0.5", "--test-fraction", "0.5"]
    elif case == "unknown in split":
        (raw / "val.txt").write_text("nosuch\n")
    elif case == "two splits":
        (raw / "splits.json").write_text(json.dumps({"train": ["im00", "im01"], "val": ["im00"]}))
    elif case == "bad json":
        (raw / "splits.json").write_text(json.dumps({"training": ["im00"]}))
    elif case == "unreadable image":
        (raw / "images" / "im00.png").write_bytes(b"not a png at all")
    elif case == "map size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(raw / "maps" / "im01.png")
    elif case == "fixation shape":
        np.save(raw / "fixations" / "im00.npy", np.zeros((4, 5)))
    elif case == "options elsewhere":
        args[0] = "synthetic"
    elif case == "bad time":
        args += ["--backend", "slurm", "--time", "soon"]
    assert pack_job().main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_real_folder_from_the_shared_osie_sample_equals_the_osie_reader(tmp_path):
    osie_root = shared_path("data", "osie")
    osie = get_reader("osie", osie_root)
    ids = osie.ids("val")[:12]
    raw = tmp_path / "lab"
    (raw / "images").mkdir(parents=True)
    (raw / "fixations").mkdir()
    for sid in ids:
        path = osie.index("val")[sid]
        (raw / "images" / path.name).write_bytes(path.read_bytes())
        rows = [np.stack([fy - 1, fx - 1, np.full(len(fx), obs)], 1)  # 1-based sub-pixel -> 0-based (y, x, obs)
                for obs, (fx, fy) in enumerate(osie.fixations()[path.name])]
        np.save(raw / "fixations" / f"{sid}.npy", np.concatenate(rows))
    (raw / "test.txt").write_text("\n".join(ids) + "\n")
    manifest = pack(get_reader("folder", raw, sigma=24.0), tmp_path / "s")
    assert manifest["splits"]["test"]["count"] == 12 and manifest["lacks"] == {}
    got = samples(tmp_path / "s")
    for sid in ids:
        mine, theirs = got[("test", sid)], osie.load("val", sid)
        assert mine.image == theirs.image and (mine.height, mine.width) == (600, 800)
        assert np.array_equal(mine.fixations, theirs.fixations) and np.array_equal(mine.map, theirs.map)


def test_shared_maps_only_mit1003_sample_says_what_it_lacks(tmp_path, capsys, warnings_seen):
    root = shared_path("data", "mit1003-iccv100")
    assert pack_job().main(["mit1003", "--root", str(root), "--out", str(tmp_path / "s"), "--splits", "val",
                            "--workers", "1", "--no-progress"]) == 0
    manifest = read_manifest(tmp_path / "s")
    n = manifest["splits"]["val"]["count"]
    assert n == 20 and manifest["splits"]["val"]["without_fixations"] == n and manifest["lacks"] == {
        "fixations": FIX_METRICS}
    assert [w for w in warnings_seen if "have no fixations" in w] == [
        f"mit1003: val: {n} of {n} samples have no fixations: auc_judd, auc_borji, sauc, nss, ig are undefined on them"]


def test_pack_counts_samples_and_takes_launch_vocabulary(tmp_path, capsys):
    from salnet.data.shards import pack_one, prepare

    make_folder(tmp_path / "raw", n=5)
    reader = get_reader("folder", tmp_path / "raw", sigma=3, val_fraction=0.0)
    plan = prepare(reader, tmp_path / "s", shard_size_mb=1000)[0]
    ticks: list[int] = []
    rec = pack_one(reader, tmp_path / "s", plan, progress=ticks.append)  # the bar's update: once per sample
    assert ticks == [1] * 5 and rec["count"] == 5 and rec["without_fixations"] == 0
    # the old names stay aliases: --backend inprocess, --time-min, --mem-gb; --time takes launch's formats
    args = ["folder", "--root", str(tmp_path / "raw"), "--sigma", "3", "--val-fraction", "0", "--workers", "1",
            "--no-progress"]
    for i, extra in enumerate((["--backend", "inprocess", "--time-min", "5", "--mem-gb", "2"],
                               ["--backend", "debug", "--time", "1-02:00:00", "--mem", "2"])):
        assert pack_job().main([*args, "--out", str(tmp_path / f"o{i}"), *extra]) == 0
    assert capsys.readouterr().out.count("packed folder: train 5 in 1 shard(s)") == 2
