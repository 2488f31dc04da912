"""The reader interface every raw-release module implements, and layout checks with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salnet.data.sample import IMAGE_EXTS, Sample


class Reader:
    """A raw dataset release on disk.

    Subclasses set ``name`` and ``splits`` and implement ``_index(split) -> {id: image path}`` and
    ``load(split, id) -> Sample``. Construction checks the root's layout and raises
    FileNotFoundError naming what is missing. Readers are picklable (pool and Slurm workers)
    and cache only small indexes.
    """

    name = ""
    splits: tuple[str, ...] = ()
    layout_help = ""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: root {self.root} is not a folder. {self.layout_help}")
        self._indexes: dict[str, dict[str, Path]] = {}
        self.check_layout()

    def check_layout(self) -> None:
        """Raise FileNotFoundError naming the missing parts of the expected layout."""

    def available_splits(self) -> list[str]:
        """The splits of ``splits`` that this root actually holds."""
        return [s for s in self.splits if self.has_split(s)]

    def default_splits(self) -> list[str]:
        """What packing takes when no splits are named: the available ones, minus aliases like "all"."""
        return [s for s in self.available_splits() if s != "all" or self.splits == ("all",)]

    def has_split(self, split: str) -> bool:
        return True

    def index(self, split: str) -> dict[str, Path]:
        """{id: image path} of a split (cached)."""
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; this dataset has {list(self.splits)}")
        if split not in self._indexes:
            if not self.has_split(split):
                raise FileNotFoundError(f"{self.name}: split {split!r} not found under {self.root}. {self.layout_help}")
            self._indexes[split] = self._index(split)
        return self._indexes[split]

    def ids(self, split: str) -> list[str]:
        """Sample ids of a split, sorted (the packing order)."""
        return sorted(self.index(split))

    def size_hint(self, split: str, id: str) -> int:
        """Approximate bytes of a packed sample, for planning shards before encoding anything."""
        return self.index(split)[id].stat().st_size + 64 * 1024

    def load(self, split: str, id: str) -> Sample:
        raise NotImplementedError

    def _index(self, split: str) -> dict[str, Path]:
        raise NotImplementedError


def seeded_split(ids, split: str, sizes: dict[str, int], full: int, seed: int) -> list[str]:
    """The ids of ``split`` in a deterministic partition of ``ids`` (sorted, then a seeded permutation).

    ``sizes`` are the split sizes of the full release of ``full`` images (e.g. MIT1003's 500/200/rest);
    a partial copy gets proportional sizes; the last split takes the remainder. "all" is every id.
    """
    ids = sorted(ids)
    if split == "all":
        return ids
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)
    names, start = list(sizes), 0
    for i, name in enumerate(names):
        stop = n if i == len(names) - 1 else start + round(n * sizes[name] / full)
        if name == split:
            return sorted(ids[j] for j in order[start:stop])
        start = stop
    raise ValueError(f"unknown split {split!r}; choose one of {[*names, 'all']}")


def require(root: Path, *relpaths: str, help: str = "") -> None:
    """FileNotFoundError listing every relpath missing under root."""
    missing = [p for p in relpaths if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(f"{root}: missing {', '.join(missing)}. {help}".rstrip())


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files (jpg/jpeg/png, any case) in a folder, sorted; hidden files skipped."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower().lstrip(".") in IMAGE_EXTS
    )


def ext_of(path: Path) -> str:
    """The release's extension, lower-cased, without the dot ("jpg", "jpeg", "png")."""
    return path.suffix.lower().lstrip(".")
