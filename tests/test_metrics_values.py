"""Closed-form values, Monte-Carlo expectations, batch invariance and undefined cases of the metrics."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from salnet import metrics as M
from salnet.metrics.emd import _ground_distance, transport_cost
from salnet.models.baselines import center_bias

G = torch.Generator().manual_seed(0)


def blobs(n, H=36, W=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.zeros((n, H, W))
    for i in range(n):
        for _ in range(3):
            cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(3, 9)
            out[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return torch.from_numpy(out)


def sample_fixations(maps, n=25, seed=0):
    rng = np.random.default_rng(seed)
    out = torch.zeros_like(maps)
    for i, m in enumerate(maps.numpy()):
        p = (m / m.sum()).ravel()
        idx = rng.choice(p.size, n, p=p)
        out[i].view(-1)[torch.from_numpy(idx)] = 1
    return out


def test_identities():
    maps = blobs(3)
    fix = sample_fixations(maps)
    assert torch.allclose(M.sim(maps, maps), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(M.cc(maps, maps), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(M.kld(maps, maps), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(M.info_gain(maps, fix, maps), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    big = blobs(2, 64, 96)  # sides divisible by 32: the two resizes of EMD.m use the same scale
    assert torch.allclose(M.emd(big, big), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    # EMD.m shrinks the ground truth by scale 1/32 but the prediction to that *size*; when a side is not a
    # multiple of 32 the kernels differ and EMD(x, x) > 0 in the benchmark too (kept, documented)
    assert (M.emd(maps, maps) > 0).all()
    # a map equal to the fixations ranks every fixated pixel first: AUC-Judd = 1 (MIT's jitter breaks ties)
    assert torch.allclose(M.auc_judd(fix, fix), torch.ones(3, dtype=torch.float64))
    # without jitter MATLAB's formula walks the tied thresholds: tp = i/Nf, fp = (Nf - i)/(N - Nf)
    nf, n = fix[0].sum().item(), fix[0].numel()
    i = np.arange(1, nf + 1)
    want = np.trapezoid([0, *(i / nf), 1], [0, *((nf - i) / (n - nf)), 1])
    assert M.auc_judd(fix[:1], fix[:1], jitter=False).item() == pytest.approx(want, abs=1e-12)


def test_nss_by_hand():
    pred = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]], dtype=torch.float64)
    fix = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)  # two fixations on one pixel
    mean, std1, std0 = 1.5, math.sqrt(5 / 3), math.sqrt(5 / 4)
    assert M.nss(pred, fix).item() == pytest.approx((3 - mean) / std1, abs=1e-12)
    assert M.nss(pred, fix, variant="pysaliency").item() == pytest.approx((3 - mean) / std0, abs=1e-12)


def test_auc_judd_by_hand():
    # S = [0.1 .. 0.6]; fixations on 0.6 and 0.3 → thresholds 0.6 (tp 1/2, fp 0) and 0.3 (tp 1, fp 2/4)
    S = torch.tensor([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]], dtype=torch.float64)
    F = torch.tensor([[[0, 0, 1], [0, 0, 1]]], dtype=torch.float64)
    x, y = [0, 0, 0.5, 1], [0, 0.5, 1, 1]
    assert M.auc_judd(S, F, jitter=False).item() == pytest.approx(np.trapezoid(y, x), abs=1e-12)


def _auc_judd_numpy(s, fix):
    """AUC_Judd.m without jitter, by sorting: thresholds at the fixated values, counts by comparison."""
    th = np.sort(s[fix > 0])[::-1]
    n, nf = s.size, th.size
    above = np.array([(s >= t).sum() for t in th])
    tp = np.concatenate([[0], np.arange(1, nf + 1) / nf, [1]])
    fp = np.concatenate([[0], (above - np.arange(1, nf + 1)) / (n - nf), [1]])
    return np.trapezoid(tp, fp)


@pytest.mark.parametrize("offset", [0.0, -3.0, 1e11])
def test_auc_judd_histogram_equals_sorting(offset):
    # the histogram counting with its exact pass over the pixels near each threshold, against plain
    # sorting; a map far from zero relative to its spread takes the subtract-first binning
    maps = blobs(3, 60, 80, seed=31) + offset
    fix = sample_fixations(blobs(3, 60, 80, seed=32), n=50, seed=33)
    got = M.auc_judd(maps, fix, jitter=False)
    want = [_auc_judd_numpy(m.numpy(), f.numpy()) for m, f in zip(maps, fix)]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12, rtol=0)


def test_emd_point_masses_is_their_distance():
    p = torch.zeros(1, 6, 8, dtype=torch.float64)
    q = torch.zeros_like(p)
    p[0, 1, 2], q[0, 4, 6] = 1, 1  # (3, 4) apart
    assert M.emd(q, p, downsize=1).item() == pytest.approx(5.0, abs=1e-12)
    p2 = p.clone()
    p2[0, 1, 2], p2[0, 5, 2] = 0.5, 0.5  # half stays at distance 5, half travels (1, 4): sqrt(17)
    assert M.emd(q, p2, downsize=1).item() == pytest.approx(0.5 * 5 + 0.5 * math.sqrt(17), abs=1e-12)


def lp_emd(a, b, dist):
    n = a.size
    A = np.zeros((2 * n, n * n))
    for i in range(n):
        A[i, i * n:(i + 1) * n] = 1
        A[n + i, i::n] = 1
    res = linprog(dist.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    return res.fun


def test_transport_matches_an_lp_including_negative_cells():
    rng = np.random.default_rng(3)
    dist = _ground_distance(3, 4)
    for _ in range(3):
        a, b = rng.random(12), rng.random(12)
        a, b = a / a.sum(), b / b.sum()
        assert transport_cost(a, b, dist) == pytest.approx(lp_emd(a, b, dist), abs=1e-9)
        a[rng.integers(12)] -= 0.05  # bicubic ringing: a negative cell; FastEMD's pre-flow makes it demand
        a /= a.sum()
        pos, neg = np.clip(a - b, 0, None), np.clip(b - a, 0, None)
        assert transport_cost(a, b, dist) == pytest.approx(lp_emd(pos, neg, dist), abs=1e-9)


def test_monte_carlo_aucs_within_three_standard_errors_of_expectation():
    maps = blobs(2, seed=4)
    fix = sample_fixations(maps, n=30, seed=5)
    other = sample_fixations(maps.flip(0), n=60, seed=6)
    T = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])  # MATLAB 0:0.1:max, max = 1 included

    def expected(S, F, neg_mask):
        S = (S - S.min()) / (S.max() - S.min())
        pos, neg = S[F > 0], S[neg_mask]
        tp = [0.0] + [(pos >= t).double().mean().item() for t in T] + [1.0]
        fp = [0.0] + [(neg >= t).double().mean().item() for t in T] + [1.0]  # E[fp] over the random draws
        return np.trapezoid(tp, fp)

    for name, fn, neg in (("borji", lambda s: M.auc_borji(maps, fix, seed=s), lambda i: torch.ones_like(fix[i]) > 0),
                          ("sauc", lambda s: M.sauc(maps, fix, other, seed=s), lambda i: other[i] > 0)):
        draws = torch.stack([fn(s) for s in range(40)])  # 40 seeds × 100 splits
        for i in range(2):
            exact = expected(maps[i], fix[i], neg(i))
            se = draws[:, i].std().item() / math.sqrt(len(draws))
            assert abs(draws[:, i].mean().item() - exact) < 3 * se + 1e-12, name


def test_same_value_whatever_the_batch():
    maps, preds = blobs(5, seed=7), blobs(5, seed=8)
    fix = sample_fixations(maps, seed=9)
    other = sample_fixations(maps.roll(1, 0), n=50, seed=10)
    base = torch.from_numpy(center_bias((36, 48)))
    full = M.score_batch(preds, fixations=fix, gt_map=maps, other=other, baseline=base)
    perm = [3, 0, 4]
    part = M.score_batch(preds[perm], fixations=fix[perm], gt_map=maps[perm], other=other[perm], baseline=base)
    one = M.score_batch(preds[2:3], fixations=fix[2:3], gt_map=maps[2:3], other=other[2:3], baseline=base)
    # equal up to the summation order of batched reductions; a different random draw would move the
    # random metrics by ~1e-2
    for name in M.METRICS:
        assert torch.allclose(full[name][perm], part[name], rtol=0, atol=1e-12), name
        assert torch.allclose(full[name][2:3], one[name], rtol=0, atol=1e-12), name


def test_seed_changes_random_metrics_only():
    maps, fix = blobs(2, seed=11), sample_fixations(blobs(2, seed=11), seed=12)
    a = M.auc_borji(maps, fix, seed=0)
    assert torch.equal(a, M.auc_borji(maps, fix, seed=0))
    assert not torch.equal(a, M.auc_borji(maps, fix, seed=1))


def test_undefined_cases_are_nan_not_errors():
    maps = blobs(2, seed=13)
    fix = sample_fixations(maps, seed=14)
    fix[1] = 0  # no fixations on image 1
    const = torch.ones_like(maps)
    for fn in (M.auc_judd, M.auc_borji, M.nss):
        v = fn(maps, fix)
        assert not v[0].isnan() and v[1].isnan()
    for fn in (lambda p, f: M.auc_judd(p, f, jitter=False), M.auc_borji, M.nss):
        assert fn(const, fix).isnan().all()
    # MIT jitters before normalising, so a constant map becomes noise: AUC-Judd near chance, as in MATLAB
    assert abs(M.auc_judd(const, fix)[0].item() - 0.5) < 0.25
    assert M.cc(const, maps).isnan().all() and M.cc(maps, const).isnan().all()


def test_prediction_resized_to_ground_truth_and_bad_input():
    maps = blobs(1, 48, 64, seed=15)
    small = M.common.resize_to(maps, (24, 32))
    assert M.cc(small, maps).item() > 0.99  # a half-size copy resized back correlates almost perfectly
    bad = maps.clone()
    bad[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        M.cc(bad, maps)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        M.cc(maps[0], maps)
    with pytest.raises(ValueError, match="unknown metric variant"):
        M.nss(maps, maps, variant="matlab")
    with pytest.raises(ValueError, match="unknown metric"):
        M.score_batch(maps, gt_map=maps, metrics=["auc"])
    with pytest.raises(ValueError, match="needs other"):
        M.score_batch(maps, fixations=maps, metrics=["sauc"])
    # score_batch checks a fixation map on its nonzero entries only: NaN and −inf must still be caught,
    # named, with the batch item
    fix = sample_fixations(maps.expand(3, -1, -1).contiguous(), n=10, seed=16)
    for value, item in ((float("nan"), 1), (-float("inf"), 2)):
        broken = fix.clone()
        broken[item, 40, 60] = value
        for kw in ({"fixations": broken}, {"fixations": fix, "other": broken}):
            name = "other" if "other" in kw else "fixations"
            with pytest.raises(ValueError, match=rf"{name} contains NaN or inf values \(batch items \[{item}\]\)"):
                M.score_batch(maps.expand(3, -1, -1), metrics=["nss", "sauc"], **{"other": fix, **kw})


def test_float32_close_to_float64():
    maps, preds = blobs(2, seed=16), blobs(2, seed=17)
    for fn in (M.cc, M.sim, M.kld):
        assert torch.allclose(fn(preds, maps, dtype=torch.float32).double(), fn(preds, maps), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs on a lent GPU machine)")
def test_cuda_agrees_with_cpu():
    maps, preds = blobs(4, seed=18), blobs(4, seed=19)
    fix = sample_fixations(maps, seed=20)
    other = sample_fixations(maps.roll(1, 0), n=50, seed=21)
    base = torch.from_numpy(center_bias((36, 48)))
    cpu = M.score_batch(preds, fixations=fix, gt_map=maps, other=other, baseline=base)
    gpu = M.score_batch(preds.cuda(), fixations=fix.cuda(), gt_map=maps.cuda(), other=other.cuda(),
                        baseline=base.cuda())
    for name in M.METRICS:
        assert torch.allclose(cpu[name], gpu[name].cpu(), atol=1e-9, equal_nan=True), name


def test_matlab_formulas_written_in_numpy():
    """IG, SIM, NSS, KLD as the MATLAB files state them, on random maps with duplicated fixations."""
    eps = np.finfo(float).eps
    rng = np.random.default_rng(22)
    p, g, b = rng.random((3, 20, 30))
    fix = np.zeros((20, 30))
    np.add.at(fix, (rng.integers(0, 20, 40), rng.integers(0, 30, 40)), 1)
    T = [torch.from_numpy(a[None]) for a in (p, g, b, fix)]
    loc = fix > 0

    def mm(x):
        return (x - x.min()) / (x.max() - x.min())

    ig = np.mean(np.log2(eps + mm(p)[loc] / mm(p).sum()) - np.log2(eps + mm(b)[loc] / mm(b).sum()))
    assert M.info_gain(T[0], T[3], T[2]).item() == pytest.approx(ig, abs=1e-12)
    dens = [x / x.sum() for x in (p, b)]  # pysaliency: non-negative maps are only divided by their sum
    ig_ps = np.sum(fix[loc] * (np.log2(eps + dens[0][loc]) - np.log2(eps + dens[1][loc]))) / fix.sum()
    assert M.info_gain(T[0], T[3], T[2], variant="pysaliency").item() == pytest.approx(ig_ps, abs=1e-12)
    sim = np.minimum(mm(p) / mm(p).sum(), mm(g) / mm(g).sum()).sum()
    assert M.sim(T[0], T[1]).item() == pytest.approx(sim, abs=1e-12)
    nss = np.mean(((p - p.mean()) / p.std(ddof=1))[loc])
    assert M.nss(T[0], T[3]).item() == pytest.approx(nss, abs=1e-12)
    pn, gn = p / p.sum(), g / g.sum()
    assert M.kld(T[0], T[1]).item() == pytest.approx(np.sum(gn * np.log(eps + gn / (pn + eps))), abs=1e-12)


def test_auc_judd_lazy_jitter_equals_jittering_every_pixel():
    # quantised maps have many ties, so the jitter decides the ranking: drawing it only for the pixels
    # near a threshold must give what jittering the whole map does
    from salnet.metrics.auc import judd_jitter
    from salnet.metrics.common import image_seeds

    maps = torch.round(blobs(4, 60, 80, seed=21) * 12) / 12
    fix = sample_fixations(maps, n=40, seed=22)
    seeds = image_seeds(3, fix, None)
    n = maps[0].numel()
    noise = torch.from_numpy(np.stack([judd_jitter(s, np.arange(n)) for s in seeds])).view_as(maps)
    full = M.auc_judd(maps + noise, fix, jitter=False)
    lazy = M.auc_judd(maps, fix, seed=3)
    assert torch.allclose(lazy, full, atol=1e-12, rtol=0)
    assert not torch.allclose(lazy, M.auc_judd(maps, fix, jitter=False))  # the ties do matter here


def test_sparse_nonzero_equals_nonzero():
    from salnet.metrics.common import sparse_nonzero

    gen = torch.Generator().manual_seed(4)
    for shape in [(3, 100), (2, 1000), (1, 7), (4, 513), (2, 64 * 8 + 3)]:
        for dens in (0.0, 0.01, 0.5):
            vals = torch.randint(-2, 3, shape, generator=gen).double()
            x = (torch.rand(shape, generator=gen) < dens) * vals
            odd = x.clone()  # −0.0 is zero, NaN is not: both are nonzero bit patterns
            odd.view(-1)[:: 5] = -0.0
            odd.view(-1)[3::11] = float("nan")
            for t in (x, x != 0, (x != 0)[:, 1:], x.float(), odd, odd.float()):
                want = t.nonzero(as_tuple=True)
                got = sparse_nonzero(t)
                assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_smallest_keys_are_argsorts_first_k():
    from salnet.metrics.auc import _smallest

    keys = torch.rand((7, 50), generator=torch.Generator().manual_seed(30), dtype=torch.float64)
    for k in (1, 10, 25, 26, 49, 50):
        got = _smallest(keys, k).sort(1).values
        assert torch.equal(got, keys.argsort(1)[:, :k].sort(1).values), k
