"""free_port(): a TCP port of 127.0.0.1 that no other test process on this machine was handed recently."""
from __future__ import annotations

import os
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
    os.makedirs(PORT_CLAIMS, exist_ok=True)
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        claim = os.path.join(PORT_CLAIMS, str(port))
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return port
        except FileExistsError:
            _forget_stale_claim(claim)
    raise RuntimeError(f"no unclaimed free port after 1000 tries (claims in {PORT_CLAIMS})")


def _forget_stale_claim(claim: str) -> None:
    try:
        if time.time() - os.stat(claim).st_mtime > PORT_CLAIM_SECONDS:
            os.unlink(claim)
    except FileNotFoundError:
        pass
