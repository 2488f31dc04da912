"""Writing the loss study's feature cache (``jobs/pack.py features``): in this process, or as a submitit array job
(``local`` processes or ``slurm``), one task per contiguous range of the cache's tars, then the manifest once every
task is done. Resumable: finished tars are neither recomputed nor resubmitted (:mod:`salnet.data.features`).

    python jobs/pack.py features --shards shards/mit1003 --out shards/mit1003-vgg16-400x300 --input-size 400x300
        [--weights imagenet | FILE] [--dtype float16|float32] [--device auto|cpu|cuda] [--batch-size 8]
        [--backend inprocess|local|slurm --array-tasks 16 --gpus-per-task 1 --partition P ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from salnet.atomic import atomic_write
from salnet.data import features, features_writer
from salnet.data.records import parse_input_size
from salnet.logs import get_logger, setup_logging
from salnet.models.vgg import VGG16Features
from salnet.models.weights import is_random, resolve_weights

log = get_logger(__name__)


@dataclass
class FeatureOptions:
    """The ``features`` subcommand's flags."""

    input_size: str = "400x300"  # "WxH" of the network input (the loss study's 300×400, H×W)
    weights: str = "imagenet"  # model.weights of the runs that will read the cache
    width: float = 1.0  # model.width (random weights only: pretrained VGG-16 is width 1)
    seed: int = 0  # random weights only: the runs' train.seed (their encoder is drawn from it)
    dtype: str = "float16"
    splits: list[str] | None = None  # default: every split of the shards
    device: str = "auto"  # auto: CUDA when available
    batch_size: int = 8
    progress: bool = True
    backend: str = "inprocess"  # inprocess | local | slurm
    array_tasks: int = 16
    gpus_per_task: int = 0
    partition: str | None = None
    time_min: int = 120
    cpus_per_task: int = 4
    mem_gb: float = 16
    log_dir: Path | None = None


def build_encoder(weights: str, width: float = 1.0, seed: int = 0) -> VGG16Features:
    """The loss-study network's frozen VGG-16 as a run builds it (:func:`salnet.train.build.build_generator`):
    ``weights`` as ``model.weights``; random weights are drawn after ``torch.manual_seed(seed)``, as a run's
    are after seeding with its ``train.seed``."""
    from salnet.models.aspp import ASPPNet

    if is_random(weights):
        torch.manual_seed(seed)
    return ASPPNet(width=width, weights=weights).encoder.eval()


def device_of(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def write_named(out: str, names: list[str], weights: str, width: float, seed: int, device: str,
                batch_size: int) -> int:
    """One array task: the planned cache tars ``names`` of ``out`` (picklable by reference); returns how many."""
    encoder = build_encoder(weights, width, seed)
    return len(features_writer.write_shards(out, encoder, names, batch_size, device_of(device)))


def write_cache(shards: Path, out: Path, opts: FeatureOptions) -> dict:
    """Write (or resume) the feature cache of ``shards`` in ``out``; returns its manifest. ValueError /
    FileNotFoundError on a bad option, absent shards, or a folder holding another cache."""
    size = parse_input_size(opts.input_size)
    encoder = build_encoder(opts.weights, opts.width, opts.seed)
    plan = features_writer.prepare(shards, out, encoder, size, opts.dtype, opts.weights, opts.splits)
    todo = [s["name"] for s in plan["shards"] if features_writer.finished(out, s["name"]) is None]
    if opts.backend in ("inprocess", "debug"):
        features_writer.write_shards(out, encoder, todo, opts.batch_size, device_of(opts.device), opts.progress)
    elif todo:
        write_as_array(out, todo, opts)
    manifest = features_writer.finalize(out, encoder)
    weights_file = resolve_weights(opts.weights) if not is_random(opts.weights) else None
    if weights_file is not None:  # the file's sha256 beside the encoder's: the weights a person can look up
        from salnet.data.tario import sha256_file

        manifest["weights_sha256"] = sha256_file(weights_file)
        atomic_write(out / "manifest.json", json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return manifest


def write_as_array(out: Path, names: list[str], opts: FeatureOptions) -> None:
    """The cache tars ``names`` written by an array job of at most ``opts.array_tasks`` tasks; waits for it and
    raises with a failed task's traceback."""
    from salnet.run.submission import make_executor
    from salnet.sweeps.folder import JobResources

    folder = opts.log_dir or out / features.STATE_DIR / "submitit"
    res = JobResources(backend=opts.backend, partition=opts.partition, gpus_per_node=opts.gpus_per_task,
                       cpus_per_task=opts.cpus_per_task, time_min=opts.time_min, mem_gb=opts.mem_gb)
    executor = make_executor(folder, res, "features", tasks_per_node=1)
    if opts.backend == "slurm":
        executor.update_parameters(slurm_array_parallelism=opts.array_tasks)
    n = min(opts.array_tasks, len(names))
    chunks = [names[i * len(names) // n: (i + 1) * len(names) // n] for i in range(n)]  # contiguous ranges
    jobs = executor.map_array(write_named, [str(out.resolve())] * n, chunks, [opts.weights] * n, [opts.width] * n,
                              [opts.seed] * n, [opts.device] * n, [opts.batch_size] * n)
    log.info(f"submitted {len(jobs)} {opts.backend} task(s): {jobs[0].job_id} ...; logs in {folder}")
    for job in jobs:
        job.result()


def main(argv: list[str] | None = None) -> int:
    """``jobs/pack.py features ...``: write the cache; 2 on a bad option or input."""
    p = argparse.ArgumentParser(prog="jobs/pack.py features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", required=True, type=Path, help="the packed dataset (jobs/pack.py DATASET)")
    p.add_argument("--out", type=Path, help="cache folder (default SHARDS-vgg16-WxH, where data.features=auto "
                   "looks)")
    p.add_argument("--input-size", help="WxH of the network input (default 400x300, the loss study's)")
    p.add_argument("--weights", help="the runs' model.weights: imagenet (default), a file, or random (tests)")
    p.add_argument("--width", type=float, help="model.width (random weights only)")
    p.add_argument("--seed", type=int, help="the runs' train.seed (random weights only)")
    p.add_argument("--dtype", choices=tuple(features.DTYPES), help="stored taps: float16 (default) or float32 "
                   "(the uncached network's logits exactly, on CPU)")
    p.add_argument("--splits", nargs="+", help="default: every split of the shards")
    p.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda")
    p.add_argument("--batch-size", type=int, help="images per encoder forward (default 8)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--backend", choices=("debug", "inprocess", "local", "slurm"), help="debug or inprocess: this "
                   "process (default), local: submitit processes, slurm: a Slurm array job")
    p.add_argument("--array-tasks", type=int, help="submitit array size (local/slurm; default 16)")
    p.add_argument("--gpus-per-task", type=int, help="GPUs per array task (default 0)")
    p.add_argument("--partition")
    p.add_argument("--time-min", type=int)
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--log-dir", type=Path)
    args = vars(p.parse_args(argv))
    setup_logging()
    shards = args.pop("shards")
    opts = FeatureOptions(**{k: v for k, v in args.items() if v is not None and k != "out"})
    out = args["out"] or features.default_folder(shards, parse_input_size(opts.input_size))
    try:
        manifest = write_cache(shards, out, opts)
    except (FileNotFoundError, ValueError) as exn:
        print(f"pack features: error: {exn}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {sum(r['count'] for r in manifest['shards'] if r['split'] == s)}"
                       for s in manifest["splits"])
    bad = sum(r["bad"] for r in manifest["shards"])
    print(f"features of {shards}: {counts} ({bad} undecodable, left out) in {len(manifest['shards'])} tar(s), "
          f"{manifest['bytes'] / 1e9:.2f} GB {manifest['dtype']} -> {out}")
    return 0
