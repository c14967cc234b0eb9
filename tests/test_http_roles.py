"""The HTTP API holds its clients to the command table's roles, as the control channel does: `[http] token_role`
gives the token (and the sessions opened with it) a role; a command that needs more is a 403 with the control
channel's errno 7 reply, changes nothing and is audited as refused; the dashboard offers only what the role allows."""
import html.parser

import pytest

from gcircus.wire.errors import ACCESS_REFUSED
from tests.support.audit import wait_lines
from tests.support.http import TOKEN, HttpDaemon, request

WATCHERS = "[watcher:web]\ncmd = sleep 1000\ngraceful_timeout = 1\n"


@pytest.fixture
def served(tmp_path):
    """served(role) -> gcircusd with token_role = role (None: not set) and an audit log at tmp_path/audit.log."""
    daemons = []

    def start(role: str | None) -> HttpDaemon:
        daemon = HttpDaemon(tmp_path, WATCHERS, http=f"token_role = {role}\n" if role else "",
                            circus=f"audit_log = {tmp_path / 'audit.log'}\n")
        daemons.append(daemon)
        return daemon.wait_serving(started=True)  # its watcher active: the tests read and compare its state
    yield start
    for daemon in daemons:
        daemon.stop()


def refused(reply, role: str) -> dict:
    assert reply.status == 403, (reply.status, reply.body)
    body = reply.json()
    assert (body["status"], body["errno"]) == ("error", ACCESS_REFUSED), body
    assert f"needs the {role} role" in body["reason"] and "token_role" in body["reason"], body
    return body


class MayRun(html.parser.HTMLParser):
    """The commands the dashboard page offers its viewer (its may-run meta), and its CSRF token."""

    def __init__(self):
        super().__init__()
        self.commands: set[str] = set()
        self.csrf = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and attrs.get("name") == "may-run":
            self.commands = set(attrs["content"].split())
        if tag == "meta" and attrs.get("name") == "csrf-token":
            self.csrf = attrs["content"]


def test_a_read_token_reads_and_is_refused_a_stop_which_is_audited(served, tmp_path):
    daemon = served("read")
    listed = daemon.get("/api/list")
    assert listed.status == 200 and listed.json()["watchers"] == ["web"]
    assert daemon.get("/api/status?name=web").json()["status"] == "active"
    reason = refused(daemon.post("/api/stop", {"name": "web", "waiting": True}), "operate")["reason"]
    assert "has the read role" in reason
    assert daemon.get("/api/status?name=web").json()["status"] == "active"  # nothing changed
    (line,) = wait_lines(tmp_path / "audit.log", 1)  # the reads are not recorded
    assert (line["command"], line["result"], line["errno"]) == ("stop", "refused", ACCESS_REFUSED), line
    assert line["peer"] == {"http": "bearer", "address": "127.0.0.1"}, line
    assert line["properties"] == {"name": "web", "waiting": True}


def test_an_operate_token_stops_and_scales_but_cannot_define(served, tmp_path):
    daemon = served("operate")
    assert daemon.post("/api/set", {"name": "web", "options": {"numprocesses": 2}, "waiting": True}).status == 200
    refused(daemon.post("/api/set", {"name": "web", "options": {"cmd": "sleep 999"}}), "define")
    refused(daemon.post("/api/add", {"name": "other", "cmd": "sleep 1000"}), "define")
    stopped = daemon.post("/api/stop", {"name": "web", "waiting": True})
    assert stopped.status == 200 and stopped.json()["status"] == "ok", stopped.body
    assert daemon.get("/api/list").json()["watchers"] == ["web"]
    assert daemon.command("get", name="web", keys=["cmd"])["options"] == {"cmd": "sleep 1000"}
    lines = wait_lines(tmp_path / "audit.log", 4)
    assert [(line["command"], line["result"]) for line in lines] == [
        ("set", "ok"), ("set", "refused"), ("add", "refused"), ("stop", "ok")]


def test_the_default_token_role_is_define(served):
    daemon = served(None)
    added = daemon.post("/api/add", {"name": "other", "cmd": "sleep 1000", "options": {"graceful_timeout": 1}})
    assert added.status == 200 and added.json()["status"] == "ok", added.body
    assert daemon.get("/session").json()["role"] == "define"
    page = MayRun()
    page.feed(daemon.get("/").body.decode())
    assert {"start", "stop", "restart", "reload", "incr", "decr", "add", "set"} <= page.commands


def test_the_dashboard_of_a_read_session_offers_no_buttons_and_its_posts_are_refused(served):
    daemon = served("read")
    login = request(daemon.bind, "POST", "/login", body=f"token={TOKEN}&next=/",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    cookie = {"Cookie": login.headers["set-cookie"].split(";")[0]}
    page = MayRun()
    page.feed(daemon.get("/", cookie, auth=False).body.decode())
    assert {"list", "status", "stats"} <= page.commands
    assert not page.commands & {"start", "stop", "restart", "reload", "incr", "decr", "add", "rm", "set"}
    assert daemon.get("/session", cookie, auth=False).json()["role"] == "read"
    # What a button would have posted, with the session and its CSRF token: still refused.
    refused(daemon.post("/api/incr", {"name": "web"}, {**cookie, "X-CSRF-Token": page.csrf}, auth=False), "operate")
