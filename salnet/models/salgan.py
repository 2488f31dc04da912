"""SalGAN (Pan et al. 2017) as the authors' released code builds it (docs/design.md, "SalGAN").

``Generator``: VGG-16 encoder conv1_1 … conv5_3 (pool1–pool4, no pool5; conv1–conv3 frozen) and a
mirrored decoder of 3×3 convs with ×2 nearest upsampling, ending in a 1×1 conv to one map.
``Discriminator``: concat(saliency in [0,1], RGB 0–255) → 1×1 conv 4→3 → conv 32 → maxpool 4 → conv 64,
conv 64 → pool 2 → conv 64, conv 64 (both weight-normalised, :class:`WeightNormConv2d`) → pool 2 → FC 100 tanh
→ FC 2 tanh → FC 1 (sigmoid).

Both return a ``SaliencyOutput``/``DiscriminatorOutput`` named tuple ``(logits, prob)``, prob = sigmoid
(logits); losses are computed from the logits for numerical stability.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from salnet.models.vgg import VGG16Features, WeightsSpec, scaled

SALGAN_INPUT_SIZE = (192, 256)  # (H, W)

# Decoder stages, deepest first: (name, output channels) per 3×3 conv; "up" = ×2 nearest upsampling.
DECODER_CFG: tuple[tuple[str, int], ...] = (
    ("uconv5_3", 512), ("uconv5_2", 512), ("uconv5_1", 512), ("upool4", 0),
    ("uconv4_3", 512), ("uconv4_2", 512), ("uconv4_1", 512), ("upool3", 0),
    ("uconv3_3", 256), ("uconv3_2", 256), ("uconv3_1", 256), ("upool2", 0),
    ("uconv2_2", 128), ("uconv2_1", 128), ("upool1", 0),
    ("uconv1_2", 64), ("uconv1_1", 64),
)  # fmt: skip


class SaliencyOutput(NamedTuple):
    """Saliency network output: ``logits`` float (B,1,H,W), ``prob`` = sigmoid(logits) in [0,1], and ``output``:
    None for a network whose last layer is a sigmoid (its output is ``prob``), else the raw output of a linear
    last layer (the loss-study network trained without a distribution-based loss; equal to ``logits``)."""

    logits: Tensor
    prob: Tensor
    output: Tensor | None = None

    @property
    def map(self) -> Tensor:
        """The network's output as the non-distribution losses see it: ``prob``, or the raw linear output."""
        return self.prob if self.output is None else self.output

    def prediction(self) -> Tensor:
        """The saliency map that is scored and saved, (B,1,H,W) in [0,1]: ``prob``, or the linear output min–max
        normalised per image (as writing it to an image file does; a constant map becomes 0)."""
        if self.output is None:
            return self.prob
        flat = self.output.detach().flatten(1)
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(self.output)


class DiscriminatorOutput(NamedTuple):
    """Discriminator output: ``logits`` (B,) of the final unit, ``prob`` = sigmoid(logits) = D(I, S)."""

    logits: Tensor
    prob: Tensor


class Generator(nn.Module):
    """SalGAN generator.

    Args:
        width: channel multiplier of encoder and decoder (1.0 = the paper's network).
        weights: encoder weights: None (random, warns), a torchvision-format file, or "torchvision".
        freeze: encoder blocks kept frozen (the paper: conv1–conv3).
        input_convention: the encoder's input normalisation (:class:`VGG16Features`): "torchvision", or
            "caffe_bgr" for the released SalGAN weights (RGB 0–255 → BGR minus the Caffe mean).
        decoder_init: "glorot" (Lasagne's default, the released code) or "he" (Kaiming normal, fan-in: keeps
            the activations' scale through the 13 ReLU layers, which a network trained from random weights
            needs; with Glorot they shrink about ×0.7 per layer).

    ``forward(image)``: image float (B,3,H,W) RGB in [0,1], H and W multiples of 16 (192×256 in the
    paper) → ``SaliencyOutput`` with logits (B,1,H,W).
    """

    def __init__(
        self,
        width: float = 1.0,
        weights: WeightsSpec = None,
        freeze: Iterable[str] = ("conv1", "conv2", "conv3"),
        input_convention: str = "torchvision",
        decoder_init: str = "glorot",
    ) -> None:
        super().__init__()
        if decoder_init not in ("glorot", "he"):
            raise ValueError(f"Generator decoder_init must be 'glorot' or 'he', got {decoder_init!r}")
        self.encoder = VGG16Features(width=width, weights=weights, freeze=freeze, last="conv5_3",
                                     input_convention=input_convention)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = self.encoder.out_channels
        for name, ch in DECODER_CFG:
            if ch == 0:
                layers[name] = nn.Upsample(scale_factor=2, mode="nearest")
            else:
                out_ch = scaled(ch, width)
                layers[name] = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
                layers[name + "_relu"] = nn.ReLU(inplace=True)
                in_ch = out_ch
        layers["output"] = nn.Conv2d(in_ch, 1, kernel_size=1)
        self.decoder = nn.Sequential(layers)
        for name, m in self.decoder.named_children():
            if isinstance(m, nn.Conv2d):
                if decoder_init == "he" and name != "output":
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:  # Lasagne's default (the released code): Glorot uniform, zero bias
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, image: Tensor) -> SaliencyOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"Generator expects images (B,3,H,W) in [0,1], got shape {tuple(image.shape)}")
        if image.shape[-2] % 16 or image.shape[-1] % 16:
            raise ValueError(
                f"Generator input {tuple(image.shape[-2:])} (H, W) must be multiples of 16 "
                f"(four 2×2 pools); SalGAN uses {SALGAN_INPUT_SIZE}"
            )
        logits = self.decoder(self.encoder(image))
        return SaliencyOutput(logits, torch.sigmoid(logits))


class WeightNormConv2d(nn.Conv2d):
    """A 3×3 conv whose filters are scaled to unit norm, as the released discriminator's conv3_1/conv3_2
    (``nn.weight_norm`` in imatge-upc/salgan ``scripts/models/nn.py``): W_eff = W · g / √(1e-6 + Σ W²) per
    output filter, with g = 1 fixed (``train_g=False``) and the layer's own bias (zero-initialised, trained).

    ``weight`` is the free direction W (Glorot-uniform as Lasagne's ConvLayer), ``g`` a buffer of ones.
    """

    g: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        self.register_buffer("g", torch.ones(out_channels))

    def effective_weight(self) -> Tensor:
        """W · g / √(1e-6 + Σ W²), the sum over each output filter's (in, kh, kw) entries (ε inside the root)."""
        norm = torch.sqrt(1e-6 + self.weight.square().sum(dim=(1, 2, 3), keepdim=True))
        return self.weight * (self.g.view(-1, 1, 1, 1) / norm)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class Discriminator(nn.Module):
    """SalGAN discriminator.

    Args:
        width: multiplier of the conv channels and of the 100-unit FC layer.
        input_size: (H, W) of the maps it judges; the first FC layer's size derives from it.

    ``forward(saliency, image)``: saliency float (B,1,H,W) in [0,1], image float (B,3,H,W) RGB in [0,1]
    (scaled ×255 inside, as the released code feeds RGB 0–255) → ``DiscriminatorOutput`` with logits (B,).
    """

    def __init__(self, width: float = 1.0, input_size: tuple[int, int] = SALGAN_INPUT_SIZE) -> None:
        super().__init__()
        h, w = input_size
        if h < 16 or w < 16:
            raise ValueError(f"Discriminator input_size {input_size} (H, W) must be at least 16×16")
        self.input_size = (int(h), int(w))
        c32, c64, fc = scaled(32, width), scaled(64, width), scaled(100, width)
        relu = nn.ReLU
        self.features = nn.Sequential(
            OrderedDict(
                merge=nn.Conv2d(4, 3, kernel_size=1), merge_relu=relu(inplace=True),
                conv1=nn.Conv2d(3, c32, 3, padding=1), conv1_relu=relu(inplace=True),
                pool1=nn.MaxPool2d(4),
                conv2_1=nn.Conv2d(c32, c64, 3, padding=1), conv2_1_relu=relu(inplace=True),
                conv2_2=nn.Conv2d(c64, c64, 3, padding=1), conv2_2_relu=relu(inplace=True),
                pool2=nn.MaxPool2d(2),
                conv3_1=WeightNormConv2d(c64, c64), conv3_1_relu=relu(inplace=True),
                conv3_2=WeightNormConv2d(c64, c64), conv3_2_relu=relu(inplace=True),
                pool3=nn.MaxPool2d(2),
            )  # fmt: skip
        )
        flat = c64 * (h // 16) * (w // 16)  # pools 4, 2, 2 with floor, as Lasagne's ignore_border=True
        self.classifier = nn.Sequential(
            OrderedDict(
                fc4=nn.Linear(flat, fc), fc4_tanh=nn.Tanh(),
                fc5=nn.Linear(fc, 2), fc5_tanh=nn.Tanh(),
                prob=nn.Linear(2, 1),
            )  # fmt: skip
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, saliency: Tensor, image: Tensor) -> DiscriminatorOutput:
        if saliency.ndim != 4 or saliency.shape[1] != 1 or image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                "Discriminator expects saliency (B,1,H,W) and image (B,3,H,W), got "
                f"{tuple(saliency.shape)} and {tuple(image.shape)}"
            )
        if tuple(saliency.shape[-2:]) != self.input_size or tuple(image.shape[-2:]) != self.input_size:
            raise ValueError(
                f"Discriminator was built for input_size {self.input_size} (H, W), got saliency "
                f"{tuple(saliency.shape[-2:])} and image {tuple(image.shape[-2:])}"
            )
        x = torch.cat([saliency, image * 255.0], dim=1)
        logits = self.classifier(self.features(x).flatten(1)).squeeze(1)
        return DiscriminatorOutput(logits, torch.sigmoid(logits))
