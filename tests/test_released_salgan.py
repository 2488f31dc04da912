"""The released SalGAN weights (Lasagne .npz) converted by jobs/convert.py: a file written in the released order
and shapes from known random weights predicts what a direct numpy computation of the released layers gives
(true convolution where Lasagne flips, RGB→BGR minus the Caffe mean, weight norm, DenseLayer W (in, out))."""

import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from salnet.inference.predict import load_model, predict_maps, resolve_checkpoint
from salnet.interop.released_salgan import convert_released, discriminator_params, generator_params
from salnet.models.salgan import DECODER_CFG

CONVERT = Path(__file__).resolve().parents[1] / "jobs" / "convert.py"
CAFFE_MEAN = np.array([103.939, 116.779, 123.68])  # B, G, R
VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]  # to conv5_3, no pool5


# ------------------------------------------------------------------ the released layers, in numpy (float64)


def conv(x, W, b, flip, pad):
    """Lasagne Conv2DLayer on (C, H, W), stride 1, ``pad`` zeros each side. flip_filters=True is Theano's
    conv2d with filter_flip: the textbook convolution out[y, x] = Σ W[i, j]·in[y + k−1−i, x + k−1−j] (as
    scipy.signal.convolve2d 'valid' on the padded input); flip_filters=False the cross-correlation
    out[y, x] = Σ W[i, j]·in[y + i, x + j]."""
    k = W.shape[-1]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h, w = xp.shape[1] - k + 1, xp.shape[2] - k + 1
    off = (lambda i: k - 1 - i) if flip else (lambda i: i)
    cols = np.stack([xp[:, off(i):off(i) + h, off(j):off(j) + w] for i in range(k) for j in range(k)], axis=1)
    return np.tensordot(W.reshape(W.shape[0], -1), cols.reshape(-1, h * w), axes=1).reshape(-1, h, w) \
        + b[:, None, None]


def test_reference_conv_is_scipys_convolution_and_correlation():
    from scipy.signal import convolve2d, correlate2d

    rng = np.random.default_rng(9)
    x, W = rng.standard_normal((1, 6, 7)), rng.standard_normal((1, 1, 3, 3))
    xp = np.pad(x[0], 1)
    np.testing.assert_allclose(conv(x, W, np.zeros(1), True, 1)[0], convolve2d(xp, W[0, 0], "valid"), atol=1e-12)
    np.testing.assert_allclose(conv(x, W, np.zeros(1), False, 1)[0], correlate2d(xp, W[0, 0], "valid"), atol=1e-12)


def relu(x):
    return np.maximum(x, 0)


def maxpool(x, s):
    c, h, w = x.shape
    return x[:, : h // s * s, : w // s * s].reshape(c, h // s, s, w // s, s).max(axis=(2, 4))


def released_generator(arrays, rgb255):
    """gen_modelWeights*.npz arrays, an RGB image (3, H, W) on 0–255 → the released output map (H, W)."""
    x = rgb255[::-1] - CAFFE_MEAN[:, None, None]  # RGBtoBGRLayer
    it = iter(arrays)
    for c in VGG:
        x = maxpool(x, 2) if c == "M" else relu(conv(x, next(it), next(it), flip=False, pad=1))
    for _, ch in DECODER_CFG:
        x = x.repeat(2, axis=1).repeat(2, axis=2) if ch == 0 else relu(conv(x, next(it), next(it), flip=True, pad=1))
    z = conv(x, next(it), next(it), flip=True, pad=0)[0]
    return 1 / (1 + np.exp(-z))


def released_discriminator(arrays, saliency, rgb255):
    """disrim_modelWeights*.npz arrays, saliency (H, W) in [0, 1], RGB (3, H, W) 0–255 → D's probability."""
    a = list(arrays)
    x = np.concatenate([saliency[None], rgb255])
    x = relu(conv(x, a[0], a[1], flip=False, pad=0))
    x = maxpool(relu(conv(x, a[2], a[3], flip=True, pad=1)), 4)
    x = relu(conv(x, a[4], a[5], flip=True, pad=1))
    x = maxpool(relu(conv(x, a[6], a[7], flip=True, pad=1)), 2)
    for W, b, g in ((a[8], a[9], a[10]), (a[11], a[12], a[13])):  # nn.weight_norm: W·g/√(1e-6 + ΣW²), then + b
        Wn = W * (g / np.sqrt(1e-6 + (W ** 2).sum(axis=(1, 2, 3))))[:, None, None, None]
        x = relu(conv(x, Wn, np.zeros(len(b)), flip=True, pad=1) + b[:, None, None])
    x = maxpool(x, 2).reshape(-1)  # DenseLayer flattens (C, H, W) row-major
    x = np.tanh(x @ a[14] + a[15])
    x = np.tanh(x @ a[16] + a[17])
    z = x @ a[18] + a[19]
    return 1 / (1 + np.exp(-z[0]))


# ------------------------------------------------------------------ released-order files of known weights


def generator_arrays(width, rng):
    """Random arrays in the released order and shapes (width 1.0 = the real file), scaled so that the signal
    neither dies nor explodes through 27 layers."""
    ch = lambda c: max(1, round(c * width))  # noqa: E731
    shapes, cin = [], 3
    for c in VGG:
        if c != "M":
            shapes += [(ch(c), cin, 3, 3), (ch(c),)]
            cin = ch(c)
    for _, c in DECODER_CFG:
        if c:
            shapes += [(ch(c), cin, 3, 3), (ch(c),)]
            cin = ch(c)
    shapes += [(1, cin, 1, 1), (1,)]
    out = []
    for s in shapes:
        if len(s) == 4:  # He scaling; the first conv sees 0–255 inputs
            scale = np.sqrt(2.0 / (s[1] * s[2] * s[3])) / (60.0 if s[1] == 3 else 1.0)
            out.append((rng.standard_normal(s) * scale).astype(np.float32))
        else:
            out.append((rng.standard_normal(s) * 0.05).astype(np.float32))
    return out


def discriminator_arrays(rng, size=(192, 256)):
    """The released discriminator's 20 arrays (width 1.0) for input ``size``."""
    flat = 64 * (size[0] // 16) * (size[1] // 16)
    shapes = [(3, 4, 1, 1), (3,), (32, 3, 3, 3), (32,), (64, 32, 3, 3), (64,), (64, 64, 3, 3), (64,),
              (64, 64, 3, 3), (64,), (64,), (64, 64, 3, 3), (64,), (64,), (flat, 100), (100,), (100, 2), (2,),
              (2, 1), (1,)]
    out = []
    for i, s in enumerate(shapes):
        if i in (10, 13):  # g: ones in the released code (train_g=False); random here to test where it goes
            out.append(rng.uniform(0.5, 2.0, s).astype(np.float32))
        elif len(s) > 1:
            fan_in = s[0] if len(s) == 2 else int(np.prod(s[1:]))
            scale = np.sqrt(1.0 / fan_in) / (100.0 if i in (0, 2) else 1.0)
            out.append((rng.standard_normal(s) * scale).astype(np.float32))
        else:
            out.append((rng.standard_normal(s) * 0.05).astype(np.float32))
    return out


def save_npz(path, arrays):
    np.savez(path, *arrays)  # what the released 02-train.py does
    return path


def test_parameter_lists_have_the_released_order_and_count():
    g, d = generator_params(), discriminator_params()
    assert len(g) == 54 and len(d) == 20
    assert [p.lasagne for p in g[:4]] == ["conv1_1.W", "conv1_1.b", "conv1_2.W", "conv1_2.b"]
    assert [p.lasagne for p in g[24:30]] == ["conv5_3.W", "conv5_3.b", "uconv5_3.W", "uconv5_3.b", "uconv5_2.W",
                                             "uconv5_2.b"]
    assert [p.lasagne for p in g[-2:]] == ["output.W", "output.b"]
    assert all(p.how == "copy" for p in g[:26]) and all(p.how == "flip" for p in g[26::2])
    assert [p.lasagne for p in d[8:14]] == ["conv3_1.W", "conv3_1.b", "conv3_1.g", "conv3_2.W", "conv3_2.b",
                                            "conv3_2.g"]
    assert [p.how for p in d[14::2]] == ["transpose"] * 3 and d[0].how == "copy"


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """The full-size released layout (generator 54 arrays, discriminator 20) converted into a .pt file."""
    root = tmp_path_factory.mktemp("released")
    rng = np.random.default_rng(0)
    g, d = generator_arrays(1.0, rng), discriminator_arrays(rng)
    gen = save_npz(root / "gen_modelWeights0090.npz", g)
    dis = save_npz(root / "disrim_modelWeights0090.npz", d)
    ckpt = convert_released([dis, gen], root / "salgan_released.pt")
    return root, ckpt, g, d


def test_full_size_generator_equals_the_numpy_reference(full_size):
    root, ckpt, g, _ = full_size
    assert resolve_checkpoint(ckpt) == (ckpt, root / "salgan_released.yaml")
    model, cfg = load_model(ckpt)
    assert cfg.model.input_convention == "caffe_bgr" and cfg.model.width == 1.0 and cfg.model.weights is None
    assert model.encoder.input_convention == "caffe_bgr"
    rgb = np.random.default_rng(1).integers(0, 256, (3, 32, 48)).astype(np.float64)
    ref = released_generator(g, rgb)
    with torch.no_grad():
        out = model(torch.from_numpy(rgb / 255.0).float()[None]).prob[0, 0].double().numpy()
    assert ref.std() / ref.mean() > 0.05 and ref.min() > 0.01 and ref.max() < 0.99  # not saturated: a real check
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=1e-6)


def test_full_size_discriminator_equals_the_numpy_reference(full_size):
    from salnet.models.salgan import Discriminator

    _, ckpt, _, d = full_size
    state = torch.load(ckpt, weights_only=True)
    assert set(state["converted_from"]) == {"generator", "discriminator"}
    assert state["converted_from"]["discriminator"]["arrays"] == 20
    D = Discriminator()
    D.load_state_dict(state["D"], strict=True)
    rng = np.random.default_rng(2)
    sal, rgb = rng.uniform(0, 1, (192, 256)), rng.integers(0, 256, (3, 192, 256)).astype(np.float64)
    ref = released_discriminator(d, sal, rgb)
    with torch.no_grad():
        out = D(torch.from_numpy(sal).float()[None, None], torch.from_numpy(rgb / 255.0).float()[None]).prob.item()
    assert 0.02 < ref < 0.98
    assert out == pytest.approx(ref, rel=1e-5)


def test_jobs_convert_writes_a_run_folder_that_predict_loads(tmp_path, monkeypatch, capsys):
    """A narrow network (same layout, width 1/8) through the command line into a run folder; predict_maps on it
    equals the released post-processing applied to the numpy reference's map."""
    from salnet.models.postprocess import postprocess

    rng = np.random.default_rng(3)
    g = generator_arrays(0.125, rng)
    gen = save_npz(tmp_path / "gen_modelWeights0090.npz", g)
    monkeypatch.setattr(sys, "argv", ["convert.py", "salgan-released", str(gen), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(CONVERT), run_name="__main__")
    assert done.value.code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "best.pt").exists()
    model, cfg = load_model(tmp_path / "run")
    assert cfg.model.width == 0.125 and cfg.data.input_size == (192, 256)
    image = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)  # at the input size: the resize is exact
    (got,) = predict_maps(model, [image], (192, 256))
    ref = released_generator(g, image.transpose(2, 0, 1).astype(np.float64))
    want = postprocess(torch.from_numpy(ref).float()[None], (192, 256))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-5)


@pytest.mark.parametrize("problem", ["missing", "not_npz", "wrong_count", "wrong_shape", "two_generators",
                                     "discriminator_only"])
def test_bad_input_is_a_clear_error(tmp_path, problem):
    rng = np.random.default_rng(4)
    g = generator_arrays(0.125, rng)
    gen = save_npz(tmp_path / "gen.npz", g)
    files, match = [gen], ""
    if problem == "missing":
        files, match = [tmp_path / "nope.npz"], "no such file"
    elif problem == "not_npz":
        (tmp_path / "x.npz").write_bytes(b"not a zip")
        files, match = [tmp_path / "x.npz"], "not a readable .npz"
    elif problem == "wrong_count":
        files, match = [save_npz(tmp_path / "short.npz", g[:-2])], "52 arrays"
    elif problem == "wrong_shape":
        g[30] = g[30][:, :-1]
        files, match = [save_npz(tmp_path / "bad.npz", g)], r"arr_30 \(uconv5_1.W\) has shape"
    elif problem == "two_generators":
        files, match = [gen, gen], "both generator"
    elif problem == "discriminator_only":
        files, match = [save_npz(tmp_path / "d.npz", discriminator_arrays(rng))], "discriminator file alone"
    with warnings.catch_warnings(), pytest.raises((ValueError, FileNotFoundError), match=match):
        warnings.simplefilter("ignore")
        convert_released(files, tmp_path / "out.pt")
