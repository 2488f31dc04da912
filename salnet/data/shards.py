"""Packing raw releases into WebDataset tar shards, byte-identically, resumably, in parallel.

Layout of an output folder: ``{split}-{000000}.tar`` shards, ``manifest.json`` (counts per split,
per-shard sha256/bytes/count, source root, packer version, config) and ``.pack/`` (the plan and one
record per finished shard, which is what makes packing resumable and lets Slurm array tasks write
disjoint shard ranges). Samples are stored full-size (as released; the map as PNG or raw .npy) or
model-size (resized at packing for one model input size, ``input_size`` in the manifest): the members of
each kind are described in :mod:`salnet.data.records`. Keys are ``{dataset}/{split}/{id}``, sanitised for
tar and WebDataset (no dots in the id part). Determinism: inputs sorted, tar headers with fixed
mtime/uid/gid/names/mode, PNG at a fixed zlib level, JSON with sorted keys, no timestamps anywhere.
"""

from __future__ import annotations

import json
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from queue import Empty

from salnet.data.base import Reader
from salnet.data.records import MAP_CODECS, compare, decode_record, encode_sample, model_members, sample_key
from salnet.data.tario import iter_tar, sha256_file, write_tar

PACKER_VERSION = "1"
STATE_DIR = ".pack"


@dataclass
class ShardPlan:
    name: str
    split: str
    ids: list[str]


def plan_shards(reader: Reader, splits: list[str], shard_size_mb: float) -> list[ShardPlan]:
    """Cut each split's sorted ids into shards of about shard_size_mb (estimated from file sizes, so the
    plan is known before anything is encoded). ValueError if two ids sanitise to the same key."""
    if shard_size_mb <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size_mb} MB")
    limit = shard_size_mb * 1e6
    plans: list[ShardPlan] = []
    for split in splits:
        ids = reader.ids(split)
        keys: dict[str, str] = {}  # shard key -> the id it came from
        for i in ids:
            k = sample_key(reader.name, split, i)
            if k in keys:
                raise ValueError(f"{reader.name}: ids {keys[k]!r} and {i!r} give the same shard key {k!r}")
            keys[k] = i
        current: list[str] = []
        size = 0
        for i in ids:
            est = reader.size_hint(split, i)
            if current and size + est > limit:
                plans.append(ShardPlan(f"{split}-{sum(p.split == split for p in plans):06d}.tar", split, current))
                current, size = [], 0
            current.append(i)
            size += est
        if current:
            plans.append(ShardPlan(f"{split}-{sum(p.split == split for p in plans):06d}.tar", split, current))
    return plans


def finished_record(out: Path, name: str, state_dir: str = STATE_DIR) -> dict | None:
    """The record of a finished shard (its tar present with the recorded size; records in ``out/state_dir``), else
    None."""
    rec_path, tar_path = out / state_dir / f"{name}.json", out / name
    if rec_path.is_file() and tar_path.is_file():
        try:
            rec = json.loads(rec_path.read_text())
        except ValueError:
            return None
        if rec.get("bytes") == tar_path.stat().st_size:
            return rec
    return None


def pending(out: str | Path, plans: list[ShardPlan]) -> list[ShardPlan]:
    """The planned shards not finished yet."""
    return [p for p in plans if finished_record(Path(out), p.name) is None]


def pack_one(reader: Reader, out: Path, plan: ShardPlan, input_size: list[int] | None = None,
             map_codec: str = "png", progress=None) -> dict:
    """Pack one planned shard unless it is finished (full-size, or model-size at ``input_size`` (h, w)); returns
    its record, which counts the samples without fixations and without a map. ``progress``: called with 1 after
    each sample (a progress bar's update, or a queue's put from a pool worker)."""
    done = finished_record(out, plan.name)
    if done is not None:
        return done
    rec_path, tar_path = out / STATE_DIR / f"{plan.name}.json", out / plan.name
    members = []
    no_fix = no_map = 0
    for i in plan.ids:
        try:
            sample = reader.load(plan.split, i)
            members += encode_sample(sample, input_size, map_codec)
        except (OSError, ValueError) as exn:
            raise type(exn)(f"packing {reader.name}/{plan.split}/{i} into {plan.name}: {exn}") from exn
        no_fix += len(sample.fixations) == 0
        no_map += sample.map is None
        if progress is not None:
            progress(1)
    sha, nbytes = write_tar(tar_path, members)
    rec = {"name": plan.name, "split": plan.split, "count": len(plan.ids), "bytes": nbytes, "sha256": sha,
           "first": plan.ids[0], "last": plan.ids[-1], "without_fixations": no_fix, "without_map": no_map}
    tmp = rec_path.with_name(rec_path.name + ".tmp")
    tmp.write_text(json.dumps(rec, sort_keys=True) + "\n")
    os.replace(tmp, rec_path)  # atomic: a record exists only for a complete shard
    return rec


def _pack_task(args):
    reader, out, plan, config, queue = args
    return pack_one(reader, out, plan, config.get("input_size"), config.get("map_codec", "png"),
                    None if queue is None else queue.put)


def prepare(reader: Reader, out: str | Path, splits: list[str] | None = None, shard_size_mb: float = 256.0,
            input_size: tuple[int, int] | None = None, map_codec: str = "png") -> list[ShardPlan]:
    """Plan a packing run and store the plan in out/.pack/plan.json: full-size samples with the map as
    ``map_codec`` ("png" or "npy"), or model-size samples resized to ``input_size`` = (h, w).

    A folder holding a plan with a different configuration is refused (ValueError): resuming must not
    mix shards of two configurations. Returns the plans.
    """
    out = Path(out)
    if map_codec not in MAP_CODECS:
        raise ValueError(f"unknown map codec {map_codec!r}; choose one of {', '.join(MAP_CODECS)}")
    size = None if input_size is None else [int(n) for n in input_size]  # a list, as the JSON plan holds it
    if size is not None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"input size must be two positive integers (h, w), got {size}")
        map_codec = "npy"  # model-size samples keep the original map as raw .npy (validation decodes it)
    splits = list(splits) if splits else reader.default_splits()
    for s in splits:
        reader.index(s)  # unknown or absent splits fail here, before anything is written
    config = {"dataset": reader.name, "source_root": str(reader.root), "splits": splits,
              "shard_size_mb": shard_size_mb, "packer_version": PACKER_VERSION, "input_size": size,
              "map_codec": map_codec}
    options: dict = getattr(reader, "options", dict)()
    if options:  # a folder's sigma and split fractions: array tasks rebuild the same reader from the plan
        config["reader_options"] = options
    plans = plan_shards(reader, splits, shard_size_mb)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    plan_path = out / STATE_DIR / "plan.json"
    state = {"config": config, "shards": [asdict(p) for p in plans]}
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old != state:
            raise ValueError(f"{out} holds shards packed with another configuration or source "
                             f"({old['config']}); use a fresh --out folder or delete it")
    else:
        plan_path.write_text(json.dumps(state, sort_keys=True, indent=1) + "\n")
    return plans


def load_plan(out: str | Path) -> tuple[dict, list[ShardPlan]]:
    """(config, plans) stored by :func:`prepare`."""
    state = json.loads((Path(out) / STATE_DIR / "plan.json").read_text())
    return state["config"], [ShardPlan(**p) for p in state["shards"]]


def pack_shards(reader: Reader, out: str | Path, plans: list[ShardPlan], workers: int = 1,
                progress: bool = False) -> list[dict]:
    """Pack the given planned shards (skipping finished ones) with a pool of ``workers`` processes."""
    out = Path(out)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(p.ids) for p in plans), unit="img", desc=f"pack {reader.name}")
    records = []
    config = load_plan(out)[0]  # how to encode: the plan's input size and map codec
    if workers <= 1:
        for p in plans:
            done = finished_record(out, p.name)
            records.append(done or pack_one(reader, out, p, config.get("input_size"), config.get("map_codec", "png"),
                                            bar.update if bar else None))
            if bar and done:
                bar.update(done["count"])
    else:
        # spawn: safe after torch/threads in the parent; a worker that cannot start raises
        # BrokenProcessPool instead of being respawned forever (multiprocessing.Pool's behaviour)
        ctx = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool, ExitStack() as stack:
            queue = None
            if bar is not None:  # workers put 1 per sample, so the bar counts samples, not shards
                queue = stack.enter_context(ctx.Manager()).Queue()
                bar.update(sum(r["count"] for p in plans if (r := finished_record(out, p.name))))
            futures = [pool.submit(_pack_task, (reader, out, p, config, queue)) for p in plans]
            while queue is not None and bar is not None and not all(f.done() for f in futures):
                with suppress(Empty):
                    bar.update(queue.get(timeout=0.2))
            records = [f.result() for f in futures]
            if bar is not None:
                bar.update(bar.total - bar.n)  # what the queue still held when the last shard finished
    if bar:
        bar.close()
    return sorted(records, key=lambda r: r["name"])


def pack_named(dataset: str, root: str, out: str, names: list[str], workers: int = 1) -> int:
    """Pack the planned shards ``names`` of out/.pack/plan.json (one array task of a cluster job,
    picklable by reference). Returns the number of shards done."""
    from salnet.data import get_reader

    wanted = set(names)
    config, plans = load_plan(out)
    plans = [p for p in plans if p.name in wanted]
    return len(pack_shards(get_reader(dataset, root, **config.get("reader_options", {})), out, plans, workers))


def finalize(out: str | Path) -> dict:
    """Write manifest.json from the plan and the shard records; ValueError if a shard is unfinished."""
    out = Path(out)
    config, plans = load_plan(out)
    shards, missing = [], []
    for p in plans:
        rec = finished_record(out, p.name)
        if rec is None:
            missing.append(p.name)
        else:
            shards.append(rec)
    if missing:
        raise ValueError(f"{out}: {len(missing)} shard(s) not packed yet ({missing[:3]}...); run the packing again "
                         "to resume")
    splits = {}
    for s in config["splits"]:
        mine = [r for r in shards if r["split"] == s]
        splits[s] = {"count": sum(r["count"] for r in mine), "shards": [r["name"] for r in mine]}
        for key in ("without_fixations", "without_map"):
            if all(key in r for r in mine):  # shards packed by an older packer do not count them
                splits[s][key] = sum(r[key] for r in mine)
    manifest = {"dataset": config["dataset"], "source_root": config["source_root"],
                "packer_version": PACKER_VERSION, "config": config, "splits": splits, "shards": shards,
                "input_size": config.get("input_size"), "map_codec": config.get("map_codec", "png")}
    manifest["lacks"] = {k: v for k, v in {"fixations": undefined_metrics("fixations"),
                                           "map": undefined_metrics("map")}.items()
                         if any(sp.get(f"without_{k}", 0) for sp in splits.values())}
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return manifest


def pack(reader: Reader, out: str | Path, splits: list[str] | None = None, shard_size_mb: float = 256.0,
         workers: int = 1, progress: bool = False, input_size: tuple[int, int] | None = None,
         map_codec: str = "png") -> dict:
    """Plan, pack (resuming) and write the manifest, in this process and its pool (see :func:`prepare` for
    ``input_size`` and ``map_codec``). Returns the manifest."""
    plans = prepare(reader, out, splits, shard_size_mb, input_size, map_codec)
    pack_shards(reader, out, plans, workers, progress)
    return finalize(out)


def undefined_metrics(lacking: str) -> list[str]:
    """The metrics undefined on a sample without ``lacking`` ("fixations" or "map")."""
    from salnet.metrics import METRICS

    need = "fixations" if lacking == "fixations" else "gt_map"
    return [n for n, m in METRICS.items() if need in m.needs.split("+")]


def lacking(manifest: dict, splits: list[str] | None = None) -> list[str]:
    """One sentence per split (all, or ``splits``) and thing its samples lack, e.g. "val: 100 of 100 samples have
    no fixations: auc_judd, auc_borji, sauc, nss, ig are undefined on them"; empty when nothing is lacking or
    the manifest does not count it (older packers)."""
    out = []
    for s, v in manifest.get("splits", {}).items():
        if splits is not None and s not in splits:
            continue
        for what, word in (("fixations", "no fixations"), ("map", "no map")):
            n = v.get(f"without_{what}", 0)
            if n:
                out.append(f"{s}: {n} of {v['count']} samples have {word}: {', '.join(undefined_metrics(what))} "
                           "are undefined on them")
    return out


def read_manifest(out: str | Path) -> dict:
    """manifest.json of a shard folder; FileNotFoundError saying how to make it."""
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pack the dataset first (python jobs/pack.py DATASET --root RAW "
                                f"--out {out})")
    return json.loads(path.read_text())


def verify(out: str | Path, reader: Reader | None = None) -> dict:
    """Re-read every shard: sha256 and count against the manifest, every sample decodable and in plan
    order, and, given the raw reader, every sample equal to the raw release (image bytes, map pixels,
    every fixation, size; for model-size shards the stored input and target equal to the raw sample
    resized again, byte for byte). Returns {"shards", "samples", "errors": [messages]}."""
    out = Path(out)
    manifest = read_manifest(out)
    size = manifest.get("input_size")
    plan_path = out / STATE_DIR / "plan.json"
    planned = {p.name: p.ids for p in load_plan(out)[1]} if plan_path.is_file() else {}
    errors, n = [], 0
    for rec in manifest["shards"]:
        path = out / rec["name"]
        if not path.is_file():
            errors.append(f"{rec['name']}: missing")
            continue
        if sha256_file(path) != rec["sha256"]:
            errors.append(f"{rec['name']}: sha256 differs from the manifest (the file changed after packing): delete "
                          f"{path} and run jobs/pack.py again with the same arguments to pack it again")
        ids = []
        try:
            for r in iter_tar(path):
                s = decode_record(r)
                ids.append(s.id)
                n += 1
                if reader is not None:
                    raw = reader.load(s.split, s.id)
                    diffs = compare(s, raw, image=size is None)
                    if size is not None:
                        members = model_members(raw, tuple(size))[0]
                        diffs += [f"{k} differs from the raw sample resized" for k in ("input.npy", "target.npy")
                                  if r.get(k) != members.get(k)]
                    errors += [f"{rec['name']}/{s.id}: {e}" for e in diffs]
        except (tarfile.TarError, ValueError, OSError) as exn:
            errors.append(f"{rec['name']}: unreadable ({exn})")
        expected = planned.get(rec["name"])
        if (expected is not None and ids != expected) or len(ids) != rec["count"]:
            errors.append(f"{rec['name']}: holds {len(ids)} samples, the manifest says {rec['count']}")
    return {"shards": len(manifest["shards"]), "samples": n, "errors": errors}

