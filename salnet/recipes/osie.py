"""The released SalGAN recipe on real eye tracking (OSIE), against the centre bias and the readout baseline.

    python jobs/osie_recipe.py --out runs/osie                  # 15 bootstrap + 15 epochs (a GPU)
    python jobs/osie_recipe.py --out runs/osie --passes 1 --bootstrap-epochs 2 --epochs 1   # the direction, on a CPU

1. OSIE (``../shared/data/osie``: 600 of its 700 images, 15 observers) packed into shards: a seeded 480/120
   train/val partition (:mod:`salnet.data.osie`);
2. the readout baseline (:func:`salnet.recipes.baselines.fit_readout`): the frozen encoder's conv4_3 + conv5_3 and a
   two-layer 1×1-conv head trained with BCE;
3. the ``salgan`` preset's bootstrap (BCE/4, Nesterov momentum 0.5, lr 1e-3, no weight decay, no flip) from the
   VGG-16 encoder weights, ``bootstrap_epochs`` epochs of ``passes`` passes over the training images (default
   21: an epoch as long as SALICON's, whose size the recipe's epoch counts were made for);
4. from that checkpoint (as the released code loads its bootstrap generator), for ``epochs`` more epochs:
   BCE/4 alone (the bootstrap optimiser) and the adversarial stage (Lasagne's AdaGrad lr 3e-4, α = 0.05);
5. both, the centre bias and the readout scored on the validation split with the nine metrics (MIT
   conventions, the released post-processing): ``OUT/sweep/summary.md`` (also .csv, evaluation.json, tb/), and
   ``OUT/sweep/cc_by_epoch.png``: both trials' validation CC by epoch, the centre bias and the readout as lines.

Every stage resumes when the command is run again with the same arguments (the runs' own checkpoints); a larger
``--epochs`` continues BCE/4 alone and the adversarial stage from where they are, finished or not (their learning
rates are constant, so this equals asking for the larger count at the start); a stage started or finished with
other arguments is an error naming its folder.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import yaml

from salnet.config import Config, all_keys, apply_overrides, config_hash, load_config, shorter_run
from salnet.logs import get_logger
from salnet.train.loop import StopFlag

log = get_logger(__name__)

SHARED = Path(__file__).resolve().parents[3] / "shared"
DEFAULT_DATA = SHARED / "data" / "osie"
DEFAULT_WEIGHTS = SHARED / "weights" / "vgg16_features_hed_bsds500_fp16.pth"
# OSIE's 480 training images 21 times per epoch ≈ SALICON's 10,000: the released 15-epoch bootstrap is then its
# ~4,700 steps (15 of OSIE's own epochs are 225: a model still below the centre bias on four metrics, README)
PASSES = 21
TRIALS = {"bce4": ("BCE/4", ["train.adversarial=false"]), "gan4": ("GAN/4 α=0.05", ["train.alpha=0.05"])}


class Stopped(RuntimeError):
    """A stage stopped before its end (SIGUSR2/SIGTERM: a checkpoint was saved); the same command resumes it."""


def pack_osie(data: Path, out: Path) -> Path:
    """OSIE's train and val splits packed into ``out`` (resumes; skipped when its manifest is there)."""
    from salnet.data import get_reader
    from salnet.data.shards import pack

    if not (out / "manifest.json").is_file():
        if not data.is_dir():
            raise FileNotFoundError(f"{data}: no OSIE release here (data/stimuli, data/eye/fixations.mat); pass "
                                    "--data OSIE_ROOT or --shards FOLDER")
        pack(get_reader("osie", data), out, ["train", "val"], shard_size_mb=64.0)
    return out


def base_config(shards: Path, weights: str | None, passes: int, overrides: list[str]) -> Config:
    """The salgan preset on ``shards``: ``passes`` over the train split per epoch, validation and evaluation on
    its val split, the encoder's weights."""
    return apply_overrides(Config(), [f"data.shards={shards}", "data.test_split=val", "data.val_subset=1000",
                                      f"data.train_passes={passes}",
                                      f"model.weights={'null' if weights is None else weights}", *overrides])


def run(cfg: Config, run_dir: Path, can_grow: bool = False, stop: StopFlag | None = None) -> Path:
    """Train (or resume, or find finished) one run in ``run_dir``; with ``can_grow`` a run made with fewer
    epochs continues to ``cfg``'s (:class:`~salnet.train.loop.Trainer`). ``stop``: the recipe's stop flag, which
    the trainer reads at its step boundaries; set already, no training starts. Raises :class:`Stopped` when
    training stopped before its end."""
    from salnet.train.loop import Trainer

    if (run_dir / "config.yaml").is_file():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text()).get("meta", {}).get("run_id")
        grows = can_grow and shorter_run(cfg, saved) is not None
        if saved != config_hash(cfg) and not grows:
            state = "finished" if (run_dir / "final.json").is_file() else "started"
            raise ValueError(f"{run_dir}: {state} with another configuration (run id {saved}, these arguments give "
                             f"{config_hash(cfg)}); pass another --out, or the arguments it was made with "
                             "(--passes, --bootstrap-epochs, the overrides; a larger --epochs continues the trials)")
        if grows:
            log.info(f"{run_dir}: continues to {cfg.train.epochs} epochs")
        elif (run_dir / "final.json").is_file():
            log.info(f"{run_dir}: done already")
            return run_dir
    if stop is not None and stop.reason:
        raise Stopped(f"{run_dir}: not started ({stop.reason} received); run the command again to resume")
    trainer = Trainer(cfg, run_dir=run_dir)
    if stop is not None:  # one flag for the whole recipe: a signal between two stages is not lost
        trainer.stop = stop
    result = trainer.fit()
    if result["status"] != "done":
        raise Stopped(f"{run_dir}: training ended {result['status']}; run the command again to resume")
    log.info(f"{run_dir}: done, validation CC {result['val'].get('cc', float('nan')):.4f}")
    return run_dir


def get_key(cfg: Config, key: str) -> Any:
    """The value of a dotted key of ``cfg``."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def write_trial(trial_dir: Path, name: str, label: str) -> None:
    from salnet.atomic import atomic_write

    atomic_write(trial_dir / "trial.json", json.dumps({"trial": name, "params": {"point": label}, "status": "done",
                                                      "attempts": 1, "error": None, "jobs": []}, indent=1))


def osie_recipe(out: str | Path, *, data: str | Path = DEFAULT_DATA, shards: str | Path | None = None,
                weights: str | Path | None = DEFAULT_WEIGHTS, bootstrap_epochs: int = 15, epochs: int = 15,
                passes: int = PASSES, readout_epochs: int = 40, overrides: list[str] | None = None,
                device: str | None = None) -> dict:
    """Run the five steps of the module docstring into ``out``; returns the sweep summary (evaluation.json's dict),
    whose table is ``out/sweep/summary.md``. Progress goes to the ``salnet.recipes.osie`` logger.

    ``passes``: passes over the train split per epoch (``data.train_passes``; the default makes an epoch as
    long as SALICON's, for which the recipe's epochs were chosen; 1: OSIE's own epochs).
    ``shards``: an already packed dataset with train and val splits instead of packing ``data``. ``weights``: the
    VGG-16 encoder file (None: random, for smoke tests). ``overrides``: dotted config keys for every run (e.g.
    ``data.batch_size=8``). ``device``: for the final scoring (training picks CUDA when there is one).
    """
    from salnet.data.loader import MAX_PASSES

    if not 1 <= passes <= MAX_PASSES:
        raise ValueError(f"--passes {passes}: passes over the training images per epoch must be 1 to {MAX_PASSES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = Path(shards) if shards is not None else pack_osie(Path(data), out / "shards")
    weights = None if weights is None else str(weights)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: VGG-16 encoder weights not found; pass --weights FILE")
    base = base_config(shards, weights, passes, overrides or [])
    stop = StopFlag()  # SIGUSR2/SIGTERM from here on: the stage in progress checkpoints, no later one starts
    stop.install()
    try:
        return _stages(out, shards, base, weights, bootstrap_epochs, epochs, readout_epochs, device, stop)
    finally:
        for sig, handler in stop.previous.items():
            signal.signal(sig, handler)


def _stages(out: Path, shards: Path, base: Config, weights: str | None, bootstrap_epochs: int, epochs: int,
            readout_epochs: int, device: str | None, stop: StopFlag) -> dict:
    """Steps 2–5 of the module docstring (see :func:`osie_recipe`)."""
    from salnet.atomic import atomic_write
    from salnet.recipes.baselines import fit_readout, readout_config
    from salnet.sweeps.plots import baseline_values, write_curves
    from salnet.sweeps.summary import summarize_sweep

    readout = out / "readout"
    readout_args: dict[str, Any] = dict(weights=weights, input_size=base.data.input_size, epochs=readout_epochs,
                                        seed=base.train.seed, width=base.model.width)
    if (readout / "best.pt").exists():
        # compared as configurations, not by the saved run id: one saved under older identity rules keeps its id
        saved, wanted = load_config(readout / "config.yaml"), readout_config(shards, **readout_args)
        if config_hash(saved) != config_hash(wanted):
            differ = ", ".join(f"{k} {get_key(saved, k)!r} (now {get_key(wanted, k)!r})" for k in all_keys(wanted)
                               if get_key(saved, k) != get_key(wanted, k))
            raise ValueError(f"{readout}: finished with another configuration ({differ}); pass another --out, or "
                             "the arguments it was made with (--readout-epochs, --weights, --shards, the overrides)")
        log.info(f"{readout}: done already")
    else:
        fit_readout(shards, readout, device=device or "cpu", **readout_args)
    boot_cfg = apply_overrides(base, ["train.adversarial=false", f"train.epochs={bootstrap_epochs}",
                                      f"train.bootstrap_epochs={bootstrap_epochs}"])
    boot = run(boot_cfg, out / "bootstrap", stop=stop)
    sweep = out / "sweep"
    (sweep / "trials").mkdir(parents=True, exist_ok=True)
    atomic_write(sweep / "sweep.yaml", yaml.safe_dump({"spec": {
        "name": "osie_salgan", "metric": "cc", "mode": "max",
        "description": f"SalGAN on OSIE: {bootstrap_epochs} bootstrap epochs, then {epochs} of BCE/4 or GAN/4"}}))
    for name, (label, extra) in TRIALS.items():
        cfg = apply_overrides(base, [f"train.init_from={boot}", "train.bootstrap_epochs=0", f"train.epochs={epochs}",
                                     *extra])
        run(cfg, sweep / "trials" / name, can_grow=True, stop=stop)
        write_trial(sweep / "trials" / name, name, label)
    result = summarize_sweep(sweep, split="val", device=device, baselines={"readout": readout})
    write_curves(sweep / "cc_by_epoch.png", {label: sweep / "trials" / name for name, (label, _) in TRIALS.items()},
                 baseline_values(result, "cc"),
                 title=f"OSIE validation CC by epoch after the {bootstrap_epochs}-epoch BCE/4 bootstrap")
    return result
