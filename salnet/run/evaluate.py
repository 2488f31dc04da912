"""A sweep's final evaluation (:func:`salnet.sweeps.summary.summarize_sweep`) here or as a job: what the driver runs
when the search ends and what ``jobs/evaluate.py`` reruns by hand; and one run scored on a packed split with
the centre bias as a row (``jobs/evaluate.py --run``)."""

from __future__ import annotations

import json
from pathlib import Path

import submitit

from salnet.logs import get_logger
from salnet.run.jobs import EvaluateJob
from salnet.run.slurm import check_partition, slurm_partitions
from salnet.run.submission import job_record, make_executor, submit
from salnet.sweeps.folder import JobResources, SweepFolder

log = get_logger(__name__)


def submit_evaluation(folder: SweepFolder, resources: JobResources, split: str) -> submitit.Job:
    """Submit the evaluation of every trial on ``split`` as one task; its job record goes into state.json."""
    ex = make_executor(folder.jobs_dir, resources, f"{folder.path.name}-evaluate", tasks_per_node=1)
    job = submit(ex, EvaluateJob(), str(folder.path), split)
    folder.update_state(evaluation=job_record(job, resources.backend))
    return job


IN_PROCESS = ("debug", "here")  # one name with launch (debug); "here" kept from before


def evaluate_sweep(folder: SweepFolder, split: str = "test", backend: str = "debug", partition: str | None = None,
                   gpus: int = 1, time_min: int = 120, mem_gb: float | None = None) -> dict | None:
    """Evaluate a sweep in this process (``debug``, alias ``here``) or as a ``local`` or ``slurm`` job (``gpus``,
    ``time_min``, ``mem_gb``: None is Slurm's default). Returns the summary, or None for a Slurm job (submitted, not
    waited for)."""
    folder = SweepFolder(folder.path.resolve())
    if backend in IN_PROCESS:
        from salnet.sweeps.summary import summarize_sweep

        return summarize_sweep(folder.path, split=split)
    if backend == "slurm":
        check_partition(partition, slurm_partitions()[0], "--partition")
    res = JobResources(backend=backend, partition=partition, gpus_per_node=gpus, cpus_per_task=4, time_min=time_min,
                       mem_gb=mem_gb)
    job = submit_evaluation(folder, res, split)
    log.info(f"evaluation job {job.job_id} ({backend})")
    return None if backend == "slurm" else job.result()


def evaluate_one_run(run_dir: str | Path, shards: str | Path | None = None, split: str = "test",
                     results: str | Path | None = None, per_image: bool = False, checkpoint: str = "best",
                     device: str | None = None, batch_size: int | None = None) -> dict:
    """Score a run's checkpoint and the centre bias on a packed split with the nine metrics, as a sweep's
    summary does, and write ``results`` (default RUN/evaluation-SPLIT): summary.md (the table), summary.json
    (means, images, bad samples, checkpoint and its epoch, what the split lacks) and, with ``per_image``,
    per_image.csv. Says once what the split lacks. Returns the summary.json dict plus ``"table"`` (markdown)."""
    import torch

    from salnet.atomic import atomic_write
    from salnet.config import load_config
    from salnet.data.shards import lacking, read_manifest
    from salnet.inference.evaluate import evaluate_model, evaluate_run
    from salnet.models.baselines import CenterBiasModel
    from salnet.sweeps.tables import per_image_csv
    from salnet.train.checkpoint import load_checkpoint, resolve_checkpoint

    run_dir = Path(run_dir)
    ckpt, config_file = resolve_checkpoint(run_dir, checkpoint)
    cfg = load_config(config_file)
    shards = Path(shards if shards is not None else cfg.data.shards)
    manifest = read_manifest(shards)
    if split not in manifest["splits"]:
        raise ValueError(f"{shards} has no split {split!r} (it has {', '.join(manifest['splits'])}); pass --split")
    lacks = lacking(manifest, [split])
    for line in lacks:
        log.warning(f"{shards.name}: {line}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ev = evaluate_run(run_dir, shards, split, device=dev, batch_size=batch_size, checkpoint=checkpoint)
    centre = evaluate_model(CenterBiasModel(), shards, split, tuple(cfg.data.input_size), device=dev,
                            batch_size=batch_size or cfg.data.batch_size, seed=cfg.train.seed,
                            postprocess=cfg.model.postprocess)
    epoch = load_checkpoint(Path(ev["checkpoint"]), map_location="cpu").get("epoch")
    name = run_dir.resolve().name if run_dir.is_dir() else ckpt.stem
    summary = {"run": str(run_dir.resolve()), "checkpoint": ev["checkpoint"], "epoch": epoch, "shards": str(shards),
               "split": split, "images": ev["images"], "bad_samples": ev["bad_samples"], "means": ev["means"],
               "centre_bias": centre["means"], "lacks": lacks}
    table = run_table(name, summary)
    folder = run_dir if run_dir.is_dir() else run_dir.parent  # a checkpoint file's results go beside it
    out = Path(results) if results is not None else folder / f"evaluation-{split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "summary.md", table)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if per_image:
        rows = [{"trial": name, "point": None, "seed": cfg.train.seed, "per_image": ev["per_image"]},
                {"trial": "centre bias", "point": None, "seed": None, "per_image": centre["per_image"]}]
        from salnet.metrics import PAPER_COLUMNS

        atomic_write(out / "per_image.csv", per_image_csv(rows, list(PAPER_COLUMNS)))
    return {**summary, "table": table, "results": str(out)}


def run_table(name: str, summary: dict) -> str:
    """summary.md of one run: a title, the nine metrics of the run and of the centre bias in the papers' column
    order ("–" where undefined on every image), and lines on images, checkpoint and what the split lacks."""
    from salnet.metrics import METRICS, PAPER_COLUMNS
    from salnet.sweeps.tables import MISSING

    heads = [f"{PAPER_COLUMNS[m]} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in PAPER_COLUMNS]

    def cells(means: dict) -> list[str]:
        return [MISSING if means.get(m) is None else f"{means[m]:.3f}" for m in PAPER_COLUMNS]

    epoch = f", epoch {summary['epoch']}" if summary.get("epoch") is not None else ""
    lines = [f"# Run {name}: {summary['split']} split", "", "| model | " + " | ".join(heads) + " |",
             "|---|" + "---:|" * len(heads), f"| {name} | " + " | ".join(cells(summary["means"])) + " |",
             "| centre bias | " + " | ".join(cells(summary["centre_bias"])) + " |", "",
             f"{summary['images']} {summary['split']} images of {summary['shards']}, {summary['bad_samples']} bad "
             f"samples skipped; checkpoint {Path(summary['checkpoint']).name}{epoch}."]
    undefined = [m for m in PAPER_COLUMNS if m not in summary["means"]]
    if undefined:
        lines.append(f"Undefined on every image: {', '.join(PAPER_COLUMNS[m] for m in undefined)}.")
    lines += [f"The split lacks data: {line}." for line in summary.get("lacks", [])]
    lines.append(f"{MISSING}: undefined on every image.")
    return "\n".join(lines) + "\n"
