"""What the Slurm cluster says, through its commands: the partitions (``sinfo``) and job states (``sacct``)."""

from __future__ import annotations

import shutil
import subprocess

from salnet.run import LaunchError

# job states in which a job may still run (or be requeued)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


def slurm_partitions() -> tuple[list[str], str | None]:
    """(partitions, the default one) from ``sinfo``; a LaunchError when Slurm is not reachable."""
    if not shutil.which("sinfo"):
        raise LaunchError("--backend slurm: `sinfo` is not on PATH (not a Slurm login node?); use --backend local "
                          "to run on this machine")
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise LaunchError(f"sinfo failed: {out.stderr.strip() or out.returncode}; is Slurm up (SLURM_CONF)?")
    names = [p.strip() for p in out.stdout.split()]
    default = next((p.rstrip("*") for p in names if p.endswith("*")), None)
    return sorted({p.rstrip("*") for p in names}), default


def check_partition(name: str | None, known: list[str], flag: str) -> None:
    """A LaunchError naming ``flag`` and the cluster's partitions when ``name`` is missing or unknown."""
    if name is None:
        raise LaunchError(f"{flag} is required with --backend slurm; partitions here: {', '.join(known)}")
    if name not in known:
        raise LaunchError(f"{flag} {name!r} is not a partition of this cluster (sinfo); partitions: "
                          f"{', '.join(known)}")


def slurm_states(ids: list[str]) -> dict[str, str]:
    """Job id → Slurm state (sacct; the allocation's state, not its steps'). Unknown ids are left out."""
    if not ids:
        return {}
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=60)
    states = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        states[jid.split("_")[0]] = state.split()[0] if state else "UNKNOWN"
    return states


def slurm_runs(ids: list[str]) -> dict[str, list[str]]:
    """Job id → the state of each time Slurm ran it, oldest first (``sacct --duplicates``): a job requeued after
    a node failure reads ``["NODE_FAIL", "COMPLETED"]``. Unknown ids are left out."""
    if not ids:
        return {}
    out = subprocess.run(["sacct", "-n", "-P", "-X", "--duplicates", "-o", "JobID,State", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=60)
    runs: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        runs.setdefault(jid.split("_")[0], []).append(state.split()[0] if state else "UNKNOWN")
    return runs


def slurm_alive(job_id: str) -> bool:
    """Whether Slurm's controller has the job queued or running (``squeue``, not the accounting database): true
    again for a job it requeued after a node failure, which sacct may for a moment report as ended."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    states = out.stdout.split() if out.returncode == 0 else []
    return bool(states) and states[0] in ACTIVE
