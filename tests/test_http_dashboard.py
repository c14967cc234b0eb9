"""The dashboard without a browser: the no-JavaScript view, its assets, the login redirect and the event streams
(snapshot, live updates, the per-page cap, a stalled page dropped, the output tail), against a real gcircusd."""
from __future__ import annotations

import html.parser
import http.client
import json
import socket
import time

import pytest

from gcircus.http.dashboard import assets
from gcircus.http.dashboard.sse import Subscriber, message
from tests.support.http import TOKEN, HttpDaemon, request
from tests.support.waiting import wait_for

WATCHERS = """
[watcher:web]
cmd = sleep 1000
numprocesses = 2

[watcher:Chatty]
cmd = sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done'
stdout_stream.class = FileStream
stdout_stream.filename = {tmp}/chatty.log

[watcher:idle]
cmd = sleep 1000
autostart = false
"""


@pytest.fixture
def dashd(tmp_path):
    daemon = HttpDaemon(tmp_path, WATCHERS.format(tmp=tmp_path), http="max_connections = 8").wait_serving()
    wait_for(lambda: "gcircusd running" in daemon.daemon.output(), timeout=30, message="watchers started")
    yield daemon
    daemon.stop()


def call(daemon: HttpDaemon, command: str, **props) -> dict:
    """The /api reply to `command` (HttpDaemon.command cannot pass a `name` property)."""
    return daemon.post(f"/api/{command}", props).json()


def login(daemon: HttpDaemon) -> dict:
    """Log in as a browser does; the headers of its later requests (the session cookie)."""
    reply = request(daemon.bind, "POST", "/login", body=f"token={TOKEN}&next=/",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 303, reply.body
    return {"Cookie": reply.headers["set-cookie"].split(";")[0]}


class PageParser(html.parser.HTMLParser):
    """What a test reads of the page: each watcher's tbody (name, state, text), the csrf meta, labels, buttons."""

    def __init__(self):
        super().__init__()
        self.watchers: dict[str, dict] = {}
        self.current: dict | None = None
        self.csrf = ""
        self.labels: set[str] = set()
        self.ids: set[str] = set()
        self.landmarks: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "tbody" and "data-name" in attrs:
            self.current = self.watchers[attrs["data-name"]] = {"state": attrs["data-state"], "text": "", "pids": []}
        if tag == "tr" and self.current is not None and "data-pid" in attrs:
            self.current["pids"].append(int(attrs["data-pid"]))
        if tag == "meta" and attrs.get("name") == "csrf-token":
            self.csrf = attrs["content"]
        if tag == "label" and attrs.get("for"):
            self.labels.add(attrs["for"])
        if tag in ("header", "main", "footer"):
            self.landmarks.append(tag)
        if tag in ("link", "script", "img") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data


def parse(body: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(body.decode())
    return parser


def test_the_page_without_javascript_is_a_complete_table_of_watchers_and_processes(dashd):
    cookie = login(dashd)
    reply = request(dashd.bind, "GET", "/", headers=cookie)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    page = parse(reply.body)
    assert list(page.watchers) == ["Chatty", "idle", "web"]  # sorted case-insensitively, names as configured
    web = page.watchers["web"]
    assert web["state"] == "active" and "2/2 ready" in web["text"]
    assert sorted(web["pids"]) == sorted(int(p) for p in call(dashd, "list", name="web")["pids"])
    assert page.watchers["idle"]["state"] == "stopped" and page.watchers["idle"]["pids"] == []
    assert len(page.csrf) >= 32  # the session's CSRF token, for the script's POSTs
    assert "filter" in page.labels and "filter" in page.ids  # the search field has its label
    assert page.landmarks[:2] == ["header", "main"]
    for link in page.links:  # everything comes from gcircusd: no CDN
        assert link.startswith("/dashboard/static/"), link
        asset = request(dashd.bind, "GET", link)
        assert asset.status == 200 and asset.body == assets.load(link.split("/")[-1].split("?")[0]).data
        assert "immutable" in asset.headers["cache-control"]
        again = request(dashd.bind, "GET", link, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status == 304


def test_a_browser_without_a_session_is_sent_to_the_login_and_an_unknown_asset_is_404(dashd):
    reply = request(dashd.bind, "GET", "/")
    assert reply.status == 303 and reply.headers["location"] == "/login?next=/"
    assert request(dashd.bind, "GET", "/", headers={"Authorization": "Bearer wrong"}).status == 401
    assert request(dashd.bind, "GET", "/dashboard/static/../../setup.cfg").status == 404
    assert request(dashd.bind, "GET", "/dashboard/events").status == 401  # the streams are behind the token too
    assert dashd.get("/").status == 200  # a Bearer client may read the page


class EventStream:
    """A raw server-sent event stream read with a blocking socket (the test process is not monkey-patched)."""

    def __init__(self, bind: str, path: str, headers: dict):
        host, port = bind.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=20)
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()

    def next(self, name: str, deadline: float = 20.0) -> dict:
        """The data of the next message called `name` (others are skipped)."""
        end = time.monotonic() + deadline
        event, data = "", ""
        while time.monotonic() < end:
            line = self.response.fp.readline().decode()
            if not line:
                raise AssertionError("the stream ended")
            line = line.rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and event:
                if event == name:
                    return json.loads(data)
                event, data = "", ""
        raise AssertionError(f"no {name} message within {deadline} s")

    def close(self) -> None:
        self.connection.close()


def test_the_event_stream_starts_with_a_snapshot_then_follows_the_event_bus(dashd):
    stream = EventStream(dashd.bind, "/dashboard/events", dashd.headers)
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        snapshot = stream.next("snapshot")
        assert {w["name"]: w["state"] for w in snapshot["watchers"]} == {"Chatty": "active", "idle": "stopped",
                                                                         "web": "active"}
        assert call(dashd, "incr", name="web")["status"] == "ok"
        bus = stream.next("bus")
        assert bus["watcher"] == "web" and bus["name"] in ("spawn", "ready")
        view = wait_for(lambda: (v := stream.next("watcher"))["name"] == "web" and v["numprocesses"] == 3 and
                        v["ready"] == 3 and v, message="the view of web with 3 ready processes")
        assert len(view["processes"]) == 3
        usage = stream.next("usage")
        assert set(usage["watchers"]) == {"Chatty", "idle", "web"} and usage["watchers"]["web"]["rss"] > 0
    finally:
        stream.close()


def test_event_streams_are_capped_and_a_closed_page_frees_its_place(dashd):
    """max_connections = 8 allows 4 streams: the fifth is refused at once (503), the API still answers."""
    streams = [EventStream(dashd.bind, "/dashboard/events", dashd.headers) for _ in range(4)]
    try:
        for stream in streams:
            stream.next("snapshot")
        refused = dashd.get("/dashboard/events")
        assert refused.status == 503 and "limit 4" in refused.json()["error"]
        assert call(dashd, "status")["status"] == "ok"
        streams.pop().close()
        wait_for(lambda: _opens(dashd), message="a stream place freed")
    finally:
        for stream in streams:
            stream.close()


def _opens(dashd) -> bool:
    stream = EventStream(dashd.bind, "/dashboard/events", dashd.headers)
    try:
        return stream.response.status == 200
    finally:
        stream.close()


FLOOD = """
[watcher:flood]
cmd = sh -c 'while true; do seq 100000 102000; sleep 0.01; done'
stdout_stream.class = FileStream
stdout_stream.filename = {tmp}/flood.log
stdout_stream.max_bytes = 1000000
stdout_stream.backup_count = 1
"""


def test_a_page_that_stops_reading_is_dropped_and_gcircusd_keeps_serving(tmp_path):
    """A client that never reads the tail of a chatty child (about 1 MB/s) soon has a write to it blocked: its
    connection is closed (request_timeout on the write, or the dashboard's own stall watchdog), which frees its place
    (max_connections = 2 allows one stream), and gcircusd answers throughout."""
    daemon = HttpDaemon(tmp_path, (WATCHERS + FLOOD).format(tmp=tmp_path),
                        http="max_connections = 2\nrequest_timeout = 2")
    stalled = socket.socket()
    try:
        daemon.wait_serving()
        host, port = daemon.bind.rsplit(":", 1)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: the window stays small
        stalled.connect((host, int(port)))
        stalled.sendall(f"GET /dashboard/tail?name=flood HTTP/1.1\r\nHost: {daemon.bind}\r\n"
                        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        wait_for(lambda: daemon.get("/dashboard/events").status == 503, message="the stalled page holds the stream")

        def dropped() -> bool:
            assert daemon.get("/healthz").status == 200
            return _opens(daemon)
        wait_for(dropped, timeout=90, interval=0.5, message="the stalled page dropped")
    finally:
        stalled.close()
        daemon.stop()


def test_a_page_queue_is_bounded_in_bytes_a_tail_skips_instead():
    """The per-page queue of sse.Subscriber: past its limit a state stream is dropped, a tail loses its oldest."""
    page = Subscriber(limit=1000)
    page.send(b"x" * 600)
    page.send(b"y" * 600)
    assert page.closed and page.reason.startswith("too slow")
    page.send(b"z")  # a closed stream takes nothing more
    tail = Subscriber(limit=1000, skips=True)
    for i in range(10):
        tail.send(b"%d" % i * 300)
    assert not tail.closed and tail.skipped == 7
    parts = tail.stream()
    assert next(parts).startswith(b"retry: ")
    assert next(parts) == message("skipped", {"count": 7}) + b"777" * 100 + b"888" * 100 + b"999" * 100


def test_the_tail_stream_sends_the_kept_lines_then_new_ones(dashd, tmp_path):
    # Lines the child wrote before the page opened: its stream file has them, so the tail has kept them too.
    wait_for(lambda: (tmp_path / "chatty.log").exists() and (tmp_path / "chatty.log").read_text().count("\n") >= 2,
             timeout=60, message="the child's first lines")
    stream = EventStream(dashd.bind, "/dashboard/tail?name=Chatty", dashd.headers)
    try:
        first = stream.next("lines")["lines"]
        assert first, "the lines written before the page opened"
        last = int(first[-1][4].split()[1]) if first else -1
        newer = wait_for(lambda: [int(line[4].split()[1]) for line in stream.next("lines")["lines"]
                                  if int(line[4].split()[1]) > last], message="newer lines")
        assert newer == list(range(newer[0], newer[0] + len(newer)))  # in order, none lost
    finally:
        stream.close()
    assert dashd.get("/dashboard/tail?name=web").status == 404  # no stream configured: no tail
    assert dashd.get("/dashboard/tail?name=nope").status == 404
    assert dashd.get("/dashboard/tail").status == 400
