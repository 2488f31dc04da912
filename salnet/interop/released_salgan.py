"""The authors' released SalGAN weights (imatge-upc/salgan, Lasagne ``.npz``) as a salnet checkpoint.

    convert_released(["gen_modelWeights0090.npz", "discrim_modelWeights0090.npz"], "salgan_released.pt")
    model, cfg = salnet.inference.predict.load_model("salgan_released.pt")

The released training script saves ``np.savez(path, *lasagne.layers.get_all_param_values(net))``: arrays
``arr_0 … arr_N`` in the order of ``get_all_layers`` (input first), each layer's parameters in the order it
adds them. How the released code builds each layer (``scripts/models/{vgg16,generator,discriminator,nn,
layers}.py``) and what the conversion does about it:

- Encoder (vgg16.py): 13 ``Conv2DLayer(..., flip_filters=False)``: cross-correlation as torch's conv, the
  weights are copied. Its input goes through ``RGBtoBGRLayer``: RGB 0–255 → BGR minus the Caffe mean
  [103.939, 116.779, 123.68], no std division: the converted config sets ``model.input_convention=caffe_bgr``.
- Decoder (generator.py): 13 3×3 ``Conv2DLayer`` and the 1×1 ``output`` with Lasagne's default
  ``flip_filters=True`` (a true convolution): the kernels are flipped in both spatial axes for torch.
- Discriminator (discriminator.py): ``merge`` (1×1, flip_filters=False), conv1, conv2_1, conv2_2 (flipped);
  conv3_1/conv3_2 are ``nn.weight_norm`` layers: the conv keeps only its W (its b is deleted), the following
  ``WeightNormLayer`` adds b then g; DenseLayer W is (in, out), torch's Linear weight is its transpose.

A 1×1 kernel is its own flip; weight normalisation divides each filter by its norm, which the flip keeps.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from salnet.config import Config, config_hash, save_config
from salnet.models.salgan import DECODER_CFG, SALGAN_INPUT_SIZE, Discriminator, Generator
from salnet.models.vgg import VGG16_CFG, conv_indices

RELEASED_NAME = "salgan-released"


@dataclass(frozen=True)
class Param:
    """One array of the released file: its Lasagne name, the salnet state-dict key, how it is carried over
    ("copy", "flip" = reverse both spatial axes, "transpose" = DenseLayer (in, out) → Linear (out, in))."""

    lasagne: str
    key: str
    how: str = "copy"


def _vgg_names() -> list[str]:
    names, block, conv = [], 1, 1
    for c in VGG16_CFG[:-1]:  # no pool5: the generator's encoder ends at conv5_3
        if c == "M":
            block, conv = block + 1, 1
        else:
            names.append(f"conv{block}_{conv}")
            conv += 1
    return names


def generator_params() -> list[Param]:
    """The 54 arrays of ``gen_modelWeights*.npz`` in file order, with their salnet keys."""
    out = []
    for name, i in zip(_vgg_names(), conv_indices(30)):
        out += [Param(f"{name}.W", f"encoder.features.{i}.weight"), Param(f"{name}.b", f"encoder.features.{i}.bias")]
    for name, ch in DECODER_CFG:
        if ch:
            out += [Param(f"{name}.W", f"decoder.{name}.weight", "flip"), Param(f"{name}.b", f"decoder.{name}.bias")]
    return out + [Param("output.W", "decoder.output.weight", "flip"), Param("output.b", "decoder.output.bias")]


def discriminator_params() -> list[Param]:
    """The 20 arrays of ``disrim_modelWeights*.npz`` (the README's ``discrim_…``) in file order."""
    out = [Param("merge.W", "features.merge.weight"), Param("merge.b", "features.merge.bias")]
    for name in ("conv1", "conv2_1", "conv2_2"):
        out += [Param(f"{name}.W", f"features.{name}.weight", "flip"), Param(f"{name}.b", f"features.{name}.bias")]
    for name in ("conv3_1", "conv3_2"):  # conv W, then the WeightNormLayer's b and g
        out += [Param(f"{name}.W", f"features.{name}.weight", "flip"), Param(f"{name}.b", f"features.{name}.bias"),
                Param(f"{name}.g", f"features.{name}.g")]
    for name in ("fc4", "fc5", "prob"):
        out += [Param(f"{name}.W", f"classifier.{name}.weight", "transpose"),
                Param(f"{name}.b", f"classifier.{name}.bias")]
    return out


KINDS = {"generator": generator_params, "discriminator": discriminator_params}


def read_npz(path: str | Path) -> list[np.ndarray]:
    """The arrays ``arr_0 … arr_N`` of a ``np.savez`` file, in order; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the released gen_modelWeights0090.npz "
                                "(and/or discrim_modelWeights0090.npz)")
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as exn:  # numpy raises several types for foreign or truncated files
        raise ValueError(f"{path}: not a readable .npz file ({type(exn).__name__}: {exn})") from exn
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not the .npz of np.savez(path, *params)")
    with f:
        names = list(f.files)
        want = [f"arr_{i}" for i in range(len(names))]
        if sorted(names) != sorted(want):
            raise ValueError(f"{path}: expected arrays arr_0 … arr_{len(names) - 1} (np.savez(path, *params)), "
                             f"got {names[:5]}")
        try:
            return [np.asarray(f[n]) for n in want]
        except Exception as exn:
            raise ValueError(f"{path}: not a readable .npz file ({type(exn).__name__}: {exn})") from exn


def kind_of(arrays: list[np.ndarray], where: str) -> str:
    """"generator" (54 arrays) or "discriminator" (20); ValueError naming the file otherwise."""
    for kind, spec in KINDS.items():
        if len(arrays) == len(spec()):
            return kind
    raise ValueError(f"{where}: {len(arrays)} arrays; the released SalGAN generator has {len(generator_params())} "
                     f"and the discriminator {len(discriminator_params())} (is this a SalGAN .npz?)")


def to_state(arrays: list[np.ndarray], params: list[Param], own: dict[str, torch.Tensor],
             where: str) -> dict[str, torch.Tensor]:
    """A state dict for a module whose ``state_dict()`` is ``own``: each array carried over as its Param says,
    its shape checked against the module's; ValueError naming the file, the Lasagne layer and both shapes."""
    state = {}
    for i, (a, p) in enumerate(zip(arrays, params)):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if p.how == "flip":
            t = t.flip(-1, -2)
        elif p.how == "transpose":
            t = t.t()
        if tuple(t.shape) != tuple(own[p.key].shape):
            raise ValueError(f"{where}: arr_{i} ({p.lasagne}) has shape {tuple(a.shape)}; the network built from it "
                             f"expects {tuple(own[p.key].shape)} for {p.key}")
        state[p.key] = t.contiguous()
    return state


def _width(channels: int, base: int, where: str) -> float:
    width = channels / base
    if width <= 0:
        raise ValueError(f"{where}: first layer has {channels} filters")
    return width


def generator_state(arrays: list[np.ndarray], where: str = "generator") -> tuple[dict, float]:
    """(Generator state dict, width) from the 54 released arrays; width = conv1_1's filters / 64 (1.0 for the
    released file)."""
    width = _width(int(arrays[0].shape[0]), 64, where)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VGG-16 has RANDOM weights")
        own = Generator(width=width).state_dict()
    return to_state(arrays, generator_params(), own, where), width


def discriminator_state(arrays: list[np.ndarray], input_size=SALGAN_INPUT_SIZE,
                        where: str = "discriminator") -> tuple[dict, float]:
    """(Discriminator state dict, width) from the 20 released arrays; width = conv1's filters / 32. ``input_size``
    (H, W) fixes fc4's input (released: 192×256 → 64·12·16 = 12288)."""
    width = _width(int(arrays[2].shape[0]), 32, where)
    own = Discriminator(width=width, input_size=tuple(input_size)).state_dict()
    return to_state(arrays, discriminator_params(), own, where), width


def released_config(width: float = 1.0) -> Config:
    """The config of a converted run: SalGAN defaults, no VGG file (the checkpoint holds every weight), the
    released input convention and post-processing."""
    cfg = Config(name=RELEASED_NAME)
    cfg.model.width = width
    cfg.model.weights = None
    cfg.model.input_convention = "caffe_bgr"
    return cfg


def convert_released(files: list[str | Path], out: str | Path) -> Path:
    """Convert the released generator (and optionally discriminator) ``.npz`` files into a checkpoint that
    :func:`salnet.inference.predict.load_model` and :func:`salnet.inference.evaluate.evaluate_run` load.

    files: one or two paths, told apart by their contents (54 arrays: generator, 20: discriminator); the
    generator is required. out: ``NAME.pt`` writes that checkpoint and its config as ``NAME.yaml`` beside it;
    any other path is a run folder (created) with ``config.yaml``, ``ckpt-000000000.pt`` and the ``best.pt``/
    ``latest.pt`` links. The checkpoint holds ``G`` (and ``D``), step 0, the run id and ``converted_from``
    (file name, sha256 and array count of each source). Returns the checkpoint's path (the file, or the folder's
    ``best.pt``).
    """
    if not 1 <= len(files) <= 2:
        raise ValueError(f"pass the generator .npz and optionally the discriminator .npz, got {len(files)} files")
    found: dict[str, tuple[Path, list[np.ndarray]]] = {}
    for f in files:
        arrays = read_npz(f)
        kind = kind_of(arrays, str(f))
        if kind in found:
            raise ValueError(f"{found[kind][0]} and {f} are both {kind} weights; pass one generator .npz and at most "
                             "one discriminator .npz")
        found[kind] = (Path(f), arrays)
    if "generator" not in found:
        raise ValueError(f"{files[0]}: a discriminator file alone; the generator (gen_modelWeights*.npz) is what "
                         "predicts saliency, pass it too")
    gpath, garrays = found["generator"]
    g_state, width = generator_state(garrays, str(gpath))
    cfg = released_config(width)
    state: dict = {"G": g_state, "step": 0, "epoch": 0, "run_id": config_hash(cfg), "converted_from": {}}
    for kind, (path, arrays) in found.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        state["converted_from"][kind] = {"file": path.name, "sha256": digest, "arrays": len(arrays)}
    if "discriminator" in found:
        dpath, darrays = found["discriminator"]
        state["D"], d_width = discriminator_state(darrays, cfg.data.input_size, str(dpath))
        if d_width != width:
            raise ValueError(f"{dpath}: discriminator width {d_width} does not belong to generator {gpath} "
                             f"(width {width})")
    return write_converted(state, cfg, Path(out))


def write_converted(state: dict, cfg: Config, out: Path) -> Path:
    """Write ``state`` with ``cfg`` as :func:`convert_released` describes; returns the checkpoint path."""
    from salnet.train.checkpoint import BEST, CheckpointManager, atomic_save

    meta = {"converted_from": state["converted_from"]}
    if out.suffix == ".pt":
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(state, out)
        save_config(cfg, out.with_suffix(".yaml"), extra=meta)
        return out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; pass a new run folder or a NAME.pt file")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml", extra=meta)
    CheckpointManager(out).save(state, 0, is_best=True)
    return out / BEST
