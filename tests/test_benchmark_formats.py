"""jobs/predict.py --benchmark: one map per stimulus named, sized and encoded as MIT300, CAT2000 and the MIT/Tübingen
benchmark ask, a zip with the model's folder, a manifest of the run; bad input is a clear error."""

import hashlib
import io
import json
import runpy
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from interop_fixtures import tiny_run, write_images
from PIL import Image

from salnet.config import config_hash, load_config
from salnet.inference.benchmark_formats import (
    FORMATS,
    Format,
    benchmark_format,
    check_complete,
    check_maps,
    find_stimuli,
    write_benchmark,
)
from salnet.inference.predict import load_model, predict_maps
from salnet.models.salgan import SaliencyOutput

PREDICT = Path(__file__).resolve().parents[1] / "jobs" / "predict.py"
pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
SIZES = [(40, 56), (33, 70), (64, 48)]  # (H, W): odd sizes and both orientations


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("bench") / "salgan-tiny")


def jobs_predict(argv, capsys):
    old = sys.argv
    sys.argv = ["predict.py", *map(str, argv)]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(PREDICT), run_name="__main__")
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return done.value.code, cap.out, cap.err


def expected_maps(run, paths):
    model, cfg = load_model(run)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return [m[0].numpy().astype(np.float64) for m in predict_maps(model, images, cfg.data.input_size)]


def test_mit300_layout_jpeg_zip_and_manifest(run, tmp_path, capsys):
    stimuli = tmp_path / "BenchmarkIMAGES"
    paths = write_images(stimuli, ["i1.jpg", "i2.jpg", "i10.jpg"], SIZES)
    code, out, err = jobs_predict([run, tmp_path, "--benchmark", "mit300", "--out", tmp_path / "up", "--partial"],
                                  capsys)
    assert code == 0, err
    assert "wrote 3 mit300 maps" in out
    folder = tmp_path / "up" / "salgan-tiny"  # default name: the run folder's
    with zipfile.ZipFile(tmp_path / "up" / "salgan-tiny.zip") as z:
        assert sorted(z.namelist()) == ["salgan-tiny/i1.jpg", "salgan-tiny/i10.jpg", "salgan-tiny/i2.jpg"]
        zipped = {n: z.read(n) for n in z.namelist()}
    for p, want in zip(paths, expected_maps(run, paths)):
        data = (folder / f"{p.stem}.jpg").read_bytes()
        assert zipped[f"salgan-tiny/{p.stem}.jpg"] == data
        with Image.open(io.BytesIO(data)) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "L", Image.open(p).size)  # 8-bit gray, the image's size
            got = np.asarray(im).astype(np.float64)
        assert want.std() > 0.05  # a map with structure, so the comparison means something
        assert np.abs(got - want * 255).mean() < 1.5 and np.abs(got - want * 255).max() < 12  # JPEG q95
    manifest = json.loads((tmp_path / "up" / "manifest.json").read_text())
    assert manifest["benchmark"] == "mit300" and manifest["partial"] and manifest["count"] == 3
    assert manifest["run"]["checkpoint"] == str((run / "ckpt-000000000.pt").resolve())
    cfg = load_config(run / "config.yaml")
    assert (manifest["run"]["run_id"], manifest["run"]["name"]) == (config_hash(cfg), cfg.name)
    assert manifest["run"]["checkpoint_sha256"] == hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    assert manifest["zip"]["sha256"] == hashlib.sha256((tmp_path / "up" / "salgan-tiny.zip").read_bytes()).hexdigest()
    assert [m["map"] for m in manifest["maps"]] == ["i1.jpg", "i10.jpg", "i2.jpg"]
    assert {(m["height"], m["width"]) for m in manifest["maps"]} == set(SIZES)


def test_cat2000_keeps_the_category_folders(run, tmp_path):
    root = tmp_path / "testSet" / "Stimuli"
    write_images(root, ["Action/001.jpg", "Action/002.jpg", "Art/001.jpg"], SIZES)
    model, cfg = load_model(run)
    fmt = benchmark_format("cat2000")

    def predict(images):
        return [m[0].numpy() for m in predict_maps(model, images, cfg.data.input_size)]

    manifest = write_benchmark(predict, tmp_path, fmt, tmp_path / "up", "m", partial=True)
    with zipfile.ZipFile(tmp_path / "up" / "m.zip") as z:
        assert sorted(z.namelist()) == ["m/Action/001.jpg", "m/Action/002.jpg", "m/Art/001.jpg"]
    assert manifest["dataset"] == "cat2000" and manifest["format"]["layout"] == "m/<category>/<stimulus>"
    with pytest.raises(ValueError, match="3 stimuli, the cat2000 test set has 2000.*2 category folders"):
        write_benchmark(predict, tmp_path, fmt, tmp_path / "up2", "m")


def test_tuebingen_writes_16_bit_png_maps_pysaliency_can_read(run, tmp_path, capsys, pysaliency):
    """16-bit PNG (what the benchmark's loader, imageio, reads), exactly the rounded map, matched by name."""
    import imageio.v3 as iio

    paths = write_images(tmp_path / "stim", ["i5.jpg", "i6.jpg"], SIZES)
    code, out, err = jobs_predict([run, tmp_path / "stim", "--benchmark", "tuebingen", "--out", tmp_path / "up",
                                   "--name", "salgan", "--partial"], capsys)
    assert code == 0, err
    for p, want in zip(paths, expected_maps(run, paths)):
        arr = iio.imread(tmp_path / "up" / "salgan" / f"{p.stem}.png")
        assert arr.dtype == np.uint16 and arr.shape == want.shape
        np.testing.assert_array_equal(arr, np.rint(np.clip(want, 0, 1) * 65535).astype(np.uint16))
    manifest = json.loads((tmp_path / "up" / "manifest.json").read_text())
    assert manifest["benchmark"] == "tuebingen" and manifest["dataset"] == "mit300"
    assert manifest["format"] == {"ext": "png", "bit_depth": 16, "grayscale": True, "layout": "salgan/<stimulus>"}


def test_tuebingen_reads_cat2000_from_the_layout(tmp_path):
    write_images(tmp_path / "Stimuli", ["Art/001.jpg"], SIZES)
    assert benchmark_format("tuebingen", None, tmp_path).categories
    write_images(tmp_path / "flat", ["i1.jpg"], SIZES)
    assert not benchmark_format("tuebingen", None, tmp_path / "flat").categories


def test_missing_stimuli_and_wrong_layouts_are_clear_errors(run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = jobs_predict([run, tmp_path / "empty", "--benchmark", "mit300", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no images" in err
    write_images(tmp_path / "few", ["i1.jpg", "i2.jpg"], SIZES)
    code, _, err = jobs_predict([run, tmp_path / "few", "--benchmark", "mit300", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "2 stimuli, the mit300 test set has 300" in err and "--partial" in err
    assert not (tmp_path / "o" / "manifest.json").exists()
    code, _, err = jobs_predict([run, tmp_path / "few", "--benchmark", "cat2000", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no category folders" in err and "--benchmark mit300" in err
    code, _, err = jobs_predict([run, tmp_path / "nope", "--benchmark", "mit300", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no such stimulus folder" in err
    code, _, err = jobs_predict([run, tmp_path / "few", tmp_path / "few", "--benchmark", "mit300", "--out",
                                 tmp_path / "o"], capsys)
    assert code == 2 and "one stimulus folder" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "i1.jpg").write_bytes(b"truncated")
    code, _, err = jobs_predict([run, tmp_path / "bad", "--benchmark", "mit300", "--out", tmp_path / "o",
                                 "--partial"], capsys)
    assert code == 2 and "i1.jpg: unreadable stimulus image" in err


def test_check_maps_names_missing_extra_and_mismatched_sizes(tmp_path):
    fmt = FORMATS["mit300"]
    write_images(tmp_path / "stim", ["a.jpg", "b.jpg"], [(20, 30)])
    stimuli = find_stimuli(tmp_path / "stim", fmt)
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(maps / "a.jpg")
    with pytest.raises(ValueError, match=r"no map for 1 stimuli, e.g. \['b.jpg'\]"):
        check_maps(maps, stimuli, fmt)
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(maps / "b.jpg")
    with pytest.raises(ValueError, match=r"b.jpg: map is 30×21 \(W×H\) but its stimulus .*b.jpg is 30×20"):
        check_maps(maps, stimuli, fmt)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(maps / "b.jpg")
    check_maps(maps, stimuli, fmt)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(maps / "b.jpg")
    with pytest.raises(ValueError, match="8-bit grayscale"):
        check_maps(maps, stimuli, fmt)
    (maps / "c.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="belong to no stimulus"):
        check_maps(maps, stimuli, fmt)


def test_full_test_sets_pass_the_completeness_check(tmp_path):
    from salnet.inference.benchmark_formats import Stimulus

    mit = [Stimulus(Path(f"i{i}.jpg"), tmp_path) for i in range(1, 301)]
    check_complete(mit, FORMATS["mit300"], tmp_path)
    cat = [Stimulus(Path(f"c{c}/{i:03d}.jpg"), tmp_path) for c in range(20) for i in range(100)]
    check_complete(cat, FORMATS["cat2000"], tmp_path)
    with pytest.raises(ValueError, match="folders without 100 images"):
        check_complete(cat[:-1] + [Stimulus(Path("c0/x.jpg"), tmp_path)], FORMATS["cat2000"], tmp_path)
    dup = mit[:-1] + [Stimulus(Path("i1.png"), tmp_path)]
    with pytest.raises(ValueError, match="would both write i1.jpg"):
        check_complete(dup, Format("mit300", "jpg", 8, False, 300), tmp_path)


class KnownMap(torch.nn.Module):
    """A "model" whose output is one fixed map whatever the image (B copies of ``prob`` (h, w))."""

    def __init__(self, prob: np.ndarray):
        super().__init__()
        self.prob = torch.from_numpy(prob).float()[None, None]

    def forward(self, x):
        p = self.prob.expand(x.shape[0], 1, *self.prob.shape[-2:])
        return SaliencyOutput(torch.logit(p), p)


def gaussian_blur5_reflect101(a: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(a, (5, 5), 0): the separable kernel [1, 4, 6, 4, 1] / 16, borders reflected without
    repeating the edge (numpy's "reflect" = OpenCV's BORDER_REFLECT_101)."""
    k = np.array([1, 4, 6, 4, 1]) / 16
    p = np.pad(a, 2, mode="reflect")
    rows = sum(k[i] * p[i:i + a.shape[0], :] for i in range(5))
    return sum(k[j] * rows[:, j:j + a.shape[1]] for j in range(5))


def test_uploaded_maps_are_the_known_maps_resized_independently(tmp_path):
    """A model with a known 6×8 output; each 16-bit map uploaded for the Tübingen benchmark equals that map resized
    to its stimulus by a pixel-loop transcription of MATLAB's imresize (tests/test_imresize.py), blurred as the
    released code does (cv2.GaussianBlur 5×5, written in numpy here), clipped and rounded to 65535 levels. The
    predict path runs in float32: one level of difference is allowed."""
    from test_imresize import matlab_imresize_loop

    known = 0.1 + 0.8 * np.random.default_rng(3).random((6, 8))
    paths = write_images(tmp_path / "stim", ["i1.jpg", "i2.jpg", "i3.jpg"], SIZES)
    model = KnownMap(known)
    write_benchmark(lambda images: [m[0].numpy() for m in predict_maps(model, images, (32, 48))], tmp_path / "stim",
                    benchmark_format("tuebingen"), tmp_path / "up", "known", partial=True)
    for p, (h, w) in zip(paths, SIZES):
        want = np.clip(gaussian_blur5_reflect101(matlab_imresize_loop(known, (h, w))), 0, 1)
        with Image.open(tmp_path / "up" / "known" / f"{p.stem}.png") as im:
            got = np.asarray(im).astype(np.int64)
        assert got.shape == (h, w) and want.std() > 0.05
        assert np.abs(got - np.rint(want * 65535)).max() <= 1, p.name
