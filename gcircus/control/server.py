"""The control server: a zmq.green ROUTER that runs each request in its own greenlet and always answers.

Requests are one JSON frame from a DEALER (Circus's clients) or, unlike Circus, a REQ envelope `[id, b"", json]`.
Every malformed request gets an error reply (or, where no reply is possible, a log line) and changes nothing;
commands run concurrently. Each request is identified (gcircus.control.peers) and handed with its sender to the
CommandRunner, which holds it to the sender's role and run-as limits (gcircus.control.access): a refused one gets
errno 7 (ACCESS_REFUSED) and changes nothing. A long command (start, stop, restart...) runs in its watcher's command
queue or in a bounded pool (gcircus.control.operations), so a backlog of them never keeps reads, stops or quits from
being served.
"""
from __future__ import annotations

import logging
from typing import Any

import gevent
import gevent.pool
import zmq.green as zmq

from gcircus.control import peers
from gcircus.control.audit import AuditLog
from gcircus.control.outbox import ReplyOutbox
from gcircus.control.runner import CommandRunner, RequestCounts
from gcircus.options import CIRCUS_OPTIONS
from gcircus.wire.connection_cap import ConnectionCap
from gcircus.wire.curve import KeyPair
from gcircus.wire.endpoints import IpcMode, bind_private, close_bound
from gcircus.wire.errors import BAD_MSG_DATA_ERROR, MESSAGE_ERROR
from gcircus.wire.protocol import encode, error_reply

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = CIRCUS_OPTIONS["max_message_size"].default
MAX_CONCURRENT_REQUESTS = 1024
# Messages zmq buffers per client: replies not read yet (more wait in gcircus.control.outbox, within bounds),
# requests not taken yet (more wait in the client's own queue: TCP pushes back).
REPLY_HWM = 64
REQUEST_HWM = 64


class ControlServer:
    """Serves Circus's command protocol for one arbiter at `endpoint`."""

    def __init__(self, arbiter, endpoint: str, context=None, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 endpoint_owner: str | None = None, allow_remote: bool = False, counts: RequestCounts | None = None,
                 audit: AuditLog | None = None, ipc_mode: IpcMode | None = None, curve: KeyPair | None = None):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.transport = peers.transport_of(endpoint)
        self.ipc_mode = ipc_mode or IpcMode(owner=endpoint_owner)
        self.context = context or zmq.Context.instance()
        self.max_message_size = max_message_size
        self.endpoint_owner = endpoint_owner
        self.allow_remote = allow_remote
        self.curve = curve  # the daemon's key pair: a tcp:// endpoint is then a CURVE server
        self.socket: Any = None
        self._loop: gevent.Greenlet | None = None
        self._handlers = gevent.pool.Pool(MAX_CONCURRENT_REQUESTS)
        # The command path the HTTP API shares (gcircus.control.runner); it records to the audit log.
        self.runner = CommandRunner(arbiter, counts, audit, endpoint)
        self._outbox = ReplyOutbox(self._try_send)
        self._cap: ConnectionCap | None = None

    def start(self) -> None:
        sock = self.context.socket(zmq.ROUTER)
        sock.linger = 0
        # Larger messages make zmq drop the peer before we buffer them; up to that, we answer with an error.
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_size * 2)
        sock.sndhwm = REPLY_HWM
        sock.rcvhwm = REQUEST_HWM
        sock.router_mandatory = 1  # a reply that cannot be queued raises instead of vanishing: it is counted
        try:
            secured = bind_private(sock, "endpoint", self.endpoint, self.allow_remote, self.ipc_mode, self.curve)
        except Exception:
            sock.close()
            raise
        self.socket = sock
        self._cap = ConnectionCap(sock, "endpoint", curve=secured)
        self._cap.start()
        self._loop = gevent.spawn(self._receive_forever)
        log.info("control channel listening on %s%s", self.endpoint, " (CURVE)" if secured else "")

    def close(self, grace: float = 1.0) -> None:
        """Stop receiving; let requests in flight (other than the caller's) send their replies, then close."""
        if self._loop is not None and self._loop is not gevent.getcurrent():
            self._loop.kill()
        self._loop = None
        current = gevent.getcurrent()
        others = [g for g in list(self._handlers) + self.runner.operations.running() if g is not current]
        gevent.joinall(others, timeout=grace)
        self.runner.operations.wait_replies_sent(grace)
        self._outbox.close(grace)
        close_bound(self.socket, self.endpoint, self._cap, linger=int(grace * 1000))
        self.socket = self._cap = None

    # -- receiving -------------------------------------------------------------------------------------------

    def _receive_forever(self) -> None:
        while True:
            try:
                message = self.socket.recv_multipart(copy=False)
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.error("control channel receive failed: %s", exc)
                continue
            # Who sent it is read now, while the connection it came from is surely still zmq's (see peers).
            seen = peers.sight(message[-1], self.transport)
            self._handlers.spawn(self._handle_frames, [frame.bytes for frame in message], seen)

    def _handle_frames(self, frames: list[bytes], seen: peers.Sighting) -> None:
        identity = frames[0]
        body = frames[1:]
        if len(body) == 2 and body[0] == b"":
            envelope, payload = [identity, b""], body[1]  # a REQ client
        elif len(body) == 1:
            envelope, payload = [identity], body[0]
        else:
            log.warning("control channel: dropping a request of %d frames (expected one JSON frame)", len(body))
            self._send(frames[:1], error_reply(f"message invalid: expected one JSON frame, got {len(body)}",
                                               MESSAGE_ERROR))
            return
        if len(payload) > self.max_message_size:
            self._send(envelope, error_reply(f"message too large: {len(payload)} bytes (limit "
                                             f"{self.max_message_size})", MESSAGE_ERROR))
            return
        peer = peers.identify(seen)
        reply = self.handle(payload, lambda late_reply: self._send(envelope, late_reply), peer)
        if reply is not None:
            self._send(envelope, reply)

    def handle(self, payload: bytes, reply_later, peer: peers.Peer | None = None) -> dict | None:
        """Run one request from `peer` (CommandRunner.handle; None: gcircusd itself): the reply, or None for a cast
        or a reply sent later."""
        return self.runner.handle(payload, reply_later, peer)

    def _send(self, envelope: list[bytes], reply: dict) -> None:
        if self.socket is None:
            return
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:  # a command returned something JSON cannot carry
            log.error("control channel: reply cannot be encoded: %s", exc)
            data = encode(error_reply(f"server error: reply cannot be encoded ({exc})", BAD_MSG_DATA_ERROR,
                                      reply.get("id") if isinstance(reply.get("id"), (str, int, float)) else None))
        self._outbox.send(envelope + [data])

    def _try_send(self, frames: list[bytes]) -> bool:
        """Hand one reply to zmq without waiting; False when zmq has no room left for that client (REPLY_HWM)."""
        if self.socket is None:
            return True
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client is gone: nobody to answer
                log.debug("control channel: the client of a reply has disconnected")
            else:
                log.warning("control channel: could not send a reply: %s", exc)
        return True
