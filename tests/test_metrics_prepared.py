"""The statistics cache the metrics share (salnet.metrics.prepared.PreparedMaps): its values, that score_batch
computes each statistic once, and that sharing it changes no metric's value."""

import pytest
import torch

from salnet import metrics as M
from salnet.metrics import prepared
from salnet.metrics.prepared import PreparedMaps
from salnet.models.baselines import center_bias


def batch(B=3, H=30, W=40, seed=0):
    """A prediction at half size, fixation counts (0-2), other images' fixations, a ground-truth map and the
    centre bias; image 1 has a constant prediction, image 2 no fixations."""
    gen = torch.Generator().manual_seed(seed)
    pred = torch.rand(B, H // 2, W // 2, generator=gen, dtype=torch.float64) * 4 - 1
    fix = (torch.rand(B, H, W, generator=gen) < 0.05).double() * torch.randint(1, 3, (B, H, W), generator=gen)
    pred[1], fix[2] = 0.25, 0.0
    gt = torch.rand(B, H, W, generator=gen, dtype=torch.float64)
    base = torch.from_numpy(center_bias((H, W))).expand(B, H, W)
    return {"pred": pred, "fixations": fix, "other": fix.roll(1, 0), "gt_map": gt, "baseline": base}


def options(name):
    m = M.METRICS[name]
    return {**({"seed": 4, "keys": None} if m.random else {}), **({"variant": "mit"} if m.has_variant else {})}


def test_statistics_equal_torch_reductions():
    inputs = batch()
    maps = PreparedMaps(inputs["pred"], fixations=inputs["fixations"], gt_map=inputs["gt_map"],
                        other=inputs["other"], baseline=inputs["baseline"])
    assert maps.size == (30, 40) and maps.pred.shape == (3, 30, 40)  # resized to the ground truth
    assert torch.equal(maps.pred, M.common.resize_to(inputs["pred"], (30, 40)))
    for name in ("pred", "gt_map", "baseline"):
        x = maps.flat(name)
        st = maps.stats(name)
        assert st.n == 1200 and torch.equal(st.min, x.amin(1)) and torch.equal(st.max, x.amax(1))
        assert torch.allclose(st.sum, x.sum(1), rtol=1e-13, atol=0)
        assert torch.allclose(st.sum_sq, x.square().sum(1), rtol=1e-13, atol=0)
        for ddof in (0, 1):
            std = maps.std(name, ddof)
            defined = ~st.constant
            assert torch.allclose(std[defined], x.std(1, correction=ddof)[defined], rtol=1e-12, atol=0)
            assert std[~defined].isnan().all()  # the constant prediction
    stats_p, stats_g, dot = maps.pred_gt_stats()
    assert stats_p is maps.stats("pred") and stats_g is maps.stats("gt_map")  # kept, not computed again
    assert torch.allclose(dot, (maps.flat("pred") * maps.flat("gt_map")).sum(1), rtol=1e-13, atol=0)
    layout = maps.layout()
    fixated = inputs["fixations"].flatten(1) > 0
    assert layout.n_fixated.tolist() == fixated.sum(1).tolist() and layout.n_fixated[2] == 0
    for b in range(3):  # the packed values are the map's at the fixated pixels, ascending, then zeros
        k = int(layout.n_fixated[b])
        assert torch.equal(maps.at_fixations("pred")[b, :k], maps.flat("pred")[b][fixated[b]])
        assert torch.equal(layout.counts[b, :k], inputs["fixations"].flatten(1)[b][fixated[b]])
        assert not layout.valid[b, k:].any() and not maps.at_fixations("pred")[b, k:].any()
    assert torch.equal(maps.at_fixations("gt_map", "other"), maps.layout("other").pack(maps.flat("gt_map")))


def test_missing_or_mismatched_maps_are_errors_naming_them():
    inputs = batch()
    maps = PreparedMaps(inputs["pred"], fixations=inputs["fixations"])
    with pytest.raises(ValueError, match=r"no gt_map map in this batch \(have: pred, fixations\)"):
        maps.stats("gt_map")
    with pytest.raises(ValueError, match=r"other \(2, 30, 40\) must have the fixations' shape \(3, 30, 40\)"):
        PreparedMaps(inputs["pred"], fixations=inputs["fixations"], other=inputs["other"][:2])
    with pytest.raises(ValueError, match=r"gt_map \(3, 15, 20\) must have the fixations' shape"):
        M.score_batch(inputs["pred"], fixations=inputs["fixations"], gt_map=inputs["gt_map"][:, ::2, ::2],
                      metrics=["nss", "cc"])


def test_score_batch_computes_each_statistic_once(monkeypatch):
    computed = []

    def counting(fn):
        def wrapper(x, *args):  # the map, and the ddof of a std
            computed.append((fn.__name__, x.data_ptr(), *[a for a in args if isinstance(a, int)]))
            return fn(x, *args)
        return wrapper

    for fn in ("map_stats", "map_std", "fixation_layout"):
        monkeypatch.setattr(prepared, fn, counting(getattr(prepared, fn)))
    inputs = batch()
    M.score_batch(inputs["pred"], fixations=inputs["fixations"], gt_map=inputs["gt_map"], other=inputs["other"],
                  baseline=inputs["baseline"][0])
    assert len(computed) == len(set(computed))  # no statistic of a map twice for the nine metrics
    assert sum(c[0] == "fixation_layout" for c in computed) == 2  # the fixations' and the other images'


def test_sharing_the_cache_changes_no_value():
    inputs = batch(seed=1)

    def fresh():
        return PreparedMaps(inputs["pred"], fixations=inputs["fixations"], gt_map=inputs["gt_map"],
                            other=inputs["other"], baseline=inputs["baseline"])

    alone = {name: m.of(fresh(), **options(name)) for name, m in M.METRICS.items()}  # a cache each
    shared = fresh()
    for order in (list(M.METRICS), list(M.METRICS)[::-1]):  # one cache for all, in either order
        for name in order:
            value = M.METRICS[name].of(shared, **options(name))
            assert torch.equal(value.isnan(), alone[name].isnan()), name
            assert torch.equal(value.nan_to_num(), alone[name].nan_to_num()), name
    # and the functions on tensors give the same values as on prepared maps
    assert torch.equal(M.nss(inputs["pred"], inputs["fixations"]).nan_to_num(), alone["nss"].nan_to_num())
    assert torch.equal(M.cc(inputs["pred"], inputs["gt_map"]).nan_to_num(), alone["cc"].nan_to_num())
