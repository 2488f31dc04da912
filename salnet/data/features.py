"""The loss study's feature cache: each sample's frozen VGG-16 taps (pool3, pool4, conv5_3), computed once.

The loss-study network (:class:`salnet.models.aspp.ASPPNet`) keeps its encoder frozen and trains without
augmentation, so an image's taps are the same in every epoch of every run; a step that reads them costs the head's
12.5 GFLOP per image instead of 85.3 at 300×400 (docs/recipes.md, "The feature cache").

Layout of a cache folder: one tar per source shard, with the source shard's name, holding for each sample
``{key}.pool3.npy``, ``{key}.pool4.npy`` and ``{key}.conv5_3.npy`` (C, h, w) as the encoder outputs them (before
the head's resize), float16 (default) or float32, keyed and ordered like the source shard (a source sample that
could not be decoded has no entry); ``manifest.json`` (the source shards' sha256, the encoder's sha256, the input
size, the layers, their shapes, the dtype; :func:`identity`) and ``.features/`` (the plan and one record per
finished shard: writing resumes, and array tasks write disjoint shards). Writing: :mod:`salnet.data.features_writer`
(images from the source shards through the training loader's own decode and resize, unflipped).

Reading: :func:`zip_stage` pairs each source shard with its cache tar sample by sample (the maps and fixations
still come from the source), :class:`TapTransform` adds the taps to a batch as float32 ``tap:<layer>`` tensors,
:func:`model_input` is what the network is called on, and :func:`check_cache` refuses a cache made for other
source shards, weights, input size or layers with one error naming each difference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from salnet.data.records import load_npy
from salnet.data.shards import read_manifest
from salnet.data.tario import iter_tar
from salnet.data.transform import Transform
from salnet.models.aspp import TAPS

FEATURES_VERSION = "1"
STATE_DIR = ".features"
DTYPES = {"float16": np.float16, "float32": np.float32}
AUTO = "auto"  # data.features: the default folder next to the shards when it holds a cache, else none


def tap_key(layer: str) -> str:
    """The batch key of a tap: ``tap:pool3`` …"""
    return f"tap:{layer}"


def default_folder(shards: str | Path, input_size: tuple[int, int]) -> Path:
    """Where ``data.features=auto`` looks: ``<shards>-vgg16-<W>x<H>`` (e.g. shards/mit1003-vgg16-400x300)."""
    h, w = input_size
    return Path(f"{str(shards).rstrip('/')}-vgg16-{w}x{h}")


def encoder_sha256(encoder: nn.Module) -> str:
    """sha256 over an encoder's weights as loaded (names, dtypes, shapes, bytes) and its input convention: what
    its taps are a function of, for a file, the ImageNet weights or a seeded random initialisation alike."""
    h = hashlib.sha256(str(getattr(encoder, "input_convention", "")).encode())
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def identity(source: str | Path, encoder: nn.Module, input_size: tuple[int, int],
             layers: tuple[str, ...] = TAPS) -> dict:
    """What a cache's taps are a function of: {"source_shards": {name: sha256}, "encoder_sha256", "input_size"
    [h, w], "layers"}."""
    manifest = read_manifest(source)
    return {"source_shards": {r["name"]: r["sha256"] for r in manifest["shards"]},
            "encoder_sha256": encoder_sha256(encoder), "input_size": [int(n) for n in input_size],
            "layers": list(layers)}


def differences(manifest: dict, want: dict) -> list[str]:
    """Each way a cache's ``manifest`` differs from ``want`` (an :func:`identity`; keys it lacks are not
    compared), in words."""
    out = []
    if "source_shards" in want and manifest["source_shards"] != want["source_shards"]:
        theirs, ours = manifest["source_shards"], want["source_shards"]
        changed = sorted(n for n in set(theirs) | set(ours) if theirs.get(n) != ours.get(n))
        out.append(f"source shards ({len(changed)} differ in name or sha256, e.g. {changed[0]})")
    if "encoder_sha256" in want and manifest["encoder_sha256"] != want["encoder_sha256"]:
        out.append(f"weights (encoder sha256 {manifest['encoder_sha256'][:12]}, this run's "
                   f"{want['encoder_sha256'][:12]}; made with model.weights={manifest.get('weights')})")
    if "input_size" in want and list(manifest["input_size"]) != list(want["input_size"]):
        (h0, w0), (h, w) = manifest["input_size"], want["input_size"]
        out.append(f"input size ({w0}x{h0}, this run's {w}x{h})")
    if "layers" in want and list(manifest["layers"]) != list(want["layers"]):
        out.append(f"layers ({', '.join(manifest['layers'])}; this network's {', '.join(want['layers'])})")
    return out


def read_cache_manifest(folder: str | Path) -> dict:
    """manifest.json of a feature cache; FileNotFoundError saying how to make one, ValueError for a shard folder."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write the feature cache first (python jobs/pack.py features "
                                f"--shards SHARDS --out {folder})")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != "features":
        raise ValueError(f"{folder} holds shards, not a feature cache (jobs/pack.py features writes one)")
    return manifest


def check_cache(folder: str | Path, source: str | Path, input_size: tuple[int, int],
                encoder: nn.Module | None = None, layers: tuple[str, ...] = TAPS, flip: bool = False) -> dict:
    """The cache's manifest, after checking it was made from ``source``'s shards at ``input_size`` with these
    ``layers`` (and, given the ``encoder``, its weights); ValueError naming every difference otherwise, or when
    the loader would ``flip`` (the taps are of the unflipped images)."""
    if flip:
        raise ValueError(f"{folder}: cached taps are of the unflipped images; data.flip must be false with a "
                         "feature cache")
    manifest = read_cache_manifest(folder)
    want = identity(source, encoder, input_size, layers) if encoder is not None else {
        "source_shards": {r["name"]: r["sha256"] for r in read_manifest(source)["shards"]},
        "input_size": list(input_size), "layers": list(layers)}
    diffs = differences(manifest, want)
    if diffs:
        raise ValueError(f"feature cache {folder} was made for other {'; other '.join(diffs)}; write it again "
                         f"(python jobs/pack.py features --shards {source} --out {folder} with this run's weights "
                         "and input size) or run without it (data.features=null)")
    return manifest


def resolve(features: str | None, shards: str | Path, input_size: tuple[int, int]) -> Path | None:
    """The cache folder ``data.features`` names: None, a folder, or "auto" (:func:`default_folder` when it holds a
    manifest, else None: runs read the cache where it was written and compute the taps where it was not)."""
    if not features:
        return None
    if features == AUTO:
        folder = default_folder(shards, input_size)
        return folder if (folder / "manifest.json").is_file() else None
    return Path(features)


def run_features(cfg, G: nn.Module) -> str | None:
    """The feature cache a run reads (``data.features`` resolved by :func:`resolve`), checked against its
    network's encoder (:func:`check_cache`), or None. ``cfg``: a :class:`salnet.config.Config`; ``G``: its network
    with its weights loaded. A named cache needs the loss-study network (``model.arch=aspp``)."""
    d = cfg.data
    folder = resolve(d.features, d.shards, d.input_size)
    if folder is None or (d.features == AUTO and cfg.model.arch != "aspp"):
        return None
    if cfg.model.arch != "aspp":
        raise ValueError(f"data.features={d.features}: a feature cache feeds the loss-study network's head "
                         f"(model.arch=aspp), not model.arch={cfg.model.arch}")
    check_cache(folder, d.shards, d.input_size, G.get_submodule("encoder"), flip=d.flip)
    return str(folder)


# ---------------------------------------------------------------------------- reading


def zip_stage(folder: str | Path, handler, skip: frozenset[str] | set[str] = frozenset()):
    """Pipeline stage like :func:`salnet.data.tario.tar_records` (shard dicts → records with "__url__") that adds
    each record's tap members from the cache tar of the same name. A record the cache lacks (or a cache tar cut
    short) comes without taps, and :class:`TapTransform` rejects it: the loader counts it as a bad sample."""
    folder = Path(folder)

    def cached(url: str):
        try:
            yield from iter_tar(folder / Path(url).name)
        except Exception as exn:  # noqa: BLE001 - a damaged cache tar: its records are missing, the handler decides
            if not handler(exn):
                raise

    def stage(shards):
        for shard in shards:
            url = shard["url"]
            taps = cached(url)
            nxt = next(taps, None)
            try:
                for rec in iter_tar(url, skip):  # the cache's records: the source's, in order, less the bad ones
                    if nxt is not None and nxt["__key__"] == rec["__key__"]:
                        rec.update((k, v) for k, v in nxt.items() if k != "__key__")
                        nxt = next(taps, None)
                    rec["__url__"] = url
                    yield rec
            except Exception as exn:  # noqa: BLE001 - as tar_records: the handler decides
                if not handler(exn):
                    raise

    return stage


class TapTransform(Transform):
    """The loader's :class:`salnet.data.transform.Transform` whose batches also hold the taps: ``tap:<layer>``
    float32 (n, C, h, w), in the same recycled batch memory. ``shapes``: {layer: (C, h, w)} from the manifest;
    the other arguments are Transform's (no fast decode: the taps are of the exact resize)."""

    def __init__(self, shapes: dict[str, list[int]], size: tuple[int, int], resize: str, keep_original: bool):
        super().__init__(size, resize, keep_original)
        self.shapes = {k: tuple(int(n) for n in v) for k, v in shapes.items()}

    def batch_floats(self, n: int) -> int:
        return super().batch_floats(n) + n * sum(int(np.prod(s)) for s in self.shapes.values())

    def new_batch(self, n: int, memory: np.ndarray | None = None) -> dict[str, Tensor]:
        """The base transform's batch, then the taps, in one float32 buffer of :meth:`batch_floats` (n)."""
        memory = np.empty(self.batch_floats(n), np.float32) if memory is None else memory
        start = super().batch_floats(n)
        batch = super().new_batch(n, memory[:start])
        flat = torch.from_numpy(memory)
        for layer, shape in self.shapes.items():
            size = n * int(np.prod(shape))
            batch[tap_key(layer)] = flat[start: start + size].view(n, *shape)
            start += size
        return batch

    def __call__(self, rec: dict, flip: bool, out: dict[str, Tensor] | None = None) -> dict:
        """The base transform's item, the taps written into ``out``; KeyError (a missing tap) or ValueError (a
        wrong shape, a flip: the taps are of the unflipped image) for the loader to count as a bad sample."""
        if flip:
            raise ValueError("cached taps are of the unflipped image: a feature cache needs data.flip=false")
        out = out if out is not None else {k: v[0] for k, v in self.new_batch(1).items()}
        item = super().__call__(rec, flip, out)
        for layer, shape in self.shapes.items():
            arr = load_npy(rec[f"{layer}.npy"], f"{item['id']}.{layer}.npy")
            if arr.shape != shape:
                raise ValueError(f"{item['id']}.{layer}.npy: shape {arr.shape}, the cache's manifest says {shape}")
            out[tap_key(layer)].copy_(torch.from_numpy(arr))
        return item


def model_input(batch: dict, device: torch.device | None = None) -> Tensor | dict[str, Tensor]:
    """What the network is called on: {layer: taps} when the batch holds taps (a cached loss-study batch), else
    the images; moved to ``device`` when given."""
    keys = [k for k in batch if k.startswith("tap:")]
    if not keys:
        return batch["image"] if device is None else batch["image"].to(device)
    return {k[4:]: batch[k] if device is None else batch[k].to(device) for k in keys}
