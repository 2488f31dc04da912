"""The networks: parameter counts per layer against hand counts, weight loading, shapes, FLOP counting."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from salnet.losses import build, discriminator_loss, generator_adversarial_loss
from salnet.models import ASPPNet, Discriminator, Generator, VGG16Features
from salnet.models.aspp import gaussian_kernel, output_size

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HED = SHARED / "weights" / "vgg16_features_hed_bsds500_fp16.pth"

# Hand counts: 3×3 conv in→out has in·out·9 + out parameters.
VGG_CONVS = {  # features index: parameters
    0: 3 * 64 * 9 + 64, 2: 64 * 64 * 9 + 64,
    5: 64 * 128 * 9 + 128, 7: 128 * 128 * 9 + 128,
    10: 128 * 256 * 9 + 256, 12: 256 * 256 * 9 + 256, 14: 256 * 256 * 9 + 256,
    17: 256 * 512 * 9 + 512, 19: 512 * 512 * 9 + 512, 21: 512 * 512 * 9 + 512,
    24: 512 * 512 * 9 + 512, 26: 512 * 512 * 9 + 512, 28: 512 * 512 * 9 + 512,
}  # fmt: skip
DECODER = {
    "uconv5_3": 2359808, "uconv5_2": 2359808, "uconv5_1": 2359808,
    "uconv4_3": 2359808, "uconv4_2": 2359808, "uconv4_1": 2359808,
    "uconv3_3": 512 * 256 * 9 + 256, "uconv3_2": 590080, "uconv3_1": 590080,
    "uconv2_2": 256 * 128 * 9 + 128, "uconv2_1": 147584,
    "uconv1_2": 128 * 64 * 9 + 64, "uconv1_1": 36928,
    "output": 64 + 1,
}  # fmt: skip
DISCRIMINATOR = {
    "features.merge": 4 * 3 + 3, "features.conv1": 3 * 32 * 9 + 32,
    "features.conv2_1": 32 * 64 * 9 + 64, "features.conv2_2": 64 * 64 * 9 + 64,
    "features.conv3_1": 36928, "features.conv3_2": 36928,
    "classifier.fc4": 64 * 12 * 16 * 100 + 100,  # 192×256 pooled 4, 2, 2 → 12×16
    "classifier.fc5": 100 * 2 + 2, "classifier.prob": 2 + 1,
}  # fmt: skip


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def per_layer(module: torch.nn.Module) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in module.named_parameters():
        layer = name.rsplit(".", 1)[0]
        out[layer] = out.get(layer, 0) + p.numel()
    return out


def test_generator_parameters_per_layer():
    g = quiet(Generator)
    counts = per_layer(g)
    assert {k: v for k, v in counts.items() if k.startswith("encoder")} == {
        f"encoder.features.{i}": n for i, n in VGG_CONVS.items()
    }
    decoder = {k: v for k, v in counts.items() if k.startswith("decoder")}
    assert decoder == {f"decoder.{k}": v for k, v in DECODER.items()}
    frozen = sum(VGG_CONVS[i] for i in (0, 2, 5, 7, 10, 12, 14))  # conv1–conv3
    assert sum(p.numel() for p in g.parameters() if p.requires_grad) == 31_787_009 - frozen == 30_051_521


def test_discriminator_parameters_per_layer_and_fc_from_input_size():
    assert per_layer(Discriminator()) == DISCRIMINATOR
    assert per_layer(Discriminator(input_size=(96, 128)))["classifier.fc4"] == 64 * 6 * 8 * 100 + 100
    assert per_layer(Discriminator(width=0.5))["classifier.fc4"] == 32 * 12 * 16 * 50 + 50


def test_aspp_trainable_parameters_match_paper():
    net = quiet(ASPPNet)
    trainable = {k: v for k, v in per_layer(net).items() if not k.startswith("encoder")}
    assert trainable == {
        "reduce": 1280 * 128 * 9 + 128,  # 3×3: the only kernel size giving the paper's ≈1.62 M
        **{f"aspp.{i}": 128 * 32 * 9 + 32 for i in range(4)},
        "output": 128 + 1,
    }
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 1_622_401
    assert not any(p.requires_grad for p in net.encoder.parameters())


def test_vgg_state_dict_has_torchvision_names():
    keys = list(quiet(VGG16Features).state_dict())
    assert keys == [f"features.{i}.{p}" for i in VGG_CONVS for p in ("weight", "bias")]


@pytest.fixture(scope="module")
def hed_file():
    if not HED.is_file():
        pytest.skip(f"shared VGG-16 weights not found at {HED} (../shared next to the repository)")
    return HED


def test_shared_weights_load_strictly_into_encoder(hed_file):
    state = torch.load(hed_file, map_location="cpu", weights_only=True)
    assert state["features.0.weight"].dtype == torch.float16
    g = Generator(weights=hed_file)
    assert g.encoder.features[0].weight.dtype == torch.float32
    assert torch.equal(g.encoder.features[0].weight, state["features.0.weight"].float())
    assert torch.equal(g.encoder.features[28].bias, state["features.28.bias"].float())
    a = ASPPNet(weights=hed_file)
    assert torch.equal(a.encoder.features[21].weight, state["features.21.weight"].float())


def test_vgg_taps_equal_manual_convolutions(hed_file):
    v = VGG16Features(weights=hed_file)
    sd = {k: v.float() for k, v in torch.load(hed_file, map_location="cpu", weights_only=True).items()}
    x = torch.rand(1, 3, 16, 20)
    z = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    conv1_1 = F.relu(F.conv2d(z, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    pool1 = F.max_pool2d(F.relu(F.conv2d(conv1_1, sd["features.2.weight"], sd["features.2.bias"], padding=1)), 2)
    taps = v.taps(x, ["conv1_1", "pool1"])
    assert torch.allclose(taps["conv1_1"], conv1_1, atol=1e-5)
    assert torch.allclose(taps["pool1"], pool1, atol=1e-5)
    assert v(torch.rand(1, 3, 32, 64)).shape == (1, 512, 1, 2)


def _fake_torchvision_file(path: Path) -> dict[str, torch.Tensor]:
    state = {k: torch.randn_like(t).half() for k, t in quiet(VGG16Features).state_dict().items()}
    torch.save({**state, "classifier.0.weight": torch.zeros(4, 3), "classifier.0.bias": torch.zeros(4)}, path)
    return state


def test_torchvision_format_file_and_cache(tmp_path, monkeypatch):
    """A full torchvision file loads with classifier keys ignored, from a path or from the hub cache."""
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    state = _fake_torchvision_file(ckpt / "vgg16-397923af.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SALNET_VGG16_WEIGHTS", raising=False)
    for weights in (ckpt / "vgg16-397923af.pth", "imagenet", "torchvision"):
        v = VGG16Features(weights=weights, last="conv5_3")
        assert torch.equal(v.features[26].weight, state["features.26.weight"].float())


def test_weight_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="need width=1.0"):
        Generator(width=0.5, weights=tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VGG16Features(weights=tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lack 25 keys"):
        VGG16Features(weights=tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="unknown VGG-16 block"):
        quiet(VGG16Features, freeze=("conv6",))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SALNET_OFFLINE", "1")
    monkeypatch.delenv("SALNET_VGG16_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth is not cached"):
        VGG16Features(weights="imagenet")


def test_random_init_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        VGG16Features(width=0.125)


def test_generator_shapes_and_frozen_blocks():
    g = quiet(Generator, width=0.25)
    x = torch.rand(2, 3, 64, 96)
    out = g(x)
    assert out.logits.shape == (2, 1, 64, 96)
    assert torch.equal(out.prob, torch.sigmoid(out.logits))
    out.logits.mean().backward()
    convs = {i: g.encoder.features[i] for i in VGG_CONVS}
    assert all(convs[i].weight.grad is None for i in (0, 2, 5, 7, 10, 12, 14))
    assert all(convs[i].weight.grad is not None for i in (17, 19, 21, 24, 26, 28))
    assert g.decoder.uconv1_1.weight.grad is not None
    with pytest.raises(ValueError, match="multiples of 16"):
        g(torch.rand(1, 3, 60, 96))


def test_generator_full_size_output():
    with torch.no_grad():
        assert quiet(Generator)(torch.rand(1, 3, 192, 256)).logits.shape == (1, 1, 192, 256)


def test_decoder_upsamples_nearest():
    g = quiet(Generator, width=0.125)
    assert [type(m).__name__ for n, m in g.decoder.named_children() if n.startswith("upool")] == ["Upsample"] * 4
    assert all(m.mode == "nearest" and m.scale_factor == 2 for m in g.decoder if isinstance(m, torch.nn.Upsample))


def test_discriminator_sees_saliency_and_rgb_0_255():
    d = Discriminator(width=0.25, input_size=(32, 48))
    seen = {}
    d.features.merge.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    s, img = torch.rand(3, 1, 32, 48), torch.rand(3, 3, 32, 48)
    out = d(s, img)
    assert torch.equal(seen["x"][:, :1], s) and torch.equal(seen["x"][:, 1:], img * 255)
    assert out.logits.shape == (3,) and torch.equal(out.prob, torch.sigmoid(out.logits))
    with pytest.raises(ValueError, match="built for input_size"):
        d(torch.rand(1, 1, 64, 48), torch.rand(1, 3, 64, 48))


def test_aspp_output_size_gaussian_and_padding():
    k = gaussian_kernel(5, 1.0)[0, 0].double().numpy()
    r = np.arange(5) - 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 2.0)
    np.testing.assert_allclose(k, g / g.sum(), rtol=1e-6)
    net = quiet(ASPPNet, width=0.125).eval()
    assert output_size((300, 400)) == (37, 50)
    with torch.no_grad():
        torch.nn.init.zeros_(net.output.weight)
        torch.nn.init.constant_(net.output.bias, 1.5)
        out = net(torch.rand(1, 3, 300, 400))
    assert out.logits.shape == (1, 1, 37, 50)
    # A constant map stays constant through the blur: no darkened border.
    assert torch.allclose(out.logits, torch.full_like(out.logits, 1.5), atol=1e-6)


def test_aspp_dropout_only_in_training_and_encoder_stays_eval():
    net = quiet(ASPPNet, width=0.125)
    x = torch.rand(1, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x).logits, net(x).logits)
    net.train()
    assert not net.encoder.training and net.dropout.training


def test_layer_flops_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from salnet.models.flops import LayerFlops

    g, d = quiet(Generator, width=0.125), Discriminator(width=0.25, input_size=(32, 48))
    x, s = torch.rand(2, 3, 32, 48), torch.rand(2, 1, 32, 48)
    bce4 = build("bce_pool4")
    with LayerFlops(g, d) as ours, FlopCounterMode(display=False) as ref:
        out = g(x)
        discriminator_loss(d(s, x).logits, d(out.prob.detach(), x).logits).backward()
        d.requires_grad_(False)
        (0.05 * bce4(out.logits, {"map": s})[0] + generator_adversarial_loss(d(out.prob, x).logits)).backward()
    assert ours.total == ref.get_total_flops()
    # conv1_1 of G: 2 · B · 64/8 out channels · 32·48 pixels · 3·9, forward only (frozen, input needs no grad).
    first = ours.calls[0]
    assert (first.forward, first.backward) == (2 * 2 * 8 * 32 * 48 * 27, 0)


def test_discriminator_conv3_filters_are_weight_normalised_as_released():
    """conv3_1/conv3_2 compute with W·g/√(1e-6 + ΣW²) per output filter (released ``nn.weight_norm``, g = 1
    fixed, not a parameter): scaling W changes nothing, and the output equals a plain conv with that weight."""
    from salnet.models.salgan import WeightNormConv2d

    d = Discriminator(width=0.25, input_size=(32, 48))
    assert isinstance(d.features.conv3_1, WeightNormConv2d) and isinstance(d.features.conv3_2, WeightNormConv2d)
    assert "features.conv3_1.g" not in dict(d.named_parameters()) and "features.conv3_1.g" in d.state_dict()
    conv = WeightNormConv2d(5, 7).double()
    w = conv.weight.detach()
    eff = w / torch.sqrt(1e-6 + (w**2).sum(dim=(1, 2, 3), keepdim=True))
    x = torch.randn(2, 5, 6, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, eff, conv.bias, padding=1), rtol=0, atol=1e-12)
    norms = conv.effective_weight().square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(norms, torch.full((7,), 1.0, dtype=torch.float64), rtol=0, atol=1e-4)
    with torch.no_grad():
        before = conv(x)
        conv.weight.mul_(10.0)
    torch.testing.assert_close(conv(x), before, rtol=0, atol=1e-5)  # up to the ε inside the root
