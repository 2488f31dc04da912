"""SalGAN's adversarial step against numbers: one float64 D step and one G step of ``salnet.train.steps`` with
fixed tiny networks, checked against a numpy computation of the released formulas (imatge-upc/salgan,
scripts/models/model_salgan.py):

    D_obj = BCE(concat[D(I, S), D(I, Ŝ)], concat[1, 0]).mean()        real = the ground-truth map S
    G_obj = BCE(D(I, Ŝ), 1).mean() + alpha · BCE(pool4(Ŝ), pool4(S)).mean()   alpha on the content term

then one ``lasagne.updates.adagrad`` step (p -= lr·g/√(g² + 1e-6)). The steps take D's BCE in float32 (its
logits are cast for bf16 autocast), so values agree to float32 precision: 1e-6 relative."""

import numpy as np
import pytest
import torch
from torch import nn

from salnet import losses
from salnet.models.salgan import DiscriminatorOutput, SaliencyOutput
from salnet.train.optim import LasagneAdagrad
from salnet.train.steps import discriminator_step, generator_step

ALPHA, LR, B, H, W = 0.05, 0.05, 4, 8, 8
RTOL = 1e-6


class TinyG(nn.Module):
    """logits = Σ_c w_c I_c + b (a 1×1 convolution), prob = sigmoid(logits)."""

    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, image):
        logits = torch.einsum("c,bchw->bhw", self.w, image)[:, None] + self.b
        return SaliencyOutput(logits, torch.sigmoid(logits))


def d_features(s, image):
    """D's three features per image: mean S, mean S·I_0, mean I_1 (torch or numpy, (B,1,H,W) and (B,3,H,W))."""
    return [s.mean((1, 2, 3)), (s * image[:, :1]).mean((1, 2, 3)), image[:, 1:2].mean((1, 2, 3))]


class TinyD(nn.Module):
    """logits = u · features(S, I) + c, prob = sigmoid(logits): D(I, S)."""

    def __init__(self, u, c):
        super().__init__()
        self.u = nn.Parameter(torch.tensor(u, dtype=torch.float64))
        self.c = nn.Parameter(torch.tensor(c, dtype=torch.float64))

    def forward(self, saliency, image):
        logits = torch.stack(d_features(saliency, image), 1) @ self.u + self.c
        return DiscriminatorOutput(logits, torch.sigmoid(logits))


G0 = (np.array([1.5, -2.0, 0.7]), 0.1)
D0 = (np.array([1.0, 0.0, 30.0]), -16.2)


def data():
    g = np.random.default_rng(7)
    image = g.random((B, 3, H, W))
    s = g.random((B, 1, H, W)) ** 3  # peaked ground-truth maps in [0, 1]
    return image, s


def batch_of(image, s):
    t = {"image": torch.from_numpy(image), "map": torch.from_numpy(s)}
    return {**t, "fixations": (t["map"] > 0.5).double()}


# ---------------------------------------------------------------- numpy: the released formulas

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_g(w, b, image):
    return sigmoid(np.einsum("c,bchw->bhw", w, image)[:, None] + b)


def np_d_logits(u, c, s, image):
    return np.stack(d_features(s, image), 1) @ u + c


def bce(p, y):
    """lasagne.objectives.binary_crossentropy, elementwise."""
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def pool4(x):
    b, ch, h, w = x.shape
    return x.reshape(b, ch, h // 4, 4, w // 4, 4).mean((3, 5))


def np_d_obj(u, c, gw, gb, image, s):
    real, fake = np_d_logits(u, c, s, image), np_d_logits(u, c, np_g(gw, gb, image), image)
    return bce(sigmoid(np.concatenate([real, fake])), np.concatenate([np.ones(B), np.zeros(B)])).mean()


def np_g_parts(gw, gb, u, c, image, s):
    """(content, adversarial) of the released G_obj = adversarial + alpha · content."""
    pred = np_g(gw, gb, image)
    content = bce(pool4(pred), pool4(s)).mean()
    adversarial = bce(sigmoid(np_d_logits(u, c, pred, image)), np.ones(B)).mean()
    return content, adversarial


def numeric_grad(f, p, h=1e-6):
    """Central differences of the scalar ``f`` at the vector ``p``."""
    out = np.zeros_like(p)
    for i in range(len(p)):
        e = np.zeros_like(p)
        e[i] = h
        out[i] = (f(p + e) - f(p - e)) / (2 * h)
    return out


def adagrad(p, g):
    """One lasagne.updates.adagrad step from a zero accumulator."""
    return p - LR * g / np.sqrt(g * g + 1e-6)


def flat(w, b):
    return np.concatenate([w, [b]])


def test_discriminator_step_against_the_released_formula():
    image, s = data()
    G, D = TinyG(*G0), TinyD(*D0)
    before_real = D(torch.from_numpy(s), torch.from_numpy(image)).prob.mean().item()
    out = discriminator_step(G, D, LasagneAdagrad(D.parameters(), lr=LR), batch_of(image, s),
                             torch.device("cpu"), False)
    gw, gb = G0
    fake = np_g(gw, gb, image)
    real_logits, fake_logits = np_d_logits(*D0, s, image), np_d_logits(*D0, fake, image)
    # real must be the ground truth: with the inputs swapped the D loss is 0.714 instead of 0.862 here
    assert out["loss/D"].item() == pytest.approx(np_d_obj(*D0, gw, gb, image, s), rel=RTOL)
    assert out["D/acc_real"].item() == (real_logits > 0).mean()
    assert out["D/acc_fake"].item() == (fake_logits < 0).mean()
    assert (out["D/acc_real"].item(), out["D/acc_fake"].item()) == (0.25, 0.75)  # neither 1/2: a flipped sign shows
    # the update: D_obj's gradient (numeric, numpy), one Adagrad step; G untouched
    grad = numeric_grad(lambda p: np_d_obj(p[:3], p[3], gw, gb, image, s), flat(*D0))
    want = adagrad(flat(*D0), grad)
    np.testing.assert_allclose(flat(D.u.detach().numpy(), D.c.item()), want, rtol=RTOL, atol=1e-9)
    assert np.array_equal(G.w.detach().numpy(), gw) and G.b.item() == gb
    # D learned: D(I, S) rose
    assert D(torch.from_numpy(s), torch.from_numpy(image)).prob.mean().item() > before_real + 1e-3


def test_generator_step_against_the_released_formula():
    image, s = data()
    G, D = TinyG(*G0), TinyD(*D0)
    batch = batch_of(image, s)
    before_fake = D(G(batch["image"]).prob, batch["image"]).prob.mean().item()
    out = generator_step(G, D, LasagneAdagrad(G.parameters(), lr=LR), losses.build({"bce_pool4": 1.0}), batch,
                         ALPHA, torch.device("cpu"), False)
    content, adversarial = np_g_parts(*G0, *D0, image, s)
    assert out["loss/content"].item() == pytest.approx(content, rel=RTOL)
    assert out["loss/adversarial"].item() == pytest.approx(adversarial, rel=RTOL)
    # alpha weighs the content term: content + alpha·adversarial would be 0.783 here, not 0.966
    assert out["loss/G"].item() == pytest.approx(adversarial + ALPHA * content, rel=RTOL)
    assert abs((content + ALPHA * adversarial) - (adversarial + ALPHA * content)) > 0.05

    def g_obj(p):
        c, a = np_g_parts(p[:3], p[3], *D0, image, s)
        return a + ALPHA * c

    want = adagrad(flat(*G0), numeric_grad(g_obj, flat(*G0)))
    np.testing.assert_allclose(flat(G.w.detach().numpy(), G.b.item()), want, rtol=RTOL, atol=1e-9)
    assert np.array_equal(D.u.detach().numpy(), D0[0]) and D.c.item() == D0[1]  # D is not trained by G's step
    assert all(p.requires_grad for p in D.parameters())  # and is trainable again afterwards
    # G learned to fool D: D(I, Ŝ) rose
    assert D(G(batch["image"]).prob, batch["image"]).prob.mean().item() > before_fake + 1e-3
