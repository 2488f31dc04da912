"""Launch a hyper-parameter sweep or one training run: on Slurm, on this machine, or in this process.

    python jobs/launch.py --partition gpu --sweep alpha                 # Ray Tune sweep, trials as Slurm jobs
    python jobs/launch.py --partition gpu --sweep alpha --dry-run       # print every job and trial config
    python jobs/launch.py --partition gpu --train salgan train.alpha=0.1   # one (DDP) training run
    python jobs/launch.py --backend local --sweep alpha --tiny --trials 3  # everything on this machine

--sweep NAME: sweeps/NAME.yaml (or a path). --train CONFIG: a preset (salgan, loss_study) or a config YAML.
Dotted overrides (``train.epochs=10``) apply to every trial. --backend slurm submits the sweep's driver to
--driver-partition (Slurm's default partition unless given) and returns; it prints the job ids, the sweep
folder and the tensorboard line. local runs the driver here and the trials as processes on this machine;
debug runs jobs in this process (``--train``: step through it in a debugger). Relaunching the same sweep
(same file, same overrides) resumes it in the same folder. --tiny: tiny network on generated data, for
smoke tests of the whole pipeline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from salnet.config import DEBUG_OVERRIDES, PRESETS, ConfigError, load_config, parse_overrides, set_values, to_dict
from salnet.sweep import SweepError, load_sweep, sweep_id, trial_config, with_budget

JOBS_DIR = Path(__file__).resolve().parent
TINY_DATA = Path("runs/tiny-data/synthetic")


class LaunchError(RuntimeError):
    """Bad launch arguments, found before anything is submitted."""


def parse_time(text: str) -> int:
    """Slurm's time formats → minutes (seconds round up): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise LaunchError(f"--time {text!r}: use minutes (90), HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is None:
        h, mi, s = (0, a, b or 0) if c is None else (a, b, c)
    else:
        h, mi, s = a, b or 0, c or 0
    return max((days or 0) * 1440 + h * 60 + mi + (s > 0), 1)


def slurm_partitions() -> tuple[list[str], str | None]:
    """(partitions, the default one) from ``sinfo``; a clear error when Slurm is not reachable."""
    if not shutil.which("sinfo"):
        raise LaunchError("--backend slurm: `sinfo` is not on PATH (not a Slurm login node?); use --backend local "
                          "to run on this machine")
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise LaunchError(f"sinfo failed: {out.stderr.strip() or out.returncode}; is Slurm up (SLURM_CONF)?")
    names = [p.strip() for p in out.stdout.split()]
    default = next((p.rstrip("*") for p in names if p.endswith("*")), None)
    return sorted({p.rstrip("*") for p in names}), default


def check_partition(name: str | None, known: list[str], flag: str) -> None:
    if name is None:
        raise LaunchError(f"{flag} is required with --backend slurm; partitions here: {', '.join(known)}")
    if name not in known:
        raise LaunchError(f"{flag} {name!r} is not a partition of this cluster (sinfo); partitions: "
                          f"{', '.join(known)}")


def check_shards(shards: str, what: str) -> None:
    if not (Path(shards) / "manifest.json").is_file():
        raise LaunchError(f"{what}: no shards at {shards} (manifest.json missing); pack a dataset first, e.g. "
                          f"`python jobs/pack.py salicon --root RAW --out {shards}`, or set data.shards=FOLDER "
                          "(--tiny generates a synthetic dataset)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--sweep", help="a sweep name (sweeps/NAME.yaml) or a sweep file")
    what.add_argument("--train", help="one run: a preset (salgan, loss_study) or a config YAML")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=10")
    ap.add_argument("--backend", choices=("slurm", "local", "debug"), default="slurm")
    ap.add_argument("--partition", help="Slurm partition of the training jobs")
    ap.add_argument("--driver-partition", help="Slurm partition of the sweep driver (default: Slurm's default)")
    ap.add_argument("--driver-cpus", type=int, default=2, help="CPUs of the sweep driver job (Ray + polling)")
    ap.add_argument("--gpus-per-node", type=int, help="GPUs (= DDP tasks) per node (default: the sweep's)")
    ap.add_argument("--nodes", type=int, help="nodes per training job (default: the sweep's, or 1)")
    ap.add_argument("--cpus-per-task", type=int, help="CPUs per task (default: the sweep's, or 8)")
    ap.add_argument("--time", help="time limit per job: minutes, HH:MM:SS or D-HH:MM:SS")
    ap.add_argument("--mem", type=float, help="memory per node in GB")
    ap.add_argument("--account")
    ap.add_argument("--qos")
    ap.add_argument("--constraint")
    ap.add_argument("--max-concurrent", type=int, help="trials running at once (default: the sweep's)")
    ap.add_argument("--trials", type=int, help="trials to sample (default: the sweep's budget)")
    ap.add_argument("--max-num-timeout", type=int, help="requeues of a job after a timeout or preemption")
    ap.add_argument("--split", default="test", help="split the final evaluation scores (default test)")
    ap.add_argument("--no-evaluate", action="store_true", help="no final evaluation job after the sweep")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="where sweep and run folders go")
    ap.add_argument("--tiny", action="store_true", help="tiny network and generated data (smoke runs)")
    ap.add_argument("--dry-run", action="store_true", help="print every job and trial config; submit nothing")
    return ap


def resources(args, spec=None) -> dict:
    r = spec.resources if spec is not None else None
    return {
        "backend": args.backend, "partition": args.partition, "driver_partition": args.driver_partition,
        "nodes": args.nodes or (r.nodes if r else 1),
        "gpus_per_node": args.gpus_per_node if args.gpus_per_node is not None else (r.gpus_per_trial if r else 1),
        "cpus_per_task": args.cpus_per_task or (r.cpus_per_task if r else 8),
        "time_min": parse_time(args.time) if args.time else (r.time_min if r else 1440),
        "mem_gb": args.mem if args.mem is not None else (r.mem_gb if r else None),
        "account": args.account, "qos": args.qos, "constraint": args.constraint,
        "max_num_timeout": (args.max_num_timeout if args.max_num_timeout is not None
                            else r.max_num_timeout if r else 3),
        "max_concurrent": spec.budget.max_concurrent if spec is not None else 1,
        "evaluate": not args.no_evaluate, "split": args.split,
    }


def tiny_overrides(args, overrides: dict) -> dict:
    if not args.tiny:
        return overrides
    tiny = parse_overrides(DEBUG_OVERRIDES)
    tiny.setdefault("data.shards", str(TINY_DATA))
    return {**tiny, **overrides}


def prepare_tiny(args, cfg) -> None:
    """--tiny on the default data: generate the synthetic shards once (at the config's input size)."""
    if args.tiny and cfg.data.shards == str(TINY_DATA):
        from salnet.data.synthetic import ensure_synthetic_shards

        ensure_synthetic_shards(TINY_DATA, size=tuple(cfg.data.input_size))


def launch_sweep(args, overrides: dict) -> int:
    spec = with_budget(load_sweep(args.sweep), trials=args.trials, max_concurrent=args.max_concurrent)
    overrides = tiny_overrides(args, overrides)
    base = trial_config(spec, {}, overrides)  # unknown keys / bad values fail here
    launch = resources(args, spec)
    if args.backend == "slurm":
        known, default = slurm_partitions()
        check_partition(args.partition, known, "--partition")
        launch["driver_partition"] = args.driver_partition or default
        check_partition(launch["driver_partition"], known, "--driver-partition")
    prepare_tiny(args, base)
    check_shards(base.data.shards, f"sweep {spec.name}")
    # trial jobs and the evaluation may start in another directory: name the shards absolutely
    overrides["data.shards"] = str(Path(base.data.shards).resolve())
    sweep_dir = (args.out / "sweeps" / sweep_id(spec, overrides)).resolve()

    from sweep_driver import planned_trials

    trials = planned_trials(spec)
    if args.dry_run:
        where = (f"Slurm partition {launch['driver_partition']}" if args.backend == "slurm" else "this process")
        print(f"sweep {spec.name} ({spec.path}) → {sweep_dir}")
        print(f"driver: Ray Tune in {where}; {spec.search.algorithm} search, {spec.scheduler.name} "
              f"(grace {spec.scheduler.grace_period} epochs), {spec.metric} {spec.mode}, "
              f"{launch['max_concurrent']} at once, {spec.budget.retries} retries")
        print(f"trial jobs ({args.backend}): partition {launch['partition']}, {launch['nodes']} node(s) × "
              f"{launch['gpus_per_node']} GPU(s), {launch['cpus_per_task']} CPUs/task, {launch['time_min']} min, "
              f"mem {launch['mem_gb'] or 'default'} GB")
        for i, params in enumerate(trials):
            cfg = trial_config(spec, params, overrides)
            print(f"\n--- trial {i}: {params}")
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
        if launch["evaluate"]:
            print(f"\nfinal evaluation job: every trial's best checkpoint on the {args.split} split → "
                  f"{sweep_dir / 'summary.md'}, {sweep_dir / 'tb'}")
        return 0

    from submission import DriverJob, job_record, make_executor, submit
    from sweep_driver import run_sweep
    from sweep_folder import read_state, update_state, write_plan

    from salnet.train.loop import git_sha

    sweep_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(sweep_dir)
    driver = state.get("driver", {})
    if state.get("status") in ("submitted", "running", "evaluating") and driver.get("backend") == "slurm":
        from submission import slurm_states

        jid = state["driver"]["id"]
        if slurm_states([jid]).get(jid) in ("PENDING", "RUNNING", "REQUEUED"):
            raise LaunchError(f"sweep {sweep_dir.name} is already running (driver job {jid}); "
                              f"`python jobs/status.py {sweep_dir}` shows it, "
                              f"`python jobs/cancel.py {sweep_dir}` stops it")
    write_plan(sweep_dir, {"spec": to_dict(spec), "overrides": overrides, "launch": launch,
                           "meta": {"sweep_id": sweep_dir.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "command": sys.argv, "git_sha": git_sha()}})
    print(f"sweep folder: {sweep_dir}")
    print(f"tensorboard --logdir {sweep_dir}")
    if args.backend == "slurm":
        ex = make_executor(sweep_dir / "jobs", "slurm", partition=launch["driver_partition"],
                           cpus_per_task=args.driver_cpus,
                           time_min=launch["time_min"] * max(1, -(-len(trials) // launch["max_concurrent"])) + 60,
                           mem_gb=4, account=args.account, qos=args.qos, name=f"{spec.name}-driver",
                           max_num_timeout=launch["max_num_timeout"])
        job = submit(ex, DriverJob(), str(JOBS_DIR), str(sweep_dir))
        update_state(sweep_dir, status="submitted", driver=job_record(job, "slurm"))
        print(f"driver job {job.job_id} on {launch['driver_partition']}: {len(trials)} trial(s) on "
              f"{launch['partition']}; follow with `python jobs/status.py {sweep_dir}`")
        return 0
    update_state(sweep_dir, status="running", driver={"id": str(os.getpid()), "backend": "process"})
    result = run_sweep(sweep_dir)
    print(f"sweep {spec.name}: {result['trials']}; best {result['best']}")
    if result["summary"]:
        print(f"summary: {sweep_dir / 'summary.md'}")
    print(f"tensorboard --logdir {sweep_dir / 'tb'}")
    return 0


def launch_train(args, overrides: dict) -> int:
    cfg = PRESETS[args.train]() if args.train in PRESETS else load_config(Path(args.train))
    cfg = set_values(cfg, tiny_overrides(args, overrides))
    launch = resources(args)
    if args.backend == "slurm":
        known, _ = slurm_partitions()
        check_partition(args.partition, known, "--partition")
    prepare_tiny(args, cfg)
    check_shards(cfg.data.shards, "--train")
    from salnet.train.loop import run_dir_for

    run_dir = (args.out / run_dir_for(cfg).name).resolve()
    if args.dry_run:
        print(f"training job ({args.backend}): partition {launch['partition']}, {launch['nodes']} node(s) × "
              f"{launch['gpus_per_node']} GPU(s), {launch['time_min']} min → {run_dir}")
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
        return 0
    from submission import TrainJob, make_executor, submit

    ex = make_executor(args.out / "jobs", args.backend, partition=args.partition, nodes=launch["nodes"],
                       tasks_per_node=max(launch["gpus_per_node"], 1), gpus_per_node=launch["gpus_per_node"],
                       cpus_per_task=launch["cpus_per_task"], time_min=launch["time_min"], mem_gb=launch["mem_gb"],
                       account=args.account, qos=args.qos, constraint=args.constraint, name=cfg.name,
                       max_num_timeout=launch["max_num_timeout"])
    job = submit(ex, TrainJob(), to_dict(cfg), str(run_dir))
    print(f"job {job.job_id} ({args.backend}) → {run_dir}")
    print(f"tensorboard --logdir {run_dir / 'tb'}")
    if args.backend != "slurm":  # local and debug: wait here (debug runs it now, in this process)
        print(job.results()[0])
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(JOBS_DIR))
    try:
        overrides = parse_overrides(args.overrides)
        return launch_sweep(args, overrides) if args.sweep else launch_train(args, overrides)
    except (LaunchError, SweepError, ConfigError, FileNotFoundError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
