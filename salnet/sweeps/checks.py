"""The checks of a sweep file (:func:`salnet.sweeps.load.load_sweep` runs them): each problem as (dotted key, message),
the key locating the line the error names.

The space's keys and values are checked against the base config's fields by building the config at the space's
bounds; every point's values likewise; references name metrics; budgets and resources are in range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salnet.config import ConfigError, set_values
from salnet.metric_names import METRIC_NAMES, higher_is_better
from salnet.sweeps.spec import (
    ALGORITHMS,
    DISTRIBUTIONS,
    SCHEDULERS,
    SWEEPS_DIR,
    SweepSpec,
    base_config,
    point_values,
)
from salnet.sweeps.stats import point_label


def _check_dist(key: str, dist: Any) -> str | None:
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        return (f"space.{key}: expected one of {{{', '.join(DISTRIBUTIONS)}}} with its arguments, e.g. "
                f"{{loguniform: [0.001, 1.0]}}, got {dist!r}")
    kind, args = next(iter(dist.items()))
    if not isinstance(args, list) or not args:
        return f"space.{key}.{kind}: expected a non-empty list, got {args!r}"
    if kind in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
            return f"space.{key}.{kind}: expected [low, high] numbers, got {args!r}"
        lo, hi = args
        if not lo < hi:
            return f"space.{key}.{kind}: low {lo} must be below high {hi}"
        if kind == "loguniform" and lo <= 0:
            return f"space.{key}.loguniform: bounds must be > 0, got {args!r}"
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            return f"space.{key}.randint: bounds must be integers, got {args!r}"
    return None


def dist_values(dist: dict) -> list:
    """Representative values of a distribution (its bounds, or every listed value), for type checks."""
    kind, args = next(iter(dist.items()))
    return list(args) if kind in ("choice", "grid") else [args[0], args[1] - (1 if kind == "randint" else 0)]


def check_spec(spec: SweepSpec, base_dir: Path = SWEEPS_DIR) -> list[tuple[str, str]]:
    """Problems of a parsed spec as (dotted key, message); empty when it is sound. The space's keys and
    values are checked against the base config's fields by building the config at the space's bounds."""
    errs: list[tuple[str, str]] = []
    if spec.metric not in METRIC_NAMES:
        errs.append(("metric", f"metric {spec.metric!r} is not a metric; choose one of {', '.join(METRIC_NAMES)}"))
    if spec.mode not in ("max", "min"):
        errs.append(("mode", f"mode {spec.mode!r}: choose max or min"))
    elif spec.metric in METRIC_NAMES and (spec.mode == "max") != higher_is_better(spec.metric):
        better = "higher" if higher_is_better(spec.metric) else "lower"
        errs.append(("mode", f"mode {spec.mode!r} optimises {spec.metric} the wrong way ({better} is better)"))
    if spec.search.algorithm not in ALGORITHMS:
        errs.append(("search.algorithm", f"unknown search algorithm {spec.search.algorithm!r}; choose one of "
                                         f"{', '.join(ALGORITHMS)}"))
    if spec.scheduler.name not in SCHEDULERS:
        errs.append(("scheduler.name", f"unknown scheduler {spec.scheduler.name!r}; choose one of "
                                       f"{', '.join(SCHEDULERS)}"))
    for key, v, low in (("scheduler.grace_period", spec.scheduler.grace_period, 1),
                        ("scheduler.reduction_factor", spec.scheduler.reduction_factor, 2),
                        ("budget.trials", spec.budget.trials, 1),
                        ("budget.max_concurrent", spec.budget.max_concurrent, 1),
                        ("budget.retries", spec.budget.retries, 0), ("resources.nodes", spec.resources.nodes, 1),
                        ("resources.gpus_per_trial", spec.resources.gpus_per_trial, 0),
                        ("resources.cpus_per_task", spec.resources.cpus_per_task, 1),
                        ("resources.time_min", spec.resources.time_min, 1)):
        if v < low:
            errs.append((key, f"{key} must be ≥ {low}, got {v}"))
    errs += _check_reference(spec.reference)
    if spec.fixed and spec.search.algorithm != "random":
        errs.append(("fixed", "fixed trials belong to a random search (a grid or points sweep lists them itself)"))
    for i, values in enumerate(spec.fixed):
        if not isinstance(values, dict) or set(values) != set(spec.space):
            errs.append(("fixed", f"fixed[{i}]: give a value to each key of the space ({', '.join(spec.space)}), "
                                  f"got {values!r}"))
    seeds = [spec.seeds] if isinstance(spec.seeds, int) else spec.seeds
    if isinstance(spec.seeds, int) and spec.seeds < 1:
        errs.append(("seeds", f"seeds {spec.seeds}: give a count ≥ 1 or a list of seeds"))
    elif not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        errs.append(("seeds", f"seeds {spec.seeds}: a list of distinct seeds ≥ 0"))
    elif "train.seed" in spec.space or any("train.seed" in p for p in spec.points):
        errs.append(("seeds", "seeds repeat every point with train.seed: leave train.seed out of space and points"))
    labels = [p.get("label") for p in spec.points if isinstance(p, dict)]
    # a fixed trial is named as the summary names a random search's points: key=value of its values
    labels += [point_label(v) for v in spec.fixed if isinstance(v, dict)]
    if spec.control not in (None, "best", *labels):
        errs.append(("control", f"control {spec.control!r}: name a point's label ({', '.join(map(str, labels))}) or "
                                "best" if labels else f"control {spec.control!r}: without points or fixed trials, "
                                                      "only best"))
    if spec.search.algorithm == "points":
        if spec.space:
            errs.append(("space", "a points sweep takes its trials from `points`; leave `space` out"))
        errs += _check_points(spec.points)
    elif spec.points:
        errs.append(("points", "points are run by `search: {algorithm: points}`"))
    elif not spec.space:
        errs.append(("space", "the search space is empty: name at least one dotted config key"))
    for key, dist in spec.space.items():
        msg = _check_dist(key, dist)
        if msg:
            errs.append((f"space.{key}", msg))
        elif spec.search.algorithm == "grid" and next(iter(dist)) != "grid":
            errs.append((f"space.{key}", f"space.{key}: grid search takes only {{grid: [...]}} entries"))
    if errs:
        return errs
    try:
        base = base_config(spec, base_dir)
    except ConfigError as exn:
        return [("base", str(exn))]
    try:
        base = set_values(base, spec.overrides)
    except ConfigError as exn:
        return [(f"overrides.{exn.key}" if exn.key else "overrides", f"overrides: {exn}")]
    for key, dist in spec.space.items():
        for v in dist_values(dist):
            try:
                set_values(base, {key: v})
            except ConfigError as exn:
                return [(f"space.{key}", f"space: {exn}")]
    for values in spec.fixed:
        try:
            set_values(base, values)
        except ConfigError as exn:
            return [("fixed", f"fixed: {exn}")]
    for point in spec.points:
        try:
            set_values(base, point_values(point))
        except ConfigError as exn:
            return [("points", f"points: {point['label']!r}: {exn}")]
    return []


def _check_points(points: list) -> list[tuple[str, str]]:
    if not points:
        return [("points", "a points sweep needs a non-empty `points` list of {label: ..., <dotted key>: value}")]
    labels = []
    for i, point in enumerate(points):
        if not isinstance(point, dict) or not isinstance(point.get("label"), str) or len(point) < 2:
            return [("points", f"points[{i}]: expected {{label: <text>, <dotted key>: value, ...}}, got {point!r}")]
        labels.append(point["label"])
    dup = sorted({x for x in labels if labels.count(x) > 1})
    return [("points", f"points: labels must be unique, repeated: {dup}")] if dup else []


def _check_reference(rows: list) -> list[tuple[str, str]]:
    errs = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("label"), str):
            errs.append(("reference", f"reference[{i}]: expected {{label: <text>, source: <text>, <metric>: value}}, "
                                      f"got {row!r}"))
            continue
        for k, v in row.items():
            if k in ("label", "source", "dataset"):
                if not isinstance(v, str):
                    errs.append(("reference", f"reference[{i}]: {k} must be text, got {v!r}"))
                continue
            if k not in METRIC_NAMES:
                errs.append(("reference", f"reference[{i}] ({row['label']}): {k!r} is not a metric; choose from "
                                          f"{', '.join(METRIC_NAMES)}"))
            elif isinstance(v, bool) or not isinstance(v, int | float):
                errs.append(("reference", f"reference[{i}] ({row['label']}): {k} must be a number, got {v!r}"))
    return errs
