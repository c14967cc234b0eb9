"""One request through the command table: decode, validate, execute, and the reply, however it was received.

The control server (zmq) and the HTTP API (gcircus.http.api) both hand their requests to a CommandRunner, so a
command's properties, validation, errnos and reply cannot differ between the two channels, nor can who may run it:
each request comes with its sender (a gcircus.control.peers.Peer) and is held, right after validation, to the role its
command needs and to the sender's run-as limits (gcircus.control.access). Each request's outcome is
counted by command (RequestCounts), for gcircusd's metrics, and a state-changing request or a refusal is recorded in
the audit log once its outcome is known (gcircus.control.audit).
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Callable

from gcircus.command_queue import QueueRefused
from gcircus.control import access, peers
from gcircus.control.audit import AuditLog, changes_state
from gcircus.control.commands import get_command
from gcircus.control.executors import EXECUTORS, Deferred, Queued
from gcircus.control.executors.base import Props
from gcircus.control.operations import Operations
from gcircus.wire.errors import COMMAND_ERROR, OS_ERROR, UNKNOWN_COMMAND, ControlError
from gcircus.wire.protocol import BadRequest, decode_request, error_reply, ok_reply

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the command label of a request naming no command: a client cannot grow the label set


class RequestCounts:
    """Requests answered since gcircusd started, by (command, outcome): outcome is `ok` or `error`.

    A request naming no known command is counted under UNKNOWN, so the number of distinct keys is bounded by the
    command table whatever clients send.
    """

    def __init__(self):
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, command: str | None, reply: dict | None) -> None:
        name = command.lower() if isinstance(command, str) and get_command(command) is not None else UNKNOWN
        outcome = "error" if reply is not None and reply.get("status") == "error" else "ok"
        self.counts[(name, outcome)] += 1


class CommandRunner:
    """Runs requests for one arbiter; owns the bounded pools their long parts run in (gcircus.control.operations)."""

    def __init__(self, arbiter, counts: RequestCounts | None = None, audit: AuditLog | None = None,
                 endpoint: str = ""):
        self.arbiter = arbiter
        self.counts = counts if counts is not None else RequestCounts()
        self.audit = audit if audit is not None else AuditLog(None)  # a log without a target records nothing
        self.endpoint = endpoint  # where requests come from, as the audit log names it
        self.operations = Operations()

    def handle(self, payload: bytes, reply_later: Callable[[dict], None],
               peer: peers.Peer | None = None) -> dict | None:
        """Run one request from `peer` (None: gcircusd itself); return the reply, or None for a cast
        (fire-and-forget) or a reply sent later.

        A long command (Queued or Deferred) is answered at once, or, when the client asked for `waiting`, through
        `reply_later(reply)` once it is done. A command the peer's role does not allow is refused (AccessRefused,
        errno 7) before anything runs.
        """
        entry = self.audit.begin(self.endpoint, peer.audit() if peer is not None else None)
        peer = peer or peers.ourselves()
        name = None

        def finished_later(fields, exc: BaseException | None) -> None:
            reply = self.reply(fields, exc, msg_id, head)
            entry.finish(reply, exc)
            self.counts.record(name, reply)
            reply_later(reply)

        msg_id = None
        cast = False
        failure: BaseException | None = None
        started_in_background = False
        head = payload[:200]  # what an error reply quotes; the request itself is not kept while a command runs
        try:
            message = decode_request(payload)
            msg_id = message.get("id")
            cast = message.get("msg_type") == "cast"
            name = message["command"]
            command = get_command(name)
            execute = EXECUTORS.get(command.name) if command is not None else None
            if command is None or execute is None:  # help is gcircusctl's own: the daemon does not know it either
                raise ControlError(f"unknown command: {name!r}", UNKNOWN_COMMAND)
            entry.describe(command.name, message["properties"], changes_state(command))
            props = self.admit(peer, command, command.validate(message["properties"]))
            waiting = bool(props.get("waiting")) and not cast
            if waiting:
                self.operations.check_reply_can_wait()
            result = execute(self.arbiter, props)
            if isinstance(result, Deferred):
                runner = self.operations.run(result.run, command.preempts)
                result = Queued([runner], lambda values: values[0])
            if isinstance(result, Queued):
                if waiting:
                    self.operations.reply_when_done(result.results, result.shape, finished_later)
                    return None
                self.operations.log_failures(name, result.results)
                self.operations.when_done(result.results, lambda exc: entry.finish(None, exc))
                started_in_background, result = True, None
            reply = ok_reply(result, msg_id)
        except BadRequest as exc:
            msg_id, cast = exc.msg_id, exc.cast
            reply, failure = error_reply(exc.reason, exc.errno, msg_id), exc
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error reply; the server keeps serving
            reply, failure = self.reply(None, exc, msg_id, payload), exc
        if not started_in_background:  # else its audit line is written when it ends
            entry.finish(reply, failure)
        self.counts.record(name, reply)
        if cast:
            if reply.get("status") == "error":
                log.warning("cast command failed: %s", reply["reason"])
            return None
        return reply

    def admit(self, peer: peers.Peer, command, props: dict) -> Props:
        """The validated `props` of a request `peer` may run, with its run-as limit; AccessRefused when its role is
        weaker than the one `command` needs with them."""
        policy = access.Policy.of(self.arbiter)
        access.check(peer, command, props, policy)
        return Props.of(props, access.run_as_limit(peer, policy))

    @staticmethod
    def reply(fields, exc: BaseException | None, msg_id, payload: bytes) -> dict:
        """The reply for a command's outcome: its fields, or the error reply its exception maps to."""
        if exc is None:
            try:
                return ok_reply(fields, msg_id)
            except ControlError as bad:
                exc = bad
        if isinstance(exc, ControlError):
            return error_reply(exc.reason, exc.errno, msg_id)
        if isinstance(exc, QueueRefused):  # a full or cancelled command queue: said plainly, no traceback
            return error_reply(str(exc), COMMAND_ERROR, msg_id)
        if isinstance(exc, OSError):
            return error_reply(str(exc), OS_ERROR, msg_id, exc)
        log.error("control command failed", exc_info=(type(exc), exc, exc.__traceback__))
        return error_reply(f"command {payload[:200]!r}: {exc}", COMMAND_ERROR, msg_id, exc)
