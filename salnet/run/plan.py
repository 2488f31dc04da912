"""What ``jobs/launch.py --dry-run`` prints: a sweep's plan, short enough to read, without asking Slurm anything.

One line per trial (its label and only what differs from the base config), the shared first stages, the inputs
resolved (shards and VGG-16 weights: a path, or MISSING with what makes them), the jobs and their resources, and
the compute: epochs and GPU-hours from the FLOP count (:func:`salnet.train.flops.training_flops`) at a stated
rate. ``--verbose`` adds every trial's full config.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from salnet.config import Config, to_dict
from salnet.sweeps.folder import JobResources, SweepFolder, SweepPlan
from salnet.sweeps.load import POINT, shared_stages, trial_run_config

# The training step's target on one H100/H200 (docs/benchmarks.md): SalGAN's adversarial step at 2,000 img/s,
# 411 TFLOP/s. No GPU has measured a rate yet (benchmarks/gpu_check.sh will).
TARGET_TFLOPS = 411.0
# Training and validation images of the datasets the sweeps name, for a plan made before the shards are packed
KNOWN_SIZES = {"salicon": (10000, 5000), "mit1003": (500, 200), "osie": (480, 120)}


def flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "loss":
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def differences(cfg: Config, base: Config) -> dict[str, object]:
    """The dotted keys whose values differ between ``cfg`` and ``base`` (``train.init_from`` left out)."""
    a, b = flat(to_dict(cfg)), flat(to_dict(base))
    return {k: v for k, v in a.items() if b.get(k) != v and k != "train.init_from"}


def split_sizes(cfg: Config) -> tuple[int, int, str]:
    """(training, validation) images of the config's shards: from its manifest.json, else the dataset's published
    size when the folder is named after it; the third item says which."""
    manifest = Path(cfg.data.shards) / "manifest.json"
    if manifest.is_file():
        counts = json.loads(manifest.read_text()).get("counts", {})
        return int(counts.get(cfg.data.train_split, 0)), int(counts.get(cfg.data.val_split, 0)), "manifest.json"
    name = Path(cfg.data.shards).name.split("-")[0].lower()
    if name in KNOWN_SIZES:
        return (*KNOWN_SIZES[name], f"{name}'s published split (not packed yet)")
    return 0, 0, "unknown (not packed yet)"


def run_flops(cfg: Config, first_epoch: int, flops: dict[str, float]) -> tuple[float, int]:
    """(FLOPs, epochs) of training ``cfg`` from ``first_epoch`` to its last epoch: every step, the validation subset
    each epoch and the full validation split at the end."""
    n_train, n_val, _ = split_sizes(cfg)
    t = cfg.train
    total = 0.0
    for epoch in range(first_epoch, t.epochs):
        if t.procedure == "content":
            stage = "content"
        else:
            stage = "bootstrap" if epoch < t.bootstrap_epochs or not t.adversarial else "adversarial"
        total += n_train * cfg.data.train_passes * flops[stage]
        total += min(cfg.data.val_subset, n_val) * flops["validate"]
    return total + n_val * flops["validate"], t.epochs - first_epoch


def inputs(cfg: Config) -> list[str]:
    """The plan's inputs: the shards and the VGG-16 weights, each a path or MISSING with what makes it."""
    from salnet.models.weights import WeightsError, canonical, resolve_weights
    from salnet.train.checks import uses_vgg_weights

    shards = Path(cfg.data.shards)
    lines = [f"  shards   {shards}" if (shards / "manifest.json").is_file() else
             f"  shards   MISSING {shards} — make it with `python jobs/pack.py {shards.name.split('-')[0]} --root RAW "
             f"--out {shards}`"]
    if not uses_vgg_weights(cfg):
        lines.append("  weights  not read (train.init_from gives every weight)")
        return lines
    spec = canonical(cfg.model.weights)
    try:
        path = resolve_weights(spec, download=False)
        lines.append(f"  weights  {spec}: {path}" if path else "  weights  random (model.weights=random)")
    except WeightsError as exn:
        lines.append(f"  weights  MISSING {spec}: {exn}")
    return lines


def feature_cache(cfg: Config) -> Path | None:
    """The loss-study network's feature cache a run of ``cfg`` reads (``data.features``), or None: the encoder then
    runs every step."""
    if cfg.model.arch != "aspp":
        return None
    from salnet.data.features import resolve

    return resolve(cfg.data.features, cfg.data.shards, cfg.data.input_size)


def inputs_cache(cfg: Config, cache: Path | None) -> list[str]:
    if cfg.model.arch != "aspp":
        return []
    if cache is None:
        return [f"  features none (data.features={cfg.data.features}: the frozen encoder runs every step; "
                "`python jobs/pack.py features --shards SHARDS` makes the cache, 6.8× fewer FLOPs a step)"]
    return [f"  features {cache} (the head alone trains: the encoder's taps are read from it)"]


def describe_sweep(folder: SweepFolder, plan: SweepPlan, trials: list[dict], verbose: bool = False) -> str:
    """The dry run's plan of a sweep (see the module docstring)."""
    spec, r = plan.spec, plan.resources
    base = trial_run_config(spec, {}, plan.overrides, None)
    stages = shared_stages(spec, trials, plan.overrides, folder.stages_dir)
    where = {i: run_dir for run_dir, (_, users) in stages.items() for i in users}
    lines = [f"sweep {spec.name} ({spec.path}) → {folder.path}",
             f"search: {spec.search.algorithm}, {len(trials)} trial(s), {spec.metric} {spec.mode}, "
             f"{spec.scheduler.name} scheduler, {spec.budget.max_concurrent} at once, {spec.budget.retries} retries",
             "inputs:", *inputs(base)]
    from salnet.train.flops import training_flops

    cache = feature_cache(base)
    lines += inputs_cache(base, cache)
    flops = training_flops(base, cached=cache is not None)
    total, epochs = 0.0, 0
    if stages:
        lines.append("shared first stages (each trained once, its trials start from its last checkpoint):")
    for n, (run_dir, (stage, users)) in enumerate(stages.items()):
        f, e = run_flops(stage, 0, flops)
        total, epochs = total + f, epochs + e
        lines.append(f"  S{n} {run_dir.name}: {e} epoch(s) ({stage.train.procedure} bootstrap), trials "
                     f"{', '.join(str(i) for i in users)}")
    lines.append(f"trials (what differs from the base config; {base.name} preset + the sweep's overrides):")
    for i, params in enumerate(trials):
        cfg = trial_run_config(spec, params, plan.overrides, folder.stages_dir if i in where else None)
        start = cfg.train.bootstrap_epochs if i in where else 0
        f, e = run_flops(cfg, start, flops)
        total, epochs = total + f, epochs + e
        label = params.get(POINT, "")
        diff = " ".join(f"{k}={v}" for k, v in differences(cfg, base).items()) or "(the base config)"
        stage_note = f" after S{list(stages).index(where[i])}" if i in where else ""
        lines.append(f"  {i:>3} {label:<18} {diff}  — {e} epoch(s){stage_note}")
    driver = f"Slurm partition {plan.driver_partition or '(default)'}" if r.backend == "slurm" else "this process"
    lines.append(f"jobs ({r.backend}): a driver (Ray Tune; {driver}), {len(stages)} stage job(s) then "
                 f"{len(trials)} trial job(s): {describe_job(r)}"
                 + (f"; the final evaluation on the {plan.split} split (1 GPU)" if plan.evaluate else ""))
    n_train, _, source = split_sizes(base)
    hours = total / (TARGET_TFLOPS * 1e12) / 3600
    pflop = f"{total / 1e15:,.{0 if total >= 1e17 else 2}f}"
    lines.append(f"compute: {epochs} epochs of {n_train} training images ({source}); "
                 f"{pflop} PFLOP ≈ {hours:,.1f} GPU-hours at {TARGET_TFLOPS:.0f} TFLOP/s per GPU (the "
                 "2,000 img/s target of the adversarial step; no GPU rate measured yet), "
                 + ("an upper bound: ASHA stops trials early" if spec.scheduler.name == "asha" else
                    "every trial to its last epoch"))
    if verbose:
        for i, params in enumerate(trials):
            cfg = trial_run_config(spec, params, plan.overrides, folder.stages_dir if i in where else None)
            lines += [f"\n--- trial {i}: {params}", yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip()]
    return "\n".join(lines)


def describe_job(r: JobResources) -> str:
    return (f"partition {r.partition}, {r.nodes} node(s) × {r.gpus_per_node} GPU(s), {r.cpus_per_task} CPUs/task, "
            f"{r.time_min} min, mem {r.mem_gb or 'default'} GB")
