"""Train one run: SalGAN (bootstrap + adversarial) or the loss study (content loss), single process or DDP.

    python jobs/train.py [--preset salgan|loss_study] [--config FILE] [--run-dir DIR] [--no-resume]
                         [--debug] [key.sub=value ...]

The run folder (default runs/<name>-<config hash>) gets config.yaml, checkpoints, metrics.jsonl and
TensorBoard events; a run restarted with the same config resumes from its latest checkpoint.
--debug: one process, tiny width, synthetic data (generated into runs/debug-data on first use), two short
epochs — the same code path as a cluster run. Under torchrun or a multi-task Slurm step it runs DDP.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from salnet.config import DEBUG_OVERRIDES, PRESETS, ConfigError, apply_overrides, load_config

DEBUG_DATA = Path("runs/debug-data/synthetic")


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
    try:
        cfg = load_config(args.config) if args.config else PRESETS[args.preset]()
        overrides = list(args.overrides)
        if args.debug:
            overrides = [*DEBUG_OVERRIDES, f"data.shards={DEBUG_DATA}", *overrides]
        cfg = apply_overrides(cfg, overrides)
    except ConfigError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    if args.debug and Path(cfg.data.shards) == DEBUG_DATA:
        from salnet.data.synthetic import ensure_synthetic_shards

        ensure_synthetic_shards(DEBUG_DATA, size=tuple(cfg.data.input_size))
    if not (Path(cfg.data.shards) / "manifest.json").exists():
        print(f"error: no shards at {cfg.data.shards} (manifest.json missing); pack a dataset with "
              f"`python jobs/pack.py DATASET --root RAW --out {cfg.data.shards}`", file=sys.stderr)
        return 2
    from salnet.train.loop import Trainer, run_dir_for

    run_dir = args.run_dir or run_dir_for(cfg)
    if args.no_resume and run_dir.exists():  # start over: the old run is kept aside, not mixed in
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"--no-resume: moved the previous run to {aside}", flush=True)
    trainer = Trainer(cfg, run_dir=run_dir, resume=not args.no_resume)
    if trainer.env.is_main:
        print(f"run folder: {trainer.run_dir}  (tensorboard --logdir {trainer.run_dir / 'tb'})", flush=True)
    result = trainer.fit()
    if args.compare_center_bias and result["status"] == "done":
        from salnet.baselines import CenterBiasModel
        from salnet.train.validate import validate

        base, _ = validate(CenterBiasModel(), trainer.val_loader, trainer.device, shuffle_pool=trainer.pool,
                           seed=cfg.train.seed)
        result["center_bias"] = base
        if trainer.env.is_main:
            print(f"{'metric':<10}{'model':>10}{'centre bias':>13}")
            for k in base:
                if k != "images":
                    print(f"{k:<10}{result['val'][k]:>10.4f}{base[k]:>13.4f}")
    if trainer.env.is_main:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
