"""The shipped demo config stays valid: it loads, and builds the watchers and sockets README describes."""
import os

from gcircus.daemon import Arbiter

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
    assert worker.respawn_policy.retry_in == 7 and worker.respawn_policy.max_retry == 5
    assert arbiter.plugins == []  # the flapping section tunes the built-in back-off, it is not a plugin


def test_demo_config_names_its_files_and_interpreter_independently_of_the_cwd(tmp_path, monkeypatch):
    """The demo runs from any directory: its apps and log are found next to the config, under gcircusd's Python."""
    import sys

    monkeypatch.chdir(tmp_path)
    arbiter = Arbiter.load_from_config(os.path.join(ROOT, "conf", "app.ini"))
    conf_dir = os.path.join(ROOT, "conf")
    for name, script in (("web", "demo/webapp.py"), ("worker", "demo/worker.py")):
        watcher = arbiter.get_watcher(name)
        assert watcher.working_dir == conf_dir
        assert watcher.cmd.startswith(f'"{sys.executable}" {script}')
        assert os.path.isfile(os.path.join(watcher.working_dir, script))
    log = arbiter.get_watcher("worker").stdout_stream["filename"]
    assert os.path.normpath(log) == os.path.join(ROOT, "var", "log", "worker-$(circus.wid).log")
