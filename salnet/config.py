"""Typed experiment configs: dataclasses ↔ YAML, dotted overrides, a content hash as the run id.

    cfg = Config()                                   # SalGAN defaults (docs/design.md, "SalGAN")
    cfg = apply_overrides(cfg, ["train.alpha=0.1", "data.batch_size=16"])
    run_id = config_hash(cfg)                        # 12 hex chars, stable across processes
    save_config(cfg, run_dir / "config.yaml", extra={"git_sha": ..., "seed": cfg.train.seed})
    cfg = load_config(run_dir / "config.yaml")       # unknown keys are errors

Unknown keys (in YAML or overrides) are errors that name the closest valid key; values are checked
against the field's type (int, float, bool, str, tuples, dicts, optional fields).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from salnet.atomic import atomic_write


class ConfigError(ValueError):
    """A config key or value is invalid; the message says which and what is valid. ``key``: the dotted key at
    fault when known (a sweep file maps it to a line)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# The values of the choice keys: salnet.train.checks checks a config against them before anything runs (without
# torch: sweep drivers and Ray's trial runners check configs too), and the code acting on each key uses them.
ARCHS = ("salgan", "aspp", "readout")  # model.arch
OUTPUTS = ("auto", "sigmoid", "linear")  # model.output
INPUT_CONVENTIONS = ("torchvision", "caffe_bgr")  # model.input_convention
POSTPROCESS = ("released", "none")  # model.postprocess
PROCEDURES = ("salgan", "content")  # train.procedure
RECIPE_WEIGHT_DECAY = {"released": 0.0, "paper": 2e-4}  # train.recipe: its weight decay
OPTIMIZERS = ("lasagne_adagrad", "adagrad", "sgd", "nesterov", "adam")  # train.optimizer, train.bootstrap_optimizer


@dataclass
class DataConfig:
    shards: str = "shards/synthetic"  # folder with {split}-NNNNNN.tar + manifest.json ("synthetic" = generated)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    input_size: tuple[int, int] = (192, 256)  # (H, W) of the network input: SalGAN 192×256, loss study 300×400
    batch_size: int = 32
    workers: int = 4
    flip: bool = False  # random horizontal flip (image and targets alike); neither paper nor the released code flips
    max_bad_fraction: float = 0.01  # a run whose corrupt-sample fraction exceeds this stops with an error
    val_subset: int = 500  # images scored each epoch (a fixed subset); the full split at the end
    # passes over the training split per epoch, each in a new order: a small split's epoch as long as the one a
    # recipe was made for (OSIE's 480 images × 21 ≈ SALICON's 10,000, so 15 epochs are the released ~4,700 steps)
    train_passes: int = 1
    # The loss-study network's feature cache (jobs/pack.py features): a folder, "auto" (<shards>-vgg16-<W>x<H> when it
    # holds one, else none), or null; a cache made for other shards, weights, input size or layers is refused
    features: str | None = None


@dataclass
class ModelConfig:
    arch: str = "salgan"  # salgan | aspp
    width: float = 1.0  # channel multiplier (tests and debug runs use a tiny network)
    # VGG-16 weights of the encoder and of the DF/GM losses: "imagenet" (torchvision's, found or fetched as
    # salnet.models.weights says; $SALNET_VGG16_WEIGHTS points it at a local file), a torchvision-format file, or
    # "random" (debugging only). null: random (what runs made before "random" existed hold).
    weights: str | None = "imagenet"
    freeze: tuple[str, ...] = ("conv1", "conv2", "conv3")  # frozen encoder blocks (SalGAN: conv1–conv3)
    # Encoder input normalisation: "torchvision" (ImageNet mean/std) | "caffe_bgr" (RGB 0–255 → BGR minus the
    # Caffe mean: the released SalGAN weights converted by jobs/convert.py)
    input_convention: str = "torchvision"
    # SalGAN decoder's initialisation: "glorot" (the released code) | "he" (for networks trained from random weights)
    decoder_init: str = "glorot"
    # The network's last layer: "sigmoid" | "linear" | "auto" (SalGAN: sigmoid; the loss-study net: a sigmoid
    # only when the loss has a distribution-based term, Bruckert et al. §3.2.2).
    output: str = "auto"
    # How a prediction becomes a map at the image's size before it is scored: "released" = SalGAN's released
    # inference (bicubic resize to the image size, 5×5 Gaussian blur, clip); "none" = the raw output, resized by
    # the metrics (MATLAB imresize bicubic).
    postprocess: str = "released"


@dataclass
class TrainConfig:
    procedure: str = "salgan"  # salgan: bootstrap then adversarial | content: one content loss throughout
    # released: the authors' code (imatge-upc/salgan) | paper: Pan et al. 2017 where it differs (weight decay)
    recipe: str = "released"
    epochs: int = 120
    bootstrap_epochs: int = 15  # SalGAN: content-loss (BCE/4) epochs before the adversarial stage
    adversarial: bool = True  # salgan procedure: false = the bootstrap stage runs to the end (Table 3's BCE/4)
    alpha: float = 0.05  # SalGAN G loss = alpha·BCE/4 + BCE(D(I, Ŝ), 1)
    loss: dict[str, Any] = field(default_factory=lambda: {"bce_pool4": 1.0})  # content loss spec (losses.build)
    # adversarial stage (G and D) and the content procedure: lasagne_adagrad (Lasagne's AdaGrad, ε inside the
    # root, as released) | adagrad (torch's) | sgd | nesterov | adam
    optimizer: str = "lasagne_adagrad"
    lr: float = 3e-4
    lr_d: float = 3e-4
    bootstrap_optimizer: str = "nesterov"  # released SalGAN code: Nesterov momentum 0.5, lr 1e-3
    bootstrap_lr: float = 1e-3
    momentum: float = 0.5
    # L2 penalty on weights (not biases) of every optimiser, as torch's weight_decay (= 2λ of λ·Σw²);
    # None = the recipe's: released none, paper 2e-4 (λ = 1e-4)
    weight_decay: float | None = None
    patience: int | None = None  # stop after this many epochs without a better best_metric (None: all epochs)
    init_from: str | None = None  # start G from this run folder or checkpoint (e.g. a shared bootstrap stage)
    seed: int = 0
    best_metric: str = "cc"  # validation metric that picks the `best` checkpoint
    bf16: bool = True  # bf16 autocast on GPU (and on CPU with cpu_bf16)
    # bf16 autocast (with bf16 on) and channels_last on CPU too: 2.4–2.7× faster training where the CPU has
    # AVX512-BF16 or AMX (a GPU's numerics); off, CPU runs are exact float32
    cpu_bf16: bool = False
    channels_last: bool = True
    compile: bool = False
    keep_last: int = 3  # checkpoints kept besides latest/best
    max_steps: int | None = None  # stop early (debug runs)
    log_every: int = 10  # steps between logged training scalars (the only host synchronisation)


@dataclass
class Config:
    name: str = "salgan"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------- dict ↔ dataclass


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists), ready for YAML/JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _closest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against (and where lossless, converted to) the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exn:
                errors.append(str(exn))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{where}: expected a list, got {value!r}")
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys and ill-typed values are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}{_closest(key, list(fields))}", key=path)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, path)
            continue
        try:
            kwargs[key] = _coerce(value, tp, path)
        except ConfigError as exn:
            raise ConfigError(str(exn), key=exn.key or path) from None
    return cls(**kwargs)


def all_keys(cfg) -> list[str]:
    """Every dotted key of ``cfg`` (leaves), e.g. ``train.alpha``."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out += [f"{f.name}.{k}" for k in all_keys(v)] if dataclasses.is_dataclass(v) else [f.name]
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["key.sub=value", ...]`` → ``{"key.sub": value}``, values parsed as YAML (``0.1``, ``true``,
    ``[192, 256]``, ``{kld: 10, cc: -2}``)."""
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exn:
            raise ConfigError(f"override {item!r}: cannot parse value ({exn})") from exn
    return out


def set_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A new config with dotted keys set to (typed-checked) values. Inside a dict-valued field the rest of
    the key walks nested entries: ``train.loss.kld`` sets one coefficient, ``train.loss.sig_mse.lambda`` a
    parameter of one term (the entry is created when missing)."""
    data = to_dict(cfg)
    valid = all_keys(cfg)
    for key, value in values.items():
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[: i + 1])
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown config key {key!r}{_closest(key, valid)}", key=key)
            node = node[part]
            if prefix in valid:  # a dict-valued field: the rest of the key walks its entries
                for sub in parts[i + 1:-1]:
                    node = node.setdefault(sub, {})
                    if not isinstance(node, dict):
                        raise ConfigError(f"{key}: {sub!r} holds {node!r}, not a mapping of parameters", key=key)
                node[parts[-1]] = value
                break
        else:
            if not isinstance(node, dict) or parts[-1] not in node:
                raise ConfigError(f"unknown config key {key!r}{_closest(key, valid)}", key=key)
            node[parts[-1]] = value
    return from_dict(type(cfg), data)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key.sub=value`` strings (see :func:`parse_overrides`, :func:`set_values`); returns a new config."""
    return set_values(cfg, parse_overrides(overrides))


# ---------------------------------------------------------------------------- hash and YAML


# Keys that change how a run executes, not what it computes: left out of its identity, so a run restarted with
# more loader workers, another logging cadence or another output folder resumes the same run (dora's rule).
OPERATIONAL_KEYS = ("out_dir", "data.workers", "train.log_every", "train.keep_last", "train.max_steps",
                    "train.compile", "train.channels_last")


# Keys added after runs were made, with the value that reproduces what those runs did: left out of the identity
# while they hold it, so a run started before a key existed keeps its id and resumes under a newer salnet.
ADDED_KEYS: dict[str, Any] = {"data.train_passes": 1, "train.cpu_bf16": False, "data.features": None}


def identity(cfg) -> dict:
    """The config as a nested dict without :data:`OPERATIONAL_KEYS`, nor :data:`ADDED_KEYS` at their old value:
    what a run's id is computed from."""
    data = to_dict(cfg)

    def parent(key: str) -> tuple[dict, str]:
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node[p]
        return node, leaf

    for key in OPERATIONAL_KEYS:
        node, leaf = parent(key)
        node.pop(leaf, None)
    if data.get("model", {}).get("weights") == "random":  # = null, which runs made before "random" hold
        data["model"]["weights"] = None
    for key, old in ADDED_KEYS.items():
        node, leaf = parent(key)
        if node.get(leaf) == old:
            del node[leaf]
    return data


def config_hash(cfg) -> str:
    """12 hex chars of sha256 over the canonical JSON of the config's :func:`identity`: the run id (dora-style)."""
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def shorter_run(cfg, run_id: str | None) -> int | None:
    """The epoch count E < ``cfg.train.epochs`` with which ``cfg`` has the id ``run_id``, or None. A run that is
    ``cfg`` with fewer epochs can be continued to ``cfg``'s count exactly: no optimiser or schedule depends on
    ``train.epochs`` (the learning rates are constant), only where the epoch loop stops."""
    for epochs in range(cfg.train.epochs - 1, 0, -1):
        if config_hash(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))) == run_id:
            return epochs
    return None


def git_sha() -> str:
    """The commit of the salnet checkout running this (``git rev-parse HEAD``), "unknown" outside a checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_config(cfg, path: Path, extra: dict | None = None) -> None:
    """Write ``config.yaml``: the config plus a ``meta`` block (run id, and e.g. git SHA, seed, versions)."""
    doc = {"config": to_dict(cfg), "meta": {"run_id": config_hash(cfg), **(extra or {})}}
    atomic_write(path, yaml.safe_dump(doc, sort_keys=False))


def load_config(path: Path, cls=Config):
    """Read a config written by :func:`save_config` (or a bare mapping of config keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exn:
        raise ConfigError(f"{path}: not valid YAML ({exn})") from exn
    if isinstance(doc, dict) and "config" in doc:
        doc = doc["config"]
    try:
        return from_dict(cls, doc or {})
    except ConfigError as exn:  # name the file: the key alone does not say where to fix it
        raise ConfigError(f"{path}: {exn}", key=exn.key) from None


def loss_study() -> Config:
    """Bruckert et al.'s setting (docs/design.md): the ASPP network at 300×400, plain SGD lr 1e-3 (no momentum, no
    decay), batch 60, no augmentation, trained until the validation CC stops improving (patience 10 epochs, at most
    200), LC1. The paper gives no patience or cap: those two are this suite's choice."""
    return Config(
        name="loss_study",
        data=DataConfig(input_size=(300, 400), batch_size=60),
        model=ModelConfig(arch="aspp", postprocess="none"),
        train=TrainConfig(procedure="content", epochs=200, bootstrap_epochs=0, optimizer="sgd", lr=1e-3,
                          momentum=0.0, weight_decay=0.0, patience=10, loss={"kld": 10.0, "cc": -2.0, "nss": -1.0}),
    )


PRESETS = {"salgan": Config, "loss_study": loss_study}

# Debug mode: the same code path on a tiny network and generated data, a few steps on a CPU.
DEBUG_OVERRIDES = [
    "model.width=0.0625", "model.weights=random", "data.input_size=[64, 96]", "data.batch_size=4", "data.workers=0",
    "data.val_subset=8", "train.epochs=2", "train.bootstrap_epochs=1", "train.bf16=false",
]
