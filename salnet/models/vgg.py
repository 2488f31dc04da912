"""VGG-16 convolutional stack with torchvision's parameter names (``features.N.weight``).

Both networks of the project use it as their encoder, and the perceptual losses (DF, GM) use it as a
frozen feature extractor. Weights come from a torchvision-format state dict (torchvision's full
``vgg16-397923af.pth``, whose ``classifier.*`` keys are ignored, or the fp16 HED stand-in in
../shared/weights), from torchvision's weight enum, or are random (with a loud warning).

The input normalisation travels with the weights: the module takes RGB images in [0, 1] and normalises
them itself, by default as torchvision's weights expect (subtract the ImageNet mean, divide by the ImageNet
std). ``input_convention="caffe_bgr"`` is the Caffe/Lasagne VGG-16 convention of the released SalGAN weights
(imatge-upc/salgan ``RGBtoBGRLayer``): RGB 0–255 reordered to BGR minus the BGR mean, no std division.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from os import PathLike

import torch
from torch import Tensor, nn

from salnet.config import INPUT_CONVENTIONS
from salnet.models.weights import is_random, resolve_weights

# torchvision's configuration "D"; "M" is a 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe's VGG-16 mean in B, G, R order on the 0–255 scale (the released SalGAN's RGBtoBGRLayer default).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# Layer name -> index in ``features`` of the module whose OUTPUT carries that name. "convB_L" names the
# ReLU output of that convolution (what feature-based saliency models read), "poolB" the max-pool output.
LAYER_INDEX: dict[str, int] = {}
_block, _conv, _i = 1, 1, 0
for _c in VGG16_CFG:
    if _c == "M":
        LAYER_INDEX[f"pool{_block}"] = _i
        _block, _conv, _i = _block + 1, 1, _i + 1
    else:
        LAYER_INDEX[f"conv{_block}_{_conv}"] = _i + 1  # the ReLU after the conv
        _conv, _i = _conv + 1, _i + 2
del _block, _conv, _i, _c
BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5")

WeightsSpec = None | str | PathLike


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by the width multiplier (at least 1)."""
    return max(1, round(channels * width))


def conv_indices(upto: int | None = None) -> list[int]:
    """Indices in ``features`` of the 13 convolutions (those below ``upto`` if given)."""
    out, i = [], 0
    for c in VGG16_CFG:
        if c != "M":
            out.append(i)
        i += 1 if c == "M" else 2
    return [j for j in out if upto is None or j < upto]


def _block_of(index: int) -> str:
    """Name of the block ("conv1" … "conv5") that the conv at ``features[index]`` belongs to."""
    pools = [LAYER_INDEX[f"pool{b}"] for b in range(1, 6)]
    return f"conv{1 + sum(index > p for p in pools)}"


def load_vgg16_state_dict(weights: str | PathLike) -> dict[str, Tensor]:
    """Read VGG-16 conv weights in torchvision format and return them as float32.

    ``weights`` is a file path (a torchvision-format state dict: ``features.N.{weight,bias}``, any float dtype;
    other keys such as ``classifier.*`` are dropped) or ``"imagenet"`` (torchvision's ImageNet weights, found as
    :func:`salnet.models.weights.resolve_weights` says). Returns ``{"features.N.weight": Tensor, ...}``; a
    missing file is a :class:`~salnet.models.weights.WeightsError` saying how to provide it.
    """
    path = resolve_weights(weights)
    if path is None:
        raise ValueError("load_vgg16_state_dict: 'random' names no file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"VGG-16 weights {path}: expected a state dict, got {type(state).__name__}")
    return {k: v.float() for k, v in state.items() if k.startswith("features.")}


class VGG16Features(nn.Module):
    """VGG-16 conv stack (``features``) up to and including ``features[last]``.

    Args:
        width: channel multiplier (1.0 = the real network; pretrained weights need 1.0).
        weights: "imagenet", a path to a torchvision-format file, or "random" (explicit random init); None is
            random too, with a warning (see :mod:`salnet.models.weights`).
        freeze: block names ("conv1" … "conv5") whose parameters get ``requires_grad=False``.
        last: name of the last layer kept ("pool5" = the full stack, "conv5_3" = without pool5).
        input_convention: how the [0, 1] RGB input is normalised: "torchvision" (ImageNet mean/std) or
            "caffe_bgr" (×255, RGB→BGR, minus :data:`CAFFE_BGR_MEAN`; the released SalGAN weights).

    ``forward(x)``: x float (B,3,H,W) RGB in [0,1] → output of ``last``.
    ``taps(x, names)``: dict name → (B,C,h,w) outputs of the named layers (``LAYER_INDEX`` keys).
    """

    mean: Tensor  # buffers (1,3,1,1) of the input normalisation
    std: Tensor

    def __init__(
        self,
        width: float = 1.0,
        weights: WeightsSpec = None,
        freeze: Iterable[str] = (),
        last: str = "pool5",
        input_convention: str = "torchvision",
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"VGG-16 width must be > 0, got {width}")
        if not is_random(weights) and width != 1.0:
            raise ValueError(
                f"VGG-16 pretrained weights ({weights!s}) need width=1.0, got width={width}: "
                "use model.weights=random for a narrow network"
            )
        if last not in LAYER_INDEX:
            raise ValueError(f"unknown VGG-16 layer {last!r}; valid: {', '.join(LAYER_INDEX)}")
        self.width = width
        layers: list[nn.Module] = []
        in_ch = 3
        for c in VGG16_CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_ch = scaled(int(c), width)
                layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = out_ch
        self.features = nn.Sequential(*layers[: LAYER_INDEX[last] + 1])
        self.out_channels = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        # Not persistent: the state dict holds exactly torchvision's keys.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.set_input_convention(input_convention)
        self._init_random()
        if weights is None:  # implicit: say so (an explicit "random" was asked for)
            warnings.warn(
                "VGG-16 has RANDOM weights (weights=None): fine for tests, debugging and speed runs, "
                "useless for saliency training or perceptual losses; pass weights='imagenet' or a file",
                UserWarning,
                stacklevel=2,
            )
        elif not is_random(weights):
            self.load_weights(weights)
        self.freeze(freeze)

    def _init_random(self) -> None:
        # torchvision's VGG init: Kaiming normal (fan_out, ReLU), zero bias.
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def load_weights(self, weights: str | PathLike) -> None:
        """Load torchvision-format weights strictly on the conv keys this module has."""
        state = load_vgg16_state_dict(weights)
        expected = {f"features.{i}.{p}" for i in conv_indices(len(self.features)) for p in ("weight", "bias")}
        missing = sorted(expected - state.keys())
        if missing:
            raise ValueError(f"VGG-16 weights {weights!s} lack {len(missing)} keys, e.g. {missing[:4]}")
        own = self.state_dict()
        for k in sorted(expected):
            if state[k].shape != own[k].shape:
                raise ValueError(
                    f"VGG-16 weights {weights!s}: {k} has shape {tuple(state[k].shape)}, "
                    f"the network expects {tuple(own[k].shape)}"
                )
        # Keys past ``last`` (e.g. conv5 for a truncated stack) are not ours: drop them, strict on the rest.
        self.load_state_dict({k: state[k] for k in expected}, strict=True)

    def freeze(self, blocks: Iterable[str]) -> None:
        """Set ``requires_grad=False`` on the convs of the named blocks ("conv1" … "conv5")."""
        blocks = tuple(blocks)
        unknown = [b for b in blocks if b not in BLOCKS]
        if unknown:
            raise ValueError(f"unknown VGG-16 block(s) {unknown} to freeze; valid: {', '.join(BLOCKS)}")
        for i, m in enumerate(self.features):
            if isinstance(m, nn.Conv2d) and _block_of(i) in blocks:
                m.requires_grad_(False)

    def set_input_convention(self, name: str) -> None:
        """Switch the input normalisation (see the class docstring); ValueError for an unknown name."""
        if name not in INPUT_CONVENTIONS:
            raise ValueError(f"unknown VGG-16 input_convention {name!r}; choose one of {', '.join(INPUT_CONVENTIONS)}")
        self.input_convention = name
        if name == "caffe_bgr":
            self.mean.copy_(torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))
        else:
            self.mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))

    def normalize(self, x: Tensor) -> Tensor:
        """RGB in [0,1] → the input of the first conv, as :attr:`input_convention` says."""
        if self.input_convention == "caffe_bgr":
            return x.flip(1) * 255.0 - self.mean.to(x.dtype)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(self.normalize(x))

    def taps(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Outputs of the named layers for input ``x`` (B,3,H,W) in [0,1]; runs only as deep as needed."""
        unknown = [n for n in names if n not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG-16 layer(s) {unknown}; valid: {', '.join(LAYER_INDEX)}")
        wanted = {LAYER_INDEX[n]: n for n in names}
        if max(wanted) >= len(self.features):
            raise ValueError(f"layers {list(names)} lie past the end of this truncated VGG-16 stack")
        out: dict[str, Tensor] = {}
        h = self.normalize(x)
        for i, m in enumerate(list(self.features)[: max(wanted) + 1]):
            h = m(h)
            if i in wanted:
                out[wanted[i]] = h
        return out
