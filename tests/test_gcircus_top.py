"""gcircus-top: the view built from a real stats channel (a StatsLoop publishing real processes), its layout and
pruning, and one run of the curses program under a pseudo-terminal."""
from __future__ import annotations

import json
import os
import pty
import signal
import subprocess

import gevent
import pytest
import zmq.green as zmq

from gcircus.stats.channel import StatsLoop, StatsPublisher
from gcircus.stats.top import WAITING, TopView, parse_topic, render
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for


@pytest.fixture
def publishing(tmp_path):
    """A StatsLoop publishing two real `sleep` processes as watcher `web` on an ipc endpoint, every 0.1 s."""
    children = [subprocess.Popen(["/bin/sleep", "3600"]) for _ in range(2)]
    endpoint = f"ipc://{tmp_path}/stats.sock"
    publisher = StatsPublisher(endpoint)
    publisher.bind()
    loop = StatsLoop(publisher, lambda: {"web": [c.pid for c in children]}, lambda: {os.getpid(): "circusd"}, 0.1)
    loop.start()
    try:
        yield endpoint, [c.pid for c in children]
    finally:
        loop.stop()
        publisher.close()
        for child in children:
            child.kill()
            child.wait()


def feed(endpoint: str, view: TopView, until) -> None:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.linger = 0
    sock.setsockopt(zmq.SUBSCRIBE, b"stat.")
    sock.connect(endpoint)
    try:
        def check():
            while sock.poll(0):
                topic, body = sock.recv_multipart()
                view.update(topic.decode(), json.loads(body))
            return until(view)
        wait_for(check, 30, interval=0.01, message="stats for the view")
    finally:
        sock.close()


def test_view_of_a_live_stats_channel(publishing):
    endpoint, pids = publishing
    view = TopView()
    feed(endpoint, view, lambda v: {str(p) for p in pids} <= set(v.watchers.get("web", {}))
         and None in v.watchers["web"] and "circus" in v.watchers and "sockets" in v.watchers)
    lines = render(view, 100)
    text = "\n".join(lines)
    assert lines[0] == "gcircus top"
    web = lines.index("web")
    assert lines[web + 1].split() == ["PID", "CPU", "(%)", "MEMORY", "(%)", "AGE", "(s)"]
    rows = lines[web + 2:web + 4]
    assert sorted(int(row.split()[0]) for row in rows) == sorted(pids)
    for row in rows:
        assert row[29:33] == "0.00" and row[2].isdigit()  # CPU column of an idle sleep
    assert "(avg)" in lines[web + 4] and "(sum)" in lines[web + 4] and "(older)" in lines[web + 4]
    assert f"{os.getpid()} (circusd)" in text
    assert "sockets" in lines and "  0 (sum)" in text
    assert all(len(line) <= 100 for line in lines)


def test_top_ten_by_cpu_and_hidden_helpers():
    view = TopView()
    for pid in range(1, 13):
        view.update(f"stat.web.{pid}", {"pid": pid, "cpu": float(pid), "mem": 0.1, "age": 5.0, "name": None})
    view.update("stat.web", {"pid": list(range(1, 13)), "cpu": 6.5, "mem": 1.2, "age": 5.0})
    view.update("stat.circusd-stats.99", {"pid": 99, "cpu": 1.0, "mem": 0.1, "age": 1.0, "name": None})
    lines = render(view)
    shown = [int(line.split()[0]) for line in lines if line[:3].strip().isdigit()]
    assert shown == list(range(12, 2, -1))  # the ten busiest, busiest first
    assert "circusd-stats" not in "\n".join(lines)
    total = next(line for line in lines if "(avg)" in line)
    assert total.split() == ["6.50", "(avg)", "1.20", "(sum)", "5.00", "(older)"]


def test_not_applicable_values_and_waiting_screen():
    view = TopView()
    assert render(view) == ["", WAITING]
    view.update("stat.web.7", {"pid": 7, "cpu": "N/A", "mem": "N/A", "age": "N/A", "name": None})
    row = next(line for line in render(view) if line.startswith("  7"))
    assert row.split() == ["7", "N/A", "N/A", "N/A"]


def test_processes_without_fresh_stats_are_dropped():
    view = TopView(process_timeout=3)
    view.update("stat.web.1", {"pid": 1, "cpu": 0.0, "mem": 0.0, "age": 1.0}, now=100.0)
    view.update("stat.web.2", {"pid": 2, "cpu": 0.0, "mem": 0.0, "age": 1.0}, now=102.0)
    view.prune(now=103.5)
    assert set(view.watchers["web"]) == {"2"}


def test_topics_parse_like_circus_and_keep_dotted_names():
    assert parse_topic("stat.web.123") == ("web", "123")
    assert parse_topic("stat.web") == ("web", None)
    assert parse_topic("stat.my.app.42") == ("my.app", "42")
    assert parse_topic("watcher.web.spawn") is None


def test_curses_program_under_a_pty(publishing):
    endpoint, pids = publishing
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", LINES="40", COLUMNS="100")
    proc = subprocess.Popen([PYTHON, "-m", "gcircus.cli.gcircus_top", "--endpoint", endpoint],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def read_some():
        ready = gevent.select.select([master], [], [], 0.05)[0]
        if ready:
            try:
                screen.extend(os.read(master, 65536))
            except OSError:
                pass
        return b"web" in screen and str(pids[0]).encode() in screen
    try:
        wait_for(read_some, 30, interval=0.01, message="gcircus-top painting the web watcher")
        assert b"gcircus top" in screen and b"CPU (%)" in screen
        os.write(master, b"q")
        assert proc.wait(timeout=4) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        os.close(master)


def test_version_and_bad_option():
    out = subprocess.run([PYTHON, "-m", "gcircus.cli.gcircus_top", "--version"], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith(b"gcircus-top ")
    out = subprocess.run([PYTHON, "-m", "gcircus.cli.gcircus_top", "--process-timeout", "x"], capture_output=True,
                         timeout=10)
    assert out.returncode == 2


def test_view_reads_what_circus_stats_publisher_sends(tmp_path):
    from circus.stats.publisher import StatsPublisher as CircusPublisher

    endpoint = f"ipc://{tmp_path}/circus-stats.sock"
    publisher = CircusPublisher(endpoint, zmq.Context.instance())
    view = TopView()

    def publish():
        publisher.publish("web", {"pid": 41, "subtopic": 41, "cpu": 12.5, "mem": 0.3, "age": 8.0, "name": None})
        publisher.publish("web", {"pid": [41], "cpu": 12.5, "mem": 0.3, "age": 8.0})
    try:
        feed(endpoint, view, lambda v: publish() or (None in v.watchers.get("web", {}) and "41" in v.watchers["web"]))
    finally:
        publisher.socket.close()
    row = next(line for line in render(view) if line.startswith("  41"))
    assert row.split() == ["41", "12.50", "0.30", "8.00"]
