"""Shared fixtures: pysaliency (the reference library). Helpers (../shared paths, synthetic shards):
helpers.py."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

# No test downloads VGG-16 weights (salnet.models.weights): "imagenet" is found in $SALNET_VGG16_WEIGHTS or
# torchvision's cache, or refused. Set here so that every job a test starts inherits it.
os.environ.setdefault("SALNET_OFFLINE", "1")


def pytest_report_header(config):
    return ("salnet: tests train tiny networks from random VGG-16 weights (model.weights=random); "
            "SALNET_OFFLINE=1: no weights are downloaded")


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
