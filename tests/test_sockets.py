"""Managed sockets: CircusSocket/Sockets on their own, then a real gcircusd handing them to its children.

Children are small Python servers (tests/… written to tmp_path) that use the inherited listening fd with
`socket.socket(fileno=N)`; every address is 127.0.0.1 port 0 or a unix path under tmp_path.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest
from circus.client import CircusClient, make_message

from gcircus.client import Client
from gcircus.sockets import CircusSocket, SocketError, Sockets, named_sockets
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.sockets import SERVER, ask
from tests.support.waiting import wait_for

PY = sys.executable

# -- CircusSocket / Sockets --------------------------------------------------------------------------------------

def test_tcp_port_zero_reads_back_the_real_port_and_is_not_inheritable():
    sock = CircusSocket(name="Web", host="127.0.0.1", port=0, backlog=5)
    try:
        sock.bind_and_listen()
        assert sock.name == "web" and sock.port != 0 and sock.host == "127.0.0.1"
        assert sock.location == f"127.0.0.1:{sock.port}" and str(sock) == f"socket 'web' at 127.0.0.1:{sock.port}"
        assert not sock.get_inheritable() and not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with socket.create_connection(("127.0.0.1", sock.port), timeout=5):
            pass
    finally:
        sock.close()
    assert sock.fileno() == -1


def test_udp_and_reuseport_and_blocking():
    sock = CircusSocket(name="u", host="127.0.0.1", port=0, type=socket.SOCK_DGRAM, so_reuseport=True, blocking=True)
    try:
        sock.bind_and_listen()  # no listen() for datagrams
        assert sock.getblocking() and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", sock.port))  # SO_REUSEPORT lets workers bind the same address
        other.close()
    finally:
        sock.close()


def test_tcp_address_in_use_is_a_clear_error():
    first = CircusSocket(name="a", host="127.0.0.1", port=0)
    first.bind_and_listen()
    second = CircusSocket(name="b", host="127.0.0.1", port=first.port)
    try:
        with pytest.raises(SocketError, match=rf"socket 'b': cannot bind 127.0.0.1:{first.port}"):
            second.bind_and_listen()
    finally:
        first.close()
        second.close()


def test_unix_socket_umask_is_octal_and_close_unlinks(tmp_path):
    path = str(tmp_path / "s.sock")
    sock = CircusSocket(name="u", path=path, umask=0o077, host="ignored", port=1)
    sock.bind_and_listen()
    try:
        assert sock.family == socket.AF_UNIX and sock.location == path and sock.host is None
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    finally:
        sock.close()
    assert not os.path.exists(path)


def test_unix_socket_existing_path_needs_replace(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, as after a crash
    refused = CircusSocket(name="u", path=path)
    with pytest.raises(SocketError, match="already exists.*replace = true"):
        refused.bind_and_listen()
    refused.close()
    assert os.path.exists(path)  # a socket that never bound does not remove someone else's file
    replacing = CircusSocket(name="u", path=path, replace=True)
    replacing.bind_and_listen()
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    finally:
        replacing.close()
    regular = tmp_path / "file"
    regular.write_text("x")
    not_a_socket = CircusSocket(name="f", path=str(regular), replace=True)
    with pytest.raises(SocketError, match="not a socket"):
        not_a_socket.bind_and_listen()
    not_a_socket.close()
    assert regular.exists()


def test_sockets_collection_duplicates_rebind_and_watcher_selection():
    class W:
        def __init__(self, cmd, args=None, stdin_socket=None):
            self.name, self.cmd, self.args, self.stdin_socket = "w", cmd, args, stdin_socket

    socks = Sockets([{"name": "a", "host": "127.0.0.1", "port": 0, "_section": "socket:a"},
                     CircusSocket(name="b", host="127.0.0.1", port=0), {"name": "c", "host": "127.0.0.1", "port": 0}])
    try:
        with pytest.raises(ValueError, match="already exists"):
            socks.add(name="A", host="127.0.0.1", port=0)
        socks.bind_and_listen_all()
        assert all(s.bound for s in socks.values())
        assert named_sockets(W("srv --fd $(circus.sockets.A)", ["((circus.sockets.b))"])) == {"a", "b"}
        assert set(socks.for_watcher(W("srv $(circus.sockets.a)"))) == {"a"}
        assert set(socks.for_watcher(W("srv $(circus.sockets.a)", stdin_socket="C"))) == {"a", "c"}
        assert set(socks.for_watcher(W("srv"))) == {"a", "b", "c"}  # naming none: all of them
        socks.close_all()
        socks.bind_and_listen_all()  # closed sockets are made again from their config
        assert all(s.bound and s.fileno() != -1 for s in socks.values())
    finally:
        socks.close_all()


# -- a real gcircusd -----------------------------------------------------------------------------------------------

def start(daemon_factory, tmp_path, sections: str, ready=None):
    (tmp_path / "server.py").write_text(SERVER)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        check_delay = 0.1
        """ + sections.replace("SERVER", f"{PY} {tmp_path / 'server.py'}"))
    daemon = daemon_factory(config)
    client = Client(endpoint, timeout=10)

    def answering():
        if daemon.proc.poll() is not None:
            raise AssertionError(f"gcircusd exited:\n{daemon.output()}")
        try:
            reply = client.call("listsockets")
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        return reply if (ready is None or ready(client)) else False
    wait_for(answering, 20, interval=0.05, message="gcircusd answering")
    return daemon, client, endpoint


def port_of(client, name):
    return next(s["port"] for s in client.call("listsockets")["sockets"] if s["name"] == name)


def pids(client, name):
    return client.call("list", name=name).get("pids", [])


def socket_fds(pid):
    """The fds of `pid` above 2 and what they point at."""
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) > 2:
            fds[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return fds


def test_children_serve_on_the_inherited_socket_and_get_nothing_else(daemon_factory, tmp_path):
    daemon, client, endpoint = start(daemon_factory, tmp_path, """
        [socket:Web]
        host = 127.0.0.1
        port = 0
        backlog = 16

        [socket:other]
        host = 127.0.0.1
        port = 0

        [watcher:web]
        cmd = SERVER $(circus.sockets.web)
        use_sockets = true
        numprocesses = 2

        [watcher:plain]
        cmd = /bin/sleep 3600
        """, ready=lambda c: len(pids(c, "web")) == 2 and len(pids(c, "plain")) == 1)
    try:
        reply = client.call("listsockets")
        socks = reply["sockets"]
        assert [s["fd"] for s in socks] == sorted(s["fd"] for s in socks)
        web = next(s for s in socks if s["name"] == "web")
        assert web["host"] == "127.0.0.1" and web["port"] > 0 and web["backlog"] == 16 and "path" not in web
        served = {ask(("127.0.0.1", web["port"]))[0] for _ in range(20)}
        assert served <= set(pids(client, "web"))
        assert ask(("127.0.0.1", web["port"]), b"x")[1] == b"x"
        # A web child holds exactly the one socket its cmd names; the plain child holds none. A child still starting
        # up (Python opening its modules) has other fds for a moment: wait for the started state, a leak never ends.
        for pid in pids(client, "web"):
            wait_for(lambda pid=pid: list(socket_fds(pid)) == [web["fd"]], 30, message=f"web child {pid}'s fds settled")
            assert socket_fds(pid)[web["fd"]].startswith("socket:")
        wait_for(lambda: socket_fds(pids(client, "plain")[0]) == {}, 30, message="plain child's fds settled")
        # gcircusctl's console and Circus's own client.
        out = subprocess.run([PY, "-m", "gcircus.cli.gcircusctl", "--endpoint", endpoint, "listsockets"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"{s['fd']}:socket '{s['name']}' at 127.0.0.1:{s['port']}" for s in socks]
        circus = CircusClient(endpoint=endpoint, timeout=10)
        try:
            assert circus.call(make_message("listsockets"))["sockets"] == socks
        finally:
            circus.stop()
    finally:
        client.close()
        assert daemon.stop() == 0


def test_listen_queue_holds_connections_while_the_only_worker_is_replaced(daemon_factory, tmp_path):
    daemon, client, _ = start(daemon_factory, tmp_path, """
        [socket:web]
        host = 127.0.0.1
        port = 0

        [watcher:web]
        cmd = SERVER $(circus.sockets.web)
        use_sockets = true
        """, ready=lambda c: len(pids(c, "web")) == 1)
    try:
        port = port_of(client, "web")
        old = pids(client, "web")[0]
        assert ask(("127.0.0.1", port))[0] == old
        assert client.call("stop", name="web", waiting=True)["status"] == "ok"
        assert pids(client, "web") == []
        # No worker at all: the kernel still completes the handshake and queues the connection.
        pending = socket.create_connection(("127.0.0.1", port), timeout=10)
        pending.sendall(b"queued")
        assert client.call("start", name="web", waiting=True)["status"] == "ok"
        reply = b""
        while chunk := pending.recv(1024):
            reply += chunk
        pending.close()
        new = pids(client, "web")[0]
        assert new != old and reply == f"{new}:queued".encode()
        # And during a restart (not waited): a connection made meanwhile is served afterwards.
        client.call("restart", name="web")
        assert ask(("127.0.0.1", port), b"during")[1] == b"during"
    finally:
        client.close()
        assert daemon.stop() == 0


def test_unix_socket_with_umask_and_replace(daemon_factory, tmp_path):
    path = tmp_path / "web.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    daemon, client, endpoint = start(daemon_factory, tmp_path, f"""
        [socket:web]
        path = {path}
        umask = 027
        replace = true

        [watcher:web]
        cmd = SERVER ((circus.sockets.web))
        use_sockets = true
        """, ready=lambda c: len(pids(c, "web")) == 1)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o750  # umask read as octal (Circus: decimal 27 = 0o33)
        (sock,) = client.call("listsockets")["sockets"]
        assert sock["path"] == str(path) and "host" not in sock and "port" not in sock
        assert ask(str(path), b"unix", family=socket.AF_UNIX) == (pids(client, "web")[0], b"unix")
        out = subprocess.run([PY, "-m", "gcircus.cli.gcircusctl", "--endpoint", endpoint, "listsockets"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == f"{sock['fd']}:socket 'web' at {path}"
    finally:
        client.close()
        assert daemon.stop() == 0
    assert not path.exists()  # removed on close


def test_existing_unix_path_without_replace_stops_gcircusd_with_a_clear_error(daemon_factory, tmp_path):
    path = tmp_path / "web.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    (tmp_path / "server.py").write_text(SERVER)
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [socket:web]
        path = {path}

        [watcher:web]
        cmd = {PY} {tmp_path / 'server.py'} $(circus.sockets.web)
        use_sockets = true
        """)
    daemon = daemon_factory(config)
    assert daemon.wait(30) != 0
    assert "already exists" in daemon.output() and "replace = true" in daemon.output()
    assert path.exists()


def test_stdin_socket(daemon_factory, tmp_path):
    daemon, client, _ = start(daemon_factory, tmp_path, """
        [socket:web]
        host = 127.0.0.1
        port = 0

        [watcher:web]
        cmd = SERVER stdin
        stdin_socket = web
        """, ready=lambda c: len(pids(c, "web")) == 1)
    try:
        pid = pids(client, "web")[0]
        assert ask(("127.0.0.1", port_of(client, "web")), b"in")[1] == b"in"
        assert socket_fds(pid) == {}  # fd 0 is the socket; the original fd was not passed (no use_sockets)
        assert os.readlink(f"/proc/{pid}/fd/0").startswith("socket:")
    finally:
        client.close()
        assert daemon.stop() == 0


def test_on_demand_watchers_sharing_a_socket_all_start_on_the_first_connection(daemon_factory, tmp_path):
    # Each worker waits 0.5 s before accepting and exits after 3 s without a connection (long enough for the checks
    # made while both are up, even on a loaded machine).
    daemon, client, _ = start(daemon_factory, tmp_path, """
        [socket:web]
        host = 127.0.0.1
        port = 0

        [watcher:first]
        cmd = SERVER $(circus.sockets.web) 0.5 3
        use_sockets = true
        on_demand = true

        [watcher:second]
        cmd = SERVER $(circus.sockets.web) 0.5 3
        use_sockets = true
        on_demand = true
        priority = 5
        """)
    try:
        port = port_of(client, "web")
        wait_for(lambda: "gcircusd running" in daemon.output(), message="start-up over")  # nothing starts them now
        assert client.call("status")["statuses"] == {"first": "stopped", "second": "stopped"}
        pid, data = ask(("127.0.0.1", port), b"wake")
        assert data == b"wake"
        wait_for(lambda: client.call("status")["statuses"] == {"first": "active", "second": "active"}, 10,
                 message="both on-demand watchers started")
        assert pid in pids(client, "first") + pids(client, "second")
        # Idle workers exit: both watchers wait again, and the next connection starts them again.
        wait_for(lambda: client.call("status")["statuses"] == {"first": "stopped", "second": "stopped"}, 15,
                 interval=0.05, message="both back to waiting")
        assert pids(client, "first") == [] and pids(client, "second") == []
        assert ask(("127.0.0.1", port), b"again")[1] == b"again"
        wait_for(lambda: client.call("status")["statuses"] == {"first": "active", "second": "active"}, 10,
                 message="both started again")
    finally:
        client.close()
        assert daemon.stop() == 0
