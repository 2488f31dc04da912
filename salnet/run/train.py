"""One training run in this process (``jobs/train.py``): single process, or one rank of a DDP job under
torchrun or a multi-task Slurm step; and the checks and debug data that the launcher shares with it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from salnet.config import DEBUG_OVERRIDES, PRESETS, Config, load_config, parse_overrides, set_values
from salnet.logs import get_logger
from salnet.run import LaunchError
from salnet.train.checks import check_config, check_weights

log = get_logger(__name__)
DEBUG_DATA = Path("runs/debug-data/synthetic")  # generated on first use by --debug / --tiny


def override_values(overrides: list[str] | dict, debug: bool = False) -> dict:
    """Dotted overrides (``["train.alpha=0.1"]`` or ``{"train.alpha": 0.1}``) as values; ``debug`` puts the
    tiny network on :data:`DEBUG_DATA` under them."""
    values = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)
    return {**parse_overrides(DEBUG_OVERRIDES), "data.shards": str(DEBUG_DATA), **values} if debug else values


def run_config(preset_or_file: str | Path, overrides: list[str] | dict, debug: bool = False) -> Config:
    """A preset (salgan, loss_study) or a config YAML with :func:`override_values` applied. ConfigError on a
    bad key or value, or a missing file."""
    name = str(preset_or_file)
    cfg = PRESETS[name]() if name in PRESETS else load_config(Path(name))
    return check_config(set_values(cfg, override_values(overrides, debug)))


def check_inputs(cfg: Config, what: str, shards: bool = True) -> Path | None:
    """Before anything is written or submitted: the config's values (:func:`check_config`), its shards (unless
    ``shards`` is False) and its VGG-16 weights (:func:`check_weights`, which may fetch torchvision's file into its
    cache). Says once when the encoder is random. Returns the weights file (None: random or not read)."""
    check_config(cfg)
    if shards:
        ensure_debug_data(cfg)
        check_shards(cfg.data.shards, what)
    path = check_weights(cfg)
    announce_random(cfg)
    return path


_announced: set[str] = set()


def announce_random(cfg: Config) -> None:
    """One console line per process when a run starts from a random VGG-16 (debug mode, the demo, the tests)."""
    from salnet.models.weights import is_random
    from salnet.train.checks import uses_vgg_weights

    if uses_vgg_weights(cfg) and is_random(cfg.model.weights) and "random" not in _announced:
        _announced.add("random")
        log.warning("model.weights=random: the VGG-16 encoder starts from random weights (a debug, demo or test "
                    "setting; the presets use model.weights=imagenet)")


def ensure_debug_data(cfg: Config) -> None:
    """Generate the synthetic shards of :data:`DEBUG_DATA` (once, at the config's input size) when ``cfg``
    trains on them."""
    if Path(cfg.data.shards) == DEBUG_DATA:
        from salnet.data.synthetic_shards import ensure_synthetic_shards

        ensure_synthetic_shards(DEBUG_DATA, size=cfg.data.input_size)


def check_shards(shards: str | Path, what: str) -> None:
    """A LaunchError saying how to pack a dataset when ``shards`` has no manifest.json."""
    if not (Path(shards) / "manifest.json").is_file():
        raise LaunchError(f"{what}: no shards at {shards} (manifest.json missing); pack a dataset first, e.g. "
                          f"`python jobs/pack.py salicon --root RAW --out {shards}` (your own images: "
                          f"`python jobs/pack.py folder --root DIR --out {shards}`), or set data.shards=FOLDER; "
                          "generated data: jobs/train.py --debug, jobs/launch.py --tiny")


def train_run(cfg: Config, run_dir: Path | None = None, resume: bool = True,
              compare_center_bias: bool = False) -> dict:
    """Train ``cfg`` in ``run_dir`` (default runs/<name>-<config hash>): resumed from its latest checkpoint
    unless ``resume`` is False (then a previous run there is moved aside, not mixed in). With
    ``compare_center_bias`` the centre-bias baseline is scored on the same validation split and printed beside
    the model. Returns :meth:`salnet.train.loop.Trainer.fit`'s result (+ ``center_bias``)."""
    check_inputs(cfg, "data.shards")
    from salnet.train.distributed import init_for_run, naming_peer_failures
    from salnet.train.loop import Trainer, run_dir_for

    run_dir = run_dir or run_dir_for(cfg)
    if not resume and run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        log.info(f"--no-resume: moved the previous run to {aside}")
    env = init_for_run(run_dir)
    with naming_peer_failures(env):
        trainer = Trainer(cfg, run_dir=run_dir, resume=resume, env=env)
        if trainer.env.is_main:
            log.info(f"run folder: {trainer.run_dir}  (tensorboard --logdir {trainer.run_dir / 'tb'})")
        result = trainer.fit()
    if compare_center_bias and result["status"] == "done":
        from salnet.models.baselines import CenterBiasModel
        from salnet.train.validate import validate

        base, _ = validate(CenterBiasModel(), trainer.val_loader, trainer.device, shuffle_pool=trainer.pool,
                           seed=cfg.train.seed)
        result["center_bias"] = base
        if trainer.env.is_main:
            log.info(f"{'metric':<10}{'model':>10}{'centre bias':>13}")
            for k in base:
                if k != "images":
                    log.info(f"{k:<10}{result['val'][k]:>10.4f}{base[k]:>13.4f}")
    if trainer.env.is_main:
        log.info(json.dumps(result, indent=2))
    return result
