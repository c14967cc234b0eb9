"""The HTTP server of a real gcircusd: the token guards everything but the probes; Bearer for API clients; a login
cookie for browsers, whose state-changing requests need the CSRF token; bounds on what a client may send; a unix
socket; without a token file, only loopback Hosts and requests a cross-site page cannot forge."""
import json
import os
import socket
import stat

import pytest

from tests.support.http import TOKEN, HttpDaemon, request

WATCHERS = "[watcher:web]\ncmd = sleep 1000\ngraceful_timeout = 1\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    daemon = HttpDaemon(tmp_path_factory.mktemp("auth"), WATCHERS, http="max_body_size = 1024\n")
    try:
        yield daemon.wait_serving(started=True)
    finally:
        daemon.stop()


def login(served) -> tuple[str, str]:
    """Log in with the token; the session cookie and its CSRF token."""
    reply = served.post("/login", f"token={TOKEN}&next=/metrics", auth=False,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 303 and reply.headers["location"] == "/metrics"
    set_cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    cookie = set_cookie.split(";")[0]
    csrf = served.get("/session", {"Cookie": cookie}, auth=False).json()["csrf_token"]
    return cookie, csrf


def test_the_probes_need_no_token(served):
    assert served.get("/healthz", auth=False).status == 200
    assert served.get("/readyz", auth=False).status == 200


@pytest.mark.parametrize("path", ["/metrics", "/api/status", "/session"])
def test_everything_else_needs_the_token(served, path):
    reply = served.get(path, auth=False)
    assert reply.status == 401 and "Bearer" in reply.headers["www-authenticate"]


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN])
def test_a_bad_token_is_refused(served, authorization):
    assert served.get("/metrics", {"Authorization": authorization}, auth=False).status == 401


def graceful_timeout(served) -> float:
    return served.command("get", name="web", keys=["graceful_timeout"])["options"]["graceful_timeout"]


def test_bearer_works_and_needs_no_csrf(served):
    assert served.get("/metrics").status == 200
    reply = served.post("/api/set", {"name": "web", "options": {"graceful_timeout": 2}, "waiting": True})
    assert reply.status == 200 and reply.json()["status"] == "ok"
    assert graceful_timeout(served) == 2


def test_a_wrong_login_is_refused_without_a_cookie(served):
    reply = served.post("/login", "token=wrong", auth=False,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 401 and "set-cookie" not in reply.headers


def test_the_login_never_redirects_to_another_site(served):
    reply = served.post("/login", f"token={TOKEN}&next=//evil.example/", auth=False,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.headers["location"] == "/"


def test_a_session_cookie_reads_and_needs_csrf_to_change_anything(served):
    cookie, csrf = login(served)
    assert served.get("/metrics", {"Cookie": cookie}, auth=False).status == 200
    assert served.get("/api/status", {"Cookie": cookie}, auth=False).json()["statuses"] == {"web": "active"}
    before = graceful_timeout(served)
    body = json.dumps({"name": "web", "options": {"graceful_timeout": before + 1}, "waiting": True})
    json_headers = {"Cookie": cookie, "Content-Type": "application/json"}
    refused = served.post("/api/set", body, json_headers, auth=False)
    assert refused.status == 403 and "CSRF" in refused.json()["error"]
    wrong = served.post("/api/set", body, {**json_headers, "X-CSRF-Token": csrf + "x"}, auth=False)
    assert wrong.status == 403
    assert graceful_timeout(served) == before  # nothing was done
    accepted = served.post("/api/set", body, {**json_headers, "X-CSRF-Token": csrf}, auth=False)
    assert accepted.status == 200 and accepted.json()["status"] == "ok"
    assert graceful_timeout(served) == before + 1
    form = served.post("/api/signal", f"name=web&signum=0&csrf_token={csrf}", auth=False,
                       headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 200 and form.json()["status"] == "ok"  # a page's form: its csrf_token field counts


def test_a_logout_ends_the_session(served):
    cookie, csrf = login(served)
    assert served.post("/logout", "", {"Cookie": cookie, "X-CSRF-Token": csrf}, auth=False).status == 303
    assert served.get("/metrics", {"Cookie": cookie}, auth=False).status == 401


def test_a_body_larger_than_max_body_size_is_refused(served):
    reply = served.post("/api/status", {"name": "web", "padding": "x" * 2000})
    assert reply.status == 413
    assert served.post("/api/status", {"name": "web", "padding": "x" * 500}).status == 200


def test_headers_larger_than_the_bound_are_refused(served):
    many = {f"X-Filler-{i}": "y" * 1000 for i in range(40)}
    assert served.get("/healthz", many).status == 400
    assert served.get("/healthz").status == 200  # the server goes on serving


def test_a_silent_connection_does_not_keep_others_out(served):
    host, port = served.bind.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
    try:
        assert served.get("/healthz").status == 200
    finally:
        for sock in idle:
            sock.close()


def test_unknown_paths_and_methods(served):
    assert served.get("/nope").status == 404
    reply = request(served.bind, "DELETE", "/metrics", headers=served.headers)
    assert reply.status == 405 and "GET" in reply.headers["allow"]


def test_a_unix_socket_bind_is_private_and_serves(tmp_path):
    path = str(tmp_path / "http.sock")
    daemon = HttpDaemon(tmp_path, WATCHERS, bind=f"unix:{path}")
    try:
        daemon.wait_serving()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert daemon.get("/metrics").status == 200
        assert daemon.get("/readyz", auth=False).json()["ready"] is True
    finally:
        daemon.stop()
    assert not os.path.exists(path)


def test_without_a_token_only_loopback_hosts_and_unforgeable_posts_are_served(tmp_path):
    daemon = HttpDaemon(tmp_path, WATCHERS, token=None)
    try:
        daemon.wait_serving()
        assert daemon.get("/metrics").status == 200
        assert daemon.get("/metrics", {"Host": "evil.example:9102"}).status == 403  # DNS rebinding
        form = daemon.post("/api/signal", "name=web&signum=0", {"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status == 403  # what a cross-site form could send
        assert daemon.post("/api/signal", {"name": "web", "signum": 0}).status == 200  # JSON: no cross-site page can
        csrf = daemon.get("/session").json()["csrf_token"]
        with_token = daemon.post("/api/signal", f"name=web&signum=0&csrf_token={csrf}",
                                 {"Content-Type": "application/x-www-form-urlencoded"})
        assert with_token.status == 200
    finally:
        daemon.stop()
