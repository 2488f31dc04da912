"""Shared fixtures: pysaliency (the reference library). Helpers (../shared paths, synthetic shards):
helpers.py."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

# No test downloads VGG-16 weights (salnet.models.weights): "imagenet" is found in $SALNET_VGG16_WEIGHTS or
# torchvision's cache, or refused. Set here so that every job a test starts inherits it.
os.environ.setdefault("SALNET_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


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



def group_of(item) -> str:
    """The pytest-xdist group of a test: every Slurm test in one, else its file."""
    return "slurm" if item.get_closest_marker("slurm") else item.nodeid.split("@")[0].split("::")[0]


@pytest.hookimpl(wrapper=True)  # around pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's ``--dist loadgroup`` (tests/run.sh runs two workers): a file's tests stay on one
    worker (its module fixtures are built once), and every Slurm test on one worker (the local cluster has one CPU
    and one GPU node, and one test takes that node down). Afterwards, in a worker, the run stops when the groups did
    not reach the test ids (pytest 9.2 ignores pytest-xdist 3.8's suffix): Slurm tests side by side would fail."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item)))
    result = yield
    # a pytest-xdist worker of a --dist loadgroup run (not a pytest that a test starts, which inherits the
    # worker's environment but has no such option)
    if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
        ungrouped = [item.nodeid for item in items if not item.nodeid.endswith("@" + group_of(item))]
        if ungrouped:
            message = (f"pytest-xdist did not group {len(ungrouped)} tests (first: {ungrouped[0]}): with pytest "
                       f"{pytest.__version__}, --dist loadgroup would run Slurm tests side by side. Install the "
                       "pytest that pyproject.toml allows (./setup.sh), or run the tests with -n 0.")
            # the controller shows a worker's error only as its crash
            print(f"\nERROR {message}", file=sys.__stderr__, flush=True)
            raise pytest.UsageError(message)
    return result


@pytest.fixture
def script_here(monkeypatch, capsys):
    """``script_here(name, *args, cwd=None, env=None)``: jobs/<name>.py's main() in this process, as the command
    runs it (in folder ``cwd``, with exactly the environment ``env``; default: this one); an exit through
    SystemExit (argparse) gives its code. Returns (returncode, stdout, stderr) as a CompletedProcess."""
    import importlib.util
    import subprocess

    def run(name, *args, cwd=None, env=None):
        spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "jobs" / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        capsys.readouterr()
        with monkeypatch.context() as m:
            if cwd is not None:
                m.chdir(cwd)
            if env is not None:
                for k in [k for k in os.environ if k not in env]:
                    m.delenv(k)
                for k, v in env.items():
                    m.setenv(k, v)
            try:
                rc = script.main(list(args))
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)
    return run


@pytest.fixture
def launch_here(script_here):
    """``launch_here(*args, cwd=, env=)``: jobs/launch.py in this process (:func:`script_here`)."""
    return lambda *args, cwd, env: script_here("launch", *args, cwd=cwd, env=env)


@pytest.fixture(autouse=True)
def salnet_logger_restored():
    """A test that runs a script's main() sets up salnet's logging (salnet.logs.setup_logging); the next test
    starts from the library's default again (no handler, records propagate to pytest's capture)."""
    import logging

    logger = logging.getLogger("salnet")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state
