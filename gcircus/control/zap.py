"""The daemon's CURVE authority: its key pair, and the ZAP handler that lets in only the clients of `curve_clients`.

libzmq asks a ZAP handler (RFC 27) bound at inproc://zeromq.zap.01, in the same zmq context, about each connection to
a CURVE server socket: the handler answers 200 with a User-Id, which every message of that connection then carries
(`curve:NAME`, what [access] grants name), or 400, and libzmq closes the connection. libzmq asks only for sockets that
use a security mechanism or a ZAP domain, so channels without CURVE (ipc:// endpoints, a daemon without
curve_secret_key) never reach it; a NULL-mechanism request, should one come, is let through unchanged.

pyzmq's zmq.auth.Authenticator is not reused: its handle_zap_message is a coroutine, its start() makes a plain
(blocking) socket, and it logs refusals at debug level without the endpoint; it is also keyed by domain, which here
names the endpoint. Its certificate reader is (gcircus.wire.curve).
"""
from __future__ import annotations

import logging
from typing import Any

import gevent
import zmq.green as zmq
from zmq.utils import z85

from gcircus.client import zmq_flavour
from gcircus.wire.curve import CurveKeyError, KeyPair, key_prefix, read_client_keys, read_secret_certificate
from gcircus.wire.refusals import RefusalLog

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
USER_ID_PREFIX = "curve:"  # the User-Id of an accepted client is curve:NAME, NAME its file name in curve_clients


class ZapHandler:
    """A zmq.green REP socket at ZAP_ENDPOINT answering libzmq's requests from one owned greenlet."""

    def __init__(self, context, clients: dict[bytes, str]):
        self.context = context
        self.clients = clients  # z85 public key -> client name
        self.refusals = RefusalLog(log)
        self.socket: Any = None
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        sock = self.context.socket(zmq.REP)
        sock.linger = 0
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close()
            raise OSError(f"cannot start the CURVE authenticator ({ZAP_ENDPOINT}): {exc}") from None
        self.socket = sock
        self._greenlet = gevent.spawn(self._serve)

    def close(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill()
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def _serve(self) -> None:
        while True:
            try:
                request = self.socket.recv_multipart()
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.error("CURVE authenticator: receive failed: %s", exc)
                continue
            self.socket.send_multipart(self.answer(request))  # a REP socket: every request gets its one reply

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply frames for one request: [version, request id, status, text, user id, metadata]."""
        if len(request) < 6 or request[0] != ZAP_VERSION:
            log.error("CURVE authenticator: malformed ZAP request of %d frames", len(request))
            request_id = request[1] if len(request) > 1 else b""
            return [ZAP_VERSION, request_id, b"400", b"malformed request", b"", b""]
        _, request_id, domain, address, _, mechanism = request[:6]
        credentials = request[6:]
        if mechanism == b"NULL":  # a socket without CURVE that set a ZAP domain: not ours to vet
            return [ZAP_VERSION, request_id, b"200", b"OK", b"", b""]
        key = credentials[0] if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32 else None
        encoded = z85.encode(key) if key is not None else None
        name = self.clients.get(encoded) if encoded is not None else None
        if name is None:
            where, peer = domain.decode("utf-8", "replace"), address.decode("utf-8", "replace")
            if encoded is None:
                self.refusals.refused((where, peer, mechanism), "refused a %s client on %s from %s: only CURVE "
                                      "clients listed in curve_clients are accepted",
                                      mechanism.decode(errors="replace"), where, peer)
            else:
                self.refusals.refused((where, peer, encoded), "refused CURVE key %s on %s from %s: it is not in "
                                      "curve_clients", key_prefix(encoded), where, peer)
            return [ZAP_VERSION, request_id, b"400", b"key not allowed", b"", b""]
        return [ZAP_VERSION, request_id, b"200", b"OK", (USER_ID_PREFIX + name).encode("utf-8"), b""]


class CurveAuthority:
    """The daemon's CURVE side, a Service of the arbiter attached before its channels (so opened before them, and
    closed after): the server key pair the channels use, and the ZAP handler that owns the list of clients.

    Built with the arbiter, which reads the files there (CurveKeyError, a ValueError, if one is bad); the handler's
    socket is made only when the arbiter starts, in the process that serves it.
    """

    def __init__(self, arbiter, secret_key: str, clients_dir: str):
        self.arbiter = arbiter
        self.keys: KeyPair = read_secret_certificate(secret_key)
        self.clients_dir = clients_dir
        self.clients = read_client_keys(clients_dir)
        self.names = frozenset(self.clients.values())
        self.handler: ZapHandler | None = None

    def start(self) -> None:
        _, context = zmq_flavour(True, self.arbiter.context)
        self.handler = ZapHandler(context, self.clients)
        self.handler.start()
        log.info("CURVE: %d client key(s) accepted from %s", len(self.clients), self.clients_dir)

    def stop(self) -> None:
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.close()

    def reload_clients(self, clients_dir: str | None = None) -> None:
        """Read the clients directory again (another one, if given): added keys are let in; removed ones are refused
        from their next connection, and each request over a connection opened before is refused too (is_listed,
        checked by gcircus.control.access). A directory that cannot be read keeps the list as it was, said in the
        log."""
        clients_dir = clients_dir or self.clients_dir
        try:
            clients = read_client_keys(clients_dir)
        except CurveKeyError as exc:
            log.error("CURVE: curve_clients not reloaded, the previous list stays in force: %s", exc)
            return
        added = sorted(set(clients.values()) - set(self.clients.values()))
        removed = sorted(set(self.clients.values()) - set(clients.values()))
        self.clients_dir, self.clients, self.names = clients_dir, clients, frozenset(clients.values())
        if self.handler is not None:
            self.handler.clients = clients
        if added or removed:
            log.info("CURVE: curve_clients reloaded from %s: added %s, removed %s", clients_dir,
                     ", ".join(added) or "none", ", ".join(removed) or "none")

    def is_listed(self, name: str) -> bool:
        """True when client NAME (of a `curve:NAME` User-Id) is still listed: a request over a connection made
        before its key was removed can be told apart from one by a current client."""
        return name in self.names
