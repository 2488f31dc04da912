"""Prediction from a trained run: model loading, SalGAN's released post-processing (area resize in,
bicubic resize back, OpenCV's 5×5 Gaussian), PNG output and jobs/predict.py, checked against
independent numpy/scipy computations on a tiny run trained here."""

import copy
import importlib.util
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import synthetic_shards
from PIL import Image
from scipy import ndimage

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.imresize import imresize
from salnet.inference.predict import load_model, map_png, overlay_png, overlay_rgb, predict_maps
from salnet.models.postprocess import BLUR_KERNEL, blur5, postprocess
from salnet.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")


def train_tiny_run(root: Path) -> Path:
    """A one-epoch content-loss run at tiny width on 32×48 synthetic shards; returns its run folder."""
    synthetic_shards(root, {"train": 8, "val": 4}, (32, 48), 0.05)
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={root / 'shards'}",
                                     "data.input_size=[32, 48]", "train.procedure=content", "train.epochs=1",
                                     "train.optimizer=adam"])
    Trainer(cfg, run_dir=root / "run").fit()
    return root / "run"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def sharp(run):
    """The trained model with its output layer scaled up, so maps vary over the whole [0, 1] range."""
    model, cfg = load_model(run)
    model = copy.deepcopy(model)
    out = model.decoder.output
    probe = torch.from_numpy(images((32, 48), seed=9)[0]).permute(2, 0, 1)[None] / 255
    with torch.no_grad():  # logits of standard deviation 4 around 0 on a probe image
        logits = model(probe).logits - out.bias
        scale = 4 / logits.std()
        out.weight.mul_(scale)
        out.bias.copy_(-(logits * scale).mean())
    return model, cfg


def images(*sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


# ---------------------------------------------------------------- independent reference pieces


def opencv_blur(m: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(m, (5, 5), 0): OpenCV's 5-tap table is the binomial C(4, k) / 16; its default border
    BORDER_REFLECT_101 is scipy's "mirror"."""
    k = np.array([math.comb(4, i) for i in range(5)], dtype=np.float64) / 16
    return ndimage.correlate(m.astype(np.float64), np.outer(k, k), mode="mirror")


def keys_cubic(x):
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                    np.where(ax < 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def matlab_bicubic_up2(a: np.ndarray) -> np.ndarray:
    """MATLAB imresize(a, 2, 'bicubic') for enlarging (no antialiasing): output pixel x (1-based) samples
    u = x/2 + 1/4 with the four Keys taps around it; out-of-range taps mirror the border (symmetric)."""
    def axis(v, n):
        out = np.zeros((2 * n, v.shape[1]))
        for x in range(1, 2 * n + 1):
            u = x / 2 + 0.25
            for j in range(math.floor(u) - 1, math.floor(u) + 3):
                src = 1 - j if j < 1 else (2 * n + 1 - j if j > n else j)
                out[x - 1] += keys_cubic(u - j) * v[src - 1]
        return out

    return axis(axis(a, a.shape[0]).T, a.shape[1]).T


def forward(model, x: np.ndarray) -> np.ndarray:
    """The model's probability map of one float (3, h, w) input, as float64 (h, w)."""
    with torch.no_grad():
        return model(torch.from_numpy(x).float()[None]).prob[0, 0].double().numpy()


# ---------------------------------------------------------------- the blur


def test_blur_is_opencv_fixed_5x5_kernel_with_reflect101():
    binomial = tuple(math.comb(4, i) / 16 for i in range(5))
    assert binomial == BLUR_KERNEL  # OpenCV's table, not its σ = 1.1 formula
    r = np.arange(5) - 2
    assert float(np.sum(np.array(BLUR_KERNEL) * r**2)) == 1.0  # a discrete Gaussian of variance 1
    delta = torch.zeros(9, 9, dtype=torch.float64)
    delta[4, 4] = 1
    k = np.array(BLUR_KERNEL)
    np.testing.assert_array_equal(blur5(delta)[2:7, 2:7].numpy(), np.outer(k, k))
    row = torch.tensor([[3.0, 5.0, 11.0, 2.0]], dtype=torch.float64)  # first pixel reflects dcb|abcd
    assert blur5(row)[0, 0].item() == pytest.approx((6 * 3 + 8 * 5 + 2 * 11) / 16, abs=1e-12)
    rng = np.random.default_rng(1)
    for size in [(1, 1), (1, 6), (2, 3), (3, 7), (12, 17)]:
        m = rng.random(size)
        np.testing.assert_allclose(blur5(torch.from_numpy(m)).numpy(), opencv_blur(m), rtol=0, atol=1e-12)
    batch = torch.from_numpy(rng.random((2, 1, 6, 8)))
    np.testing.assert_allclose(blur5(batch)[1, 0].numpy(), opencv_blur(batch[1, 0].numpy()), atol=1e-12)


def test_postprocess_resizes_blurs_and_clips():
    p = torch.from_numpy(np.random.default_rng(2).random((1, 16, 24)))
    out = postprocess(p, (32, 48))
    expect = np.clip(opencv_blur(matlab_bicubic_up2(p[0].numpy())), 0, 1)
    np.testing.assert_allclose(out[0].numpy(), expect, rtol=0, atol=1e-12)
    assert out.min() >= 0 and out.max() <= 1


# ---------------------------------------------------------------- predict_maps


def test_predicted_maps_equal_an_independent_computation(sharp):
    model, cfg = sharp
    assert tuple(cfg.data.input_size) == (32, 48)
    ims = images((64, 96), (32, 48), (37, 53), (50, 20), (3, 4))
    maps = predict_maps(model, ims, cfg.data.input_size, "cpu", batch_size=2)  # mixed sizes, 3 batches
    assert [tuple(m.shape) for m in maps] == [(1, h, w) for h, w, _ in (im.shape for im in ims)]
    assert all(m.dtype == torch.float32 and m.min() >= 0 and m.max() <= 1 for m in maps)
    # 64×96 → 32×48 is INTER_AREA by exactly 2: the mean of each 2×2 block; back up: MATLAB bicubic ×2
    x = ims[0].astype(np.float64).transpose(2, 0, 1) / 255
    small = x.reshape(3, 32, 2, 48, 2).mean(axis=(2, 4))
    p = forward(model, small)
    assert p.max() - p.min() > 0.5  # the maps vary: the comparison below is not about a constant
    expect = np.clip(opencv_blur(matlab_bicubic_up2(p)), 0, 1)
    np.testing.assert_allclose(maps[0][0].numpy(), expect, rtol=0, atol=2e-5)
    # at the input size nothing is resized: blur and clip of the network output
    p = forward(model, ims[1].astype(np.float64).transpose(2, 0, 1) / 255)
    np.testing.assert_allclose(maps[1][0].numpy(), np.clip(opencv_blur(p), 0, 1), rtol=0, atol=2e-5)
    # other sizes: salnet.imresize (MATLAB / OpenCV semantics, tested in test_imresize.py) around the model
    for im, m in zip(ims[2:], maps[2:]):
        x = torch.from_numpy(im).permute(2, 0, 1).double() / 255
        p = forward(model, imresize(x, (32, 48), "area").numpy())
        back = imresize(torch.from_numpy(p), im.shape[:2], "bicubic").numpy()
        np.testing.assert_allclose(m[0].numpy(), np.clip(opencv_blur(back), 0, 1), rtol=0, atol=2e-5)


def test_batching_does_not_change_the_maps(sharp):
    model, cfg = sharp
    ims = images((40, 40), (20, 70), (32, 48), seed=3)
    one = predict_maps(model, ims, cfg.data.input_size, "cpu", batch_size=1)
    three = predict_maps(model, ims, cfg.data.input_size, "cpu", batch_size=3)
    for a, b in zip(one, three):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_bad_images_and_batch_size_are_clear_errors(sharp):
    model, cfg = sharp
    with pytest.raises(ValueError, match=r"images\[1\]: expected a uint8 RGB array"):
        predict_maps(model, [images((8, 8))[0], np.zeros((8, 8), np.uint8)], (32, 48))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        predict_maps(model, images((8, 8)), (32, 48), batch_size=0)


def test_png_round_trip_and_overlay(sharp):
    model, cfg = sharp
    im = images((30, 45), seed=4)[0]
    m = predict_maps(model, [im], cfg.data.input_size, "cpu")[0]
    png = Image.open(io.BytesIO(map_png(m)))
    assert png.mode == "L" and png.size == (45, 30)
    np.testing.assert_array_equal(np.asarray(png), np.rint(m[0].double().numpy() * 255).astype(np.uint8))
    ov = Image.open(io.BytesIO(overlay_png(im, m)))
    assert ov.mode == "RGB" and ov.size == (45, 30)
    arr = np.asarray(ov)
    np.testing.assert_array_equal(arr, overlay_rgb(im, m))
    # the map's minimum is the ramp's dark blue (0, 0, 0.5), maximum its red (1, 0, 0), blended half and half
    for idx, colour in ((m[0].argmin(), (0, 0, 0.5)), (m[0].argmax(), (1, 0, 0))):
        y, x = divmod(int(idx), 45)
        expect = np.rint((0.5 * im[y, x] / 255 + 0.5 * np.array(colour)) * 255)
        np.testing.assert_allclose(arr[y, x], expect, atol=1)


# ---------------------------------------------------------------- load_model


def test_load_model_from_run_folder_and_checkpoint_file(run, tmp_path):
    from salnet.train.checkpoint import load_checkpoint

    model, cfg = load_model(run)
    best = load_checkpoint(run / "best.pt")
    assert cfg.model.width == 0.0625 and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["G"][k]), k
    ckpt = sorted(run.glob("ckpt-*.pt"))[-1]
    model2, _ = load_model(ckpt)
    assert all(torch.equal(v, model2.state_dict()[k]) for k, v in model.state_dict().items())
    # best.pt missing: latest.pt is used
    copy_run = tmp_path / "run"
    shutil.copytree(run, copy_run, symlinks=True, ignore=shutil.ignore_patterns("tb", "best.pt"))
    model3, _ = load_model(copy_run)
    latest = load_checkpoint(run / "latest.pt")
    assert all(torch.equal(v, latest["G"][k]) for k, v in model3.state_dict().items())


def test_load_model_errors_name_the_file(run, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: no such run folder"):
        load_model(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text((run / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="no best.pt or latest.pt in this run folder"):
        load_model(empty)
    lone = tmp_path / "lone" / "ckpt.pt"
    lone.parent.mkdir()
    shutil.copy(run / "latest.pt", lone)
    with pytest.raises(FileNotFoundError, match=r"lone/config.yaml: missing.*inside the run folder"):
        load_model(lone)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(run / "latest.pt", wrong / "latest.pt")
    text = (run / "config.yaml").read_text()
    assert "width: 0.0625" in text
    (wrong / "config.yaml").write_text(text.replace("width: 0.0625", "width: 0.125"))
    with pytest.warns(UserWarning, match="config edited after training"), \
            pytest.raises(ValueError, match=r"latest.pt: its generator does not match .*wrong/config.yaml"):
        load_model(wrong)
    (wrong / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="latest.pt: not a loadable salnet checkpoint"):
        load_model(wrong)


# ---------------------------------------------------------------- jobs/predict.py


def predict_job():
    spec = importlib.util.spec_from_file_location("predict_job", REPO / "jobs" / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_job_writes_maps_for_files_folders_and_globs(run, tmp_path, capsys):
    a, b, c, d = images((30, 40), (50, 25), (32, 48), (17, 33), seed=5)
    save(tmp_path / "in" / "a.png", a)
    save(tmp_path / "in" / "b.png", b)
    (tmp_path / "in" / "notes.txt").write_text("not an image suffix: a folder input ignores it")
    save(tmp_path / "deep" / "x" / "c.png", c)
    save(tmp_path / "single.png", d)
    job = predict_job()
    code = job.main([str(run), str(tmp_path / "in"), str(tmp_path / "deep" / "**" / "*.png"),
                     str(tmp_path / "single.png"), str(tmp_path / "in" / "a.png"),  # a again: predicted once
                     "--out", str(tmp_path / "out"), "--overlays", "--batch-size", "3"])
    assert code == 0
    assert "wrote 4 saliency maps and overlays to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{s}{x}.png" for s in "abc" for x in ("", "_overlay")] + ["single.png", "single_overlay.png"])
    model, cfg = load_model(run)
    expect = predict_maps(model, [a, b, c, d], cfg.data.input_size, "cpu")
    for name, im, m in zip(["a", "b", "c", "single"], [a, b, c, d], expect):
        got = np.asarray(Image.open(tmp_path / "out" / f"{name}.png"))
        assert got.shape == im.shape[:2]
        np.testing.assert_array_equal(got, np.rint(m[0].double().numpy() * 255))
        ov = np.asarray(Image.open(tmp_path / "out" / f"{name}_overlay.png"))
        np.testing.assert_array_equal(ov, overlay_rgb(im, m))


def test_job_skips_and_counts_unreadable_images(run, tmp_path, script_here):
    save(tmp_path / "in" / "good.png", images((20, 30))[0])
    jpeg = io.BytesIO()
    Image.fromarray(images((64, 64), seed=6)[0]).save(jpeg, format="JPEG")
    (tmp_path / "in" / "truncated.jpg").write_bytes(jpeg.getvalue()[:300])
    (tmp_path / "in" / "text.png").write_text("not an image")
    proc = script_here("predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert f"warning: skipping {tmp_path / 'in' / 'truncated.jpg'}: unreadable image" in proc.stderr
    assert f"warning: skipping {tmp_path / 'in' / 'text.png'}: unreadable image" in proc.stderr
    assert "wrote 1 saliency map to" in proc.stdout and "skipped 2 unreadable" in proc.stdout
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_job_bad_input_messages(run, tmp_path, capsys):
    job = predict_job()
    img = save(tmp_path / "a" / "x.jpg", images((20, 20))[0])
    out = ["--out", str(tmp_path / "out")]

    def fails(argv, message):
        assert job.main(argv + out) == 2
        err = capsys.readouterr().err
        assert message in err, err

    fails([str(tmp_path / "norun"), str(img)], f"error: {tmp_path / 'norun'}: no such run folder")
    fails([str(run), str(tmp_path / "missing.jpg")], f"error: {tmp_path / 'missing.jpg'}: no such file")
    fails([str(run), str(tmp_path / "a" / "*.png")], "error: no images matched")
    save(tmp_path / "b" / "x.png", images((20, 20))[0])
    fails([str(run), str(img), str(tmp_path / "b" / "x.png")],
          f"error: {img} and {tmp_path / 'b' / 'x.png'} would both write x.png")
    save(tmp_path / "a" / "x_overlay.jpg", images((20, 20))[0])
    fails([str(run), str(tmp_path / "a"), "--overlays"], "would both write x_overlay.png")
    fails([str(run), str(img), "--batch-size", "0"], "error: --batch-size must be >= 1")
    if not torch.cuda.is_available():
        fails([str(run), str(img), "--device", "cuda"], "error: --device cuda: no CUDA device is available")
    assert not (tmp_path / "out").exists()  # nothing is written before the inputs are checked
