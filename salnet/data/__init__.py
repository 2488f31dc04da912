"""Datasets: raw-release readers, the synthetic dataset, WebDataset shards and the streaming loader.

``get_reader(name, root)`` opens a raw release by dataset name (see ``READERS``).
"""

from __future__ import annotations

from pathlib import Path

from salnet.data.base import Reader
from salnet.data.cat2000 import CAT2000
from salnet.data.folder import Folder
from salnet.data.mit300 import MIT300
from salnet.data.mit1003 import MIT1003
from salnet.data.osie import OSIE
from salnet.data.pysaliency_hdf5 import PysaliencyHDF5
from salnet.data.salicon import Salicon
from salnet.data.sample import Sample
from salnet.data.synthetic import Synthetic, make_synthetic, true_density, write_synthetic

READERS: dict[str, type[Reader]] = {
    r.name: r for r in (Salicon, MIT1003, MIT300, CAT2000, OSIE, PysaliencyHDF5, Synthetic, Folder)
}


def get_reader(name: str, root: str | Path, **options) -> Reader:
    """The reader of dataset ``name`` on the raw release at ``root``; ``options`` are the reader's own
    keyword arguments (``folder``: sigma, val_fraction, test_fraction, seed).

    ValueError for an unknown name (listing the known ones); FileNotFoundError when root's layout
    is not the dataset's (naming what is missing).
    """
    key = name.lower()
    if key not in READERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(READERS))}")
    if options and key != "folder":
        raise ValueError(f"dataset {name!r} takes no options ({', '.join(sorted(options))}); they apply to 'folder'")
    return READERS[key](root, **options)


__all__ = ["READERS", "Reader", "Sample", "get_reader", "make_synthetic", "true_density", "write_synthetic"]
