"""Shared fixtures: pysaliency (the reference library). Helpers (../shared paths, synthetic shards):
helpers.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest


@pytest.fixture(scope="session")
def pysaliency():
    """pysaliency 0.2.22 (the reference library); it calls np.trapz, which numpy 2.4 removed."""
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysaliency as ps
    return ps



@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's ``--dist loadgroup`` (tests/run.sh runs two workers): a file's tests stay on one
    worker (its module fixtures are built once), and every Slurm test on one worker (the local cluster has one CPU
    and one GPU node; two workers' jobs would queue behind each other)."""
    for item in items:
        group = "slurm" if item.get_closest_marker("slurm") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def salnet_logger_restored():
    """A test that runs a script's main() sets up salnet's logging (salnet.logs.setup_logging); the next test
    starts from the library's default again (no handler, records propagate to pytest's capture)."""
    import logging

    logger = logging.getLogger("salnet")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state
