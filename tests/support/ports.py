"""free_port(): a TCP port of 127.0.0.1 that no other test process on this machine was handed recently."""
from __future__ import annotations

import os
import random
import socket
import tempfile
import time

# Ports handed out by free_port(), one claim file each, shared by every test process on the machine (xdist workers,
# other checkouts' runs): a claim older than PORT_CLAIM_SECONDS (past any test's 120 s timeout) is forgotten.
PORT_CLAIMS = os.path.join(tempfile.gettempdir(), "gcircus-test-ports")
PORT_CLAIM_SECONDS = 300


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now and that no other test on this machine was given recently.

    bind(0) alone only says the port is free at that instant: two tests running in parallel can be handed the same
    port before either binds it (a daemon takes a while to start). An exclusive claim file settles who got it.
    """
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if _claim(port):
            return port
    raise RuntimeError(f"no unclaimed free port after 1000 tries (claims in {PORT_CLAIMS})")


def free_wid_ports(count: int) -> str:
    """A prefix P such that the ports "P1" ... "P<count>" (P followed by a wid, count < 10) are free and claimed:
    a check or a command written `127.0.0.1:P$(circus.wid)` gives each worker a port of its own."""
    for _ in range(1000):
        prefix = random.randrange(1000, 6553)
        ports = [int(f"{prefix}{wid}") for wid in range(1, count + 1)]
        if all(_bindable(port) for port in ports) and all(_claim(port) for port in ports):
            return str(prefix)
    raise RuntimeError(f"no {count} free ports of one prefix after 1000 tries")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _claim(port: int) -> bool:
    """Claim `port` for this test (an exclusive claim file); False when another test holds a recent claim on it."""
    os.makedirs(PORT_CLAIMS, exist_ok=True)
    claim = os.path.join(PORT_CLAIMS, str(port))
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        _forget_stale_claim(claim)
        return False


def _forget_stale_claim(claim: str) -> None:
    try:
        if time.time() - os.stat(claim).st_mtime > PORT_CLAIM_SECONDS:
            os.unlink(claim)
    except FileNotFoundError:
        pass
