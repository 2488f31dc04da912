"""Every loss against an independent numpy computation, gradients, optima, combinations and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from salnet.losses import (
    LC1,
    LC2,
    LOSSES,
    VGGPools,
    build,
    center_bias_map,
    discriminator_loss,
    generator_adversarial_loss,
)

EPS = 2.220446049250313e-16
B, H, W = 2, 8, 12


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def case():
    """float64 logits, ground-truth map in (0,1), binary fixations (image 1 has none in row 0 only)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, (B, 1, H, W))
    s = rng.uniform(0.01, 0.99, (B, 1, H, W)) ** 2
    f = (rng.uniform(size=(B, 1, H, W)) < 0.15).astype(np.float64)
    f[:, 0, 0, 0] = 1.0  # at least one fixation per image
    return x, s, f


def run(spec, x, s, f, **kw):
    loss = build(spec, **kw)
    target = {"map": torch.from_numpy(s), "fixations": torch.from_numpy(f)}
    total, terms = loss(torch.from_numpy(x), target)
    return total.item(), {k: v.item() for k, v in terms.items()}


# Independent numpy references, one per loss, written from the formulas of docs/design.md ("Losses").
def np_pooled(a, k):
    b, c, h, w = a.shape
    a = a[..., : h // k * k, : w // k * k]
    return a.reshape(b, c, h // k, k, w // k, k).mean(axis=(3, 5))


def np_bce(p, s):
    return float(np.mean([-(si * np.log(pi) + (1 - si) * np.log(1 - pi)).mean() for pi, si in zip(p, s)]))


def np_norm(a):
    return a / a.sum()


def ref_mse(x, s, f):
    return np.mean((s - sig(x)) ** 2)


def ref_ead(x, s, f):
    return np.mean(np.exp(np.abs(s - sig(x))) - 1)


def ref_ae(x, s, f):
    return np.mean(np.abs(s - sig(x)))


def ref_mlnet(x, s, f):
    p = sig(x)
    return np.mean([np.mean((pi / pi.max() - si) ** 2 / (1.1 - si)) for pi, si in zip(p, s)])


def ref_sig_mse(x, s, f, lam=0.55, k=10.0):
    wgt = k / (1 + np.exp(-k * (s - lam)))
    return np.mean(wgt * (s - sig(x)) ** 2)


def ref_bce(x, s, f):
    return np_bce(sig(x), s)


def ref_wbce(x, s, f, w=0.5):
    p = sig(x)
    return -np.mean(w * s * np.log(p) + (1 - w) * (1 - s) * np.log(1 - p))


def ref_focal(x, s, f, g=2.0):
    p = sig(x)
    return -np.mean((1 - p) ** g * s * np.log(p) + p**g * (1 - s) * np.log(1 - p))


def ref_kld(x, s, f):
    out = []
    for pi, si in zip(sig(x), s):
        pn, sn = np_norm(pi), np_norm(si)
        out.append(np.sum(sn * np.log(EPS + sn / (pn + EPS))))
    return np.mean(out)


def ref_bhat(x, s, f):
    return np.mean([-np.log(np.sum(np.sqrt(np_norm(pi) * np_norm(si)))) for pi, si in zip(sig(x), s)])


def ref_nll(x, s, f):
    return np.mean([-np.log(np_norm(pi)[fi > 0]).mean() for pi, fi in zip(sig(x), f)])


def ref_cc(x, s, f):
    return np.mean([np.corrcoef(pi.ravel(), si.ravel())[0, 1] for pi, si in zip(sig(x), s)])


def ref_nss(x, s, f):
    return np.mean([((pi - pi.mean()) / pi.std(ddof=1))[fi > 0].mean() for pi, fi in zip(sig(x), f)])


REFERENCES = {
    "mse": ref_mse,
    "ead": ref_ead,
    "ae": ref_ae,
    "mlnet_mse": ref_mlnet,
    "sig_mse": ref_sig_mse,
    "bce": ref_bce,
    "bce_pool2": lambda x, s, f: np_bce(np_pooled(sig(x), 2), np_pooled(s, 2)),
    "bce_pool4": lambda x, s, f: np_bce(np_pooled(sig(x), 4), np_pooled(s, 4)),
    "bce_pool8": lambda x, s, f: np_bce(np_pooled(sig(x), 8), np_pooled(s, 8)),
    "wbce": ref_wbce,
    "focal": ref_focal,
    "kld": ref_kld,
    "bhat": ref_bhat,
    "nll": ref_nll,
    "cc": ref_cc,
    "nss": ref_nss,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loss_equals_numpy(name, case):
    x, s, f = case
    total, terms = run({name: 1.0}, x, s, f)
    expected = REFERENCES[name](x, s, f)
    assert terms[name] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert total == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("spec", "ref"),
    [
        ({"sig_mse": {"lambda": 0.25, "k": 4}}, lambda x, s, f: ref_sig_mse(x, s, f, 0.25, 4.0)),
        ({"wbce": {"w": 0.8}}, lambda x, s, f: ref_wbce(x, s, f, 0.8)),
        ({"focal": {"gamma": 0.5}}, lambda x, s, f: ref_focal(x, s, f, 0.5)),
        ({"focal": {"gamma": 0}}, ref_bce),  # γ = 0 is plain BCE
        ({"wbce": {"w": 0.5, "weight": 2}}, ref_bce),  # 2 · W-BCE(0.5) = BCE
    ],
)
def test_parameters_reach_the_formula(spec, ref, case):
    x, s, f = case
    assert run(spec, x, s, f)[0] == pytest.approx(ref(x, s, f), rel=1e-9)


def test_center_bias_term_and_weights(case):
    x, s, f = case
    bias = np.linspace(0, 1, H * W).reshape(1, H, W)
    total, terms = run({"center_bias": 0.1, "mse": 2.0}, x, s, f, center_bias=torch.from_numpy(bias))
    r = np.mean((sig(x) - bias[None]) ** 2)
    assert terms["center_bias"] == pytest.approx(r, rel=1e-9)
    assert total == pytest.approx(0.1 * r + 2.0 * ref_mse(x, s, f), rel=1e-9)


def test_lc1_total_is_weighted_sum(case):
    x, s, f = case
    total, terms = run(LC1, x, s, f)
    assert set(terms) == {"kld", "cc", "nss"}
    expected = 10 * ref_kld(x, s, f) - 2 * ref_cc(x, s, f) - ref_nss(x, s, f)
    assert total == pytest.approx(expected, rel=1e-9)


def test_pooled_bce_is_finite_for_saturated_logits():
    x = np.full((1, 1, 8, 8), 60.0)
    x[..., ::2] = -60.0  # half the pixels at Ŝ ≈ 1, half at ≈ 1e-26: pooled Ŝ = 0.5 exactly
    s = np.full((1, 1, 8, 8), 0.5)
    total, _ = run({"bce_pool4": 1}, x, s, s)
    assert total == pytest.approx(np.log(2), rel=1e-12)
    total, _ = run({"bce_pool4": 1}, np.full((1, 1, 8, 8), -200.0), np.ones((1, 1, 8, 8)), s)
    assert total == pytest.approx(200.0, rel=1e-9)  # -log sigmoid(-200) = 200 + log(1 + e^-200)


def test_nll_and_nss_skip_images_without_fixations(case):
    x, s, f = case
    f = f.copy()
    f[1] = 0.0
    for name in ("nll", "nss"):
        assert run({name: 1}, x, s, f)[0] == pytest.approx(REFERENCES[name](x[:1], s[:1], f[:1]), rel=1e-9)
    with pytest.raises(ValueError, match="fixations"):
        run({"nss": 1}, x, s, np.zeros_like(f))


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(LOSSES) - {"df", "gm", "center_bias", "bce_pool8"}))
def test_gradcheck(name, case):
    x, s, f = (a[..., :4, :8].copy() for a in case)  # 64 inputs keep finite differences quick
    loss = build({name: 1.0})
    target = {"map": torch.from_numpy(s), "fixations": torch.from_numpy(f)}
    xt = torch.from_numpy(x).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, target)[0], (xt,), eps=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VGGPools("random", width=0.125).double()


@pytest.mark.parametrize("name", ["df", "gm"])
def test_gradcheck_perceptual(name, tiny_vgg):
    torch.manual_seed(0)
    loss = LOSSES[name](vgg=tiny_vgg)
    target = {"map": torch.rand(1, 1, 32, 32, dtype=torch.float64)}
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: loss(torch.sigmoid(z), target), (x,), fast_mode=True)


def test_gradcheck_center_bias(case):
    x, s, f = case
    loss = build({"center_bias": 1}, center_bias=torch.rand(1, H, W, dtype=torch.float64))
    xt = torch.from_numpy(x).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, {"map": torch.from_numpy(s)})[0], (xt,))


# --- perceptual losses against numpy on the extractor's features -----------------------------------
def test_df_gm_equal_numpy_on_vgg_features(tiny_vgg):
    torch.manual_seed(1)
    s = torch.rand(2, 1, 32, 48, dtype=torch.float64)
    p = torch.rand(2, 1, 32, 48, dtype=torch.float64)
    fp = [a.numpy() for a in tiny_vgg.features(p)]
    fs = [a.numpy() for a in tiny_vgg.features(s)]
    assert [a.shape[-2:] for a in fp] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 1)]
    df = np.mean([sum(((a[i] - b[i]) ** 2).sum() / a[i].size for a, b in zip(fp, fs)) for i in range(2)])

    def gram(a):
        psi = a.reshape(a.shape[0], -1)
        return psi @ psi.T / a.size

    gm = np.mean([sum(((gram(a[i]) - gram(b[i])) ** 2).sum() for a, b in zip(fp, fs)) for i in range(2)])
    assert LOSSES["df"](vgg=tiny_vgg)(p, {"map": s}).item() == pytest.approx(df, rel=1e-9)
    assert LOSSES["gm"](vgg=tiny_vgg)(p, {"map": s}).item() == pytest.approx(gm, rel=1e-9)


# --- optima ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mse", "ead", "ae", "sig_mse", "kld", "bhat", "df", "gm"])
def test_zero_at_perfect_prediction(name, tiny_vgg):
    torch.manual_seed(2)
    s = torch.rand(2, 1, 32, 32, dtype=torch.float64) * 0.98 + 0.01
    ctx = {"vgg": tiny_vgg} if name in ("df", "gm") else {}
    assert LOSSES[name](**ctx)(s, {"map": s}).item() == pytest.approx(0.0, abs=1e-12)


def test_mlnet_zero_when_max_normalised_prediction_matches():
    s = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    s = s / s.max()
    assert LOSSES["mlnet_mse"]()(0.4 * s, {"map": s}).item() == pytest.approx(0.0, abs=1e-15)


def test_cc_one_and_center_bias_zero_at_perfect_prediction():
    s = torch.rand(2, 1, 6, 7, dtype=torch.float64)
    assert LOSSES["cc"]()(s, {"map": s}).item() == pytest.approx(1.0, abs=1e-12)
    assert LOSSES["cc"]()(1 - s, {"map": s}).item() == pytest.approx(-1.0, abs=1e-12)
    assert LOSSES["center_bias"](center_bias=s[0])(s[:1], {}).item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", ["bce", "bce_pool2", "bce_pool4", "wbce"])
def test_bce_family_minimal_at_perfect_prediction(name, case):
    """BCE is not 0 at Ŝ = S but minimal: its value is the entropy of S and its gradient vanishes."""
    _, s, f = case
    x = torch.from_numpy(np.log(s / (1 - s))).requires_grad_(True)
    total, _ = build({name: 1})(x, {"map": torch.from_numpy(s)})
    total.backward()
    assert float(x.grad.abs().max()) < 1e-12
    if name == "bce":
        assert total.item() == pytest.approx(np_bce(s, s), rel=1e-12)


# --- combinations: a better prediction lowers LC1 and LC2 -----------------------------------------
def _blob(h, w, cy, cx, sigma):
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("spec", [LC1, {**LC1, "center_bias": 0.1}, LC2, {**LC2, "center_bias": 0.1}])
def test_combination_sign_convention(spec):
    h, w = 32, 40
    s = _blob(h, w, 10, 12, 4)
    f = np.zeros((h, w))
    f[9:12, 11:14] = 1
    good = 0.95 * _blob(h, w, 11, 13, 5) + 0.02  # close to the truth
    bad = 0.95 * _blob(h, w, 24, 30, 5) + 0.02  # salient in the wrong place
    bias = torch.from_numpy(_blob(h, w, h / 2, w / 2, 10)[None])
    loss = build(spec, center_bias=bias if "center_bias" in spec else None, vgg_weights="random")
    target = {"map": torch.from_numpy(s[None, None]), "fixations": torch.from_numpy(f[None, None])}
    val = {k: loss(torch.from_numpy(np.log(p / (1 - p))[None, None]), target)[0].item() for k, p in
           {"good": good, "bad": bad}.items()}  # fmt: skip
    assert val["good"] < val["bad"]


# --- SalGAN adversarial terms ---------------------------------------------------------------------
def test_adversarial_terms_equal_numpy():
    real, fake = np.array([2.0, -0.5, 0.3]), np.array([-1.0, 0.7, 4.0])
    g = generator_adversarial_loss(torch.from_numpy(fake)).item()
    d = discriminator_loss(torch.from_numpy(real), torch.from_numpy(fake)).item()
    assert g == pytest.approx(-np.mean(np.log(sig(fake))), rel=1e-12)
    # released: lasagne.objectives.binary_crossentropy(concatenate([disc_lab, disc_gen]), [ones; zeros]).mean()
    both, labels = np.concatenate([sig(real), sig(fake)]), np.concatenate([np.ones(3), np.zeros(3)])
    assert d == pytest.approx(-np.mean(labels * np.log(both) + (1 - labels) * np.log(1 - both)), rel=1e-12)
    unequal = discriminator_loss(torch.from_numpy(real), torch.from_numpy(fake[:2])).item()
    assert unequal == pytest.approx(-(np.log(sig(real)).sum() + np.log(1 - sig(fake[:2])).sum()) / 5, rel=1e-12)


# --- centre-bias map ------------------------------------------------------------------------------
def test_center_bias_map_mean_and_resize():
    a, b = torch.rand(1, 6, 8), torch.rand(1, 6, 8)
    assert torch.allclose(center_bias_map([a, b], (6, 8)), (a + b) / 2, atol=1e-6)
    const = center_bias_map([torch.full((1, 30, 40), 0.25), torch.full((40, 30), 0.75)], (6, 8))
    assert const.shape == (1, 6, 8)
    assert torch.allclose(const, torch.full((1, 6, 8), 0.5), atol=1e-6)
    with pytest.raises(ValueError, match="no maps"):
        center_bias_map([], (6, 8))


# --- errors ---------------------------------------------------------------------------------------
def test_unknown_name_lists_valid_choices():
    with pytest.raises(ValueError, match=r"unknown loss name\(s\) \['kl'\]; valid: .*kld.*sig_mse"):
        build({"kl": 1})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"sig_mse": {"lambda": 1.5}}, r"'lambda' must be in \[0, 1\], got 1.5"),
        ({"sig_mse": {"lambda": -0.1}}, r"'lambda' must be in \[0, 1\]"),
        ({"sig_mse": {"k": 0}}, r"'k' must be > 0"),
        ({"focal": {"gamma": -1}}, r"'gamma' must be >= 0, got -1"),
        ({"wbce": {"w": 2}}, r"'w' must be in \[0, 1\]"),
        ({"mlnet_mse": {"alpha": 1.0}}, r"'alpha' must be > 1"),
        ({"focal": {"gama": 2}}, r"no parameter\(s\) \['gama'\]; valid: gamma"),
        ({"kld": {"lambda": 0.5}}, r"no parameter\(s\) \['lambda'\]; valid: none"),
        ({"kld": "ten"}, r"weight must be a finite number"),
        ({"kld": float("nan")}, r"weight must be a finite number"),
        ({"kld": 0}, r"only zero weights"),
        ({}, r"non-empty mapping"),
        ({"center_bias": 0.1}, r"needs the centre-bias map"),
    ],
)
def test_bad_specs_are_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        build(spec)


def test_bad_targets_are_clear_errors(case):
    x, s, f = case
    loss = build(LC1)
    with pytest.raises(ValueError, match=r"need target\['fixations'\]"):
        loss(torch.from_numpy(x), {"map": torch.from_numpy(s)})
    with pytest.raises(ValueError, match=r"resize targets to the output resolution"):
        loss(torch.from_numpy(x), {"map": torch.from_numpy(s[..., :4]), "fixations": torch.from_numpy(f)})
    cb = build({"center_bias": 1}, center_bias=torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="center_bias_map"):
        cb(torch.from_numpy(x), {})


def test_half_precision_logits_are_computed_in_float32(case):
    x, s, f = case
    total, terms = build({"bce_pool4": 1, "kld": 1})(torch.from_numpy(x).bfloat16(), {"map": torch.from_numpy(s)})
    assert total.dtype == torch.float32
    xb = torch.from_numpy(x).bfloat16().double().numpy()
    assert total.item() == pytest.approx(REFERENCES["bce_pool4"](xb, s, f) + ref_kld(xb, s, f), rel=1e-5)
