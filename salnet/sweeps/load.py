"""Sweep definitions (``sweeps/*.yaml``): a base config, a search space over dotted config keys (or a list of
labelled points), the search algorithm, the metric and mode, the early-stopping scheduler, the budget, the
resources per trial and the papers' reported numbers.

    spec = load_sweep("sweeps/alpha.yaml")           # schema-checked; errors name the file and line
    cfg = trial_config(spec, {"train.alpha": 0.1})   # the base config + overrides + the trial's values
    cfg = trial_config(spec, {"point": "BCE/4"})     # a points sweep: the values of the point labelled BCE/4

A points sweep (``search: {algorithm: points}``) runs each entry of ``points`` — ``{label: ..., <dotted key>:
value, ...}``, e.g. a whole loss spec — once per ``budget.trials``; its trials' only parameter is ``point``, the
label. ``reference`` rows carry a paper's reported numbers (``{label, source, dataset, <metric>: value}``); the
final evaluation prints them next to the trials run on that dataset, matched by label.

This module only describes a sweep; the search itself (Ray Tune) and the jobs (submitit) live in salnet.run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

from salnet.config import Config, ConfigError, config_hash, from_dict, set_values, to_dict
from salnet.sweeps.checks import check_spec
from salnet.sweeps.spec import (  # noqa: F401 — the schema's names, imported from here by the rest of salnet
    ALGORITHMS,
    DISTRIBUTIONS,
    POINT,
    SCHEDULERS,
    SWEEPS_DIR,
    Budget,
    Resources,
    Scheduler,
    Search,
    SweepError,
    SweepSpec,
    base_config,
    point_values,
)
from salnet.train.checks import check_config
from salnet.train.stages import first_stage

# ---------------------------------------------------------------------------- YAML with line numbers


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Dotted key path → 1-based line of that key in the composed YAML (top-level and nested mappings;
    keys of ``space``/``overrides`` contain dots themselves and are kept whole)."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            out.update(_key_lines(v, path))
    return out


def _line_of(lines: dict[str, int], key: str | None) -> int | None:
    """The line of ``key`` or of its longest known prefix."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


def sweep_path(name_or_path: str | Path) -> Path:
    """``alpha`` → sweeps/alpha.yaml; a path is taken as it is. Unknown names list the sweeps there are."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise SweepError(f"sweep file {p} not found")
        return p
    cand = SWEEPS_DIR / f"{name_or_path}.yaml"
    if not cand.is_file():
        known = ", ".join(sorted(f.stem for f in SWEEPS_DIR.glob("*.yaml"))) or "none"
        raise SweepError(f"unknown sweep {str(name_or_path)!r}: no {cand}; sweeps there: {known}")
    return cand


def load_sweep(name_or_path: str | Path) -> SweepSpec:
    """Read and check a sweep file; raises :class:`SweepError` naming ``file:line`` and the problem."""
    path = sweep_path(name_or_path)
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exn:
        mark = getattr(exn, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SweepError(f"{where}: not valid YAML ({getattr(exn, 'problem', exn)})") from None
    lines = _key_lines(node) if node is not None else {}

    def fail(key: str | None, msg: str):
        line = _line_of(lines, key)
        raise SweepError(f"{path}:{line}: {msg}" if line else f"{path}: {msg}")

    if not isinstance(data, dict):
        fail(None, "a sweep file is a mapping (name, base, space, metric, ...)")
    data.setdefault("name", path.stem)
    try:
        spec = from_dict(SweepSpec, {k: v for k, v in data.items() if k != "path"})
    except ConfigError as exn:
        fail(exn.key, str(exn).replace("config key", "sweep key"))
    spec.path = str(path)
    for key, msg in check_spec(spec, base_dir=path.parent):
        fail(key, msg)
    return spec


# ---------------------------------------------------------------------------- trial configs


def trial_values(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as dotted config keys: a points sweep's ``{"point": label}`` becomes that point's
    values; other parameters are dotted keys already."""
    if POINT not in params:
        return dict(params)
    by_label = {p["label"]: p for p in spec.points}
    if params[POINT] not in by_label:
        raise ConfigError(f"sweep {spec.name}: no point labelled {params[POINT]!r}; points: {', '.join(by_label)}")
    rest = {k: v for k, v in params.items() if k != POINT}
    return {**point_values(by_label[params[POINT]]), **rest}


def trial_config(spec: SweepSpec, params: dict[str, Any], extra: dict[str, Any] | None = None) -> Config:
    """Base config → the sweep's overrides → ``extra`` (the launcher's overrides) → the trial's values."""
    cfg = set_values(base_config(spec), spec.overrides)
    cfg = set_values(cfg, extra or {})
    return check_config(set_values(cfg, trial_values(spec, params)))


def trial_run_config(spec: SweepSpec, params: dict[str, Any], extra: dict[str, Any] | None,
                     stages_dir: Path | None) -> Config:
    """:func:`trial_config`, and when the sweep shares stages and the trial has one (:func:`first_stage`), its
    ``train.init_from`` set to that stage's run folder under ``stages_dir`` (:func:`stage_dir`)."""
    cfg = trial_config(spec, params, extra)
    stage = first_stage(cfg) if spec.share_stages and stages_dir is not None else None
    if stage is None or stages_dir is None:
        return cfg
    return set_values(cfg, {"train.init_from": str(stage_dir(stages_dir, stage))})


def stage_dir(stages_dir: Path, stage: Config) -> Path:
    """The run folder of a shared first stage: ``<stages_dir>/<name>-bootstrap-<run id>``."""
    return Path(stages_dir) / f"{stage.name}-bootstrap-{config_hash(stage)}"


def shared_stages(spec: SweepSpec, trials: list[dict[str, Any]], extra: dict[str, Any] | None,
                  stages_dir: Path) -> dict[Path, tuple[Config, list[int]]]:
    """The first stages the ``trials`` (their params, in order) share: run folder → (stage config, indices of the
    trials that start from it). Empty when the sweep does not share stages or no trial has one."""
    out: dict[Path, tuple[Config, list[int]]] = {}
    if not spec.share_stages:
        return out
    for i, params in enumerate(trials):
        stage = first_stage(trial_config(spec, params, extra))
        if stage is not None:
            out.setdefault(stage_dir(stages_dir, stage), (stage, []))[1].append(i)
    return out


def grid_size(spec: SweepSpec) -> int:
    """Trials a grid or points sweep runs: the grid's combinations (or the points) times ``budget.trials``."""
    seeds = len(seed_values(spec))
    if spec.search.algorithm == "points":
        return spec.budget.trials * len(spec.points) * seeds
    return spec.budget.trials * math.prod(len(next(iter(d.values()))) for d in spec.space.values()) * seeds


def samples(spec: SweepSpec) -> int:
    """The search's samples before the seeds: ``budget.trials``, plus a random search's fixed trials."""
    return spec.budget.trials + len(spec.fixed)


SEED = "train.seed"


def seed_values(spec: SweepSpec) -> list[int]:
    """The seeds every point or sample runs with: ``seeds: N`` → 0 … N−1, a list as it is."""
    return list(range(spec.seeds)) if isinstance(spec.seeds, int) else list(spec.seeds)


def search_space(spec: SweepSpec) -> dict[str, dict[str, list]]:
    """The distributions the search samples, ``{key: {kind: args}}``: the space, or for a points sweep one grid
    over the points' labels (key ``point``); with several seeds, a grid over ``train.seed`` too (the search keeps a
    random sample's values the same for each seed)."""
    space = {POINT: {"grid": [p["label"] for p in spec.points]}} if spec.search.algorithm == "points" \
        else dict(spec.space)
    seeds = seed_values(spec)
    if len(seeds) > 1:
        space[SEED] = {"grid": seeds}
    return space


def sweep_id(spec: SweepSpec, extra: dict[str, Any] | None = None) -> str:
    """``<name>-<12 hex>``: a hash of the spec (without its path) and the launcher's overrides — relaunching
    the same sweep finds the same folder and resumes it."""
    doc = {k: v for k, v in to_dict(spec).items() if k != "path"}
    blob = json.dumps({"spec": doc, "extra": extra or {}}, sort_keys=True, separators=(",", ":"), default=str)
    return f"{spec.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def with_points(spec: SweepSpec, labels: list[str] | None) -> SweepSpec:
    """A copy of a points sweep keeping only the points labelled ``labels`` (in the file's order); None keeps all.
    An unknown label, or labels for a sweep without points, is a SweepError listing the labels there are."""
    if labels is None:
        return spec
    known = [p["label"] for p in spec.points]
    if not known:
        raise SweepError(f"sweep {spec.name} has no labelled points to choose from (search: {spec.search.algorithm})")
    unknown = [x for x in labels if x not in known]
    if unknown:
        raise SweepError(f"sweep {spec.name}: no point labelled {', '.join(map(repr, unknown))}; points: "
                         f"{', '.join(known)}")
    return dataclasses.replace(spec, points=[p for p in spec.points if p["label"] in labels])


def with_seeds(spec: SweepSpec, seeds: int | None) -> SweepSpec:
    """A copy running every point or sample with ``seeds`` seeds (0 … seeds−1); None keeps the file's."""
    if seeds is None:
        return spec
    if seeds < 1:
        raise SweepError(f"--seeds {seeds}: must be an integer ≥ 1")
    return dataclasses.replace(spec, seeds=seeds)


def with_budget(spec: SweepSpec, **changes: Any) -> SweepSpec:
    """A copy with ``budget`` fields replaced (``trials=3``, ``max_concurrent=1``); None leaves a field."""
    budget = dataclasses.replace(spec.budget, **{k: v for k, v in changes.items() if v is not None})
    return dataclasses.replace(spec, budget=budget)
