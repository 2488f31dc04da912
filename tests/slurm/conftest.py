"""Tests against the real local Slurm started by tests/run.sh (tests/slurm/cluster.sh)."""

import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def slurm():
    """The running cluster's SLURM_CONF, or skip with the reason."""
    conf = os.environ.get("SLURM_CONF")
    if not conf or not os.path.exists(conf) or not shutil.which("sinfo"):
        pytest.skip("no local Slurm: tests/run.sh starts one (tests/slurm/cluster.sh start) when run as root "
                    "with apt-get; here SLURM_CONF is unset or sinfo is missing")
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exn:
        pytest.skip(f"Slurm does not answer: {exn}")
    if out.returncode != 0:
        pytest.skip(f"Slurm does not answer: {out.stderr.strip()}")
    return conf
