"""Bruckert et al.'s loss study on OSIE's real eye tracking, from the feature cache, with the centre bias and the
readout baseline as rows.

1. OSIE's seeded 480/120 split packed (:func:`salnet.recipes.osie.pack_osie`; or ``shards``), 2. the cache of the
encoder's taps at 300×400 next to the shards (:mod:`salnet.data.features`; kept when written already), 3. the
readout baseline at 304×400 (:func:`salnet.recipes.baselines.fit_readout`; its sides must be multiples of 16), 4. each
chosen point of sweeps/loss_study.yaml with each seed: the ``loss_study`` preset (plain SGD lr 1e-3, batch 60, no
augmentation, the validation CC's patience) reading the cache, 5. the sweep summary on the validation split
(:func:`salnet.sweeps.summary.summarize_sweep`): every point against the control MSE with paired bootstrap intervals
over the 120 images (and over seeds), the centre bias and the readout as rows: ``OUT/sweep/summary.md``; each point's
validation CC by epoch: ``OUT/sweep/cc_by_epoch.png``; the paper's Table 2 orderings of these points checked pair by
pair on OSIE's images (:mod:`salnet.sweeps.orderings`): ``OUT/sweep/orderings.md``. Reruns resume:
finished runs are kept, a run stopped midway continues.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from salnet.config import PRESETS, Config, apply_overrides
from salnet.logs import get_logger
from salnet.sweeps.spec import SWEEPS_DIR

log = get_logger(__name__)

SWEEP_FILE = SWEEPS_DIR / "loss_study.yaml"
# the points: the single losses of each family, SIG-MSE at the paper's λ, LC1 with and without R
POINTS = ("MSE", "BCE", "KLD", "CC", "NSS", "SIG-MSE λ=0.55", "LC1 (KLD + CC + NSS)", "LC1 + R")


def sweep_points(labels: tuple[str, ...] | list[str]) -> list[tuple[str, dict]]:
    """[(label, train.loss)] of sweeps/loss_study.yaml's points with these labels, in that order; ValueError naming
    the labels it lacks."""
    points = {p["label"]: p["train.loss"] for p in yaml.safe_load(SWEEP_FILE.read_text())["points"]}
    missing = [lab for lab in labels if lab not in points]
    if missing:
        raise ValueError(f"{SWEEP_FILE}: no point(s) {missing}; choose from {', '.join(points)}")
    return [(lab, points[lab]) for lab in labels]


def point_config(shards: Path, features: Path, weights: str, loss: dict, seed: int, epochs: int, patience: int,
                 input_size: tuple[int, int], overrides: list[str]) -> Config:
    """The loss_study preset on OSIE's shards at ``input_size`` (H, W), read from the cache, for one point and
    seed."""
    base: Config = PRESETS["loss_study"]()
    return apply_overrides(base, [
        f"data.shards={shards}", f"data.features={features}", "data.test_split=val", "data.val_subset=1000",
        f"data.input_size=[{input_size[0]}, {input_size[1]}]",
        f"model.weights={weights}", f"train.seed={seed}", f"train.epochs={epochs}", f"train.patience={patience}",
        f"train.loss={json.dumps(loss)}", *overrides])


def osie_loss_study(out: str | Path, *, shards: str | Path | None = None, data: str | Path | None = None,
                    weights: str | Path | None = None, points: tuple[str, ...] | list[str] = POINTS,
                    seeds: int = 2, epochs: int = 200, patience: int = 10, readout_epochs: int = 40,
                    input_size: tuple[int, int] = (300, 400), overrides: list[str] | None = None,
                    device: str | None = None) -> dict:
    """Steps 1–5 of the module docstring into ``out``; returns the sweep summary (evaluation.json's dict).

    ``shards``: OSIE already packed (else ``data``, default ../shared/data/osie, is packed into OUT/shards).
    ``weights``: the VGG-16 file (default the recipe's, ../shared/weights). ``points``: labels of
    sweeps/loss_study.yaml (MSE, the control, is always run). ``seeds``: train.seed 0 … seeds-1 per point.
    ``epochs``/``patience``: the cap and the validation CC's patience (the preset's 200 and 10). ``input_size``:
    (H, W) of the network, the cache and the readout (the paper's 300×400; smaller for a smoke run).
    ``overrides``: dotted keys for every run (e.g. ``data.workers=1``). ``device``: of the final scoring."""
    from salnet.atomic import atomic_write
    from salnet.data.features import default_folder
    from salnet.recipes.baselines import fit_readout
    from salnet.recipes.osie import DEFAULT_DATA, DEFAULT_WEIGHTS, pack_osie, run
    from salnet.run.features import FeatureOptions, write_cache
    from salnet.sweeps.orderings import write_orderings
    from salnet.sweeps.plots import baseline_values, write_curves
    from salnet.sweeps.summary import summarize_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = str(weights or DEFAULT_WEIGHTS)
    shards = Path(shards) if shards else pack_osie(Path(data or DEFAULT_DATA), out / "shards")
    features = default_folder(shards, input_size)  # next to the shards, where data.features=auto looks
    if not (features / "manifest.json").is_file():
        size = f"{input_size[1]}x{input_size[0]}"  # W x H, as jobs/pack.py writes sizes
        write_cache(shards, features, FeatureOptions(input_size=size, weights=weights, progress=False))
    # the readout's decoder needs sides that are multiples of 16: 300×400 becomes 304×400
    readout_size = (-(-input_size[0] // 16) * 16, -(-input_size[1] // 16) * 16)
    readout = out / f"readout-{readout_size[1]}x{readout_size[0]}-{readout_epochs}"
    if not (readout / "best.pt").exists():
        fit_readout(shards, readout, weights=weights, input_size=readout_size, epochs=readout_epochs,
                    device=device or "cpu")
    chosen = sweep_points(["MSE", *[p for p in points if p != "MSE"]])
    sweep = out / "sweep"
    (sweep / "trials").mkdir(parents=True, exist_ok=True)
    atomic_write(sweep / "sweep.yaml", yaml.safe_dump({"spec": {
        "name": "osie_loss_study", "metric": "cc", "mode": "max", "control": "MSE",
        "description": f"Bruckert et al.'s losses on OSIE from the feature cache: at most {epochs} epochs, "
                       f"patience {patience}, seeds 0-{seeds - 1}"}}, allow_unicode=True))
    for seed in range(seeds):
        for n, (label, loss) in enumerate(chosen):
            name = f"p{n:02d}-s{seed}"
            cfg = point_config(shards, features, weights, loss, seed, epochs, patience, input_size, overrides or [])
            run(cfg, sweep / "trials" / name, can_grow=True)
            atomic_write(sweep / "trials" / name / "trial.json", json.dumps(
                {"trial": name, "params": {"point": label, "train.seed": seed}, "status": "done", "attempts": 1,
                 "error": None, "jobs": []}, indent=1, ensure_ascii=False))
    result = summarize_sweep(sweep, split="val", device=device, baselines={"readout": readout})
    write_curves(sweep / "cc_by_epoch.png", {label: sweep / "trials" / f"p{n:02d}-s0" for n, (label, _) in
                                             enumerate(chosen)}, baseline_values(result, "cc"),
                 title="OSIE validation CC by epoch of each loss (seed 0), from the feature cache")
    reference = yaml.safe_load(SWEEP_FILE.read_text()).get("reference") or []
    write_orderings(sweep, reference, where="OSIE's 120 validation images")
    return result
