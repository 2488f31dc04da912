"""Launch a hyper-parameter sweep or one training run: on Slurm, on this machine, or in this process.

    python jobs/launch.py --partition gpu --sweep alpha                 # Ray Tune sweep, trials as Slurm jobs
    python jobs/launch.py --partition gpu --sweep alpha --dry-run       # the plan: trials, inputs, jobs, GPU-hours
    python jobs/launch.py --partition gpu --train salgan train.alpha=0.1   # one (DDP) training run
    python jobs/launch.py --backend local --sweep alpha --tiny --trials 3  # everything on this machine

--sweep NAME: sweeps/NAME.yaml (or a path); --train: a preset (salgan, loss_study) or a config YAML. Overrides
apply to every trial. slurm submits the sweep's driver and returns (job ids, sweep folder, tensorboard line);
local runs the driver here and the jobs as processes; debug runs the jobs in this process. Relaunching the same
sweep resumes it. --tiny: tiny network on generated data. See docs/running.md.
"""

import argparse
import sys
from pathlib import Path

from salnet.config import ConfigError
from salnet.logs import setup_logging
from salnet.run import LaunchError
from salnet.run.launch import LaunchOptions, launch_sweep, launch_train
from salnet.sweeps.load import SweepError

FLAGS = [  # (flag, type, help); None: the sweep's value (see LaunchOptions)
    ("--partition", str, "Slurm partition of the training jobs"),
    ("--driver-partition", str, "Slurm partition of the sweep driver (default: Slurm's default)"),
    ("--driver-cpus", int, "CPUs of the sweep driver job (Ray + polling; default 2)"),
    ("--gpus-per-node", int, "GPUs (= DDP tasks) per node"), ("--nodes", int, "nodes per training job"),
    ("--cpus-per-task", int, "CPUs per task"), ("--time", str, "time limit per job: minutes, H:M:S or D-H:M:S"),
    ("--mem", float, "memory per node in GB"), ("--account", str, ""), ("--qos", str, ""), ("--constraint", str, ""),
    ("--max-concurrent", int, "trials running at once"), ("--trials", int, "trials to sample (the budget)"),
    ("--seeds", int, "run every point or sample with this many seeds (0 … N−1; default: the sweep file's)"),
    ("--max-num-timeout", int, "requeues of a job after a timeout or preemption"),
    ("--split", str, "split of the final evaluation (default test)"),
    ("--out", Path, "where sweep and run folders go (default runs)"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--sweep", help="a sweep name (sweeps/NAME.yaml) or a sweep file")
    what.add_argument("--train", help="one run: a preset (salgan, loss_study) or a config YAML")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=10")
    ap.add_argument("--backend", choices=("slurm", "local", "debug"), default="slurm")
    for flag, kind, text in FLAGS:
        ap.add_argument(flag, type=kind, help=text or None)
    ap.add_argument("--points", type=lambda text: [x.strip() for x in text.split(",") if x.strip()],
                    help="a points sweep: run only these labelled points (comma-separated), e.g. 'MSE,LC2 + R'")
    ap.add_argument("--no-evaluate", action="store_true", help="no final evaluation job after the sweep")
    ap.add_argument("--tiny", action="store_true", help="tiny network and generated data (smoke runs)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan (a line per trial, shared stages, inputs, jobs, GPU-hours); asks Slurm "
                         "nothing, submits and writes nothing")
    ap.add_argument("--verbose", action="store_true", help="with --dry-run: every trial's full config too")
    args = vars(ap.parse_args(argv))
    setup_logging()
    sweep, train, overrides = args.pop("sweep"), args.pop("train"), args.pop("overrides")
    opts = LaunchOptions(**{k: v for k, v in args.items() if v is not None})
    try:
        launch_sweep(sweep, overrides, opts) if sweep else launch_train(train, overrides, opts)
    # FileNotFoundError: a missing input, salnet.models.weights.WeightsError (missing VGG-16 weights) among them;
    # that module is not imported here, so a Slurm launch does not import torch
    except (LaunchError, SweepError, ConfigError, FileNotFoundError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
