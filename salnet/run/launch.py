"""Launch a hyper-parameter sweep or one training run on Slurm, on this machine, or in this process
(``jobs/launch.py``).

    launch_sweep("alpha", ["train.epochs=10"], LaunchOptions(partition="gpu"))   # the driver as a Slurm job
    launch_sweep("alpha", [], LaunchOptions(backend="local", tiny=True, trials=3))  # everything here
    launch_train("salgan", ["train.alpha=0.1"], LaunchOptions(partition="gpu"))    # one (DDP) run

Everything that can be wrong (an unknown sweep or config key, a partition not in ``sinfo``, missing shards, a
malformed time) is an error before anything is submitted or written. The same sweep (same file, same
overrides) always gets the same folder, so relaunching it resumes it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from salnet.config import git_sha, to_dict
from salnet.logs import get_logger
from salnet.run import LaunchError
from salnet.run.driver import DriverJob, planned_trials, run_sweep
from salnet.run.jobs import TrainJob
from salnet.run.plan import describe_job, describe_sweep, inputs
from salnet.run.slurm import ACTIVE, check_partition, slurm_partitions, slurm_states
from salnet.run.submission import job_record, make_executor, submit
from salnet.run.train import check_inputs, ensure_debug_data, override_values, run_config
from salnet.sweeps.folder import JobRecord, JobResources, SweepFolder, SweepPlan
from salnet.sweeps.load import Resources, load_sweep, trial_config, with_budget, with_points, with_seeds

log = get_logger(__name__)


@dataclass
class LaunchOptions:
    """jobs/launch.py's flags. None: the sweep's ``resources`` / ``budget`` (or, for one run, their defaults)."""

    backend: str = "slurm"  # slurm | local (driver here, jobs as processes) | debug (jobs in this process)
    partition: str | None = None  # of the training jobs
    driver_partition: str | None = None  # of the sweep's driver job (default: Slurm's default partition)
    driver_cpus: int = 2
    gpus_per_node: int | None = None
    nodes: int | None = None
    cpus_per_task: int | None = None
    time: str | None = None  # per job: minutes, H:M:S or D-H:M:S
    mem: float | None = None  # GB per node
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    max_concurrent: int | None = None
    trials: int | None = None
    seeds: int | None = None  # every point or sample with this many seeds (None: the sweep file's)
    points: list[str] | None = None  # a points sweep: run only the points with these labels
    max_num_timeout: int | None = None
    split: str = "test"  # scored by the final evaluation
    no_evaluate: bool = False
    out: Path = Path("runs")
    tiny: bool = False  # tiny network on generated data: a smoke run of the whole pipeline
    dry_run: bool = False  # print the plan (trials, stages, inputs, jobs, GPU-hours); ask Slurm nothing, write nothing
    verbose: bool = False  # with dry_run: every trial's full config too


def parse_time(text: str) -> int:
    """Slurm's time formats → minutes (seconds round up): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m or not any(int(g or 0) for g in m.groups()):
        raise LaunchError(f"--time {text!r}: use a positive time: minutes (90), HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()  # a always matches
    if days is None and c is None:  # M or M:S
        h, mi, s = 0, int(a), int(b or 0)
    else:  # H:M:S, D-H, D-H:M, D-H:M:S
        h, mi, s = int(a), int(b or 0), int(c or 0)
    return max(int(days or 0) * 1440 + h * 60 + mi + (s > 0), 1)


# (flag, LaunchOptions field, lowest allowed value)
OPTION_RANGES = (("--trials", "trials", 1), ("--seeds", "seeds", 1), ("--max-concurrent", "max_concurrent", 1),
                 ("--nodes", "nodes", 1),
                 ("--gpus-per-node", "gpus_per_node", 0), ("--cpus-per-task", "cpus_per_task", 1),
                 ("--driver-cpus", "driver_cpus", 1), ("--max-num-timeout", "max_num_timeout", 0))


def check_options(opts: LaunchOptions) -> None:
    """A LaunchError naming the first flag out of its range (one line), before anything is read or written."""
    for flag, name, low in OPTION_RANGES:
        value = getattr(opts, name)
        if value is not None and value < low:
            raise LaunchError(f"{flag} {value}: must be an integer ≥ {low}")
    if opts.mem is not None and not opts.mem > 0:
        raise LaunchError(f"--mem {opts.mem}: must be a positive number of GB per node")
    if opts.time is not None:
        parse_time(opts.time)


def check_gpus(resources: JobResources, cfg) -> None:
    """A Slurm job without a GPU would train the full-size network on CPUs for days: refused unless the network is
    a narrow one (``--tiny``, ``model.width`` < 1)."""
    if resources.backend == "slurm" and resources.gpus_per_node < 1 and cfg.model.width >= 1.0:
        raise LaunchError(f"--gpus-per-node {resources.gpus_per_node}: the full-size network needs at least one GPU "
                          "per node on Slurm (a CPU-only job is for --tiny smoke runs)")


def job_resources(opts: LaunchOptions, spec_resources: Resources | None = None) -> JobResources:
    """Each training job's resources: the flags given, else the sweep's ``resources``, else their defaults."""
    r = spec_resources or Resources()

    def pick(flag, default):
        return default if flag is None else flag

    return JobResources(backend=opts.backend, partition=opts.partition, nodes=pick(opts.nodes, r.nodes),
                        gpus_per_node=pick(opts.gpus_per_node, r.gpus_per_trial),
                        cpus_per_task=pick(opts.cpus_per_task, r.cpus_per_task),
                        time_min=parse_time(opts.time) if opts.time else r.time_min, mem_gb=pick(opts.mem, r.mem_gb),
                        account=opts.account, qos=opts.qos, constraint=opts.constraint,
                        max_num_timeout=pick(opts.max_num_timeout, r.max_num_timeout))


def check_slurm(opts: LaunchOptions, driver: bool) -> str | None:
    """--backend slurm: the partitions named exist; returns the driver's partition (Slurm's default unless
    given) when ``driver``."""
    if opts.backend != "slurm":
        return opts.driver_partition
    known, default = slurm_partitions()
    check_partition(opts.partition, known, "--partition")
    if not driver:
        return None
    check_partition(opts.driver_partition or default, known, "--driver-partition")
    return opts.driver_partition or default


def launch_sweep(sweep: str, overrides: list[str], opts: LaunchOptions) -> SweepFolder:
    """Check, plan and start a sweep: on Slurm its driver is submitted as a job (this returns at once), else the
    driver runs here until the sweep and its evaluation end. Returns the sweep's folder."""
    check_options(opts)
    spec = with_budget(with_seeds(with_points(load_sweep(sweep), opts.points), opts.seeds), trials=opts.trials,
                       max_concurrent=opts.max_concurrent)
    values = override_values(overrides, debug=opts.tiny)
    base = trial_config(spec, {}, values)  # unknown keys / bad values fail here
    resources = job_resources(opts, spec.resources)
    check_gpus(resources, base)
    trials = planned_trials(spec)
    for params in trials:  # every trial's values in range before anything is written
        trial_config(spec, params, values)
    ensure_debug_data(base)
    if opts.dry_run:  # a plan: no Slurm, no data or weights needed (they show as MISSING)
        if opts.backend == "slurm":
            log.info("dry run: Slurm is not asked (partitions not checked)")
        values["data.shards"] = str(Path(base.data.shards).resolve())
        folder = SweepFolder.of(spec, values, opts.out)
        plan = SweepPlan(spec=spec, overrides=values, resources=resources, driver_partition=opts.driver_partition,
                         evaluate=not opts.no_evaluate, split=opts.split)
        log.info(describe_sweep(folder, plan, trials, verbose=opts.verbose))
        return folder
    for params in trials:  # weights: each distinct setting resolved once (fetched now, on the login node)
        cfg = trial_config(spec, params, values)
        if (cfg.model.weights, cfg.train.init_from) != (base.model.weights, base.train.init_from):
            check_inputs(cfg, f"sweep {spec.name}", shards=False)
    check_inputs(base, f"sweep {spec.name}")
    driver_partition = check_slurm(opts, driver=True)
    # trial jobs and the evaluation may start in another directory: name the shards absolutely
    values["data.shards"] = str(Path(base.data.shards).resolve())
    folder = SweepFolder.of(spec, values, opts.out)
    plan = SweepPlan(spec=spec, overrides=values, resources=resources, driver_partition=driver_partition,
                     evaluate=not opts.no_evaluate, split=opts.split)
    refuse_if_running(folder)
    folder.write_plan(dataclasses.replace(plan, meta={
        "sweep_id": folder.path.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv,
        "git_sha": git_sha()}))
    log.info(f"sweep folder: {folder.path}")
    log.info(f"tensorboard --logdir {folder.path}")
    if opts.backend == "slurm":
        rounds = max(1, math.ceil(len(trials) / spec.budget.max_concurrent))  # trials run max_concurrent at once
        driver = JobResources(backend="slurm", partition=driver_partition, gpus_per_node=0,
                              cpus_per_task=opts.driver_cpus, time_min=resources.time_min * rounds + 60, mem_gb=4,
                              account=opts.account, qos=opts.qos, max_num_timeout=resources.max_num_timeout)
        job = submit(make_executor(folder.jobs_dir, driver, f"{spec.name}-driver"), DriverJob(), str(folder.path))
        folder.update_state(status="submitted", driver=job_record(job, "slurm"))
        log.info(f"driver job {job.job_id} on {driver_partition}: {len(trials)} trial(s) on {resources.partition}; "
                 f"follow with `python jobs/status.py {folder.path}`")
        return folder
    folder.update_state(status="running", driver=JobRecord(id=str(os.getpid()), backend="process"))
    result = run_sweep(folder)
    log.info(f"sweep {spec.name}: {result['trials']}; best {result['best']}")
    if result["summary"]:
        log.info(f"summary: {folder.summary_md}")
    log.info(f"tensorboard --logdir {folder.tb_dir}")
    return folder


def refuse_if_running(folder: SweepFolder) -> None:
    """A LaunchError when the sweep's driver job is still queued or running on Slurm."""
    state = folder.read_state()
    driver = state.driver
    if driver is None or driver.backend != "slurm" or state.status not in ("submitted", "running", "evaluating"):
        return
    if slurm_states([driver.id]).get(driver.id) in ACTIVE:
        raise LaunchError(f"sweep {folder.path.name} is already running (driver job {driver.id}); "
                              f"`python jobs/status.py {folder.path}` shows it, "
                              f"`python jobs/cancel.py {folder.path}` stops it")


def launch_train(train: str, overrides: list[str], opts: LaunchOptions) -> Path:
    """One (DDP) training run of a preset or config YAML as a job; on Slurm this returns once it is submitted,
    otherwise once it ends. Returns the run folder."""
    check_options(opts)
    cfg = run_config(train, overrides, debug=opts.tiny)
    resources = job_resources(opts)
    check_gpus(resources, cfg)
    from salnet.train.loop import run_dir_for

    run_dir = (opts.out / run_dir_for(cfg).name).resolve()
    if opts.dry_run:
        ensure_debug_data(cfg)
        log.info(f"training job ({opts.backend}): {describe_job(resources)} → {run_dir}")
        log.info("\n".join(["inputs:", *inputs(cfg)]))
        if opts.verbose:
            log.info(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
        return run_dir
    check_inputs(cfg, "--train")
    check_slurm(opts, driver=False)
    job = submit(make_executor(opts.out / "jobs", resources, cfg.name), TrainJob(), to_dict(cfg), str(run_dir))
    log.info(f"job {job.job_id} ({opts.backend}) → {run_dir}")
    log.info(f"tensorboard --logdir {run_dir / 'tb'}")
    if opts.backend != "slurm":  # local and debug: wait here (debug runs it now, in this process)
        log.info(job.results()[0])
    return run_dir
