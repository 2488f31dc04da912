"""Train one run: SalGAN (bootstrap + adversarial) or the loss study (content loss), single process or DDP.

    python jobs/train.py [--preset salgan|loss_study] [--config FILE] [--run-dir DIR] [--no-resume]
                         [--debug] [key.sub=value ...]

The run folder (default runs/<name>-<config hash>) gets config.yaml, checkpoints, metrics.jsonl and
TensorBoard events; a run restarted with the same config resumes from its latest checkpoint.
--debug: one process, tiny width, synthetic data (generated into runs/debug-data on first use), two short
epochs — the same code path as a cluster run. Under torchrun or a multi-task Slurm step it runs DDP.
"""

import argparse
import sys
from pathlib import Path

from salnet.config import PRESETS, ConfigError
from salnet.logs import setup_logging
from salnet.models.weights import WeightsError
from salnet.run import LaunchError
from salnet.run.train import run_config, train_run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.alpha=0.1")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="salgan")
    ap.add_argument("--config", type=Path, help="a config.yaml (overrides apply on top)")
    ap.add_argument("--run-dir", type=Path)
    ap.add_argument("--no-resume", action="store_true", help="start over even if the run folder has checkpoints")
    ap.add_argument("--debug", action="store_true", help="tiny network, synthetic data, two short epochs")
    ap.add_argument("--compare-center-bias", action="store_true",
                    help="after training, score the centre-bias baseline on the same validation split")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = run_config(args.config or args.preset, args.overrides, debug=args.debug)
        train_run(cfg, args.run_dir, resume=not args.no_resume, compare_center_bias=args.compare_center_bias)
    except (ConfigError, LaunchError, WeightsError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
