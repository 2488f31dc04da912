"""A run's first stage as a run of its own, so that the trials of a sweep that share it train it once.

SalGAN's 15-epoch BCE/4 bootstrap does not depend on the adversarial stage's keys (α, whether the adversarial
stage runs, its optimiser and learning rates): every trial of ``salgan_gan`` or ``alpha`` with the same seed and
data trains the same bootstrap. :func:`first_stage` is that bootstrap as a config of its own; a trial whose
``train.init_from`` names a finished run of it starts from that run's last checkpoint — weights, optimisers, RNG
states, position — exactly as if it had trained the bootstrap itself (:func:`adopt_stage`), and then trains only
its own epochs.

    stage = first_stage(cfg)          # None when cfg has no stage to share
    continued_epochs(cfg, run_id)     # the epochs a checkpoint of run ``run_id`` already holds for cfg, or None
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from salnet.config import Config, TrainConfig, config_hash, shorter_run

# The adversarial stage's keys: the bootstrap reads none of them (they take their defaults in the stage's config)
ADVERSARIAL_KEYS = ("adversarial", "alpha", "optimizer", "lr", "lr_d")


def first_stage(cfg: Config) -> Config | None:
    """The config of ``cfg``'s shareable first stage — SalGAN's bootstrap for ``train.bootstrap_epochs`` epochs, the
    adversarial stage's keys at their defaults — or None: not the salgan procedure, no bootstrap, nothing after it,
    a patience (a stage that stops early would end elsewhere than the trial's own bootstrap) or an ``init_from``
    of its own."""
    t = cfg.train
    if t.procedure != "salgan" or t.bootstrap_epochs <= 0 or t.epochs <= t.bootstrap_epochs or t.patience is not None:
        return None
    if t.init_from:
        return None
    default = TrainConfig()
    train = dataclasses.replace(t, epochs=t.bootstrap_epochs, **{k: getattr(default, k) for k in ADVERSARIAL_KEYS})
    return dataclasses.replace(cfg, train=train)


def without_init(cfg: Config) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=None))


def stage_of(cfg: Config) -> Config | None:
    """The first stage that ``cfg`` continues through its ``train.init_from`` (the stage config of ``cfg`` without
    its init_from), or None when ``cfg`` has no init_from."""
    return first_stage(without_init(cfg)) if cfg.train.init_from else None


def continued_epochs(cfg: Config, run_id: str | None) -> int | None:
    """The epochs that a checkpoint of run ``run_id`` holds of ``cfg``: E when it is ``cfg`` with E < epochs
    (:func:`salnet.config.shorter_run`), ``bootstrap_epochs`` when it is the first stage ``cfg`` continues; else
    None."""
    stage = stage_of(cfg)
    if stage is not None and config_hash(stage) == run_id:
        return stage.train.epochs
    return shorter_run(cfg, run_id)


def stage_to_adopt(cfg: Config) -> Path | None:
    """The run folder that ``train.init_from`` names when it is a run of the first stage ``cfg`` continues (None
    otherwise: init_from then only gives the generator's weights). A stage run that has not finished is an error
    naming it."""
    import yaml

    stage = stage_of(cfg)
    stage_dir = Path(str(cfg.train.init_from))
    config = stage_dir / "config.yaml"
    if stage is None or not config.is_file():
        return None
    meta = (yaml.safe_load(config.read_text()) or {}).get("meta", {})
    if meta.get("run_id") != config_hash(stage):
        return None
    if not (stage_dir / "final.json").is_file():
        raise ValueError(f"train.init_from={stage_dir}: this first stage (run {meta.get('run_id')}) has not "
                         "finished; run it to its end first (its own command, or relaunch the sweep)")
    return stage_dir


def _place(src: Path, dst: Path) -> None:
    """``dst`` holds ``src``'s bytes: a hard link (checkpoints are never rewritten in place), else a copy."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def adopt_stage(stage_dir: Path, run_dir: Path) -> None:
    """Start ``run_dir`` (no checkpoint yet) from the finished stage run ``stage_dir``: its latest and best
    checkpoints (same file names, links to them as in any run folder) and its metrics.jsonl lines, so that the run
    folder reads as one run from epoch 0. The checkpoints keep the stage's run id, which
    :func:`continued_epochs` recognises."""
    from salnet.train.checkpoint import BEST, LATEST, _link

    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (BEST, LATEST):  # best first: latest is what marks the folder as started
        link = stage_dir / name
        if not link.exists():
            continue
        target = link.resolve()
        _place(target, run_dir / target.name)
        _link(run_dir / target.name, run_dir / name)
    metrics = stage_dir / "metrics.jsonl"
    if metrics.is_file():
        from salnet.atomic import atomic_write

        atomic_write(run_dir / "metrics.jsonl", metrics.read_text())
