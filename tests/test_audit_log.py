"""The audit log (`[circus] audit_log`): a real gcircusd writing real files (or datagrams to a socket the test binds).

One JSON line per state-changing request and per refusal, with exactly the documented keys; reads are not recorded;
secrets are redacted; SIGUSR1 reopens the file; a full disk never holds up a command: lines are lost and counted.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import signal

import pytest

from gcircus import journal
from gcircus.control.audit import REDACTED, is_secret_name, redact
from tests.support.audit import audit_lines, wait_lines
from tests.support.daemons import make_config
from tests.support.datagrams import DatagramReceiver
from tests.support.waiting import wait_for

KEYS = {"time", "endpoint", "peer", "command", "properties", "result", "errno", "duration_ms"}
SLEEPER = """
    [watcher:sleeper]
    cmd = sleep 1000
    graceful_timeout = 2
    """


def by_command(lines: list[dict]) -> dict[str, dict]:
    return {line["command"]: line for line in lines}


def test_state_changing_requests_are_recorded_with_their_outcome_and_reads_are_not(gcircusd, tmp_path):
    path = tmp_path / "audit.log"
    running = gcircusd(SLEEPER, circus=f"audit_log = {path}")
    for read in ("list", "status", "globaloptions", "stats"):
        running.call(read)
    running.call("incr", name="sleeper")  # answered at once; recorded once the process runs
    assert running.client.call("set", name="sleeper", options={"numprocesses": "many"})["status"] == "error"
    assert running.client.call("stop", name="nosuch")["errno"] == 3
    running.call("decr", name="sleeper", waiting=True)
    lines = wait_lines(path, 4)
    assert all(set(line) == KEYS for line in lines), lines
    recorded = by_command(lines)
    assert sorted(recorded) == ["decr", "incr", "set", "stop"]
    assert (recorded["incr"]["result"], recorded["incr"]["errno"]) == ("ok", 0)
    assert (recorded["decr"]["result"], recorded["decr"]["properties"]) == ("ok", {"name": "sleeper", "waiting": True})
    assert (recorded["set"]["result"], recorded["set"]["errno"]) == ("error", 3)
    assert (recorded["stop"]["result"], recorded["stop"]["errno"]) == ("error", 3)
    me = pwd.getpwuid(os.geteuid()).pw_name
    for line in lines:
        assert line["endpoint"] == running.endpoint
        # The test's own user, identified on loopback tcp:// by the socket's owner (no gid or pid there).
        assert line["peer"] == {"uid": os.geteuid(), "gid": None, "pid": None, "user": me}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert running.call("status")["audit"] == {"log": str(path), "lost": 0}
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)


def test_a_refusal_is_recorded_as_refused(gcircusd, tmp_path):
    """endpoint_owner refuses to change what a watcher not running as the owner runs (the test's user has the role
    `set` needs: the owner's rule refuses it, errno 3)."""
    path = tmp_path / "audit.log"
    running = gcircusd(SLEEPER, circus=f"audit_log = {path}\nendpoint_owner = nobody")
    reply = running.client.call("set", name="sleeper", options={"cmd": "id"})
    assert reply["status"] == "error" and "endpoint_owner" in reply["reason"], reply
    line = wait_lines(path, 1)[0]
    assert (line["command"], line["result"], line["errno"]) == ("set", "refused", 3)
    assert line["properties"] == {"name": "sleeper", "options": {"cmd": "id"}}


def test_env_values_and_secrets_are_redacted(gcircusd, tmp_path):
    path = tmp_path / "audit.log"
    running = gcircusd(SLEEPER, circus=f"audit_log = {path}")
    running.call("add", name="web", cmd="sleep 1000", options={
        "env": {"DB_PASSWORD": "hunter2", "PATH": "/usr/bin"}, "graceful_timeout": 2}, api_token="t0k3n")
    running.call("set", name="web", options={"env": "A=one,B=two"})
    recorded = by_command(wait_lines(path, 2))
    text = path.read_text()
    for secret in ("hunter2", "/usr/bin", "t0k3n", "one", "two"):
        assert secret not in text
    assert recorded["add"]["properties"] == {
        "name": "web", "cmd": "sleep 1000", "api_token": REDACTED,  # an extra property is ignored, yet recorded
        "options": {"env": {"DB_PASSWORD": REDACTED, "PATH": REDACTED}, "graceful_timeout": 2}}
    assert recorded["add"]["result"] == "ok"
    assert recorded["set"]["properties"]["options"] == {"env": f"A={REDACTED},B={REDACTED}"}


def test_the_redaction_rule():
    for name in ("password", "DB_PASSWORD", "api_key", "apiKey", "secretKey", "AUTH-TOKEN", "client_secret",
                 "passwd", "credentials"):
        assert is_secret_name(name), name
    for name in ("keys", "name", "cmd", "numprocesses", "keyboard", "env_file"):
        assert not is_secret_name(name), name
    assert redact({"options": {"ENV": {"X": 1}, "list": [{"token": "t"}]}, "cmd": "x" * 5000}) == {
        "options": {"ENV": {"X": REDACTED}, "list": [{"token": REDACTED}]},
        "cmd": "x" * 4096 + "...[904 more characters]"}


def test_sigusr1_reopens_the_audit_file(gcircusd, tmp_path):
    path = tmp_path / "audit.log"
    running = gcircusd(SLEEPER, circus=f"audit_log = {path}")
    running.call("incr", name="sleeper", waiting=True)
    wait_lines(path, 1)
    os.rename(path, tmp_path / "audit.log.1")
    running.call("decr", name="sleeper", waiting=True)  # still written to the renamed file
    wait_lines(tmp_path / "audit.log.1", 2)
    running.daemon.signal(signal.SIGUSR1)
    wait_for(lambda: path.exists(), 30, message="a new audit file")
    running.call("incr", name="sleeper", waiting=True)
    assert [line["command"] for line in wait_lines(path, 1)] == ["incr"]
    assert [line["command"] for line in audit_lines(tmp_path / "audit.log.1")] == ["incr", "decr"]


def test_a_full_disk_loses_audit_lines_but_never_a_reply(gcircusd, tiny_disk):
    path = tiny_disk / "audit.log"
    running = gcircusd(SLEEPER, circus=f"audit_log = {path}")
    running.call("incr", name="sleeper", waiting=True)
    wait_lines(path, 1)
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"x" * 512):
            pass
    except OSError:  # full, down to the last byte
        pass
    finally:
        os.close(fd)
    for _ in range(60):  # every request is answered; the lines fill the file's last page, then are lost
        assert running.call("set", name="sleeper", options={"graceful_timeout": 3}, waiting=True)["status"] == "ok"

    def all_accounted():
        lost = running.call("status")["audit"]["lost"]
        return lost and len(audit_lines(path)) + lost == 61 and lost
    assert all_accounted() or wait_for(all_accounted, 30, message="61 audit lines written or counted lost")
    wait_for(lambda: "audit lines lost so far" in running.daemon.output(), 30, message="the loss logged")
    filler.unlink()
    running.call("decr", name="sleeper", waiting=True)  # room again: lines are written again
    # Lines still queued when the room came back may be written first; the decr's line follows them.
    wait_for(lambda: any(line["command"] == "decr" for line in audit_lines(path)), 30, message="the decr's line")


@pytest.fixture
def datagrams(tmp_path):
    receiver = DatagramReceiver(str(tmp_path / "log.sock"))
    yield receiver
    receiver.close()


def test_audit_lines_to_the_journal(gcircusd, datagrams):
    running = gcircusd(SLEEPER, circus="audit_log = journal", env={journal.SOCKET_VARIABLE: datagrams.address})
    running.call("incr", name="sleeper", waiting=True)

    def audit_entries():
        return [e for e in datagrams.journal_entries() if e.get("SYSLOG_IDENTIFIER") == "gcircusd-audit"]
    entry = wait_for(audit_entries, 30, message="an audit entry")[0]
    assert entry["GCIRCUS_AUDIT"] == "1" and json.loads(entry["MESSAGE"])["command"] == "incr"


def test_audit_lines_to_syslog(gcircusd, datagrams):
    running = gcircusd(SLEEPER, circus=f"audit_log = syslog://{datagrams.address}?local3")
    running.call("incr", name="sleeper", waiting=True)
    message = wait_for(lambda: datagrams.datagrams, 30, message="a syslog datagram")[0].decode()
    priority, text = re.fullmatch(r"<(\d+)>gcircusd-audit: (.*?)\x00?", message, re.S).groups()
    assert int(priority) >> 3 == 19  # local3
    assert json.loads(text)["command"] == "incr"


def test_an_audit_log_that_cannot_be_opened_fails_the_start(daemon_factory, tmp_path):
    config = make_config(tmp_path, SLEEPER, circus=f"audit_log = {tmp_path}/missing/audit.log")
    daemon = daemon_factory(config)
    assert daemon.wait() == 1
    assert "cannot open the audit log" in daemon.output() and "missing/audit.log" in daemon.output()
