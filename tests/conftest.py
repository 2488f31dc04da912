"""Shared test fixtures: the ../shared folder (real data samples, weights) and pysaliency."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear message when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent: the real data samples live in ../shared next to the repository "
                    "(not on a fresh user machine)")
    return p


@pytest.fixture(scope="session")
def pysaliency():
    """pysaliency 0.2.22 (the reference library); it calls np.trapz, which numpy 2.4 removed."""
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysaliency as ps
    return ps
