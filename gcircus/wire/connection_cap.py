"""A cap on the connections a bound zmq socket keeps, so idle clients cannot use up gcircusd's file descriptors.

libzmq accepts every connection and has no per-socket limit. A socket monitor reports each accepted connection with
its fd: past the cap, that connection is shut down at once (zmq then drops it, and a zmq client retries later),
after checking that the fd is still one of this socket's connections. Each channel may hold at most a quarter of
the RLIMIT_NOFILE soft limit (and MAX_CONNECTIONS), so spawning processes and accepting always have fds left.

The same monitor (a socket has one) reports, on a CURVE channel, the connections refused during their handshake:
a client without CURVE, or with another server key. The ZAP handler logs the refused keys; these are logged here,
with the peer's address read from the connection when it was accepted.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import stat

import gevent
import zmq.green as zmq

from gcircus.wire.protocol import recv_monitor_event
from gcircus.wire.refusals import RefusalLog

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1024  # per channel (control, pubsub), whatever the fd limit
SHARE_OF_FD_LIMIT = 4  # a channel holds at most 1/4 of the soft RLIMIT_NOFILE
_HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_WHY: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "a client without CURVE (no --curve-key/--server-key?)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "a CURVE client whose handshake cannot be decrypted (a wrong --server-key?)",
}


_UNKNOWN_PEER = "an address not known (the connection closed before it was read)"


def _why(event: int, value: int) -> str:
    """What a failed handshake says about the client (a refused key is the ZAP handler's to log)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # the value is an errno: the client closed first
        return f"a client that closed the connection during the handshake ({os.strerror(value)}; no CURVE key?)"
    return _WHY.get(value, f"a client whose handshake failed (zmq protocol error {value:#x})")


def connection_limit() -> int:
    """The cap for one channel: MAX_CONNECTIONS, or a quarter of the soft fd limit if that is lower (at least 8)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // SHARE_OF_FD_LIMIT))


class ConnectionCap:
    """Counts the connections zmq accepts on `sock` (bound to `endpoint`) and sheds those past `limit`."""

    def __init__(self, sock, option: str, limit: int | None = None, curve: bool = False):
        self.sock = sock
        self.option = option
        self.limit = connection_limit() if limit is None else limit
        self.connections = 0
        self.shed = 0
        self.curve = curve  # log the handshakes refused (a CURVE channel)
        self.refusals = RefusalLog(log)
        self._peers: dict[int, str] = {}  # fd -> peer address of the connections accepted (CURVE channels only)
        self._failed: str | None = None  # why the handshake that failed last did, until its connection closes
        self._monitor = None
        self._watcher: gevent.Greenlet | None = None

    def start(self) -> None:
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | (_HANDSHAKE_FAILED if self.curve else 0)
        self._monitor = self.sock.get_monitor_socket(events)
        self._watcher = gevent.spawn(self._watch)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.kill()  # waits for it to end before its monitor socket closes
            self._watcher = None
        if self._monitor is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._monitor = None

    def _watch(self) -> None:
        while True:
            try:
                event, value, endpoint = recv_monitor_event(self._monitor)
            except zmq.ZMQError:
                return
            if event == zmq.EVENT_ACCEPTED:
                self.connections += 1
                if self.connections > self.limit:
                    self._shed(value, endpoint)
                elif self.curve:
                    self._peers[value] = _peer_address(value)
            elif event == zmq.EVENT_DISCONNECTED:
                self.connections = max(0, self.connections - 1)
                self._log_refusal(self._peers.pop(value, _UNKNOWN_PEER), endpoint)
            elif event & _HANDSHAKE_FAILED:
                # libzmq reports the failure, then the connection's close with its fd: said once the peer is known.
                self._failed = _why(event, value)

    def _log_refusal(self, peer: str, endpoint: bytes) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            where = f"{self.option} {endpoint.decode(errors='replace')}"
            host = peer.rpartition(":")[0] if peer != _UNKNOWN_PEER else peer  # retries come from other ports
            self.refusals.refused((where, host, failed), "refused %s on %s from %s", failed, where, peer)

    def _shed(self, fd: int, endpoint: bytes) -> None:
        """Shut down the accepted connection on `fd`, unless the fd is no longer one of this socket's connections."""
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                return
            conn = socket.socket(fileno=os.dup(fd))
        except OSError:
            return  # already closed by zmq
        try:
            if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) or not _bound_to(conn, endpoint):
                return
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        finally:
            conn.close()  # the duplicate only: zmq closes its own fd once it sees the shutdown
        self.shed += 1
        if self.shed == 1 or self.shed % 1000 == 0:
            log.warning("%s: %d connections already (limit %d): refusing new ones (%d so far)", self.option,
                        self.connections - 1, self.limit, self.shed)


def _peer_address(fd: int) -> str:
    """The remote address of the connection on `fd` (`host:port`), or a phrase saying it is unknown: a refused
    handshake may have closed the connection before this runs."""
    try:
        conn = socket.socket(fileno=os.dup(fd))
    except OSError:
        return _UNKNOWN_PEER
    try:
        peer = conn.getpeername()
    except OSError:
        return _UNKNOWN_PEER
    finally:
        conn.close()
    if not isinstance(peer, tuple):
        return os.fsdecode(peer) or "a local socket"
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


def _bound_to(conn: socket.socket, endpoint: bytes) -> bool:
    """True when `conn`'s local address is the one zmq reported the connection on (`tcp://h:p` or `ipc://path`)."""
    text = endpoint.decode(errors="replace") if isinstance(endpoint, bytes) else str(endpoint)
    local = conn.getsockname()
    if text.startswith("ipc://"):
        return isinstance(local, (str, bytes)) and os.fsdecode(local) == text[len("ipc://"):]
    if text.startswith("tcp://") and isinstance(local, tuple):
        host, _, port = text[len("tcp://"):].rpartition(":")
        return port.isdigit() and local[1] == int(port)
    return False
