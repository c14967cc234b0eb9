"""Bad input on the control channel never hurts a live gcircusd (PROTOCOL.md 2.1-2.3, section 8 items 1-2).

One daemon serves the whole module: watchers `a` (2 processes), `b` (1) and `c` (autostart off, for casts).
After every test an autouse fixture checks that the daemon still answers `status` and that nothing changed:
same statuses, same pids. Unlike Circus, gcircus answers every malformed request (an empty body, a JSON array,
a missing command) with an error reply instead of raising without one, and answers REQ clients too.
"""
from __future__ import annotations

import json
import os

import pytest
import zmq

from gcircus import linux
from gcircus.wire.errors import COMMAND_ERROR, INVALID_JSON, MESSAGE_ERROR, UNKNOWN_COMMAND
from tests.support.control import ERROR_KEYS, Wire, snapshot
from tests.support.daemons import start_daemon, stop_daemon
from tests.support.waiting import wait_for

MiB = 1 << 20


WATCHERS = """
    [watcher:a]
    cmd = /bin/sleep 3600
    numprocesses = 2

    [watcher:b]
    cmd = /bin/sleep 3601

    [watcher:c]
    cmd = /bin/sleep 3602
    autostart = false
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon, endpoint = start_daemon(tmp_path_factory.mktemp("robust"), WATCHERS, {"a": 2, "b": 1})
    daemon.endpoint = endpoint
    yield daemon
    stop_daemon(daemon)


@pytest.fixture
def wire(daemon):
    wire = Wire(daemon.endpoint)
    yield wire
    wire.close()


@pytest.fixture(autouse=True)
def nothing_changed(daemon):
    """The daemon answers `status` after the test, with the same statuses and pids as before it."""
    before = snapshot(daemon.endpoint)
    assert before["a"][0] == "active" and len(before["a"][1]) == 2
    yield
    assert daemon.proc.poll() is None, daemon.output()
    assert snapshot(daemon.endpoint) == before
    for _, pids in before.values():
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)


def assert_error(reply: dict, errno: int, reason: str | None = None, msg_id=None) -> None:
    assert set(reply) == ERROR_KEYS, reply
    assert reply["status"] == "error"
    assert reply["errno"] == errno and isinstance(reply["errno"], int), reply
    assert isinstance(reply["reason"], str) and reply["reason"]
    assert isinstance(reply["time"], float)
    if reason is not None:
        assert reason in reply["reason"], reply
    assert reply["id"] == msg_id


# -- bodies that are not a command object ------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"not json", b"{\"command\": \"list\"", b"\xff\xfe\x00", b"{'command': 'list'}",
                                     b"\x00" * 64], ids=["text", "truncated", "not-utf8", "python-repr", "nuls"])
def test_a_body_that_is_not_json_gets_errno_1(wire, payload):
    assert_error(wire.call(payload), INVALID_JSON)


@pytest.mark.parametrize("payload", [b"", b" ", b"\n\t \r\n"], ids=["empty", "space", "whitespace"])
def test_an_empty_or_whitespace_body_gets_an_error_reply(wire, payload):
    # Circus sends nothing and logs an exception here (PROTOCOL 2.2); gcircus answers.
    assert_error(wire.call(payload), INVALID_JSON)


@pytest.mark.parametrize("payload", [b'["list"]', b"42", b"-1.5e3", b'"list"', b"null", b"true", b"[]"])
def test_json_that_is_not_an_object_gets_errno_3(wire, payload):
    # Circus raises AttributeError without a reply and stalls queued commands (section 8 item 2).
    assert_error(wire.call(payload), MESSAGE_ERROR, "message invalid")


@pytest.mark.parametrize("command", [None, "", 5, ["list"], {"name": "list"}, True],
                         ids=["null", "empty", "int", "list", "object", "bool"])
def test_a_missing_empty_or_non_string_command_gets_errno_3(wire, command):
    message = {"properties": {}} if command is None else {"command": command, "properties": {}}
    assert_error(wire.call(message), MESSAGE_ERROR, "command")


@pytest.mark.parametrize("message", [{"id": "m1"}, {"id": "m2", "command": ""},
                                     {"id": "m3", "command": "list", "properties": [1]}],
                         ids=["no-command", "empty-command", "properties-list"])
def test_an_invalid_message_object_still_echoes_its_id(wire, message):
    assert_error(wire.call(message), MESSAGE_ERROR, msg_id=message["id"])


def test_an_unknown_command_gets_errno_2(wire):
    assert_error(wire.call({"id": 1, "command": "frobnicate"}), UNKNOWN_COMMAND, "unknown command: 'frobnicate'", 1)


def test_command_names_are_case_insensitive(wire):
    assert wire.call({"id": 1, "command": "LiSt"})["watchers"] == ["a", "b", "c"]


@pytest.mark.parametrize("properties", [[1], "name", 5, True], ids=["list", "str", "int", "bool"])
def test_properties_that_are_not_an_object_get_errno_3(wire, properties):
    assert_error(wire.call({"command": "list", "properties": properties}), MESSAGE_ERROR, "properties")


def test_null_properties_are_an_empty_object(wire):
    assert wire.call({"id": 2, "command": "list", "properties": None})["watchers"] == ["a", "b", "c"]


def test_extra_top_level_keys_and_properties_are_ignored(wire):
    reply = wire.call({"id": 3, "command": "list", "properties": {"name": "a", "bogus": [1]}, "x": {"y": 1}})
    assert reply["status"] == "ok" and len(reply["pids"]) == 2


# -- well-formed messages with bad properties ----------------------------------------------------------------

BAD_PROPERTIES = [
    ("list", {"name": 5}),
    ("status", {"name": ["a"]}),
    ("start", {"name": "a", "match": 5}),
    ("stop", {"name": "a", "match": "fuzzy"}),
    ("incr", {"name": "a", "nb": "many"}),
    ("incr", {"name": "a", "nb": 1.5}),
    ("decr", {"name": "a", "nb": [1]}),
    ("numprocesses", {"name": 7}),
    ("options", {"name": {"a": 1}}),
    ("get", {"name": "a", "keys": 5}),
    ("stats", {"name": "a", "process": "one"}),
    ("set", {"name": "a", "options": "numprocesses"}),
    ("set", {"name": "a", "options": {"numprocesses": "lots"}}),
    ("set", {"name": "a", "options": {"no_such_option": 1}}),
    ("kill", {"name": "a", "graceful_timeout": "soon"}),
    ("add", {"name": "a2", "cmd": 5}),
    ("add", {"name": "a2", "cmd": "/bin/true", "options": "x"}),
    ("add", {"name": "a2", "cmd": "/bin/true", "options": {"numprocesses": "x"}}),
]


@pytest.mark.parametrize("command,properties", BAD_PROPERTIES,
                         ids=[f"{c}-{'-'.join(map(str, p))}" for c, p in BAD_PROPERTIES])
def test_a_property_of_the_wrong_type_gets_errno_3(wire, command, properties):
    assert_error(wire.call({"id": "p", "command": command, "properties": properties}), MESSAGE_ERROR, msg_id="p")


MISSING_REQUIRED = [("get", {"name": "a"}), ("get", {"keys": ["numprocesses"]}), ("options", {}), ("incr", {}),
                    ("decr", {}), ("set", {"name": "a"}), ("signal", {"name": "a"}), ("kill", {}), ("rm", {}),
                    ("add", {"name": "a2"}), ("add", {"cmd": "/bin/true"})]


@pytest.mark.parametrize("command,properties", MISSING_REQUIRED,
                         ids=[f"{c}-{'-'.join(p)}" for c, p in MISSING_REQUIRED])
def test_a_missing_required_property_gets_errno_3(wire, command, properties):
    assert_error(wire.call({"id": "r", "command": command, "properties": properties}), MESSAGE_ERROR, "missing",
                 msg_id="r")


@pytest.mark.parametrize("command,properties", [("incr", {"name": "a", "nb": -1}), ("decr", {"name": "a", "nb": -2}),
                                                ("incr", {"name": "a", "nb": -1, "waiting": True})])
def test_negative_counts_are_refused(wire, command, properties):
    assert_error(wire.call({"id": 4, "command": command, "properties": properties}), MESSAGE_ERROR, msg_id=4)


@pytest.mark.parametrize("command,properties", [
    ("signal", {"name": "a", "signum": "NOSUCHSIG"}),  # Circus: AttributeError, errno 5 (section 8 item 6)
    ("signal", {"name": "a", "signum": 999}),
    ("signal", {"name": "a", "signum": -9}),
    ("signal", {"name": "a", "signum": True}),
    ("signal", {"name": "a", "signum": [9]}),
    ("kill", {"name": "a", "signum": "SIGNOPE"}),
], ids=["name", "number", "negative", "bool", "list", "kill-name"])
def test_unknown_signals_get_errno_3_signal_invalid(wire, command, properties):
    assert_error(wire.call({"id": 5, "command": command, "properties": properties}), MESSAGE_ERROR, "signal invalid",
                 msg_id=5)


UNKNOWN_WATCHER = [("list", {}), ("status", {}), ("start", {}), ("stop", {}), ("restart", {}), ("reload", {}),
                   ("incr", {}), ("decr", {"waiting": True}), ("options", {}), ("get", {"keys": ["numprocesses"]}),
                   ("numprocesses", {}), ("stats", {}), ("set", {"options": {"numprocesses": 3}}),
                   ("signal", {"signum": "TERM"}), ("kill", {}), ("rm", {})]


@pytest.mark.parametrize("command,properties", UNKNOWN_WATCHER, ids=[c for c, _ in UNKNOWN_WATCHER])
def test_an_unknown_watcher_gets_errno_3_not_found(wire, command, properties):
    reply = wire.call({"id": [6], "command": command, "properties": {"name": "nope", **properties}})
    assert_error(reply, MESSAGE_ERROR, "nope", msg_id=[6])
    assert "not found" in reply["reason"]


def test_add_of_an_existing_name_is_refused_whatever_its_case(wire):
    # Circus: errno 5 `'a' already exist` (PROTOCOL 2.5 add), gcircus's words too.
    reply = wire.call({"id": 7, "command": "add", "properties": {"name": "A", "cmd": "/bin/sleep 5", "start": True}})
    assert_error(reply, COMMAND_ERROR, "already exist", 7)


# -- size and framing ----------------------------------------------------------------------------------------

def test_a_message_over_1_mib_gets_message_too_large(wire):
    payload = b'{"id": 1, "command": "list", "pad": "' + b"x" * MiB + b'"}'
    reply = wire.call(payload)
    assert_error(reply, MESSAGE_ERROR, "message too large")


def test_a_message_just_under_1_mib_is_served(wire):
    head, tail = b'{"id": 1, "command": "list", "pad": "', b'"}'
    reply = wire.call(head + b"x" * (MiB - len(head) - len(tail)) + tail)
    assert reply["status"] == "ok" and reply["watchers"] == ["a", "b", "c"]


def test_a_huge_message_does_not_hurt_other_clients(daemon, wire):
    wire.send(b'{"command": "list", "pad": "' + b"x" * (3 * MiB) + b'"}')  # beyond zmq's limit: the peer is dropped
    other = Wire(daemon.endpoint)
    try:
        assert other.command("list")["watchers"] == ["a", "b", "c"]
    finally:
        other.close()


@pytest.mark.parametrize("frames", [(b'{"command": "list"}', b'{"command": "list"}'), (b"a", b"b", b"c"),
                                    (b'{"command": "list"}', b"")], ids=["two-json", "three", "trailing-empty"])
def test_a_multi_frame_message_gets_an_error_reply(wire, frames):
    assert_error(wire.call(frames), MESSAGE_ERROR, "frame")


def test_a_req_socket_gets_a_proper_reply(daemon):
    # Circus ignores REQ clients (section 8 item 1); gcircus answers them.
    req = Wire(daemon.endpoint, zmq.REQ)
    try:
        for n in range(3):  # REQ enforces send/receive lock-step: each reply must arrive for the next send
            reply = req.call({"id": n, "command": "list", "properties": {"name": "a"}})
            assert reply["status"] == "ok" and len(reply["pids"]) == 2 and reply["id"] == n
        assert_error(req.call(b"[]"), MESSAGE_ERROR)
    finally:
        req.close()


def test_a_dealer_with_a_req_envelope_gets_the_envelope_back(wire):
    wire.send((b"", b'{"id": "env", "command": "status"}'))
    frames = wire.receive()
    assert frames[0] == b"" and len(frames) == 2
    assert json.loads(frames[1])["statuses"]["a"] == "active"


# -- id echo -------------------------------------------------------------------------------------------------

IDS = [0, -1, 2 ** 70, 1.5, "", "abc", "é中\u2028", [1, "x", None], {"k": {"n": [True]}}, True, False, None]


@pytest.mark.parametrize("msg_id", IDS, ids=[repr(i)[:20] for i in IDS])
def test_the_id_is_echoed_whatever_its_json_type(wire, msg_id):
    ok = wire.call({"id": msg_id, "command": "list"})
    assert ok["status"] == "ok" and ok["id"] == msg_id
    error = wire.call({"id": msg_id, "command": "status", "properties": {"name": "nope"}})
    assert_error(error, MESSAGE_ERROR, "not found", msg_id)


def test_a_missing_id_is_null(wire):
    reply = wire.call({"command": "list"})
    assert "id" in reply and reply["id"] is None
    assert wire.call({"command": "nope"})["id"] is None


def test_the_reply_is_ascii_json_with_circus_key_order(wire):
    wire.send({"id": "é", "command": "status"})
    raw = wire.receive()[-1]
    raw.decode("ascii")
    assert list(json.loads(raw)) == ["status", "time", "statuses", "id"]
    assert b'"status": "ok", "time": ' in raw


# -- casts ---------------------------------------------------------------------------------------------------

def test_a_cast_gets_no_reply_and_is_carried_out(daemon, wire):
    wire.sent_without_reply({"command": "start", "msg_type": "cast", "properties": {"name": "c"}})
    pids = wait_for(lambda: wire.command("list", name="c")["pids"], message="c started by a cast")
    assert len(pids) == 1
    wire.sent_without_reply({"command": "stop", "msg_type": "cast", "properties": {"name": "c", "waiting": True}})
    wait_for(lambda: wire.command("status", name="c")["status"] == "stopped" and not linux.is_running(pids[0]),
             message="c stopped by a cast")


@pytest.mark.parametrize("message", [{"command": "frobnicate"}, {"command": "stop", "properties": {"name": "nope"}},
                                     {"command": "incr", "properties": {"name": "a", "nb": "x"}},
                                     {"id": 9, "command": "list"}],
                         ids=["unknown-command", "unknown-watcher", "bad-property", "with-id"])
def test_a_cast_gets_no_reply_even_on_error(wire, message):
    wire.sent_without_reply({**message, "msg_type": "cast"})


def test_a_cast_with_non_object_properties_gets_no_reply(wire):
    wire.sent_without_reply({"command": "list", "msg_type": "cast", "properties": [1]})


# -- a stream of bad requests --------------------------------------------------------------------------------

def test_bad_requests_do_not_delay_the_good_ones_queued_behind_them(wire):
    # Circus's handler dies mid-batch on a bad message and stalls what is queued (section 8 item 2).
    burst = [b"[1]", b"", b"{", b'{"id": "g1", "command": "status"}', b'"x"', b'{"command": 1}',
             b'{"id": "g2", "command": "list", "properties": {"name": "a"}}', b"\xff"]
    for payload in burst:
        wire.send(payload)
    replies = [json.loads(wire.receive()[-1]) for _ in burst]
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert by_id["g1"]["statuses"]["b"] == "active" and len(by_id["g2"]["pids"]) == 2
    assert sum(r["status"] == "error" for r in replies) == len(burst) - 2


def test_many_clients_sending_garbage_at_once_all_get_replies(daemon):
    wires = [Wire(daemon.endpoint) for _ in range(20)]
    try:
        for n, w in enumerate(wires):
            w.send(b"\x00garbage" if n % 2 else {"id": n, "command": "list", "properties": {"name": "b"}})
        for n, w in enumerate(wires):
            reply = json.loads(w.receive()[-1])
            assert (reply["status"] == "error" and reply["errno"] == INVALID_JSON) if n % 2 else \
                (len(reply["pids"]) == 1 and reply["id"] == n)
    finally:
        for w in wires:
            w.close()
