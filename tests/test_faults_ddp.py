"""DDP rendezvous and collectives that cannot hang, with real processes and real sockets (no Slurm: the same
on the real local Slurm is tests/slurm/test_faults_slurm.py).

- MASTER_PORT held by another program (what hung CI: a port in the ephemeral range, taken): rank 0 fails at once
  naming the port and what to do; rank 1, which reached the other program instead of a store, ends within the
  timeout naming itself and the port (before: it waited forever).
- With a rendezvous file the same taken port does not matter: rank 0 publishes a port it has bound.
- Rank 0 never comes: rank 1 ends within the timeout naming the file.
- A rank killed (SIGKILL) or stopped (SIGSTOP) mid-training: the other ends with LostPeerError naming its rank and
  the process group's address, at once or within the timeout.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[1]

RANK = textwrap.dedent("""
    import json, os, sys, time, torch
    from salnet.train.distributed import all_reduce_sum, init_distributed, naming_peer_failures
    rank, port, rendezvous, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3] or None, int(sys.argv[4])
    environ = {"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    try:
        env = init_distributed(environ=environ, rendezvous=rendezvous)
        print(json.dumps({"port": env.master_port}), flush=True)
        with naming_peer_failures(env):
            for i in range(steps):
                total = all_reduce_sum(torch.tensor([rank + 1.0])).item()
                if i == 0:
                    print(json.dumps({"sum": total}), flush=True)
                time.sleep(0.05)
    except Exception as exn:
        print(json.dumps({"error": type(exn).__name__, "message": str(exn)}), flush=True)
        os._exit(3)  # not through the group's destructors: with a peer gone, gloo may abort there
""")


def held_port():
    """A socket listening on a port, as another program would hold it (it accepts connections, speaks no store)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def start(rank: int, port: int, rendezvous: Path | None = None, steps: int = 1, timeout_s: float = 4):
    return subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(port), str(rendezvous or ""), str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "SALNET_DIST_TIMEOUT_S": str(timeout_s)})


def lines(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def test_a_taken_master_port_ends_both_ranks_naming_the_port():
    holder, port = held_port()
    with holder:
        t0 = time.monotonic()
        procs = [start(r, port) for r in (0, 1)]
        outs = [p.communicate(timeout=120) for p in procs]
        took = time.monotonic() - t0
    (o0, _), (_, e1) = outs
    err0 = lines(o0)[-1]
    assert procs[0].returncode == 3 and err0["error"] == "RendezvousError"
    assert f"rank 0 of 2 (process group at 127.0.0.1:{port})" in err0["message"]
    assert "EADDRINUSE" in err0["message"] and "choose a free MASTER_PORT below" in err0["message"]
    # rank 1 connected to the other program, which never answers: the deadline ends it, naming rank and port
    assert procs[1].returncode == 1
    assert f"RendezvousError: rank 1 of 2 (process group at 127.0.0.1:{port}): no rendezvous" in e1
    assert took < 60  # 4 s timeout + 4 s grace + start-up; it used to wait forever


def test_a_rendezvous_file_meets_on_a_port_rank_0_has_bound(tmp_path):
    holder, port = held_port()
    rendezvous = tmp_path / ".rendezvous" / "123.0.json"
    with holder:  # MASTER_PORT is taken, and irrelevant
        procs = [start(r, port, rendezvous) for r in (0, 1)]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (a, b) = (lines(o) for o, _ in outs)
    assert a[0]["port"] == b[0]["port"] != port and a[1] == b[1] == {"sum": 3.0}
    assert not rendezvous.exists()  # rank 0 removes it once every rank is in


def test_rank_0_that_never_comes_is_an_error_naming_the_file(tmp_path):
    rendezvous = tmp_path / "r.json"
    p = start(1, 1, rendezvous, timeout_s=2)
    out, _ = p.communicate(timeout=60)
    err = lines(out)[-1]
    assert p.returncode == 3 and err["error"] == "RendezvousError"
    assert f"rank 1 of 2: rank 0 did not publish its address in {rendezvous} within 2 s" in err["message"]


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_a_lost_rank_ends_the_other_naming_rank_and_port(tmp_path, fault):
    rendezvous = tmp_path / "r.json"
    procs = [start(r, 0, rendezvous, steps=100000, timeout_s=3) for r in (0, 1)]
    try:
        first = json.loads(procs[0].stdout.readline())  # the group is up: wait for it, not for a while
        assert json.loads(procs[0].stdout.readline()) == {"sum": 3.0}
        t0 = time.monotonic()
        procs[1].send_signal(getattr(signal, fault))
        out, err0 = procs[0].communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    err = lines(out)[-1]
    assert procs[0].returncode == 3 and err["error"] == "LostPeerError", err0[-3000:]
    assert err["message"].startswith(f"rank 0 of 2 (process group at 127.0.0.1:{first['port']}): "
                                     "lost another rank")
    assert took < (5 if fault == "SIGKILL" else 20)  # a dead peer at once; a hung one after the 3 s timeout
