"""The metrics against pysaliency (where conventions coincide) on random and real maps."""

import numpy as np
import pytest
import torch
from helpers import shared_path
from PIL import Image

from salnet import metrics as M


def smooth_maps(n, shape, seed):
    """Random blob maps (sums of Gaussians) in [0, 1] — realistic, tie-free saliency maps."""
    rng = np.random.default_rng(seed)
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    for _ in range(n):
        m = np.zeros(shape)
        for _ in range(rng.integers(2, 6)):
            cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(3, 12)
            m += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out.append(m / m.max())
    return out


def random_points(shape, n, seed, unique=True):
    rng = np.random.default_rng(seed)
    H, W = shape
    pts = np.stack([rng.integers(0, H, n), rng.integers(0, W, n)], 1)
    if unique:
        pts = np.unique(pts, axis=0)
    else:  # force duplicates: pysaliency counts each fixation
        pts = np.concatenate([pts, pts[: n // 4]])
    return pts


def counts(pts, shape):
    c = np.zeros(shape)
    np.add.at(c, (pts[:, 0], pts[:, 1]), 1)
    return c


def t(arrs):
    return torch.from_numpy(np.stack(arrs))


class OneMapPerStimulus:
    """Build pysaliency objects whose model returns ``maps[i]`` for stimulus i."""

    def __init__(self, ps, maps, points):
        class Model(ps.SaliencyMapModel):
            def _saliency_map(self, stimulus):
                return maps[int(stimulus[0, 0, 0])]

        self.model = Model(caching=False)
        self.stimuli = ps.Stimuli([np.full(m.shape + (3,), i, np.uint8) for i, m in enumerate(maps)])
        xs = np.concatenate([p[:, 1] for p in points]).astype(float)
        ys = np.concatenate([p[:, 0] for p in points]).astype(float)
        ns = np.concatenate([np.full(len(p), i) for i, p in enumerate(points)])
        self.fixations = ps.Fixations.create_without_history(xs, ys, ns)


SHAPE = (40, 56)
PYSAL_EPS = 2.2204e-16  # pysaliency's MIT_KLDiv rounds MATLAB's eps; zero-prediction pixels magnify the gap


def test_auc_judd_equals_pysaliency_with_identical_jitter(pysaliency):
    maps = smooth_maps(4, SHAPE, 0)
    rng = np.random.default_rng(5)
    jittered = [m + rng.random(SHAPE) / 1e7 for m in maps]  # one jitter, given to both implementations
    pts = [random_points(SHAPE, 30, i) for i in range(4)]
    ref = OneMapPerStimulus(pysaliency, jittered, pts)
    want = ref.model.AUC_per_image(ref.stimuli, ref.fixations, nonfixations="unfixated", thresholds="fixations")
    got = M.auc_judd(t(jittered), t([counts(p, SHAPE) for p in pts]), jitter=False)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    # MIT's own jitter (U(0,1)/1e7) cannot reorder these tie-free maps: same value with it on
    np.testing.assert_allclose(M.auc_judd(t(maps), t([counts(p, SHAPE) for p in pts])).numpy(), want, atol=1e-6)


def test_cc_kld_equal_pysaliency():
    ps_metrics = pytest.importorskip("pysaliency.metrics")
    pred, gt = smooth_maps(3, SHAPE, 1), smooth_maps(3, SHAPE, 2)
    got_cc = M.cc(t(pred), t(gt)).numpy()
    got_kld = M.kld(t(pred), t(gt), eps=PYSAL_EPS).numpy()
    for i in range(3):
        assert abs(got_cc[i] - ps_metrics.CC(pred[i], gt[i])) <= 1e-6
        assert abs(got_kld[i] - ps_metrics.MIT_KLDiv(pred[i], gt[i])) <= 1e-6


def test_pysaliency_variants_of_nss_sim(pysaliency):
    import pysaliency.metrics as ps_metrics

    pred, gt = smooth_maps(3, SHAPE, 3), smooth_maps(3, SHAPE, 4)
    pts = [random_points(SHAPE, 40, 10 + i, unique=False) for i in range(3)]
    nss = M.nss(t(pred), t([counts(p, SHAPE) for p in pts]), variant="pysaliency").numpy()
    sim = M.sim(t(pred), t(gt), variant="pysaliency").numpy()
    for i in range(3):
        assert abs(nss[i] - ps_metrics.NSS(pred[i], pts[i][:, 1], pts[i][:, 0]).mean()) <= 1e-6
        assert abs(sim[i] - ps_metrics.SIM(pred[i], gt[i])) <= 1e-6


def test_sauc_pysaliency_variant_with_images_of_different_sizes(pysaliency):
    shapes = [(40, 56), (30, 64), (48, 48), (40, 56)]
    maps = [smooth_maps(1, s, 20 + i)[0] for i, s in enumerate(shapes)]
    pts = [random_points(s, 35, 30 + i, unique=False) for i, s in enumerate(shapes)]
    ref = OneMapPerStimulus(pysaliency, maps, pts)
    want = ref.model.AUC_per_image(ref.stimuli, ref.fixations, nonfixations="shuffled")
    for i, s in enumerate(shapes):
        other = M.other_fixations(pts, shapes, i, variant="pysaliency")
        got = M.sauc(t([maps[i]]), t([counts(pts[i], s)]), other[None], variant="pysaliency")
        assert abs(got.item() - want[i]) <= 1e-6


def test_real_maps_from_shared_data(pysaliency):
    """MIT1003 human maps scored against each other and the i210 benchmark demo image."""
    import pysaliency.metrics as ps_metrics

    root = shared_path("data", "mit1003-iccv100")
    names = sorted(p.name for p in (root / "fixation_maps").iterdir())[:6]
    maps = [np.asarray(Image.open(root / "fixation_maps" / n).convert("L"), np.float64) / 255 for n in names]
    for a, b in zip(maps[:-1], maps[1:]):
        if a.shape != b.shape:
            continue
        assert abs(M.cc(t([b]), t([a])).item() - ps_metrics.CC(b, a)) <= 1e-6
        assert abs(M.kld(t([b]), t([a]), eps=PYSAL_EPS).item() - ps_metrics.MIT_KLDiv(b, a)) <= 1e-6
        assert abs(M.sim(t([b]), t([a]), variant="pysaliency").item() - ps_metrics.SIM(b, a)) <= 1e-6
    demo = shared_path("data", "mit-benchmark-demo")
    import scipy.io

    fix = scipy.io.loadmat(demo / "FIXATIONLOCS" / "i210.mat")["fixations"].astype(np.float64)
    gt = np.asarray(Image.open(demo / "FIXATIONMAPS" / "i210.jpg").convert("L"), np.float64) / 255
    ys, xs = np.nonzero(fix)
    want = ps_metrics.NSS(gt, xs, ys).mean()
    assert abs(M.nss(t([gt]), t([fix]), variant="pysaliency").item() - want) <= 1e-6
    # the human map has ties (JPEG, 8-bit): compare on the same jittered map, jitter off in both
    jittered = gt + np.random.default_rng(0).random(gt.shape) / 1e7
    ref = OneMapPerStimulus(pysaliency, [jittered], [np.stack([ys, xs], 1)])
    want_judd = ref.model.AUC_per_image(ref.stimuli, ref.fixations, nonfixations="unfixated", thresholds="fixations")
    assert abs(M.auc_judd(t([jittered]), t([fix]), jitter=False).item() - want_judd[0]) <= 1e-6
