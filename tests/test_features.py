"""The loss study's feature cache (salnet.data.features, jobs/pack.py features): logits from the cache against the
uncached network, a run from the cache against the uncached run, refusal of a stale cache, resuming, DDP shares."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import synthetic_shards

from salnet.config import Config, apply_overrides
from salnet.data.features import TAPS, model_input, tap_key
from salnet.data.loader import LoaderConfig, TrainLoader, ValLoader
from salnet.models.aspp import ASPPNet
from salnet.run.features import main as features_main
from salnet.train.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
SIZE = (64, 96)  # (H, W)
WIDTH = 0.0625


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """12 train and 6 val synthetic images, two or three per shard."""
    return synthetic_shards(tmp_path_factory.mktemp("features"), {"train": 12, "val": 6}, (64, 96), 0.08)


def write(shards, out, *extra: str, seed: int = 0) -> dict:
    """jobs/pack.py features on ``shards`` for the tiny random network of ``seed``; returns the manifest."""
    argv = ["features", "--shards", str(shards), "--out", str(out), "--input-size", f"{SIZE[1]}x{SIZE[0]}",
            "--weights", "random", "--width", str(WIDTH), "--seed", str(seed), "--no-progress", *extra]
    assert pack_main(argv) == 0
    return json.loads((out / "manifest.json").read_text())


def pack_main(argv: list[str]) -> int:
    """jobs/pack.py's main (jobs/ is a folder of scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("pack_job", Path(__file__).parents[1] / "jobs" / "pack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def network(seed: int = 0) -> ASPPNet:
    torch.manual_seed(seed)  # as a run seeds before it builds its network
    return ASPPNet(width=WIDTH, weights="random").eval()


def logits_pairs(shards, cache, batch: int):
    """(logits from the cache, the network's logits on the images), both one sample per forward (oneDNN's
    convs round differently at different batch sizes), and the cached logits of whole batches, over the val
    split."""
    G = network()
    loader = ValLoader(shards, "val", LoaderConfig(size=SIZE, batch_size=batch, workers=0, flip=False,
                                                   features=str(cache)))
    with torch.no_grad():
        for b in loader:
            taps, n = model_input(b), len(b["id"])
            assert isinstance(taps, dict) and set(taps) == set(TAPS)
            cached = torch.cat([G({k: v[i: i + 1] for k, v in taps.items()}).logits for i in range(n)])
            alone = torch.cat([G(b["image"][i: i + 1]).logits for i in range(n)])
            yield cached, alone, G(taps).logits


def test_float32_cache_gives_the_networks_logits_exactly(shards, tmp_path):
    """Written one image per encoder forward (--batch-size 1), float32 taps give bit-equal logits to the network
    on each image: the head runs the same resize, concat and layers. Whole batches through the head differ from
    one-image forwards by float32 rounding only (oneDNN's convs round differently per batch size, cached or not)."""
    manifest = write(shards, tmp_path / "f32", "--dtype", "float32", "--batch-size", "1")
    assert manifest["shapes"] == {"pool3": [16, 8, 12], "pool4": [32, 4, 6], "conv5_3": [32, 4, 6]}
    assert manifest["layers"] == list(TAPS) and manifest["input_size"] == list(SIZE)
    seen = 0
    for cached, alone, batched in logits_pairs(shards, tmp_path / "f32", batch=4):
        assert torch.equal(cached, alone)
        assert (batched - alone).abs().max() <= 1e-5 * alone.abs().max()
        seen += len(cached)
    assert seen == 6


def test_float16_cache_within_its_rounding(shards, tmp_path):
    """float16 taps (11-bit significand): logits within 1e-3 of the largest logit's size; a tap takes half the
    float32 bytes."""
    m16 = write(shards, tmp_path / "f16")
    m32 = write(shards, tmp_path / "f32", "--dtype", "float32")
    assert m16["dtype"] == "float16"
    assert m32["dtype"] == "float32" and m16["shapes"]["pool3"] == [16, 8, 12]
    for folder, nbytes in (("f16", 2), ("f32", 4)):  # a .npy header and the values
        assert len(next(iter_members(tmp_path / folder / "val-000000.tar"))) == 128 + nbytes * 16 * 8 * 12
    for cached, alone, _ in logits_pairs(shards, tmp_path / "f16", batch=3):
        assert (cached - alone).abs().max() <= 1e-3 * alone.abs().max()


def iter_members(path):
    from salnet.data.tario import iter_members as members

    for _name, _key, suffix, data in members(path):
        if suffix == "pool3.npy":
            yield data


def config(shards, *extra: str) -> Config:
    return apply_overrides(Config(), [
        "model.arch=aspp", f"model.width={WIDTH}", "model.weights=random", f"data.input_size=[{SIZE[0]}, {SIZE[1]}]",
        "data.batch_size=4", "data.workers=0", "data.val_subset=6", "train.procedure=content", "train.optimizer=sgd",
        "train.lr=0.05", "train.epochs=3", "train.bf16=false", "train.seed=3",
        "train.loss={kld: 10.0, cc: -2.0, nss: -1.0}", f"data.shards={shards}", *extra])


def test_a_run_from_the_cache_ends_where_the_uncached_run_ends(shards, tmp_path):
    """Same seed, 3 epochs of LC1 (9 SGD steps, dropout on). From a float32 cache the weights end within 1e-5 of
    the uncached run's (the encoder's per-batch-size rounding, ~1e-8, carried through 9 steps) and every
    validation metric within 1e-5 (relative); from the float16 cache the weights within 5 % of the distance the
    head trained and the metrics within 1e-2: LC1's CC and NSS terms standardise the tiny random network's
    near-flat maps, which magnifies the taps' float16 rounding."""
    write(shards, tmp_path / "f32", "--dtype", "float32", "--seed", "3")
    write(shards, tmp_path / "f16", "--seed", "3")
    runs = {}
    for name, feats in (("plain", "null"), ("f32", tmp_path / "f32"), ("f16", tmp_path / "f16")):
        trainer = Trainer(config(shards, f"data.features={feats}"), run_dir=tmp_path / name)
        runs[name] = (trainer.fit(), {k: v.clone() for k, v in trainer.G.state_dict().items()})
    plain, plain_w = runs["plain"]
    assert plain["status"] == "done" and plain["step"] == 9
    moved = max((plain_w[k] - v).abs().max().item() for k, v in network(3).state_dict().items()
                if not k.startswith("encoder."))
    assert moved > 0.1  # the head trained
    for name, (tol_w, tol_m) in {"f32": (1e-5, 1e-5), "f16": (0.05 * moved, 1e-2)}.items():
        result, weights = runs[name]
        assert result["step"] == 9
        assert max((weights[k] - plain_w[k]).abs().max().item() for k in weights) <= tol_w, name
        for metric, value in plain["val"].items():
            assert abs(result["val"][metric] - value) <= tol_m * max(1.0, abs(value)), (name, metric)


def test_a_stale_cache_is_refused_with_each_difference_named(shards, tmp_path):
    """Other weights (another random draw), another input size, other source shards: one ValueError naming each."""
    write(shards, tmp_path / "other", seed=5)
    with pytest.raises(ValueError, match=r"made for other weights \(encoder sha256 .*model.weights=random\)"):
        Trainer(config(shards, f"data.features={tmp_path / 'other'}"), run_dir=tmp_path / "a")
    other_src = synthetic_shards(tmp_path / "src", {"train": 12, "val": 5}, (64, 96), 0.08)
    with pytest.raises(ValueError, match=r"other source shards \(.*\); other weights .*; other input size "
                                         r"\(96x64, this run's 128x96\)"):
        Trainer(config(other_src, f"data.features={tmp_path / 'other'}", "data.input_size=[96, 128]"),
                run_dir=tmp_path / "b")
    manifest = json.loads((tmp_path / "other" / "manifest.json").read_text())
    manifest["layers"] = ["pool3", "pool4"]
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"other layers \(pool3, pool4; this network's pool3, pool4, conv5_3\)"):
        ValLoader(shards, "val", LoaderConfig(size=SIZE, flip=False, features=str(tmp_path / "other")))
    with pytest.raises(ValueError, match="data.flip must be false"):
        TrainLoader(shards, "train", LoaderConfig(size=SIZE, flip=True, features=str(tmp_path / "other")))
    with pytest.raises(ValueError, match="model.arch=aspp"):
        Trainer(config(shards, f"data.features={tmp_path / 'other'}", "model.arch=salgan"), run_dir=tmp_path / "c")


def test_auto_reads_the_cache_next_to_the_shards_when_there_is_one(shards, tmp_path):
    """data.features=auto: no <shards>-vgg16-96x64 folder → the uncached network; with one → its taps."""
    cfg = config(shards, "data.features=auto", "train.seed=0")
    assert Trainer(cfg, run_dir=tmp_path / "a").train_loader.cfg.features is None
    default = shards.parent / f"{shards.name}-vgg16-96x64"
    features_main(["--shards", str(shards), "--input-size", "96x64", "--weights", "random", "--width", str(WIDTH),
                   "--no-progress"])  # --out left out: the default folder
    try:
        trainer = Trainer(cfg, run_dir=tmp_path / "b")
        assert trainer.train_loader.cfg.features == str(default)
        assert {tap_key(n) for n in TAPS} <= set(next(iter(trainer.train_loader)))
    finally:
        import shutil

        shutil.rmtree(default)


def test_writing_resumes_and_array_chunks_give_the_same_cache(shards, tmp_path, capsys):
    """An array task's chunk first (salnet.run.features.write_named), then the command: the other tars are
    written, the finished ones left alone, and the cache equals one written in one go."""
    from salnet.data.features_writer import load_plan, prepare
    from salnet.run.features import build_encoder, write_named

    whole = write(shards, tmp_path / "whole")
    out = tmp_path / "parts"
    prepare(shards, out, build_encoder("random", WIDTH, 0), SIZE, "float16", "random")
    names = [s["name"] for s in load_plan(out)["shards"]][:3]
    assert write_named(str(out), names, "random", WIDTH, 0, "cpu", 8) == 3
    before = {n: os.stat(out / n).st_mtime_ns for n in names}
    parts = write(shards, out)
    assert {n: os.stat(out / n).st_mtime_ns for n in names} == before
    assert [r["sha256"] for r in parts["shards"]] == [r["sha256"] for r in whole["shards"]]
    assert pack_main(["features", "--shards", str(shards), "--out", str(out), "--dtype", "float32", "--weights",
                 "random", "--width", str(WIDTH), "--input-size", "96x64"]) == 2  # planned for float16: refused
    assert "holds a feature cache of other dtype (float16)" in capsys.readouterr().err


def test_ranks_read_each_sample_once_with_its_own_taps(shards, tmp_path):
    """Two ranks' validation shares cover the split once, and each sample's taps equal the one-rank loader's;
    a training epoch on each rank holds only samples with taps."""
    write(shards, tmp_path / "c")
    cfg = LoaderConfig(size=SIZE, batch_size=2, workers=0, flip=False, features=str(tmp_path / "c"))
    one = {sid: b[tap_key("pool4")][i] for b in ValLoader(shards, "val", cfg) for i, sid in enumerate(b["id"])}
    seen = []
    for rank in (0, 1):
        for b in ValLoader(shards, "val", cfg, rank=rank, world_size=2):
            for i, sid in enumerate(b["id"]):
                assert torch.equal(b[tap_key("pool4")][i], one[sid])
                seen.append(sid)
    assert sorted(seen) == sorted(one)
    train = TrainLoader(shards, "train", cfg, rank=1, world_size=2)
    batches = list(train)
    assert len(batches) == 3 and train.stats["bad"] == 0
    assert all(b[tap_key("conv5_3")].abs().sum() > 0 for b in batches)


def test_the_cached_step_counts_the_head_alone():
    """The loss-study network at 300×400 (counted from layer shapes): the step from images 85.4 GFLOP per image,
    from cached taps 12.5 (6.8× less); validation 78.8 and 6.0."""
    from salnet.config import PRESETS
    from salnet.train.flops import training_flops

    cfg = PRESETS["loss_study"]()
    full, head = training_flops(cfg), training_flops(cfg, cached=True)
    assert full == {"content": 85_395_033_600.0, "validate": 78_847_040_000.0}
    assert head == {"content": 12_549_926_400.0, "validate": 6_001_932_800.0}
    assert round(full["content"] / head["content"], 2) == 6.80


def test_a_sample_missing_from_the_cache_is_counted_bad_not_misaligned(shards, tmp_path):
    """A cache tar without its first sample (cut by hand): that sample is skipped and counted bad, and every
    other sample keeps its own taps (the zip goes by key, not position)."""
    from salnet.data.tario import iter_members, write_tar

    write(shards, tmp_path / "c")
    cfg = LoaderConfig(size=SIZE, batch_size=2, workers=0, flip=False, max_bad_fraction=1.0,
                       features=str(tmp_path / "c"))
    whole = {sid: b[tap_key("pool3")][i].clone() for b in ValLoader(shards, "val", cfg)
             for i, sid in enumerate(b["id"])}
    tar = tmp_path / "c" / "val-000000.tar"
    members = [(name, data) for name, _key, _suffix, data in iter_members(tar)]
    first = members[0][0].split(".")[0]
    write_tar(tar, [(n, d) for n, d in members if not n.startswith(first + ".")])
    loader = ValLoader(shards, "val", cfg)
    cut = {sid: b[tap_key("pool3")][i] for b in loader for i, sid in enumerate(b["id"])}
    assert loader.stats == {"good": 5, "bad": 1} and len(whole) == 6
    assert all(torch.equal(t, whole[sid]) for sid, t in cut.items())
