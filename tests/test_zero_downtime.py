"""Zero-downtime restarts: the demo web app (conf/app.ini's [socket:web] + [watcher:web]) under a steady HTTP load
while its workers are reloaded, restarted and reconfigured. Not one request may fail.

The config is the shipped demo's own two sections, with a free port, 4 workers, a short graceful_timeout and a small
per-request delay (so stop signals reach workers with requests in flight). The load runs in real threads with the
stdlib's blocking http.client (this test process is not monkey-patched), a new connection per request, each with a
timeout; every result is counted against the phase that was current when the request started.
"""
from __future__ import annotations

import os
import re
import sys

import pytest

from gcircus.client import Client
from tests.support.load import Load
from tests.support.ports import free_port
from tests.support.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_INI = os.path.join(ROOT, "conf", "app.ini")
WEBAPP = os.path.join(ROOT, "conf", "demo", "webapp.py")


def demo_sections() -> str:
    """The [socket:web] and [watcher:web] sections of the shipped demo config, as written."""
    with open(DEMO_INI, encoding="utf-8") as f:
        text = f.read()
    sections = re.findall(r"^\[(?:socket|watcher):web\]\n(?:(?!\[).*\n?)*", text, flags=re.M)
    assert len(sections) == 2, "conf/app.ini should have [socket:web] and [watcher:web]"
    return "".join(sections)


class Demo:
    """A gcircusd running a copy of the demo web app from a tmp config dir."""

    def __init__(self, tmp_path, daemon_factory):
        self.path = tmp_path / "circus.ini"
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pubsub = f"tcp://127.0.0.1:{free_port()}"
        self.daemon_factory = daemon_factory
        self.daemon = None
        self.client = None

    def write(self, numprocesses: int | str = 4, extra_args: str = "") -> None:
        web = demo_sections()
        replacements = [
            ("port = 8080", f"port = {self.port}"),
            ("numprocesses = 2", f"numprocesses = {numprocesses}"),
            ("graceful_timeout = 10", "graceful_timeout = 3"),
            # The real script (this copy's $(circus.config_dir) is a tmp dir, not conf/), a short grace below
            # graceful_timeout, and 50 ms per request so that stops happen with requests in flight.
            ('"$(circus.python)" demo/webapp.py', f"{sys.executable} {WEBAPP}"),
            ("--worker $(circus.wid)", f"--worker $(circus.wid) --grace 2 --delay 0.05{extra_args}"),
        ]
        for old, new in replacements:
            assert old in web, f"the demo config changed: {old!r} not found"
            web = web.replace(old, new, 1)
        head = (f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {self.pubsub}\ncheck_delay = 0.1\n"
                f"loglevel = info\n\n")
        self.path.write_text(head + web)

    def start(self) -> None:
        self.write()
        self.daemon = self.daemon_factory(str(self.path))
        wait_for(lambda: "gcircusd running" in self.daemon.output() or self.daemon.proc.poll() is not None, 20,
                 message="gcircusd running")
        assert self.daemon.proc.poll() is None, self.daemon.output()
        self.client = Client(self.endpoint, timeout=30)
        self.wait_pids(4)

    def call(self, command: str, **props) -> dict:
        return self.client.call(command, **props)

    def pids(self) -> list[int]:
        return self.call("list", name="web")["pids"]

    def wait_pids(self, count: int, exclude=()) -> list[int]:
        def ready():
            pids = self.pids()
            return len(pids) == count and not set(pids) & set(exclude) and pids
        return wait_for(ready, 20, interval=0.05, message=f"{count} web workers")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@pytest.fixture
def demo(tmp_path, daemon_factory):
    d = Demo(tmp_path, daemon_factory)
    yield d
    d.close()


def test_no_request_fails_during_reloads_restarts_and_reloadconfig(demo):
    demo.start()
    with Load(demo.port) as load:
        wait_for(lambda: load.ok.get("warmup", 0) > 20, 20, message="requests served before the first phase")
        load.steady()

        # 1. Graceful reload: 4 new workers start, then the 4 old ones finish their requests and exit.
        old = demo.pids()
        load.begin("reload")
        reply = demo.call("reload", name="web", waiting=True)
        assert reply["status"] == "ok", reply
        new = demo.wait_pids(4, exclude=old)
        load.wait_served_by("reload", new)
        load.steady()

        # 2. Restart: every worker stops before new ones start; connections wait on gcircusd's socket meanwhile.
        old = new
        load.begin("restart")
        reply = demo.call("restart", name="web", waiting=True)
        assert reply["status"] == "ok", reply
        new = demo.wait_pids(4, exclude=old)
        load.wait_served_by("restart", new)
        load.steady()

        # 3. reloadconfig with only numprocesses changed: two workers are added, none is touched.
        old = new
        demo.write(numprocesses=6)
        load.begin("scale")
        reply = demo.call("reloadconfig", waiting=True)
        assert reply["status"] == "ok", reply
        assert reply["plan"]["watchers"]["scaled"] == {"web": {"numprocesses": [4, 6]}}, reply
        scaled = demo.wait_pids(6)
        assert set(old) < set(scaled)
        load.wait_served_by("scale", set(scaled) - set(old))
        load.steady()

        # 4. reloadconfig with a changed cmd (a new --tag): all 6 workers are replaced gracefully.
        old = scaled
        demo.write(numprocesses=6, extra_args=" --tag v2")
        load.begin("cmd")
        reply = demo.call("reloadconfig", waiting=True)
        assert reply["status"] == "ok", reply
        assert reply["plan"]["watchers"]["reloaded"] == {"web": ["cmd"]}, reply
        new = demo.wait_pids(6, exclude=old)
        load.wait_served_by("cmd", new, tag="v2")
        load.steady()

        # 5. A broken new config (it would also change cmd and numprocesses): an error, and nothing changes.
        old = new
        demo.write(numprocesses="lots", extra_args=" --tag v3")
        load.begin("broken")
        reply = demo.call("reloadconfig", waiting=True)
        assert reply["status"] == "error" and "numprocesses" in reply["reason"], reply
        # The file was refused before the reply; 20 requests served after it show the old workers still serving.
        wait_for(lambda: load.ok.get("broken", 0) >= 20, 30, interval=0.02, message="requests after the refusal")
        assert demo.pids() == old
        assert {tag for _, tag in load.served("broken")} == {"v2"}
        load.steady()

    phases = ["reload", "restart", "scale", "cmd", "broken"]
    failures = {phase: fails for phase, fails in load.failures.items() if fails}
    assert not failures, f"failed requests: { {p: (len(f), f[:5]) for p, f in failures.items()} }"
    served = {phase: load.ok.get(phase, 0) for phase in phases}
    print("requests served per phase:", served)
    assert all(count > 0 for count in served.values()), served
    assert demo.daemon.stop() == 0
