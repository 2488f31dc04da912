"""A sweep file's schema: the typed dataclasses a ``sweeps/*.yaml`` file is read into (:class:`SweepSpec`), its
constants, and the base config a sweep starts from. Reading and checking the file: :mod:`salnet.sweeps.load` and
:mod:`salnet.sweeps.checks`; both import this module, which imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salnet.config import PRESETS, Config, ConfigError, load_config

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"  # the repository's sweeps/, not this package
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")
ALGORITHMS = ("random", "grid", "points")
POINT = "point"  # the one parameter of a points sweep's trials: the point's label
SCHEDULERS = ("asha", "fifo")


class SweepError(ValueError):
    """A malformed sweep file; the message names the file and the line at fault."""


@dataclass
class Search:
    algorithm: str = "random"  # random: sample the distributions | grid: every combination of grid values |
    #                            points: every entry of ``points``
    seed: int = 0


@dataclass
class Scheduler:
    name: str = "asha"  # asha: stop the worse trials at rungs | fifo: run every trial to the end
    grace_period: int = 1  # epochs a trial runs before it can be stopped
    reduction_factor: int = 3  # ASHA keeps the best 1/reduction_factor at each rung


@dataclass
class Budget:
    trials: int = 8  # random search: trials sampled; grid: repetitions of the grid
    max_concurrent: int = 4  # trials (jobs) running at once
    retries: int = 2  # resubmissions of a failed trial job before the trial is marked failed


@dataclass
class Resources:
    gpus_per_trial: int = 1  # one DDP task per GPU
    nodes: int = 1
    cpus_per_task: int = 8
    mem_gb: float | None = None
    time_min: int = 1440
    max_num_timeout: int = 3  # requeues after a timeout / preemption


@dataclass
class SweepSpec:
    name: str = ""
    description: str = ""
    base: str = "salgan"  # a preset (salgan | loss_study) or a config YAML relative to the sweep file
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted config keys set before the space
    space: dict[str, Any] = field(default_factory=dict)  # dotted key → {uniform|loguniform|randint: [lo, hi]}
    #                                                      or {choice|grid: [values]}
    points: list[dict[str, Any]] = field(default_factory=list)  # {label, <dotted key>: value, ...} (points search)
    reference: list[dict[str, Any]] = field(default_factory=list)  # {label, source, <metric>: value} (a paper's)
    control: str | None = None  # the point the final evaluation compares every other point with: a point's
    #                             label, or "best" (also when unset): the best point by `metric`
    search: Search = field(default_factory=Search)
    metric: str = "cc"  # validation metric reported each epoch (salnet.metrics names)
    mode: str = "max"
    scheduler: Scheduler = field(default_factory=Scheduler)
    budget: Budget = field(default_factory=Budget)
    resources: Resources = field(default_factory=Resources)
    # trials that share a first stage (SalGAN's bootstrap: the same config outside the adversarial stage's keys)
    # start from one run of it, trained once by the driver before the search (salnet.train.stages)
    share_stages: bool = True
    # every point or sample repeated with these seeds (train.seed: initialisation, data order, dropout): N (the
    # seeds 0 … N−1) or a list; one seed (the default) adds no parameter
    seeds: int | list[int] = 1
    # a random search's fixed trials, run first and besides its budget.trials samples: each gives every key of the
    # space a value (e.g. the paper's α = 0.05, the control the samples are compared with)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""  # where it was read from (filled in by load_sweep)


def point_values(point: dict[str, Any]) -> dict[str, Any]:
    """A point's dotted config keys and values (its label left out)."""
    return {k: v for k, v in point.items() if k != "label"}


def base_config(spec: SweepSpec, base_dir: Path | None = None) -> Config:
    """The preset or config file the sweep starts from (before its overrides)."""
    if spec.base in PRESETS:
        return PRESETS[spec.base]()
    path = Path(spec.base)
    if not path.is_absolute():
        path = (base_dir or Path(spec.path or SWEEPS_DIR / "x").parent) / path
    if not path.is_file():
        raise ConfigError(f"base {spec.base!r} is neither a preset ({', '.join(PRESETS)}) nor a config file "
                          f"({path} not found)")
    return load_config(path)
