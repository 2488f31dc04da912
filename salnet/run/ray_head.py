"""A private Ray head for one sweep: its own temp dir, its own ports, loopback only.

    with RayHead(sweep_dir / "ray", num_cpus=5, key=sweep_id):   # ray.init() is connected inside
        tuner.fit()

Two sweeps on one node (or a sweep next to a user's own Ray) must not share a Ray instance: ``ray.init()``
cannot set the worker/agent ports, so the head is started with ``ray start --head --block`` and every port
named, then killed as a process group (SIGTERM makes Ray drain for 30 s). Ray's environment (docs/design.md,
"Slurm and Ray"): no usage stats, no non-loopback address, no auth token; it is set when the head
starts, never at import: call :func:`use_ray_env` before the process first imports Ray (Ray reads
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import; imported without it, ``ray.init`` turns 127.0.0.1 into the node's
network address and never reaches the loopback-only head). Ray's workers import the trials' code from the
installed salnet package.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# RAY_enable_metrics_collection=0: with the dashboard off nothing receives Ray's metrics, and its GCS and raylet would
# log "Failed to establish connection to the metrics exporter" into every sweep's output
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0", "RAY_enable_metrics_collection": "0"}


def use_ray_env() -> None:
    """Set Ray's environment (:data:`RAY_ENV`) in this process; call it before this process imports Ray."""
    os.environ.update(RAY_ENV)


PORTS = ("port", "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
         "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port", "ray-client-server-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def component_ports(lo: int, hi: int) -> dict[str, int]:
    """A free, distinct port for each Ray component, none inside the workers' range [lo, hi] (Ray refuses
    to start when a component port falls in it)."""
    ports: dict[str, int] = {}
    while len(ports) < len(PORTS):
        p = free_port()
        if not lo <= p <= hi and p not in ports.values():
            ports[PORTS[len(ports)]] = p
    return ports


def worker_port_range(key: str, width: int = 200) -> tuple[int, int]:
    """A worker-port range that depends on the sweep (20000–59999), so concurrent sweeps rarely overlap;
    Ray skips ports that are taken inside the range anyway."""
    start = 20000 + int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 40000 // width * width
    return start, start + width - 1


class RayHead:
    """Start a Ray head in a process group of its own and connect ``ray.init`` to it; stop both on exit."""

    def __init__(self, folder: Path, num_cpus: int, key: str, start_timeout_s: float = 120):
        self.folder = Path(folder)
        self.num_cpus = num_cpus
        self.key = key
        self.timeout = start_timeout_s
        self.proc: subprocess.Popen | None = None
        # Unix sockets live under the temp dir: keep it short (a 107-byte path limit), one per sweep
        self.temp_dir = Path("/tmp") / f"salnet-ray-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def __enter__(self) -> RayHead:
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise RuntimeError("Ray was imported before its environment was set: call "
                               "salnet.run.ray_head.use_ray_env() before the first `import ray`")
        use_ray_env()
        import ray

        self.folder.mkdir(parents=True, exist_ok=True)
        lo, hi = worker_port_range(self.key)
        ports = component_ports(lo, hi)
        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block",
               "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
               "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(self.temp_dir),
               "--object-store-memory", str(256 * 2**20), "--min-worker-port", str(lo), "--max-worker-port", str(hi)]
        for name, port in ports.items():
            cmd += [f"--{name}", str(port)]
        (self.folder / "ports.json").write_text(json.dumps({**ports, "worker_ports": [lo, hi],
                                                            "temp_dir": str(self.temp_dir)}, indent=2))
        log = open(self.folder / "head.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **RAY_ENV})
        log.close()
        address = f"127.0.0.1:{ports['port']}"
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Ray head exited ({self.proc.returncode}); see {self.folder / 'head.log'}")
            try:
                with socket.create_connection(("127.0.0.1", ports["port"]), timeout=1):
                    pass  # the GCS listens: ray.init would otherwise block on a head still starting
                ray.init(address=address, _node_ip_address="127.0.0.1", log_to_driver=True,
                         logging_level=logging.WARNING)
                return self
            except (OSError, RuntimeError, ValueError):
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"no Ray head at {address} after {self.timeout:.0f} s; see "
                                       f"{self.folder / 'head.log'}") from None
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None
