"""Property-based fuzzing of the control channel: thousands of random requests at one live gcircusd.

Random bytes, random JSON and random commands (names from the command table, random properties) must each get a
well-formed reply (or none, for a cast), and the daemon must keep serving with the very same processes. To keep the
state stable, commands that change things only ever target a watcher that does not exist (or, for `add`, one that
does), and `quit`/`reloadconfig`/`upgrade` are never sent.
"""
from __future__ import annotations

import json
import os
import string
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcircus.control.commands import COMMANDS
from gcircus.wire.errors import INVALID_JSON, UNKNOWN_COMMAND
from tests.support.control import ERROR_KEYS, Wire, snapshot
from tests.support.daemons import start_daemon, stop_daemon

# Circus's 25 commands: those missing from gcircus's table must answer `unknown command`.
CIRCUS_COMMANDS = {"add", "decr", "dstats", "get", "globaloptions", "incr", "ipython", "kill", "list", "listen",
                   "listsockets", "numprocesses", "numwatchers", "options", "quit", "reload", "reloadconfig",
                   "restart", "rm", "set", "signal", "start", "stats", "status", "stop"}
NEVER_SENT = {"quit", "reloadconfig", "upgrade"}  # upgrade re-executes the daemon (tests/test_handover.py)
READ_ONLY = {"list", "status", "stats", "dstats", "options", "get", "globaloptions", "numprocesses", "numwatchers",
             "listen", "ipython", "listsockets", "procs"}
ABSENT_WATCHER = "zz-absent"
WATCHER_STATUSES = {"active", "stopped", "starting", "stopping", "backoff", "failed", "unknown"}
PROPERTY_NAMES = ["name", "nb", "waiting", "match", "keys", "options", "signum", "pid", "childpid", "children",
                  "recursive", "graceful_timeout", "process", "extended", "option", "nostop", "graceful",
                  "sequential", "start", "cmd", "args"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                         st.text(max_size=20), st.sampled_from(["a", "b", "A", "nope", "TERM", "9", "glob", "regex",
                                                                "numprocesses", "*", ".*", ""]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def command_messages(draw) -> dict:
    """A message object for a command of the table (any case), or for a name that is no command at all."""
    table = sorted(set(COMMANDS) - NEVER_SENT)
    known = draw(st.booleans())
    if known:
        name = draw(st.sampled_from(table))
        command = "".join(c.upper() if draw(st.booleans()) else c for c in name) if draw(st.booleans()) else name
    else:
        command = draw(st.text(string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=15)
                       .filter(lambda t: t.lower() not in CIRCUS_COMMANDS | set(COMMANDS)))
    props = draw(st.dictionaries(st.one_of(st.sampled_from(PROPERTY_NAMES), st.text(max_size=8)), json_values,
                                 max_size=6))
    if known and name not in READ_ONLY:
        props["name"] = "a" if name == "add" else ABSENT_WATCHER  # a duplicate add, or a target that is not there
    elif known and draw(st.booleans()):
        props["name"] = draw(st.sampled_from(["a", "b", "A", "nope"]))
    message: dict = {"command": command}
    shape = draw(st.sampled_from(["props", "props", "props", "none", "null", "junk"]))
    if shape == "props" or (known and name not in READ_ONLY):  # no properties would mean "every watcher"
        message["properties"] = props
    elif shape == "null":
        message["properties"] = None
    elif shape == "junk":
        message["properties"] = draw(json_values)  # maybe not an object at all
    if draw(st.booleans()):
        message["id"] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        message["msg_type"] = "cast"
    if draw(st.integers(0, 4)) == 0:
        message[draw(st.text(max_size=6))] = draw(json_values)  # extra top-level keys are ignored
    return message


def encode(message, ensure_ascii: bool) -> bytes:
    return json.dumps(message, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=200),
    st.builds(encode, json_values, st.booleans()),
    st.builds(encode, command_messages(), st.booleans()),
    st.builds(encode, command_messages(), st.booleans()),
    st.builds(encode, command_messages(), st.booleans()),
)
requests = st.one_of(
    payloads.map(lambda p: (p,)),
    payloads.map(lambda p: (b"", p)),  # a REQ envelope
    st.tuples(st.binary(min_size=1, max_size=20), payloads),  # two frames: refused
)


def decoded(payload: bytes):
    """What the server makes of a frame: the JSON value, or a sentinel when it is not JSON."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return NOT_JSON


NOT_JSON = object()


def well_formed(message) -> bool:
    return (isinstance(message, dict) and isinstance(message.get("command"), str) and message["command"] != ""
            and isinstance(message.get("properties"), (dict, type(None))))


def same_json(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon, endpoint = start_daemon(tmp_path_factory.mktemp("fuzz"), """
        [watcher:a]
        cmd = /bin/sleep 3600
        numprocesses = 2

        [watcher:b]
        cmd = /bin/sleep 3601
    """, {"a": 2, "b": 1})
    daemon.endpoint = endpoint
    daemon.initial = snapshot(endpoint)
    yield daemon
    stop_daemon(daemon)


@pytest.fixture(scope="module")
def wire(daemon):
    wire = Wire(daemon.endpoint)
    yield wire
    wire.close()


def check_one(wire: Wire, frames: tuple) -> None:
    """Send one request, then a sentinel; check the reply (or its absence) against the protocol.

    Requests run concurrently, so a reply may come after the sentinel's: wait for both when one is due. A cast
    has none: its handling starts before the sentinel's, and a stray reply would also show up in the next example.
    """
    payload = frames[-1]
    message = decoded(payload)
    multi = len(frames) == 2 and frames[0] != b""
    is_cast = not multi and isinstance(message, dict) and message.get("msg_type") == "cast"  # even if invalid
    wire.send(frames)
    sentinel = uuid.uuid4().hex
    wire.send({"id": sentinel, "command": "list", "properties": {}})
    replies, seen_sentinel = [], False
    while not seen_sentinel or (not is_cast and not replies):
        got = wire.receive(timeout=5)
        reply = json.loads(got[-1])
        if isinstance(reply, dict) and reply.get("id") == sentinel and "watchers" in reply:
            seen_sentinel = True
        else:
            replies.append((got, reply))
    if is_cast:
        assert replies == [], f"a cast got a reply: {replies!r}"
        return
    assert len(replies) == 1, f"expected one reply, got {replies!r}"
    got, reply = replies[0]
    assert list(got[:-1]) == ([b""] if frames[0] == b"" and len(frames) == 2 else [])
    assert isinstance(reply, dict) and isinstance(reply.get("time"), float) and "id" in reply
    if reply["status"] == "error":
        assert set(reply) == ERROR_KEYS
        assert isinstance(reply["errno"], int) and not isinstance(reply["errno"], bool) and 0 <= reply["errno"] <= 6
        assert isinstance(reply["reason"], str) and reply["reason"]
        assert reply["tb"] is None or isinstance(reply["tb"], str)
    else:
        assert reply["status"] == "ok" or reply["status"] in WATCHER_STATUSES, reply
        assert "errno" not in reply
    if multi:
        assert reply["status"] == "error"
        return
    if message is NOT_JSON:
        assert reply["status"] == "error" and reply["errno"] == INVALID_JSON and reply["id"] is None
    elif well_formed(message):
        assert same_json(reply["id"], message.get("id")), (message, reply)
        name = message["command"].lower()
        if name not in COMMANDS:
            assert reply["status"] == "error" and reply["errno"] == UNKNOWN_COMMAND, reply
        elif name not in READ_ONLY:
            assert reply["status"] == "error", f"a mutating command on a missing target succeeded: {message!r}"
    else:
        assert reply["status"] == "error" and reply["errno"] == 3
        # The id comes back whenever the body is a JSON object, even an invalid one (null otherwise).
        assert same_json(reply["id"], message.get("id") if isinstance(message, dict) else None), (message, reply)


# GCIRCUS_FUZZ_EXAMPLES raises the count for a longer hunt; the default keeps the test at ~10-15 s.
@settings(max_examples=int(os.environ.get("GCIRCUS_FUZZ_EXAMPLES", 2000)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=requests)
def test_random_requests_get_well_formed_replies_and_change_nothing(daemon, wire, frames):
    # Health check: the function-scoped fixtures (the wire, conftest's autouse ones) are meant to run once per test.
    check_one(wire, frames)


def test_the_daemon_is_unchanged_after_the_fuzzing(daemon, wire):
    """Runs after the fuzz test (file order): same watchers, statuses and pids as at start-up."""
    state = snapshot(daemon.endpoint)
    assert set(state) == {"a", "b"}
    assert state["a"][0] == state["b"][0] == "active"
    assert state["a"][1] == daemon.initial["a"][1] and state["b"][1] == daemon.initial["b"][1]
    assert daemon.proc.poll() is None
