"""The released SalGAN recipe and the loss study as their paper describes it: optimisers step by step against
the released formulas, weight decay per recipe, which network each adversarial batch trains (D first, then
alternating; the D and G losses against numbers are in test_adversarial_step.py), no flip, the sigmoid only where
Bruckert et al. §3.2.2 puts it, perceptual losses in fp32, early stopping, run identity."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import synthetic_shards

from salnet import losses
from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides, config_hash, loss_study
from salnet.train.build import build_discriminator, build_generator, build_optimizers, output_activation
from salnet.train.loop import Trainer
from salnet.train.optim import LasagneAdagrad, make_optimizer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")

GRADS = [np.array([1e-6, -2e-5, 3e-3]), np.array([-4e-6, 5e-5, 0.0]), np.array([2e-6, 1e-5, -1e-3])]


def run_steps(opt_factory, p0, grads):
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = opt_factory([p])
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().clone().numpy())
    return out


def test_lasagne_adagrad_steps_as_the_released_formula():
    """lasagne.updates.adagrad: accu += g²; p -= lr·g/√(accu + 1e-6) — ε inside the root, where torch's Adagrad
    puts 1e-10 after it: at SalGAN's gradient scale the steps differ by orders of magnitude."""
    p0, lr = np.array([0.5, -0.25, 1.0]), 3e-4
    got = run_steps(lambda ps: LasagneAdagrad(ps, lr=lr), p0, GRADS)
    p, accu = p0.copy(), np.zeros(3)
    for g, q in zip(GRADS, got):
        accu = accu + g * g
        p = p - lr * g / np.sqrt(accu + 1e-6)
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-15)
    torch_steps = run_steps(lambda ps: torch.optim.Adagrad(ps, lr=lr), p0, GRADS)
    first = np.abs(torch_steps[0] - p0)[0] / np.abs(got[0] - p0)[0]
    assert first > 100  # g = 1e-6: torch moves lr·sign(g), Lasagne lr·g/√(g² + 1e-6) ≈ lr·1e-3


def test_weight_decay_is_an_l2_gradient_on_weights_only():
    w = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = make_optimizer("lasagne_adagrad", [w, b], lr=0.1, weight_decay=2e-4)
    w.grad, b.grad = torch.full_like(w, 1e-3), torch.full_like(b, 1e-3)
    opt.step()
    g = 1e-3 + 2e-4  # the penalty's gradient joins the gradient before it is accumulated
    assert w[0, 0].item() == pytest.approx(1 - 0.1 * g / np.sqrt(g * g + 1e-6), abs=1e-15)
    assert b[0].item() == pytest.approx(1 - 0.1 * 1e-3 / np.sqrt(1e-6 + 1e-6), abs=1e-15)


def test_torch_nesterov_equals_lasagne_nesterov_momentum():
    """lasagne.updates.nesterov_momentum: v = μv − lr·g; p = p + μv − lr·g (the released bootstrap, μ = 0.5)."""
    p0, lr, mu = np.array([0.5, -0.25, 1.0]), 1e-3, 0.5
    got = run_steps(lambda ps: make_optimizer("nesterov", ps, lr=lr, momentum=mu), p0, GRADS)
    p, v = p0.copy(), np.zeros(3)
    for g, q in zip(GRADS, got):
        v = mu * v - lr * g
        p = p + mu * v - lr * g
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-15)


@pytest.mark.parametrize("recipe, decay", [("released", 0.0), ("paper", 2e-4)])
def test_recipes_weight_decay_on_every_optimiser(recipe, decay):
    cfg = apply_overrides(Config(), ["model.width=0.0625", "model.weights=random", f"train.recipe={recipe}"])
    G, D = build_generator(cfg), build_discriminator(cfg)
    opts = build_optimizers(cfg, G, D)
    assert set(opts) == {"g", "d", "boot"}
    assert isinstance(opts["g"], LasagneAdagrad) and isinstance(opts["d"], LasagneAdagrad)
    assert opts["boot"].defaults["nesterov"] and opts["boot"].defaults["momentum"] == 0.5
    for opt in opts.values():
        for group in opt.param_groups:
            weights = {p.ndim >= 2 for p in group["params"]}
            assert weights in ({True}, {False})  # weights and biases never share a group
            assert group["weight_decay"] == (decay if weights == {True} else 0.0)
    explicit = apply_overrides(cfg, ["train.weight_decay=1e-3"])
    assert build_optimizers(explicit, G, D)["g"].param_groups[0]["weight_decay"] == 1e-3


def test_defaults_are_the_released_code():
    cfg = Config()
    assert cfg.data.flip is False and cfg.train.recipe == "released" and cfg.train.weight_decay is None
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.lr_d) == ("lasagne_adagrad", 3e-4, 3e-4)
    assert (cfg.train.bootstrap_optimizer, cfg.train.bootstrap_lr, cfg.train.momentum) == ("nesterov", 1e-3, 0.5)
    assert cfg.model.postprocess == "released" and output_activation(cfg) == "sigmoid"
    ls = loss_study()
    assert (ls.train.optimizer, ls.train.lr, ls.train.momentum, ls.train.weight_decay) == ("sgd", 1e-3, 0.0, 0.0)
    assert ls.data.batch_size == 60 and ls.data.flip is False and ls.train.patience is not None


def test_run_identity_leaves_out_operational_keys():
    cfg = Config()
    same = apply_overrides(cfg, ["data.workers=8", "train.log_every=50", "train.keep_last=9", "out_dir=/elsewhere",
                                 "train.compile=true", "train.channels_last=false", "train.max_steps=5"])
    assert config_hash(same) == config_hash(cfg)
    for change in ("train.alpha=0.1", "data.batch_size=16", "train.recipe=paper", "model.postprocess=none"):
        assert config_hash(apply_overrides(cfg, [change])) != config_hash(cfg), change


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    return synthetic_shards(root, {"train": 16, "val": 4}, (32, 48), 0.05)


def tiny(shards, *extra):
    return apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                      "train.log_every=1", *extra])


def test_the_first_adversarial_batch_trains_d_then_they_alternate(shards, tmp_path):
    """Released: n_updates starts at 1 and `n_updates % 2 == 0` trains G, so D trains on the first batch."""
    trainer = Trainer(tiny(shards, "train.bootstrap_epochs=0", "train.epochs=1"), run_dir=tmp_path / "run")
    trainer.ckpt.save = lambda *a, **k: None  # this test looks at the steps only
    seen = []
    for batch in trainer.train_loader:
        g0 = [p.clone() for p in trainer.G.parameters() if p.requires_grad]
        d0 = [p.clone() for p in trainer.D.parameters()]
        out = trainer.train_step(batch, "adversarial")
        trainer.step += 1
        g_moved = any(not torch.equal(a, b) for a, b in zip(g0, [p for p in trainer.G.parameters() if p.requires_grad]))
        d_moved = any(not torch.equal(a, b) for a, b in zip(d0, trainer.D.parameters()))
        seen.append(("D" if d_moved and not g_moved else "G" if g_moved and not d_moved else "?", set(out)))
    assert [s for s, _ in seen] == ["D", "G", "D", "G"]
    assert "loss/D" in seen[0][1] and "loss/G" in seen[1][1]


def test_bce_only_control_keeps_the_bootstrap_stage(shards, tmp_path):
    trainer = Trainer(tiny(shards, "train.adversarial=false", "train.epochs=2"), run_dir=tmp_path / "run")
    assert [trainer.stage(e) for e in range(2)] == ["bootstrap", "bootstrap"]
    assert [Trainer(tiny(shards), run_dir=tmp_path / "x").stage(e) for e in range(2)] == ["bootstrap", "adversarial"]


def test_patience_stops_when_validation_stops_improving(shards, tmp_path):
    """lr 1e-30 (0 is refused): below float32's resolution of the weights, so the model never changes, the first
    epoch stays the best and patience 2 ends the run after 3."""
    cfg = tiny(shards, "train.procedure=content", "train.optimizer=sgd", "train.lr=1e-30", "train.momentum=0.0",
               "train.epochs=10", "train.patience=2")
    result = Trainer(cfg, run_dir=tmp_path / "run").fit()
    assert result["status"] == "done" and result["epoch"] == 3
    resumed = Trainer(cfg, run_dir=tmp_path / "run")  # best_epoch travels in the checkpoint
    assert resumed.best_epoch == 0 and resumed.converged()


def test_a_run_restarted_with_other_operational_keys_resumes(shards, tmp_path):
    cfg = tiny(shards, "train.epochs=1", "train.max_steps=2")
    first = Trainer(cfg, run_dir=tmp_path / "run")
    assert first.fit()["status"] == "stopped"
    more = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, workers=1),
                               train=dataclasses.replace(cfg.train, log_every=7, max_steps=None))
    again = Trainer(more, run_dir=tmp_path / "run")
    assert again.resumed and again.step == 2


def test_init_from_starts_the_generator_from_another_run(shards, tmp_path):
    boot = Trainer(tiny(shards, "train.epochs=1", "train.adversarial=false"), run_dir=tmp_path / "boot")
    boot.fit()
    cfg = tiny(shards, "train.bootstrap_epochs=0", f"train.init_from={tmp_path / 'boot'}")
    gan = Trainer(cfg, run_dir=tmp_path / "gan")
    for (k, a), b in zip(boot.G.state_dict().items(), gan.G.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Trainer(tiny(shards, f"train.init_from={tmp_path / 'nowhere.pt'}"), run_dir=tmp_path / "bad")


# ---------------------------------------------------------------- the loss study's sigmoid (§3.2.2)

FAMILIES = {"pixel": {"mse", "ead", "ae", "mlnet_mse", "sig_mse"},
            "distribution": {"bce", "bce_pool2", "bce_pool4", "bce_pool8", "wbce", "focal", "kld", "bhat", "nll"},
            "saliency": {"cc", "nss"}, "perceptual": {"df", "gm"}, "regulariser": {"center_bias"}}


def test_every_loss_in_its_family_and_only_distribution_losses_apply_a_sigmoid():
    assert {f: {n for n, c in losses.LOSSES.items() if c.family == f} for f in FAMILIES} == FAMILIES
    for name, cls in losses.LOSSES.items():
        assert (cls.takes == "output") == (cls.family != "distribution"), name


def test_terms_see_the_network_output_and_distribution_terms_its_sigmoid():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 10, generator=g, dtype=torch.float64)
    s = torch.rand(2, 1, 8, 10, generator=g, dtype=torch.float64)
    fix = (torch.rand(2, 1, 8, 10, generator=g) > 0.8).double()
    loss = losses.build({"mse": 1.0, "kld": 1.0, "cc": -1.0})
    _, linear = loss(x, {"map": s, "fixations": fix}, x)  # a linear network: output = the raw map
    _, sigmoid = loss(x, {"map": s, "fixations": fix})  # a sigmoid network: output = sigmoid(logits)
    p = torch.sigmoid(x)
    assert linear["mse"].item() == pytest.approx(((s - x) ** 2).mean().item(), abs=1e-14)
    assert sigmoid["mse"].item() == pytest.approx(((s - p) ** 2).mean().item(), abs=1e-14)
    assert linear["kld"].item() == pytest.approx(sigmoid["kld"].item(), abs=1e-14)  # always on the sigmoid
    assert linear["cc"].item() != pytest.approx(sigmoid["cc"].item(), abs=1e-6)


@pytest.mark.parametrize("spec, want", [({"mse": 1.0}, "linear"), ({"cc": -1.0, "nss": -1.0}, "linear"),
                                        ({"kld": 10.0, "cc": -2.0, "nss": -1.0}, "sigmoid"), ({"bce": 1.0}, "sigmoid")])
def test_the_loss_study_network_gets_a_sigmoid_for_distribution_losses(spec, want):
    cfg = apply_overrides(loss_study(), ["model.width=0.0625", "model.weights=random"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=spec))
    assert output_activation(cfg) == want
    out = build_generator(cfg)(torch.rand(1, 3, 64, 64))
    assert (out.output is None) == (want == "sigmoid")
    pred = out.prediction()
    pred = pred.detach()
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0
    if want == "linear":  # scored min–max normalised, as written to an image
        assert float(pred.min()) == 0.0 and float(pred.max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ends in a sigmoid"):
        build_generator(apply_overrides(Config(), ["model.output=linear", "model.width=0.0625",
                                                   "model.weights=random"]))


def test_perceptual_losses_run_in_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(2, 1, 32, 32, generator=g)
    pred = (s + 0.01 * torch.rand(2, 1, 32, 32, generator=g)).clamp(0, 1)
    loss = losses.build({"df": 1.0, "gm": 1.0}, vgg_weights="random")
    _, plain = loss(torch.logit(pred, 1e-6), {"map": s}, pred)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, auto = loss(torch.logit(pred, 1e-6), {"map": s}, pred)
    for k in ("df", "gm"):
        assert auto[k].dtype == torch.float32 and auto[k].item() == pytest.approx(plain[k].item(), rel=1e-5), k


def test_perceptual_losses_stretch_maps_below_32_pixels():
    """VGG's five pools need 32 px: a 16×24 map is scored as its bilinear stretch to 32×48 (debug-size runs)."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    s, p = torch.rand(2, 1, 16, 24, generator=g), torch.rand(2, 1, 16, 24, generator=g)
    loss = losses.build({"df": 1.0, "gm": 1.0}, vgg_weights="random")
    _, small = loss(torch.logit(p, 1e-6), {"map": s}, p)
    big = [F.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False) for x in (s, p)]
    _, stretched = loss(torch.logit(big[1], 1e-6), {"map": big[0]}, big[1])
    for k in ("df", "gm"):
        assert small[k].item() == pytest.approx(stretched[k].item(), rel=1e-6), k


def test_mlnet_mse_stays_finite_on_a_negative_linear_output():
    """ML-Net divides by the map's maximum; a linear output below zero everywhere is divided by max|Ŝ| instead."""
    s = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    neg = -torch.rand(1, 1, 8, 8, dtype=torch.float64) - 0.1
    loss = losses.LOSSES["mlnet_mse"]()
    value = loss(neg, {"map": s}).item()
    expect = ((neg / neg.abs().max() - s) ** 2 / (1.1 - s)).mean().item()
    assert np.isfinite(value) and value == pytest.approx(expect, rel=1e-12)
