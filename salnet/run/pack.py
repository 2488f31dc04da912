"""Packing a raw dataset release into shards (``jobs/pack.py``): in this process and its pool, or as a
submitit array job (``local`` processes or ``slurm``), one task per contiguous range of the planned shards,
then the manifest once every task is done. Resumable: finished shards are neither repacked nor resubmitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salnet.data import get_reader
from salnet.data.base import Reader
from salnet.data.records import parse_input_size
from salnet.data.shards import finalize, lacking, pack, pack_named, pending, prepare, verify
from salnet.data.synthetic import write_synthetic
from salnet.logs import get_logger
from salnet.run.submission import make_executor
from salnet.sweeps.folder import JobResources

log = get_logger(__name__)
BACKENDS = ("debug", "inprocess", "local", "slurm")  # inprocess: the old name of debug


@dataclass
class PackOptions:
    """jobs/pack.py's flags."""

    splits: list[str] | None = None  # default: every split the release holds
    shard_size: float = 256.0  # target shard size in MB (approximate)
    input_size: str | None = None  # "WxH": samples stored resized to the model input
    map_codec: str = "png"  # full-size maps as PNG or raw .npy
    workers: int = 4  # processes of the in-process backend
    progress: bool = True
    backend: str = "debug"  # debug (this process and its pool; alias inprocess) | local | slurm
    array_tasks: int = 16
    partition: str | None = None
    time_min: int = 120  # per array task
    cpus_per_task: int = 4
    mem_gb: float = 16
    log_dir: Path | None = None  # submitit's logs (default OUT/.pack/submitit)
    synthetic: tuple[int, int] | None = None  # dataset "synthetic": write a raw release of (train, val) images first
    verify: bool = False  # re-read every shard and compare every sample with the raw release
    reader_options: dict = field(default_factory=dict)  # dataset "folder": sigma, val_fraction, test_fraction, seed


def pack_dataset(dataset: str, root: Path, out: Path, opts: PackOptions) -> tuple[dict, dict | None]:
    """Pack ``dataset`` from ``root`` into ``out``; returns (the manifest, the verification report or None).
    FileNotFoundError / ValueError on a bad release or option."""
    if opts.synthetic:
        if dataset != "synthetic":
            raise ValueError("--synthetic only applies to the dataset 'synthetic'")
        write_synthetic(root, {"train": opts.synthetic[0], "val": opts.synthetic[1]})
    reader = get_reader(dataset, root, **opts.reader_options)
    size = parse_input_size(opts.input_size) if opts.input_size else None
    if opts.backend not in BACKENDS:
        raise ValueError(f"--backend {opts.backend!r}: choose one of {', '.join(BACKENDS)}")
    if opts.backend in ("debug", "inprocess"):
        manifest = pack(reader, out, opts.splits, opts.shard_size, opts.workers, opts.progress, size, opts.map_codec)
    else:
        plans = prepare(reader, out, opts.splits, opts.shard_size, size, opts.map_codec)
        names = [p.name for p in pending(out, plans)]
        if names:
            pack_as_array(reader, out, names, opts)
        manifest = finalize(out)
    for line in lacking(manifest):  # said once, here; training and evaluation say it again from the manifest
        log.warning(f"{dataset}: {line}")
    return manifest, verify(out, reader) if opts.verify else None


def pack_as_array(reader: Reader, out: Path, names: list[str], opts: PackOptions) -> None:
    """The shards ``names`` (planned in out/.pack/plan.json) packed by an array job of at most
    ``opts.array_tasks`` tasks; waits for it and raises with a failed task's traceback."""
    folder = opts.log_dir or out / ".pack" / "submitit"
    res = JobResources(backend=opts.backend, partition=opts.partition, gpus_per_node=0,
                       cpus_per_task=opts.cpus_per_task, time_min=opts.time_min, mem_gb=opts.mem_gb)
    executor = make_executor(folder, res, f"pack-{reader.name}")
    if opts.backend == "slurm":
        executor.update_parameters(slurm_array_parallelism=opts.array_tasks)
    n = min(opts.array_tasks, len(names))
    chunks = [names[i * len(names) // n: (i + 1) * len(names) // n] for i in range(n)]  # contiguous ranges
    jobs = executor.map_array(pack_named, [reader.name] * n, [str(reader.root)] * n, [str(out.resolve())] * n,
                              chunks, [opts.cpus_per_task] * n)
    log.info(f"submitted {len(jobs)} {opts.backend} task(s): {jobs[0].job_id} ...; logs in {folder}")
    for job in jobs:
        job.result()
