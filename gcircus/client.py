"""A client for the control channel: send one command, get its reply dict (PROTOCOL.md 2.1-2.3, 4.8).

It speaks Circus's wire format, so it drives gcircusd and circusd alike. It differs from Circus's CircusClient in
what it tells apart: nothing listening at the endpoint (`NoDaemonError`, seen within milliseconds through a zmq
socket monitor instead of after the whole timeout) versus a daemon that is there but did not answer in time
(`DaemonTimeout`). After either failure the socket is dropped, so a request queued for an absent daemon is never
delivered later, when nobody waits for its reply any more.

Green or plain: a waiting call must not freeze a gevent hub, yet plain threads should not need gevent at all. With
`green=None` (the default) the client decides when it is built: it uses `zmq.green` when the building thread
already has a gevent hub (gevent code runs or ran there) or the socket module is monkey-patched; otherwise it uses
plain `zmq` and blocks only its own thread. Pass `green=True/False` to choose. A client belongs to the thread that
built it; inside that thread, greenlets (or callers) sharing one client take turns.

CURVE: with `curve_key` (this client's secret certificate) and `server_key` (the daemon's public certificate), the
connection is a CURVE client (gcircus.wire.curve). A handshake the daemon refuses (no key, a key it does not list,
another server key) raises HandshakeRefused at once, saying which, instead of waiting out the timeout.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import zmq

from gcircus.options import CIRCUS_OPTIONS
from gcircus.wire.curve import (
    CURVE_KEY_VARIABLE,
    HANDSHAKE_FAILED,
    SERVER_KEY_VARIABLE,
    ClientKeys,
    handshake_failure,
)
from gcircus.wire.endpoints import ipc_path
from gcircus.wire.protocol import recv_monitor_event

DEFAULT_ENDPOINT = CIRCUS_OPTIONS["endpoint"].default
DEFAULT_TIMEOUT = 5.0
# After a disconnect, how long a reply that was already on its way may still take to show up.
_DISCONNECT_GRACE = 0.05
VAGUE_HANDSHAKES = 5  # handshakes failing without a reason before the client gives up (zmq retries every 0.1 s)
_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED


class CallError(Exception):
    """A call that got no reply (Circus's client raises this name for its timeouts)."""

    def __init__(self, message: str, endpoint: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint


class NoDaemonError(CallError):
    """Nothing listens at the endpoint (refused connection, missing ipc path), or the daemon went away."""


class HandshakeRefused(CallError):
    """The daemon closed the connection during its security handshake: CURVE keys missing, refused or wrong."""


class DaemonTimeout(CallError):
    """The daemon is connected but did not answer within the timeout."""

    def __init__(self, message: str, endpoint: str | None = None, timeout: float | None = None):
        super().__init__(message, endpoint)
        self.timeout = timeout


class ReplyError(Exception):
    """An error reply, raised only on request (`check=True`, `check_reply`): Circus's client returns it as a dict."""

    def __init__(self, reply: dict):
        self.reply = reply
        self.reason = str(reply.get("reason", "error"))
        self.errno = reply.get("errno")
        super().__init__(self.reason)


def is_error(reply: dict) -> bool:
    """True for an error reply (`status` is also a watcher's state in `status NAME` replies, never `error`)."""
    return reply.get("status") == "error"


def check_reply(reply: dict) -> dict:
    """Return `reply`, or raise ReplyError when it is an error reply."""
    if is_error(reply):
        raise ReplyError(reply)
    return reply


def make_message(command: str, **properties) -> dict:
    """A request without an id (`call` adds one), as Circus's `make_message` builds it."""
    return {"command": command, "properties": properties}


def cast_message(command: str, **properties) -> dict:
    """A fire-and-forget request: the daemon sends no reply, not even for errors."""
    return {"command": command, "msg_type": "cast", "properties": properties}


def want_green() -> bool:
    """The `green=None` rule: this thread has a gevent hub, or the socket module is monkey-patched."""
    if "gevent" not in sys.modules:
        return False
    try:
        from gevent._hub_local import get_hub_if_exists
    except ImportError:  # pragma: no cover - very old or very new gevent
        return True
    if get_hub_if_exists() is not None:
        return True
    from gevent import monkey

    return monkey.is_module_patched("socket")


class Client:
    """One DEALER connection to a control endpoint; `call()` sends a command and waits for its reply."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT, context=None,
                 green: bool | None = None, curve_key: str | None = None, server_key: str | None = None):
        self.endpoint = endpoint
        self.curve = ClientKeys.load(curve_key, server_key)  # CurveKeyError (a ValueError) for a bad file
        self.timeout = float(timeout)
        self.green = want_green() if green is None else bool(green)
        self._zmq, self.context = zmq_flavour(self.green, context)
        self._socket = None
        self._monitor = None
        self._connected = False
        self._casts_pending = False
        if self.green:
            import gevent.lock

            self._lock = gevent.lock.RLock()
        else:
            self._lock = threading.RLock()

    # -- public API ------------------------------------------------------------------------------------------

    def call(self, command: str | dict, /, check: bool = False, **props) -> dict:
        """Send `command` with `props` (or a whole message dict, as Circus's `call`) and return the reply dict.

        Raises NoDaemonError or DaemonTimeout when no reply comes; an error reply is returned as is, unless
        `check` is true, which raises ReplyError for it instead.
        """
        message = dict(command) if isinstance(command, dict) else make_message(command, **props)
        message["id"] = msg_id = os.urandom(16).hex()  # 32 hex digits, like a uuid4 (uuid imports platform)
        payload = json.dumps(message).encode("utf-8")
        with self._lock:
            try:
                reply = self._exchange(payload, msg_id)
            except CallError:
                self._reset()
                raise
        return check_reply(reply) if check else reply

    def send_message(self, command: str, **props) -> dict:
        """Circus's name for `call(command, **props)`."""
        return self.call(command, **props)

    def cast(self, command: str, **props) -> None:
        """Send a command without waiting for (or getting) any reply; NoDaemonError if nothing listens."""
        payload = json.dumps(cast_message(command, **props)).encode("utf-8")
        with self._lock:
            try:
                sock = self._ensure_socket()
                self._wait_connected(time.monotonic() + self.timeout)
                sock.send(payload)
                self._casts_pending = True
            except CallError:
                self._reset()
                raise

    def close(self) -> None:
        """Close the socket; casts already sent get up to the timeout to leave."""
        with self._lock:
            self._reset(linger=self.timeout if self._casts_pending else 0)

    stop = close  # Circus's name

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _exchange(self, payload: bytes, msg_id: str) -> dict:
        sock = self._ensure_socket()
        deadline = time.monotonic() + self.timeout
        sock.send(payload)
        poller = self._zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._no_answer()
            ready = dict(poller.poll(remaining * 1000))
            if sock in ready:
                reply = _decode(sock.recv_multipart()[-1])
                if reply is not None and reply.get("id") == msg_id:
                    return reply
                continue
            if self._monitor in ready:
                self._handle_event(recv_monitor_event(self._monitor))
                if self._refused:
                    raise HandshakeRefused(self._refused, self.endpoint)
                if not self._connected and self._lost:
                    # A reply sent just before the daemon closed may still be in flight: give it a moment.
                    if sock.poll(_DISCONNECT_GRACE * 1000):
                        continue
                    raise NoDaemonError(self._lost, self.endpoint)

    def _wait_connected(self, deadline: float) -> None:
        while not self._connected:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._monitor.poll(remaining * 1000):
                raise self._no_answer()
            self._handle_event(recv_monitor_event(self._monitor))
            if self._refused:
                raise HandshakeRefused(self._refused, self.endpoint)
            if self._lost:
                raise NoDaemonError(self._lost, self.endpoint)

    def _handle_event(self, event: tuple[int, int, bytes]) -> None:
        kind = event[0]
        if kind == zmq.EVENT_CONNECTED:
            self._connected, self._lost = True, ""
        elif kind == zmq.EVENT_DISCONNECTED:
            self._connected = False
            if 0 < self._vague_failures < VAGUE_HANDSHAKES:
                return  # zmq connects again at once, and that handshake may say why it fails
            if self._vague_failures:
                self._refused = (f"{self.endpoint} ended the connection during the handshake {self._vague_failures} "
                                 f"times in a row: it may require CURVE (give --curve-key and --server-key, or "
                                 f"${CURVE_KEY_VARIABLE} and ${SERVER_KEY_VARIABLE}), or be shedding connections")
            self._lost = f"the daemon at {self.endpoint} closed the connection"
        elif kind == zmq.EVENT_CONNECT_RETRIED and not self._connected and not self._lost \
                and not self._vague_failures:
            self._lost = f"nothing is listening at {self.endpoint}"
        elif kind & HANDSHAKE_FAILED:
            refused = handshake_failure(kind, event[1], self.endpoint, self.curve is not None)
            # A handshake the other side ended first (EPIPE...) says nothing; the next attempt usually does.
            self._refused = refused or self._refused
            self._vague_failures += refused is None

    def _no_answer(self) -> CallError:
        if self._connected:
            return DaemonTimeout(f"the daemon at {self.endpoint} did not answer within {self.timeout:g} s",
                                 self.endpoint, self.timeout)
        return NoDaemonError(f"could not connect to {self.endpoint} within {self.timeout:g} s", self.endpoint)

    def _ensure_socket(self):
        if self._socket is not None:
            self._drain_events()
            if self._connected or not self._lost:
                return self._socket
            self._reset()  # the daemon went away since the last call: start over, with a fresh verdict
        path = ipc_path(self.endpoint)
        if path is not None and not os.path.exists(path):
            raise NoDaemonError(f"nothing is listening at {self.endpoint} (no such file)", self.endpoint)
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.IDENTITY, os.urandom(16).hex().encode())
        if self.curve is not None:
            self.curve.apply(sock)
        monitor = sock.get_monitor_socket(_MONITORED)
        self._socket, self._monitor = sock, monitor  # the state is as _reset() left it
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            self._reset()
            raise NoDaemonError(f"cannot connect to {self.endpoint}: {exc}", self.endpoint) from None
        return sock

    def _drain_events(self) -> None:
        while self._monitor.poll(0):
            self._handle_event(recv_monitor_event(self._monitor))

    def _reset(self, linger: float = 0) -> None:
        if self._socket is None:
            return
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._socket.close(linger=int(linger * 1000))
        self._socket = self._monitor = None
        self._connected, self._lost, self._casts_pending, self._refused = False, "", False, ""
        self._vague_failures = 0

    _lost = ""
    _vague_failures = 0  # handshakes that failed without saying why, since the socket was made
    _refused = ""  # why the daemon refused the handshake (a CURVE mistake), said instead of a timeout


def zmq_flavour(green: bool, context) -> tuple[Any, Any]:
    """The zmq module to use and a context of its kind (sharing the given context's underlying one)."""
    if green:
        import zmq.green as gzmq

        if context is None:
            return gzmq, gzmq.Context.instance()
        return gzmq, context if isinstance(context, gzmq.Context) else gzmq.Context.shadow(context.underlying)
    if context is None:
        return zmq, zmq.Context.instance()
    import zmq.green as gzmq

    if isinstance(context, gzmq.Context):
        return zmq, zmq.Context.shadow(context.underlying)
    return zmq, context


def _decode(raw: bytes) -> dict | None:
    try:
        reply = json.loads(raw)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None
