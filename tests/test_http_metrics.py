"""/metrics of a real gcircusd, parsed with prometheus_client's own parser and checked against what `list`,
`status`, `get` and `stats` reply for the same watchers."""
import os
import re
import signal
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import HttpDaemon
from tests.support.waiting import wait_for

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def scrape(daemon) -> dict:
    """{(sample name, frozenset of labels): value} of one scrape."""
    reply = daemon.get("/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def daemon(tmp_path):
    out = tmp_path / "out.log"
    watchers = textwrap.dedent(f"""
        [watcher:web]
        cmd = sleep 1000
        numprocesses = 3
        graceful_timeout = 1

        [watcher:talker]
        cmd = sh -c 'printf "one\\ntwo\\n"; exec sleep 1000'
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        graceful_timeout = 1

        [watcher:broken]
        cmd = /nonexistent/gcircus-metrics-test
        max_retry = 1

        [watcher:idle]
        cmd = sleep 1000
        autostart = false
        """)
    served = HttpDaemon(tmp_path, watchers)
    try:
        served.wait_serving()
        wait_for(lambda: served.command("status", name="broken")["status"] == "failed", 30, message="broken fails")
        wait_for(lambda: len(served.command("list", name="web")["pids"]) == 3, 30, message="3 web processes")
        yield served
    finally:
        served.stop()


def test_per_watcher_gauges_match_list_status_and_numprocesses(daemon):
    samples = scrape(daemon)
    statuses = daemon.command("status")["statuses"]
    for name, state in statuses.items():
        pids = daemon.command("list", name=name)["pids"]
        assert value(samples, "gcircus_watcher_processes", watcher=name) == len(pids), name
        assert value(samples, "gcircus_watcher_processes_desired", watcher=name) == \
            daemon.command("get", name=name, keys=["numprocesses"])["options"]["numprocesses"]
        hot = [s for s in ("stopped", "starting", "active", "stopping", "backoff", "failed")
               if value(samples, "gcircus_watcher_state", watcher=name, state=s) == 1]
        assert hot == [state], name
    assert value(samples, "gcircus_watcher_processes_ready", watcher="web") == 3
    assert value(samples, "gcircus_watchers") == len(statuses)


def test_failures_are_counted(daemon):
    samples = scrape(daemon)
    assert value(samples, "gcircus_watcher_spawn_failures_total", watcher="broken") >= 1
    assert value(samples, "gcircus_watcher_restarts_total", watcher="web") == 0


def test_a_killed_process_counts_a_restart_and_its_exit_code(daemon):
    victim = daemon.command("list", name="web")["pids"][0]
    os.kill(victim, signal.SIGKILL)

    def replaced():
        pids = daemon.command("list", name="web")["pids"]
        return len(pids) == 3 and victim not in pids
    wait_for(replaced, 30, message="the killed process replaced")
    samples = scrape(daemon)
    assert value(samples, "gcircus_watcher_restarts_total", watcher="web") == 1
    assert value(samples, "gcircus_watcher_last_exit_code", watcher="web") == -signal.SIGKILL


def mem_bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([KMG]?)B?", text)
    return float(match[1]) * UNITS.get(match[2], 1)


def test_resources_match_stats(daemon):
    stats = daemon.command("stats", name="web")["info"]
    samples = scrape(daemon)
    pids = sorted(int(pid) for pid in stats)
    assert pids == sorted(daemon.command("list", name="web")["pids"])
    rss = sum(mem_bytes(info["mem_info1"]) for info in stats.values())
    assert value(samples, "gcircus_watcher_resident_memory_bytes", watcher="web") == pytest.approx(rss, rel=0.05)
    assert value(samples, "gcircus_watcher_cpu_seconds_total", watcher="web") >= 0
    fds = sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)
    assert value(samples, "gcircus_watcher_open_fds", watcher="web") == fds


def test_stream_output_is_counted(daemon):
    def counted():
        samples = scrape(daemon)
        return value(samples, "gcircus_watcher_stream_lines_total", watcher="talker", stream="stdout") == 2 and samples
    samples = wait_for(counted, 30, message="two lines counted")
    assert value(samples, "gcircus_watcher_stream_bytes_total", watcher="talker", stream="stdout") == len("one\ntwo\n")
    assert value(samples, "gcircus_watcher_stream_sink_failures_total", watcher="talker", stream="stdout") == 0


def test_control_requests_are_counted_by_command_and_outcome(daemon):
    before = scrape(daemon)
    for _ in range(3):
        daemon.command("numwatchers")
    daemon.command("status", name="nope")
    daemon.command("nosuchcommand")
    after = scrape(daemon)

    def grew(command, outcome):
        key = ("gcircus_control_requests_total", frozenset({"command": command, "outcome": outcome}.items()))
        return after.get(key, 0) - before.get(key, 0)
    assert grew("numwatchers", "ok") == 3
    assert grew("status", "error") == 1
    assert grew("unknown", "error") == 1


def test_daemon_metrics(daemon):
    samples = scrape(daemon)
    assert 0 <= value(samples, "gcircus_hub_latency_seconds") < 1
    assert value(samples, "gcircus_uptime_seconds") > 0
    assert any(name == "gcircus_build_info" and value == 1 for (name, _), value in samples.items())
    assert value(samples, "gcircus_watcher_readiness_seconds_count", watcher="web") == 3
