"""tcp, http and exec probes against real sockets, real HTTP server children and real commands: what passes, what
fails and the words it fails with, that every probe ends at its timeout, and that an exec check leaves nothing
running."""
from __future__ import annotations

import os
import socket
import sys

import gevent
import pytest
from gevent import subprocess as gsubprocess

from gcircus.checks.probes import probe
from gcircus.checks.spec import parse_check
from tests.support.ports import free_port
from tests.support.processes import terminate_child
from tests.support.waiting import wait_for

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
# An HTTP server answering every GET with 503 (stdlib only).
UNAVAILABLE_SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def run(text: str, timeout: float = 10.0, wid: int = 1, env: dict | None = None, **kwargs):
    return probe(parse_check(text), wid=wid, env=ENV if env is None else env, timeout=timeout, **kwargs)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def server_child(tmp_path):
    """`server_child(argv, port)` starts an HTTP server child and returns once it accepts; stopped at the end."""
    children = []

    def start(argv: list[str], port: int):
        child = gsubprocess.Popen(argv, cwd=tmp_path, stdout=gsubprocess.DEVNULL, stderr=gsubprocess.DEVNULL)
        children.append(child)
        wait_for(lambda: accepts(port) or child.poll() is not None, message=f"a server on port {port}")
        assert child.poll() is None
        return child

    yield start
    for child in children:
        terminate_child(child)


@pytest.fixture
def listener():
    """A TCP socket listening on 127.0.0.1 (never accepting: the kernel completes connections in the backlog)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_tcp_outcomes(listener):
    outcome = run(f"tcp:127.0.0.1:{listener}")
    assert (outcome.ok, outcome.detail) == (True, f"tcp 127.0.0.1:{listener} accepted")
    port = free_port()
    outcome = run(f"tcp:127.0.0.1:{port}")
    assert (outcome.ok, outcome.detail) == (False, f"tcp 127.0.0.1:{port} refused")


def test_tcp_by_host_name_and_by_ipv6_address(listener):
    """An IP address is connected to directly, a name is resolved first: both reach the listener."""
    outcome = run(f"tcp:localhost:{listener}")
    assert (outcome.ok, outcome.detail) == (True, f"tcp localhost:{listener} accepted")
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.listen(8)
        port = server.getsockname()[1]
        outcome = run(f"tcp:[::1]:{port}")
        assert (outcome.ok, outcome.detail) == (True, f"tcp [::1]:{port} accepted")


def test_tcp_port_from_the_environment_and_the_wid(listener):
    assert run("tcp:127.0.0.1:$PORT", env={"PORT": str(listener)}).ok
    assert run("tcp:127.0.0.1:${PORT}", env={"PORT": str(listener)}).ok
    prefix, last = divmod(listener, 10)
    assert run(f"tcp:127.0.0.1:{prefix}$(circus.wid)", wid=last).ok
    outcome = run("tcp:127.0.0.1:$PORT", env={})
    assert (outcome.ok, outcome.detail) == (
        False, "tcp 127.0.0.1:$PORT: port '$PORT' is not a number from 1 to 65535")


def test_http_2xx_is_ready(server_child):
    port = free_port()
    server_child([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], port)
    outcome = run(f"http://127.0.0.1:{port}/")
    assert (outcome.ok, outcome.detail) == (True, "http 200")
    outcome = run(f"http:http://127.0.0.1:{port}/missing?x=1")
    assert (outcome.ok, outcome.detail) == (False, "http 404")


def test_http_503_is_not_ready(server_child):
    port = free_port()
    server_child([sys.executable, "-c", UNAVAILABLE_SERVER, str(port)], port)
    outcome = run(f"http://127.0.0.1:{port}/health")
    assert (outcome.ok, outcome.detail) == (False, "http 503")


def test_http_refused_and_silent(listener):
    port = free_port()
    outcome = run(f"http://127.0.0.1:{port}/")
    assert (outcome.ok, outcome.detail) == (False, f"http 127.0.0.1:{port} refused")
    outcome = run(f"http://127.0.0.1:{listener}/", timeout=0.2)  # accepted by the kernel, never answered
    assert (outcome.ok, outcome.detail) == (False, f"http http://127.0.0.1:{listener}/ timed out after 0.2s")


def test_exec_outcomes():
    outcome = run("exec:true")
    assert (outcome.ok, outcome.detail) == (True, "exec exited 0")
    outcome = run("exec:false")
    assert (outcome.ok, outcome.detail) == (False, "exec exited 1")
    outcome = run("exec:sh -c 'echo first >&2; echo second >&2; exit 3'")
    assert (outcome.ok, outcome.detail) == (False, "exec exited 3: first")
    outcome = run("exec:sh -c 'kill -9 $$'")
    assert (outcome.ok, outcome.detail) == (False, "exec killed by signal 9")
    outcome = run("exec:/nonexistent/check")
    assert (outcome.ok, outcome.detail) == (False, "exec '/nonexistent/check': No such file or directory")


def test_exec_runs_in_cwd_with_env_and_wid(tmp_path):
    (tmp_path / "marker-7").write_text("")
    assert run("exec:test -e marker-$(circus.wid)", wid=7, cwd=str(tmp_path)).ok
    assert not run("exec:test -e marker-$(circus.wid)", wid=8, cwd=str(tmp_path)).ok
    assert run("exec:test $GREETING = hello", env={**ENV, "GREETING": "hello"}).ok
    assert run("exec:sh -c 'test \"$GREETING\" = hello'", env={**ENV, "GREETING": "hello"}).ok


def test_exec_output_is_bounded():
    outcome = run(f"exec:{sys.executable} -c \"import sys; sys.stderr.write('x' * 1000000); sys.exit(2)\"")
    assert not outcome.ok
    assert outcome.detail.startswith("exec exited 2: xxx") and len(outcome.detail) < 300


def test_exec_timeout_kills_the_command_and_its_children():
    outcome = run("exec:sleep 100", timeout=0.3)
    assert (outcome.ok, outcome.detail) == (False, "exec 'sleep 100' timed out after 0.3s")
    outcome = run("exec:sh -c 'sleep 100 & sleep 100'", timeout=0.3)
    assert not outcome.ok
    # tests.support.isolation fails the test if either sleep is left running


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_exec_runs_as_the_given_user():
    assert run("exec:sh -c 'test $(id -u) = 65534'", uid="nobody").ok
    assert not run("exec:sh -c 'test $(id -u) = 65534'").ok


def test_probes_do_not_block_the_hub(listener):
    """Many slow probes at once all end at their timeout, and the hub keeps running meanwhile."""
    probes = [gevent.spawn(run, f"http://127.0.0.1:{listener}/", 0.5) for _ in range(20)]
    probes.append(gevent.spawn(run, "exec:sleep 100", 0.5))
    ticks = 0
    while not all(p.dead for p in probes):
        gevent.sleep(0.01)
        ticks += 1
    assert ticks > 1
    assert not any(p.value.ok for p in probes)


def test_non_probed_kinds_are_refused():
    with pytest.raises(ValueError):
        run("notify")
