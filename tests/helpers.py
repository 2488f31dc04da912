"""Test helpers shared by several test files (importable as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest


def synthetic_shards(root: Path, counts: dict[str, int], size=(32, 48), shard_size_mb: float = 0.05) -> Path:
    """Write a raw synthetic release under ``root/raw`` and pack it into ``root/shards``; returns the shards."""
    from salnet.data import get_reader
    from salnet.data.shards import pack
    from salnet.data.synthetic import write_synthetic

    write_synthetic(root / "raw", counts, size=size)
    pack(get_reader("synthetic", root / "raw"), root / "shards", list(counts), shard_size_mb=shard_size_mb)
    return root / "shards"


SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear message when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent: the real data samples live in ../shared next to the repository "
                    "(not on a fresh user machine)")
    return p
