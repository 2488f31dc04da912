"""Metric values that do not come from the code under test: AUC-Borji and sAUC worked out by hand on small maps
with MATLAB's threshold grid written out; the MIT benchmark's sample scored against numpy transcriptions of the MIT
MATLAB code (cvzoya/saliency, code_forMetrics) written here; EMD against a linear program solved by scipy."""

import json

import numpy as np
import pytest
import scipy.io
import torch
from helpers import shared_path
from PIL import Image
from scipy.optimize import linprog

from salnet import metrics as M
from salnet.metrics.__main__ import main
from salnet.models.baselines import center_bias

# MATLAB's 0:0.1:max for max = 1 (AUC_Borji.m, AUC_shuffled.m: `fliplr([0:stepSize:max([Sth; curfix])])`); max is
# included. The maps below keep their values off the grid, so how MATLAB rounds 0.3 or 0.7 does not matter.
GRID = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
EPS = 2.220446049250313e-16  # MATLAB eps


def stepped_auc(sth, curfix, n_neg=None, grid=GRID):
    """One split of AUC_Borji.m / AUC_shuffled.m: tp and fp at ``grid`` descending, framed by (0,0) and (1,1);
    trapz. ``curfix``: the negatives' values, or (for an expectation) the fraction of negatives ≥ each θ."""
    thr = grid[::-1]
    tp = [np.mean(sth >= t) for t in thr]
    fp = [np.mean(curfix >= t) for t in thr] if n_neg is None else list(n_neg)
    return np.trapezoid([0, *tp, 1], [0, *fp, 1])


def test_auc_borji_by_hand():
    """S = [0, .5, .95, 1, 1] (already min–max normalised), fixations at .95 and at the first 1. Negatives are
    drawn uniformly from the 5 pixels, so the expected fraction at or above θ is #(S ≥ θ)/5:
        θ = 1:        tp 1/2, fp 2/5
        θ = .9 … .6:  tp 1,   fp 3/5
        θ = .5 … .1:  tp 1,   fp 4/5
        θ = 0:        tp 1,   fp 1
    ROC (0,0) (.4,.5) (.6,1) (.8,1) (1,1): AUC = .4·.25 + .2·.75 + .4·1 = 0.65 (without θ = max the point (.4,.5)
    is lost and the area is 0.70). The mean over splits of the stepped AUC is the AUC of the mean fp (trapz is
    linear in fp), so 100,000 splits give 0.65 to a Monte-Carlo error of about 0.001."""
    S = np.array([[0.0, 0.5, 0.95, 1.0, 1.0]])
    fix = np.array([[0, 0, 1, 1, 0]], dtype=np.float64)
    expected_fp = [np.mean(t <= S) for t in GRID[::-1]]
    assert stepped_auc(S[fix > 0], None, expected_fp) == pytest.approx(0.65, abs=1e-12)
    got = M.auc_borji(torch.from_numpy(S[None]), torch.from_numpy(fix[None]), n_splits=100_000).item()
    assert got == pytest.approx(0.65, abs=0.005)


def test_sauc_by_hand():
    """S = [[0, .25, .45], [.65, .95, 1]]; own fixations at .45, .95, 1; the other images fixated the cells of
    0 and 1. MATLAB draws min(3 fixations, 2 locations) = both locations per split: no randomness, and fp counts
    in halves (of the negatives, not of the fixations).
        θ = 1:        tp 1/3, fp 1/2
        θ = .9 … .5:  tp 2/3, fp 1/2
        θ = .4 … .1:  tp 1,   fp 1/2
        θ = 0:        tp 1,   fp 1
    ROC (0,0) (1/2,1/3) (1/2,2/3) (1/2,1) (1,1): AUC = 1/12 + 1/2 = 7/12 (8/12 without θ = 1)."""
    S = np.array([[0.0, 0.25, 0.45], [0.65, 0.95, 1.0]])
    fix = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.float64)
    other = np.array([[1, 0, 0], [0, 0, 2]], dtype=np.float64)  # a location fixated twice counts once
    assert stepped_auc(S[fix > 0], S[other > 0]) == pytest.approx(7 / 12, abs=1e-12)
    got = M.sauc(torch.from_numpy(S[None]), torch.from_numpy(fix[None]), torch.from_numpy(other[None])).item()
    assert got == pytest.approx(7 / 12, abs=1e-12)
    # stepSize 0.5, grid 0:0.5:1: the point of θ = .5 becomes (1/2, 2/3) and the area 1/12 + 5/12 = 1/2
    assert stepped_auc(S[fix > 0], S[other > 0], grid=np.array([0.0, 0.5, 1.0])) == pytest.approx(0.5, abs=1e-12)
    coarse = M.sauc(torch.from_numpy(S[None]), torch.from_numpy(fix[None]), torch.from_numpy(other[None]),
                    step=0.5, n_splits=3).item()
    assert coarse == pytest.approx(0.5, abs=1e-12)


# ---------------------------------------------------------------- the MIT benchmark's sample, MATLAB in numpy

def mit_auc_judd(S, F):
    """AUC_Judd.m without its jitter (the prediction below has no ties at fixated values)."""
    S = (S - S.min()) / (S.max() - S.min())
    sth = np.sort(S[F > 0])[::-1]
    n_fix, n_pix = len(sth), S.size
    flat = np.sort(S.ravel())
    above = n_pix - np.searchsorted(flat, sth, side="left")  # sum(S >= thresh), for every threshold at once
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0], i / n_fix, [1]])
    fp = np.concatenate([[0], (above - i) / (n_pix - n_fix), [1]])
    return np.trapezoid(tp, fp)


def mit_auc_borji_expected(S, F):
    """AUC_Borji.m's expectation over its uniform negatives (each split's AUC is linear in fp, so the mean over
    splits tends to the AUC at fp(θ) = #(S ≥ θ)/Npix)."""
    S = (S - S.min()) / (S.max() - S.min())
    return stepped_auc(S[F > 0], None, [np.mean(t <= S) for t in GRID[::-1]])


def mit_nss(S, F):
    z = (S - S.mean()) / S.std(ddof=1)  # MATLAB std: N − 1
    return z[F > 0].mean()


def mit_cc(S, G):
    a, b = (S - S.mean()) / S.std(ddof=1), (G - G.mean()) / G.std(ddof=1)
    a, b = a - a.mean(), b - b.mean()  # corr2
    return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())


def mit_sim(S, G):
    a, b = ((m - m.min()) / (m.max() - m.min()) for m in (S, G))
    return np.minimum(a / a.sum(), b / b.sum()).sum()


def mit_kld(S, G):
    p, g = S / S.sum(), G / G.sum()
    return (g * np.log(EPS + g / (p + EPS))).sum()


def mit_info_gain(S, F, B):
    p, b = ((m - m.min()) / (m.max() - m.min()) for m in (S, B))
    p, b = p / p.sum(), b / b.sum()
    return np.mean(np.log2(EPS + p[F > 0]) - np.log2(EPS + b[F > 0]))


def test_mit_benchmark_sample_against_the_matlab_code_in_numpy(tmp_path):
    """i210 of the MIT benchmark's sample, scored by ``python -m salnet.metrics score`` with a prediction of the
    image's size (no resize): a centre bias tilted by a horizontal ramp, so that it differs from the IG baseline
    and has no ties. AUC-Judd differs from the jitter-free transcription by the jitter (1e-7): 8e-7; AUC-Borji,
    100 random splits of 259 negatives, from its expectation by a Monte-Carlo error (1.7e-4 with seed 0)."""
    demo = shared_path("data", "mit-benchmark-demo")
    gt = np.asarray(Image.open(demo / "FIXATIONMAPS" / "i210.jpg").convert("L")).astype(np.float64) / 255  # im2double
    F = scipy.io.loadmat(demo / "FIXATIONLOCS" / "i210.mat")["fixations"].astype(np.float64)
    B = center_bias(gt.shape)
    S = B * (1 + 0.5 * np.linspace(0, 1, gt.shape[1]))[None, :]
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "pred" / "i210.npy", S)
    out_json = tmp_path / "s.json"
    assert main(["score", "--pred", str(tmp_path / "pred"), "--fixations", str(demo / "FIXATIONLOCS"),
                 "--maps", str(demo / "FIXATIONMAPS"), "--json", str(out_json)]) == 0
    v = json.loads(out_json.read_text())["per_image"]["i210"]
    assert F.sum() == 259
    assert v["nss"] == pytest.approx(mit_nss(S, F), abs=1e-10)
    assert v["cc"] == pytest.approx(mit_cc(S, gt), abs=1e-10)
    assert v["sim"] == pytest.approx(mit_sim(S, gt), abs=1e-10)
    assert v["kld"] == pytest.approx(mit_kld(S, gt), abs=1e-10)
    assert v["ig"] == pytest.approx(mit_info_gain(S, F, B), abs=1e-10) and abs(v["ig"]) > 0.01
    assert v["auc_judd"] == pytest.approx(mit_auc_judd(S, F), abs=1e-6)
    assert v["auc_borji"] == pytest.approx(mit_auc_borji_expected(S, F), abs=0.002)
    many = M.auc_borji(torch.from_numpy(S[None]), torch.from_numpy(F[None]), n_splits=4000).item()
    assert many == pytest.approx(mit_auc_borji_expected(S, F), abs=0.001)


# ---------------------------------------------------------------- EMD against a linear program

def emd_lp(p, q):
    """min Σ d_ij f_ij over flows f ≥ 0 between all cells of the grid with net outflow p − q at every cell
    (a min-cost flow on the complete graph, Euclidean ground distance in cells); scipy's HiGHS."""
    h, w = p.shape
    yx = np.stack(np.divmod(np.arange(h * w), w), 1)
    d = np.sqrt(((yx[:, None, :] - yx[None, :, :]) ** 2).sum(-1)).ravel()
    n = h * w
    a_eq = np.zeros((n, n * n))
    for i in range(n):
        a_eq[i, i * n:(i + 1) * n] += 1  # out of i
        a_eq[i, i::n] -= 1  # into i
    res = linprog(d, A_eq=a_eq, b_eq=(p - q).ravel(), bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun


def test_emd_against_a_linear_program_with_negative_cells():
    """3×4 maps with negative cells (as bicubic shrinking leaves them), each divided by its sum as EMD.m does;
    ``downsize=1`` leaves the grid as it is."""
    p = np.array([[0.5, -0.1, 0.0, 0.2], [0.1, 0.3, -0.05, 0.0], [0.0, 0.0, 0.4, 0.1]])
    q = np.array([[0.0, 0.2, 0.3, -0.1], [0.0, 0.0, 0.1, 0.6], [0.25, -0.02, 0.0, 0.05]])
    want = emd_lp(p / p.sum(), q / q.sum())
    got = M.emd(torch.from_numpy(q[None]), torch.from_numpy(p[None]), downsize=1).item()
    assert want > 0.5 and got == pytest.approx(want, abs=1e-9)
