"""A paper's ordering checked on a sweep's per-image values (salnet.sweeps.orderings): known answers for a pair
that holds, one that is reversed and one the images cannot resolve, read back from a per_image.csv."""

import math

import numpy as np
import pytest

from salnet.sweeps.orderings import check_ordering, read_point_values, write_orderings
from salnet.sweeps.tables import per_image_csv


def values(offset: float, n: int = 60, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"i{k:03d}": 0.5 + offset + 0.1 * float(x) for k, x in enumerate(rng.standard_normal(n))}


def test_each_pair_holds_is_reversed_or_is_not_resolved():
    noise = np.random.default_rng(1).standard_normal(60)
    sweep = {"A": values(0.10, seed=2), "B": values(0.00),
             "C": {i: v + 0.0005 * float(e) for (i, v), e in zip(values(0.00).items(), noise)}}  # C ≈ B
    paper = {"A": 0.70, "C": 0.65, "B": 0.60, "Z": 0.99}  # Z: not in the sweep, left out
    pairs = check_ordering(sweep, paper, higher_is_better=True, n_boot=2000)
    got = {(p["above"], p["below"]): p for p in pairs}
    assert list(got) == [("A", "C"), ("A", "B"), ("C", "B")]  # the paper's order, best first
    assert got[("A", "B")]["delta"] == pytest.approx(sum(sweep["A"][i] - sweep["B"][i] for i in sweep["A"]) / 60,
                                                    rel=1e-12)
    assert got[("A", "B")]["verdict"] == got[("A", "C")]["verdict"] == "holds"
    assert got[("C", "B")]["verdict"] == "not resolved"
    assert got[("C", "B")]["low"] < 0 < got[("C", "B")]["high"]
    # lower is better (KLD): the paper ranks the smaller value first, so B above A, and A's larger values reverse it
    kld = check_ordering({"A": sweep["B"], "B": sweep["A"]}, {"A": 0.9, "B": 0.8}, higher_is_better=False)
    assert [(p["above"], p["below"], p["verdict"]) for p in kld] == [("B", "A", "reversed")]
    assert all(p["p_adjusted"] >= p["p"] for p in pairs)  # Holm never lowers a p-value


def test_read_from_per_image_csv_averages_seeds_and_writes_the_page(tmp_path):
    rows = []
    for point, offset in (("A", 0.2), ("B", 0.0)):
        for seed in (0, 1):
            vals = values(offset + 0.01 * seed, seed=seed)
            rows.append({"trial": f"{point}-s{seed}", "point": point, "seed": seed,
                         "per_image": [{"id": i, "cc": v} for i, v in vals.items()]})
    rows.append({"trial": "centre bias", "point": None, "seed": None,
                 "per_image": [{"id": "i000", "cc": math.nan}]})
    (tmp_path / "per_image.csv").write_text(per_image_csv(rows, ["cc"]))
    read = read_point_values(tmp_path / "per_image.csv", "cc")
    assert set(read) == {"A", "B"}  # the baseline has no point
    want = (values(0.2, seed=0)["i007"] + values(0.21, seed=1)["i007"]) / 2
    assert abs(read["A"]["i007"] - want) < 1e-12
    found = write_orderings(tmp_path, [{"label": "B", "source": "Paper T2", "cc": 0.7},
                                       {"label": "A", "source": "Paper T2", "cc": 0.6}], metrics=["cc"])
    assert [(p["above"], p["below"], p["verdict"]) for p in found["cc"]] == [("B", "A", "reversed")]
    page = (tmp_path / "orderings.md").read_text()
    assert "Paper: B > A" in page and "1 pairs: 0 hold, 1 reversed, 0 not resolved." in page
