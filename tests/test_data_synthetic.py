"""The synthetic dataset: deterministic, exact density, fixations from it, learnable beyond centre bias."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from salnet.data import get_reader, make_synthetic, true_density, write_synthetic
from salnet.data.synthetic import centre_bias


def test_deterministic_by_seed_and_index():
    a, b = make_synthetic(3, size=(40, 56), seed=7), make_synthetic(3, size=(40, 56), seed=7)
    for x, y in zip(a, b):
        assert x.image == y.image and np.array_equal(x.map, y.map) and np.array_equal(x.fixations, y.fixations)
    c = make_synthetic(1, size=(40, 56), seed=7, start=2)[0]  # any order gives the same sample
    assert c.image == a[2].image and c.id == "000002"
    assert make_synthetic(1, size=(40, 56), seed=8)[0].image != a[0].image


def test_density_map_and_fixations_are_consistent():
    s = make_synthetic(1, size=(60, 80), seed=3, start=4)[0]
    p = true_density(4, size=(60, 80), seed=3)
    assert p.shape == (60, 80) and abs(p.sum() - 1) < 1e-12 and p.min() > 0
    np.testing.assert_array_equal(s.map, np.round(p / p.max() * 65535).astype(np.uint16))
    img = np.asarray(Image.open(io.BytesIO(s.image)))
    assert img.shape == (60, 80, 3) and s.map.dtype == np.uint16
    assert s.fixations.shape == (48, 3) and sorted(set(s.fixations[:, 2])) == list(range(8))
    assert (s.fixations[:, 0] < 60).all() and (s.fixations[:, 1] < 80).all()


def test_fixations_follow_the_density():
    # pooled over many images, the log-likelihood of the fixations under the true density beats the
    # centre bias by a clear margin (what a model reading the image can gain)
    size, gain, n = (48, 64), [], 0
    cb = np.log(centre_bias(size))
    for i in range(40):
        s = make_synthetic(1, size=size, seed=1, start=i)[0]
        lp = np.log(true_density(i, size=size, seed=1))
        y, x = s.fixations[:, 0], s.fixations[:, 1]
        gain.append((lp[y, x] - cb[y, x]).sum())
        n += len(y)
    assert sum(gain) / n / np.log(2) > 0.5  # bits per fixation


def test_image_contrast_predicts_better_than_centre_bias():
    # a hand-made predictor that only reads pixels (colour distance to the median, blurred)
    size, wins = (96, 128), 0
    for i in range(20):
        s = make_synthetic(1, size=size, seed=2, start=i)[0]
        img = np.asarray(Image.open(io.BytesIO(s.image))).astype(float) / 255
        contrast = np.linalg.norm(img - np.median(img.reshape(-1, 3), 0), axis=2)
        pred = gaussian_filter(contrast**2, 4) + 0.2 * centre_bias(size) / centre_bias(size).max() * contrast.max()
        p = true_density(i, size=size, seed=2)
        cc = np.corrcoef(pred.ravel(), p.ravel())[0, 1]
        cc_cb = np.corrcoef(centre_bias(size).ravel(), p.ravel())[0, 1]
        wins += cc > cc_cb
    assert wins >= 16


def test_raw_folder_round_trip(tmp_path):
    write_synthetic(tmp_path, {"train": 3, "val": 2}, size=(32, 48), seed=5)
    r = get_reader("synthetic", tmp_path)
    assert r.available_splits() == ["train", "val"]
    for split, n in (("train", 3), ("val", 2)):
        ref = make_synthetic(n, size=(32, 48), seed=5, split=split)
        for a in ref:
            b = r.load(split, a.id)
            assert a.image == b.image and np.array_equal(a.map, b.map) and np.array_equal(a.fixations, b.fixations)
