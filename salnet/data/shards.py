"""Packing raw releases into WebDataset tar shards, byte-identically, resumably, in parallel.

Layout of an output folder: ``{split}-{000000}.tar`` shards, ``manifest.json`` (counts per split,
per-shard sha256/bytes/count, source root, packer version, config) and ``.pack/`` (the plan and one
record per finished shard, which is what makes packing resumable and lets Slurm array tasks write
disjoint shard ranges). A sample is stored as ``{key}.{jpg|jpeg|png}`` (image bytes as released),
``{key}.map.png`` (8/16-bit), ``{key}.fix.npy`` (int32 (N, 3) y, x, observer) and ``{key}.json``,
with key ``{dataset}/{split}/{id}`` sanitised for tar and WebDataset (no dots in the id part).
Determinism: inputs sorted, tar headers with fixed mtime/uid/gid/names/mode, PNG at a fixed zlib
level, JSON with sorted keys, no timestamps anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from salnet.data.base import Reader
from salnet.data.sample import Sample, decode_gray, encode_png

PACKER_VERSION = "1"
STATE_DIR = ".pack"


def sample_key(dataset: str, split: str, id: str) -> str:
    """Tar/WebDataset key ``dataset/split/id`` with every character outside [A-Za-z0-9_-] of id -> '_'."""
    return f"{dataset}/{split}/{re.sub(r'[^A-Za-z0-9_-]', '_', id)}"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"metadata value {obj!r} is not JSON-serialisable")


def encode_sample(sample: Sample) -> list[tuple[str, bytes]]:
    """A Sample -> the (tar member name, bytes) pairs of its shard entry, in a fixed order."""
    key = sample_key(sample.dataset, sample.split, sample.id)
    npy = io.BytesIO()
    np.save(npy, np.ascontiguousarray(sample.fixations, dtype=np.int32), allow_pickle=False)
    info = {"dataset": sample.dataset, "split": sample.split, "id": sample.id, "height": sample.height,
            "width": sample.width, "image_ext": sample.image_ext, "n_fixations": int(len(sample.fixations)),
            "map_bits": None if sample.map is None else int(sample.map.dtype.itemsize * 8), **sample.meta}
    members = [(f"{key}.{sample.image_ext}", sample.image)]
    if sample.map is not None:
        members.append((f"{key}.map.png", encode_png(sample.map)))
    members.append((f"{key}.fix.npy", npy.getvalue()))
    members.append((f"{key}.json", json.dumps(info, sort_keys=True, default=_json_default).encode()))
    return members


def decode_record(rec: dict[str, bytes], decode_map: bool = True) -> Sample:
    """A WebDataset record (suffix -> bytes, e.g. from a tar) -> Sample; ValueError if a field is missing.

    decode_map=False leaves Sample.map None (the loader decodes the PNG itself, straight to float).
    """
    if "json" not in rec or "fix.npy" not in rec:
        raise ValueError(f"sample {rec.get('__key__', '?')}: missing json or fix.npy (truncated shard?)")
    info = json.loads(rec["json"])
    ext = info["image_ext"]
    if ext not in rec:
        raise ValueError(f"sample {rec.get('__key__', '?')}: missing its {ext} image")
    smap = None
    if info.get("map_bits") and decode_map:
        if "map.png" not in rec:
            raise ValueError(f"sample {rec.get('__key__', '?')}: missing map.png")
        smap = decode_gray(rec["map.png"], f"{rec.get('__key__', '?')}.map.png")
    fix = np.load(io.BytesIO(rec["fix.npy"]), allow_pickle=False)
    core = ("dataset", "split", "id", "height", "width", "image_ext", "n_fixations", "map_bits")
    meta = {k: v for k, v in info.items() if k not in core}
    return Sample(info["dataset"], info["split"], info["id"], rec[ext], ext, info["height"], info["width"],
                  smap, fix, meta)


def split_name(name: str) -> tuple[str, str]:
    """'a/b/c.map.png' -> ('a/b/c', 'map.png'): WebDataset's key/suffix rule (first dot of the basename)."""
    head, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{head}/{stem}" if head else stem), suffix


def iter_tar(path: str | Path):
    """Records {"__key__", suffix: bytes, ...} of a shard in order (streaming).

    A tar error (truncated file) first yields the record being assembled, possibly incomplete (the
    consumer's decode rejects it), then propagates, so a reader can count what it lost.
    """
    rec: dict = {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                key, suffix = split_name(info.name)
                if rec and rec["__key__"] != key:
                    yield rec
                    rec = {}
                rec["__key__"] = key
                rec[suffix] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError):
        if rec:
            yield rec
        raise
    if rec:
        yield rec


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> tuple[str, int]:
    """Write a deterministic tar atomically (tmp file + rename); returns (sha256 hex, bytes)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return sha256_file(path), path.stat().st_size


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    limit, plans = shard_size_mb * 1e6, []
    for split in splits:
        ids, keys = reader.ids(split), {}
        for i in ids:
            k = sample_key(reader.name, split, i)
            if k in keys:
                raise ValueError(f"{reader.name}: ids {keys[k]!r} and {i!r} give the same shard key {k!r}")
            keys[k] = i
        current, size = [], 0
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


def finished_record(out: Path, name: str) -> dict | None:
    """The record of a finished shard (its tar present with the recorded size), else None."""
    rec_path, tar_path = out / STATE_DIR / f"{name}.json", out / name
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


def pack_one(reader: Reader, out: Path, plan: ShardPlan) -> dict:
    """Pack one planned shard unless it is finished; returns its record."""
    done = finished_record(out, plan.name)
    if done is not None:
        return done
    rec_path, tar_path = out / STATE_DIR / f"{plan.name}.json", out / plan.name
    members = []
    for i in plan.ids:
        try:
            members += encode_sample(reader.load(plan.split, i))
        except (OSError, ValueError) as exn:
            raise type(exn)(f"packing {reader.name}/{plan.split}/{i} into {plan.name}: {exn}") from exn
    sha, nbytes = write_tar(tar_path, members)
    rec = {"name": plan.name, "split": plan.split, "count": len(plan.ids), "bytes": nbytes, "sha256": sha,
           "first": plan.ids[0], "last": plan.ids[-1]}
    tmp = rec_path.with_name(rec_path.name + ".tmp")
    tmp.write_text(json.dumps(rec, sort_keys=True) + "\n")
    os.replace(tmp, rec_path)  # atomic: a record exists only for a complete shard
    return rec


def _pack_task(args):
    reader, out, plan = args
    return pack_one(reader, out, plan)


def prepare(reader: Reader, out: str | Path, splits: list[str] | None = None, shard_size_mb: float = 256.0,
            ) -> list[ShardPlan]:
    """Plan a packing run and store the plan in out/.pack/plan.json.

    A folder holding a plan with a different configuration is refused (ValueError): resuming must not
    mix shards of two configurations. Returns the plans.
    """
    out = Path(out)
    splits = list(splits) if splits else reader.default_splits()
    for s in splits:
        reader.index(s)  # unknown or absent splits fail here, before anything is written
    config = {"dataset": reader.name, "source_root": str(reader.root), "splits": splits,
              "shard_size_mb": shard_size_mb, "packer_version": PACKER_VERSION}
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
    tasks = [(reader, out, p) for p in plans]
    if workers <= 1:
        results = map(_pack_task, tasks)
        for rec in results:
            records.append(rec)
            if bar:
                bar.update(rec["count"])
    else:
        # spawn: safe after torch/threads in the parent; a worker that cannot start raises
        # BrokenProcessPool instead of being respawned forever (multiprocessing.Pool's behaviour)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for rec in pool.map(_pack_task, tasks):
                records.append(rec)
                if bar:
                    bar.update(rec["count"])
    if bar:
        bar.close()
    return sorted(records, key=lambda r: r["name"])


def pack_named(dataset: str, root: str, out: str, names: list[str], workers: int = 1) -> int:
    """Pack the planned shards ``names`` of out/.pack/plan.json (one array task of a cluster job,
    picklable by reference). Returns the number of shards done."""
    from salnet.data import get_reader

    wanted = set(names)
    plans = [p for p in load_plan(out)[1] if p.name in wanted]
    return len(pack_shards(get_reader(dataset, root), out, plans, workers))


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
    manifest = {"dataset": config["dataset"], "source_root": config["source_root"],
                "packer_version": PACKER_VERSION, "config": config, "splits": splits, "shards": shards}
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return manifest


def pack(reader: Reader, out: str | Path, splits: list[str] | None = None, shard_size_mb: float = 256.0,
         workers: int = 1, progress: bool = False) -> dict:
    """Plan, pack (resuming) and write the manifest, in this process and its pool. Returns the manifest."""
    plans = prepare(reader, out, splits, shard_size_mb)
    pack_shards(reader, out, plans, workers, progress)
    return finalize(out)


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
    every fixation, size). Returns {"shards", "samples", "errors": [messages]}."""
    out = Path(out)
    manifest = read_manifest(out)
    plan_path = out / STATE_DIR / "plan.json"
    planned = {p.name: p.ids for p in load_plan(out)[1]} if plan_path.is_file() else {}
    errors, n = [], 0
    for rec in manifest["shards"]:
        path = out / rec["name"]
        if not path.is_file():
            errors.append(f"{rec['name']}: missing")
            continue
        if sha256_file(path) != rec["sha256"]:
            errors.append(f"{rec['name']}: sha256 differs from the manifest")
        ids = []
        try:
            for r in iter_tar(path):
                s = decode_record(r)
                ids.append(s.id)
                n += 1
                if reader is not None:
                    errors += [f"{rec['name']}/{s.id}: {e}" for e in compare(s, reader.load(s.split, s.id))]
        except (tarfile.TarError, ValueError, OSError) as exn:
            errors.append(f"{rec['name']}: unreadable ({exn})")
        expected = planned.get(rec["name"])
        if (expected is not None and ids != expected) or len(ids) != rec["count"]:
            errors.append(f"{rec['name']}: holds {len(ids)} samples, the manifest says {rec['count']}")
    return {"shards": len(manifest["shards"]), "samples": n, "errors": errors}


def compare(a: Sample, b: Sample) -> list[str]:
    """Differences between two samples (empty when identical), for verification and tests."""
    diffs = []
    for field in ("dataset", "split", "id", "image_ext", "height", "width"):
        if getattr(a, field) != getattr(b, field):
            diffs.append(f"{field} {getattr(a, field)!r} != {getattr(b, field)!r}")
    if a.image != b.image:
        diffs.append("image bytes differ")
    if (a.map is None) != (b.map is None) or (
        a.map is not None and (a.map.dtype != b.map.dtype or not np.array_equal(a.map, b.map))
    ):
        diffs.append("map differs")
    if not np.array_equal(a.fixations, b.fixations):
        diffs.append(f"fixations differ ({len(a.fixations)} vs {len(b.fixations)})")
    return diffs

