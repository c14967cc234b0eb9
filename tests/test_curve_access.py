"""CURVE clients against [access] grants on a real gcircusd: a key is `curve:NAME` and gets only what is granted to
that name (`local_tcp`, which lets every plain loopback tcp peer read, is not for it); the audit log names the key."""
from __future__ import annotations

import pytest

from gcircus.wire.errors import ACCESS_REFUSED
from tests.support.audit import wait_lines
from tests.support.curve import Keys, start_curve_daemon


@pytest.fixture
def keys(tmp_path) -> Keys:
    keys = Keys.make(tmp_path)
    keys.client("carol", listed=True)  # granted read
    keys.client("dave", listed=True)  # listed, granted nothing
    return keys


def refused(reply: dict, need: str, peer: str) -> bool:
    return (reply["status"] == "error" and reply["errno"] == ACCESS_REFUSED
            and f"needs the {need} role; CURVE client {peer!r}" in reply["reason"])


def test_a_curve_key_gets_its_grant_and_no_more_and_the_audit_names_it(tmp_path, daemon_factory, keys):
    audit = tmp_path / "audit.log"
    running = start_curve_daemon(daemon_factory, tmp_path, keys, grants="curve:carol = read",
                                 circus=f"audit_log = {audit}")
    pids = running.call("list", name="sleeper")["pids"]

    assert running.call("list", as_client="carol")["watchers"] == ["sleeper"]
    stop = running.call("stop", as_client="carol", name="sleeper")
    assert refused(stop, "operate", "carol") and "has the read role" in stop["reason"], stop

    # A listed key without a grant is let in by the handshake, then may run nothing (not even what local_tcp gives).
    for command, props in (("list", {}), ("stop", {"name": "sleeper"})):
        reply = running.call(command, as_client="dave", **props)
        assert refused(reply, "read" if command == "list" else "operate", "dave") and "has no role" in reply["reason"]
    assert running.call("list", name="sleeper")["pids"] == pids  # the refused stops changed nothing

    assert running.call("incr", name="sleeper", waiting=True)["status"] == "ok"  # alice: define
    lines = wait_lines(audit, 4)
    seen = {(line["peer"].get("curve"), line["command"], line["result"], line["errno"]) for line in lines}
    assert seen == {("carol", "stop", "refused", ACCESS_REFUSED), ("dave", "list", "refused", ACCESS_REFUSED),
                    ("dave", "stop", "refused", ACCESS_REFUSED), ("alice", "incr", "ok", 0)}, lines
    assert all(line["peer"] == {"curve": line["peer"]["curve"]} for line in lines)  # the key's name, no uid
    assert all(line["endpoint"] == running.endpoint for line in lines)
