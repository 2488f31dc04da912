"""Raw-release readers: real shared samples checked against independent parsing, and fixtures written
in the documented layouts for the formats with no shared sample."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fixtures import raw_releases
from PIL import Image
from scipy.ndimage import gaussian_filter

from salnet.data import get_reader
from salnet.data.maps import points_from_binary

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared sample {path} absent (the repo's sibling ../shared/data)")
    return path


def blur_reference(points: np.ndarray, size, sigma) -> np.ndarray:
    """The SALICON API map, written independently: ones at fixations, blur, min-max, 16-bit."""
    m = np.zeros(size)
    for y, x in points[:, :2]:
        m[y, x] = 1
    m = gaussian_filter(m, sigma)
    m = (m - m.min()) / (m.max() - m.min())
    return np.round(m * 65535).astype(np.uint16)


def test_salicon_2015_json_train_points_and_map_match_the_json():
    root = need(DATA / "salicon-2014-examples")
    r = get_reader("salicon", root)
    data = json.loads((root / "annotations" / "fixations_train2014examples.json").read_text())
    img = next(i for i in data["images"] if i["file_name"] == "COCO_train2014_000000123855.jpg")
    anns = sorted((a for a in data["annotations"] if a["image_id"] == img["id"]), key=lambda a: a["id"])
    expected = np.array([(row - 1, col - 1, k) for k, a in enumerate(anns) for row, col in a["fixations"]])
    s = r.load("train", "COCO_train2014_000000123855")
    assert (s.height, s.width) == (480, 640)
    np.testing.assert_array_equal(s.fixations, expected)
    assert s.meta["observers"] == 60 and s.meta["dropped_fixations"] == 0
    assert s.image == (root / "images" / "train2014examples" / "COCO_train2014_000000123855.jpg").read_bytes()
    np.testing.assert_array_equal(s.map, blur_reference(expected, (480, 640), 19.0))
    assert sorted(r.ids("train")) == sorted(Path(i["file_name"]).stem for i in data["images"])


def test_salicon_2015_val_examples_are_xy_zero_based_and_all_inside():
    root = need(DATA / "salicon-2014-examples")
    r = get_reader("salicon", root)
    data = json.loads((root / "annotations" / "fixations_val2014_examples.json").read_text())
    img = next(i for i in data["images"] if i["file_name"] == "COCO_val2014_000000102625.jpg")
    anns = sorted((a for a in data["annotations"] if a["image_id"] == img["id"]), key=lambda a: a["id"])
    raw = np.array([p for a in anns for p in a["fixations"]], float)
    s = r.load("val", "COCO_val2014_000000102625")
    assert s.meta["coordinates"] == "xy 0-based"
    assert len(s.fixations) + s.meta["dropped_fixations"] == len(raw)
    inside = (raw[:, 0] >= -0.5) & (raw[:, 0] <= 639.5) & (raw[:, 1] >= -0.5) & (raw[:, 1] <= 479.5)
    ref_x = np.clip(np.floor(raw[inside, 0] + 0.5), 0, 639)
    ref_y = np.clip(np.floor(raw[inside, 1] + 0.5), 0, 479)
    np.testing.assert_array_equal(s.fixations[:, 1], ref_x)
    np.testing.assert_array_equal(s.fixations[:, 0], ref_y)


def test_osie_points_match_the_mat_file_parsed_independently():
    root = need(DATA / "osie")
    r = get_reader("osie", root)
    mat = scipy.io.loadmat(root / "data" / "eye" / "fixations.mat")  # struct_as_record: another access path
    rec = mat["fixations"][2, 0]
    name = str(rec["img"][0, 0][0])
    subjects = rec["subjects"][0, 0]
    rows = []
    for j in range(subjects.shape[0]):
        sj = subjects[j, 0][0, 0]
        for x, y in zip(sj["fix_x"].ravel(), sj["fix_y"].ravel()):
            yi, xi = int(np.floor(y + 0.5)) - 1, int(np.floor(x + 0.5)) - 1
            if 0 <= yi < 600 and 0 <= xi < 800:
                rows.append((yi, xi, j))
    s = r.load("all", Path(name).stem)
    np.testing.assert_array_equal(s.fixations, np.array(rows))
    np.testing.assert_array_equal(s.map, blur_reference(np.array(rows), (600, 800), 24.0))
    assert len(r.ids("all")) == 600 and r.missing_images == 100  # ids 1001–1600 of the 700


def test_mit1003_maps_only_layout_and_seeded_split():
    root = need(DATA / "mit1003-iccv100")
    r = get_reader("mit1003", root)
    splits = {s: r.ids(s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [50, 20, 30]  # 500/200/303 of 1003, scaled to 100
    assert sorted(sum(splits.values(), [])) == r.ids("all")
    assert splits == {s: get_reader("mit1003", root).ids(s) for s in splits}  # deterministic
    id = "i1021218710"
    s = r.load("all", id)
    assert s.image == (root / "stimuli" / f"{id}.jpg").read_bytes()
    np.testing.assert_array_equal(s.map, np.asarray(Image.open(root / "fixation_maps" / f"{id}.jpg")))
    assert (s.height, s.width) == (685, 1024) and len(s.fixations) == 0


def test_mit_benchmark_layout_points_are_the_fixationlocs_ones():
    root = need(DATA / "mit-benchmark-demo")
    s = get_reader("mit1003", root).load("all", "i210")
    locs = scipy.io.loadmat(root / "FIXATIONLOCS" / "i210.mat")["fixations"]
    ys, xs = np.nonzero(locs)
    assert len(s.fixations) == 259 == int(locs.sum())
    np.testing.assert_array_equal(s.fixations, np.stack([ys, xs, -np.ones_like(ys)], 1))


def _check(sample, truth):
    assert sample.image == truth["image"]
    if truth["map"] is None:
        assert sample.map is None
    else:
        np.testing.assert_array_equal(sample.map, truth["map"])
    np.testing.assert_array_equal(sample.fixations, truth["fix"])


def test_salicon_2017_fixture(tmp_path):
    truth = raw_releases.salicon2017(tmp_path)
    r = get_reader("salicon", tmp_path)
    assert r.available_splits() == ["train", "val", "test"]
    for (split, id), t in truth.items():
        s = r.load(split, id)
        _check(s, t)
        if split != "test":
            assert s.meta["dropped_fixations"] == 1 and s.meta["observers"] == 3


def test_mit1003_release_fixture_recovers_jpeg_binary_points(tmp_path):
    truth = raw_releases.mit1003_release(tmp_path)
    r = get_reader("mit1003", tmp_path)
    for id, t in truth.items():
        s = r.load("all", id)
        assert s.image_ext == "jpeg"
        _check(s, t)


def test_cat2000_fixture_categories_and_test_set(tmp_path):
    truth = raw_releases.cat2000(tmp_path)
    r = get_reader("cat2000", tmp_path)
    assert r.ids("train") == ["Action/001", "Action/002.v2", "Line.Drawing/001", "Line.Drawing/002.v2"]
    for (split, id), t in truth.items():
        _check(r.load(split, id), t)


def test_mit300_fixture(tmp_path):
    truth = raw_releases.mit300(tmp_path)
    r = get_reader("mit300", tmp_path)
    assert r.ids("test") == sorted(truth)
    for id, t in truth.items():
        _check(r.load("test", id), t)


def test_points_from_binary_ignores_jpeg_ringing():
    arr = np.zeros((16, 16), np.uint8)
    arr[3, 4], arr[10, 2], arr[5, 5] = 255, 200, 127  # 127: ringing level, not a fixation
    np.testing.assert_array_equal(points_from_binary(arr, 128), [[3, 4, -1], [10, 2, -1]])


def test_bad_roots_and_names_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'coco'.*salicon"):
        get_reader("coco", tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        get_reader("osie", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="missing data/stimuli, data/eye/fixations.mat"):
        get_reader("osie", tmp_path)
    raw_releases.salicon2017(tmp_path / "s")
    (tmp_path / "s" / "fixations" / "val" / "COCO_val2014_000000000001.mat").unlink()
    r = get_reader("salicon", tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000001.mat missing"):
        r.load("val", "COCO_val2014_000000000001")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        r.ids("dev")
    bad = tmp_path / "m"
    raw_releases.mit300(bad)
    (bad / "BenchmarkIMAGES" / "i1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="i1.jpg: not a readable image"):
        get_reader("mit300", bad).load("test", "i1")


def test_grey_release_image_keeps_its_bytes(tmp_path):
    # a greyscale JPEG stimulus (MIT1003 has some): bytes kept as released, size read from the header
    rng = np.random.default_rng(5)
    data = raw_releases.jpeg(rng, grey=True)
    (tmp_path / "BenchmarkIMAGES").mkdir()
    (tmp_path / "BenchmarkIMAGES" / "g.jpg").write_bytes(data)
    s = get_reader("mit300", tmp_path).load("test", "g")
    assert s.image == data and (s.height, s.width) == (48, 64)
    assert Image.open(io.BytesIO(s.image)).mode == "L"


def test_osie_train_val_partition_of_the_shared_600():
    r = get_reader("osie", need(DATA / "osie"))
    train, val = set(r.ids("train")), set(r.ids("val"))
    assert (len(train), len(val)) == (480, 120) and not train & val and train | val == set(r.ids("all"))
    assert r.ids("val") == get_reader("osie", DATA / "osie").ids("val")  # deterministic
