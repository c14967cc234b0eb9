"""The shipped demo config stays valid: it loads, and builds the watchers and sockets README describes."""
import os

from gcircus.arbiter import Arbiter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_config_builds_its_watchers():
    arbiter = Arbiter.load_from_config(os.path.join(ROOT, "conf", "app.ini"))
    web = arbiter.get_watcher("web")
    worker = arbiter.get_watcher("worker")
    assert web.numprocesses == 2 and web.priority == 10 and web.copy_env
    # The web app is served on a socket gcircusd holds, so restarts queue connections instead of refusing them.
    assert web.use_sockets and "--fd $(circus.sockets.web)" in web.cmd
    sock = arbiter.sockets["web"]
    assert (sock.host, sock.port) == ("127.0.0.1", 8080) and not sock.bound
    assert set(arbiter.sockets.for_watcher(web)) == {"web"}
    assert worker.stdout_stream["class"] == "FileStream" and worker.stop_children
    assert worker.env["WORKER_ID"] == "batch" and web.env["DEMO_GREETING"] == "hello from gcircus"
    assert worker.crash_guard.retry_in == 7 and worker.crash_guard.max_retry == 5
    assert arbiter.plugins == []  # the flapping section tunes the built-in back-off, it is not a plugin
