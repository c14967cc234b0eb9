"""Encoding of requests and replies exactly as Circus puts them on the wire (PROTOCOL.md 2.2-2.3), and the decoding
of zmq's socket-monitor events, which tell the client and the server about connections."""
from __future__ import annotations

import json
import struct
import time
import traceback

from gcircus.wire.errors import BAD_MSG_DATA_ERROR, INVALID_JSON, MESSAGE_ERROR, ControlError

MAX_ID_SIZE = 1024  # bytes of JSON a request id may take (Circus's clients send 32 hex digits): replies echo it


class BadRequest(ControlError):
    """The request could not be decoded into a command; keeps the `id` and cast flag if they could be read."""

    def __init__(self, reason: str, errno: int | None = None, msg_id=None, cast: bool = False):
        super().__init__(reason, errno)
        self.msg_id = msg_id
        self.cast = cast


def decode_request(payload: bytes) -> dict:
    """Parse one request frame; BadRequest (with Circus's errno) when it is not a usable command object."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("json invalid: not UTF-8", INVALID_JSON) from None
    if not text.strip():
        raise BadRequest("empty command", INVALID_JSON)
    try:
        message = json.loads(text)
    except ValueError:
        raise BadRequest("json invalid", INVALID_JSON) from None
    if not isinstance(message, dict):
        raise BadRequest(f"message invalid: expected a JSON object, got {type(message).__name__}", MESSAGE_ERROR)
    msg_id, cast = message.get("id"), message.get("msg_type") == "cast"
    if msg_id is not None and len(json.dumps(msg_id)) > MAX_ID_SIZE:
        # Every reply echoes the id: a huge one would make each small request cost a large reply to buffer.
        raise BadRequest(f"message invalid: 'id' takes {len(json.dumps(msg_id))} bytes of JSON (limit "
                         f"{MAX_ID_SIZE})", MESSAGE_ERROR, None, cast)
    command = message.get("command")
    if not isinstance(command, str) or not command:
        raise BadRequest("message invalid: 'command' is missing", MESSAGE_ERROR, msg_id, cast)
    properties = message.get("properties")
    if properties is None:
        message["properties"] = {}
    elif not isinstance(properties, dict):
        raise BadRequest("message invalid: 'properties' must be an object", MESSAGE_ERROR, msg_id, cast)
    return message


def ok_reply(fields: dict | list | None, msg_id) -> dict:
    """`{"status": "ok", "time": ..., <fields>, "id": ...}`; a list result is wrapped as `results`."""
    reply: dict = {"status": "ok", "time": time.time()}
    if isinstance(fields, list):
        reply["results"] = fields
    elif fields:
        reply.update(fields)  # a `status` field overrides "ok", as in Circus's `status <name>`
    elif fields is not None and not isinstance(fields, dict):
        raise ControlError("command returned a non-dict result", BAD_MSG_DATA_ERROR)
    reply["id"] = msg_id
    return reply


def error_reply(reason: str, errno: int, msg_id=None, exc: BaseException | None = None) -> dict:
    tb = "".join(traceback.format_exception(exc)) if exc is not None else None
    return {"status": "error", "reason": reason, "tb": tb, "time": time.time(), "errno": errno, "id": msg_id}


def encode(reply: dict) -> bytes:
    """JSON with Python's default separators and ASCII escapes, as Circus sends it."""
    return json.dumps(reply).encode("ascii")


def recv_monitor_event(monitor) -> tuple[int, int, bytes]:
    """The next event of a zmq socket monitor as (event, value, endpoint), waiting for it: libzmq's two frames, a
    16-bit event and a 32-bit value, then the endpoint. (pyzmq's zmq.utils.monitor reads the same but imports
    zmq.asyncio, which would double gcircusctl's start-up time.)"""
    head, endpoint = monitor.recv_multipart()
    event, value = struct.unpack("=hi", head)
    return event, value, endpoint
