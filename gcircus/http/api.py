"""/api/COMMAND: the control commands over HTTP, through the control server's own code path.

POST a JSON object of the command's properties (an empty body is {}), get the control reply as JSON: the request is
handed to a gcircus.control.runner.CommandRunner, as the zmq control server hands its own, so the command table,
validation, errnos and reply are the same, and so are the roles: the client is a control Peer (transport `http`)
with the role `[http] token_role` gives its credentials, which the runner checks against the command's role as it
does for the control channel (gcircus.control.access); a refused command is a 403 with the errno 7 reply. A
form-encoded POST (a page's form) gives its fields as properties. The commands whose role is `read` are also served
on GET, their properties as query parameters (`/api/stats?name=web`); GET never runs a command that changes
anything. The HTTP status follows the reply's errno (200 for `ok`), the body is the reply itself.
"""
from __future__ import annotations

import json

import gevent.event

from gcircus import roles
from gcircus.control.commands import get_command
from gcircus.control.peers import HTTP, Peer
from gcircus.http.auth import CSRF_FIELD
from gcircus.http.web import FORM, JSON, READ_METHODS, HttpError, Request, Response
from gcircus.wire.errors import (
    ACCESS_REFUSED,
    BAD_MSG_DATA_ERROR,
    COMMAND_ERROR,
    INVALID_JSON,
    MESSAGE_ERROR,
    UNKNOWN_COMMAND,
)
from gcircus.wire.protocol import error_reply

PREFIX = "/api/"
# The HTTP status of an error reply, by errno: the request's fault (4xx), the client's role too weak (403), a refusal
# (409: busy, stopping...), else 500.
HTTP_STATUS = {INVALID_JSON: 400, MESSAGE_ERROR: 400, BAD_MSG_DATA_ERROR: 400, UNKNOWN_COMMAND: 404,
               ACCESS_REFUSED: 403, COMMAND_ERROR: 409}


def properties(request: Request) -> object:
    """The request's properties: the query of a GET, the JSON of a POST (the runner refuses what is no object, as
    the control channel does); _Refused with the control channel's reply to a body that is no JSON."""
    if request.method in READ_METHODS:
        return dict(request.query)
    body = request.body()
    if request.content_type == FORM and body.lstrip()[:1] not in (b"{", b"["):
        # A page's form (works without JavaScript): its fields but the CSRF token. JSON sent as a form (curl -d
        # without a Content-Type) is read as JSON.
        return {key: value for key, value in request.form().items() if key != CSRF_FIELD}
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError:
        raise _Refused(error_reply("json invalid", INVALID_JSON)) from None


class _Refused(Exception):
    def __init__(self, reply: dict):
        super().__init__(reply["reason"])
        self.reply = reply


def run_command(app, request: Request) -> Response:
    name = request.path[len(PREFIX):]
    if not name or "/" in name:
        raise HttpError(404, "expected /api/COMMAND")
    command = get_command(name)
    if command is not None and request.method in READ_METHODS and command.role != roles.READ:
        raise HttpError(405, f"{command.name} changes state: POST it", (("Allow", "POST"),))
    try:
        reply = run(app, name, properties(request), http_peer(request))
    except _Refused as refused:
        reply = refused.reply
    status = 200 if reply.get("status") != "error" else HTTP_STATUS.get(int(reply.get("errno") or 0), 500)
    return Response(status, json.dumps(reply).encode(), JSON)


def http_peer(request: Request) -> Peer:
    """Who sent `request`, as the command runner holds it to a role (gcircus.control.access) and the audit log names
    it ({"http": VIA, "address": ...}): how it authenticated, from where, and the role that gives it."""
    principal = getattr(request, "principal", None)
    return Peer(HTTP, http=principal.via if principal is not None else "anonymous",
                address=request.environ.get("REMOTE_ADDR") or "unix",
                role=principal.role if principal is not None else roles.NONE)


def run(app, name: str, props, peer: Peer | None = None) -> dict:
    """The control reply to command `name` with `props` from `peer`, waiting for a reply sent later (a `waiting`
    command)."""
    payload = json.dumps({"command": name, "properties": props}).encode()
    later = gevent.event.AsyncResult()
    reply = app.runner.handle(payload, later.set, peer)
    return reply if reply is not None else later.get()

