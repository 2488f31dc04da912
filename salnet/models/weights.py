"""Where the VGG-16 weights of a run come from: ``model.weights`` resolved to a file, or random.

``model.weights`` (and the perceptual losses' VGG) takes one of:

- ``imagenet`` (the default of every preset): torchvision's ``VGG16_Weights.IMAGENET1K_V1``
  (``vgg16-397923af.pth``). Looked up, in order, in ``$SALNET_VGG16_WEIGHTS`` (a local file: the one setting
  that points the whole suite at it on an offline cluster), then torchvision's cache
  (``$TORCH_HOME/hub/checkpoints``), then downloaded into that cache on first use unless ``SALNET_OFFLINE=1``.
  ``torchvision`` is an older name of the same thing.
- ``random``: Kaiming-initialised, no file (debug mode, the demo and the tests write it out).
- a path to a torchvision-format state dict (``features.N.weight``; ``classifier.*`` ignored).

``None`` (the value runs made before ``random`` existed hold) means random too.

    path = resolve_weights("imagenet")   # Path, or WeightsError naming every place it looked
    resolve_weights("random")            # None: random initialisation
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGENET = "imagenet"
RANDOM = "random"
ALIASES = {"torchvision": IMAGENET}  # older spelling of the ImageNet weights
ENV_FILE = "SALNET_VGG16_WEIGHTS"  # a local VGG-16 file that "imagenet" resolves to (offline clusters)
ENV_OFFLINE = "SALNET_OFFLINE"  # "1": never download weights
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
TORCHVISION_VGG16_URL = f"https://download.pytorch.org/models/{TORCHVISION_VGG16_FILE}"


class WeightsError(FileNotFoundError):
    """VGG-16 weights that cannot be found; the message names the file looked for and the ways to provide it."""


def torchvision_cache_file() -> Path:
    """Where torchvision caches ``vgg16-397923af.pth`` (``$TORCH_HOME/hub/checkpoints``)."""
    import torch  # here, not at the top: resolving "random" or a path needs no torch

    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG16_FILE


def canonical(spec: str | os.PathLike | None) -> str | None:
    """``spec`` with aliases resolved: "imagenet", "random", or a path as text (None → "random")."""
    if spec is None:
        return RANDOM
    text = str(spec)
    return ALIASES.get(text, text)


def is_random(spec: str | os.PathLike | None) -> bool:
    return canonical(spec) == RANDOM


def ways_to_provide() -> str:
    return (f"set {ENV_FILE}=/path/to/{TORCHVISION_VGG16_FILE} (a torchvision-format VGG-16 file), copy the file to "
            f"{torchvision_cache_file()}, pass model.weights=/path/to/file, or model.weights=random for a randomly "
            "initialised encoder (debugging only)")


def resolve_weights(spec: str | os.PathLike | None, download: bool | None = None) -> Path | None:
    """The file ``spec`` names (see the module docstring), or None for random weights. ``download``: may fetch the
    ImageNet file into torchvision's cache (default: unless ``SALNET_OFFLINE=1``). Raises :class:`WeightsError`
    naming what was looked for and how to provide it."""
    name = canonical(spec)
    if name == RANDOM:
        return None
    if name != IMAGENET:
        path = Path(str(name)).expanduser()
        if not path.is_file():
            raise WeightsError(f"VGG-16 weights file {path} does not exist; {ways_to_provide()}")
        return path
    env = os.environ.get(ENV_FILE)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"{ENV_FILE}={env}: no such file (model.weights=imagenet resolves to it); point it at "
                               f"a torchvision-format VGG-16 file such as {TORCHVISION_VGG16_FILE}")
        return path
    cached = torchvision_cache_file()
    if cached.is_file():
        return cached
    if download is None:
        download = os.environ.get(ENV_OFFLINE, "0") != "1"
    if download:
        import torch

        try:
            torch.hub.load_state_dict_from_url(TORCHVISION_VGG16_URL, map_location="cpu", progress=False,
                                               check_hash=True, weights_only=True)
        except Exception as exn:  # noqa: BLE001 — no network, a proxy, a bad download: say what to do instead
            raise WeightsError(f"model.weights=imagenet: {cached} is not cached and downloading "
                               f"{TORCHVISION_VGG16_URL} failed ({type(exn).__name__}: {exn}); "
                               f"{ways_to_provide()}") from None
        if cached.is_file():
            return cached
    why = "downloads off: a dry run, or SALNET_OFFLINE=1" if not download else "the download left no file"
    raise WeightsError(f"model.weights=imagenet: {cached} is not cached and {ENV_FILE} is unset ({why}); "
                       f"{ways_to_provide()}")
