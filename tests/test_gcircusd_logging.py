"""gcircusd's own log: level, destination (file, stdout, stderr, syslog), logging config files, SIGUSR1 reopen."""
from __future__ import annotations

import json
import re
import signal

import pytest
from gevent import socket as gsocket
from gevent import subprocess as gsubprocess

from tests.support.daemons import GCIRCUSD, make_config, run_cli
from tests.support.waiting import wait_for

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d gcircus\.[\w.]+\[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] .+$")

WATCHER = """
    [watcher:web]
    cmd = /bin/sleep 1000
    graceful_timeout = 2
    """


def read(path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def run_and_stop(tmp_path, config: str, *args: str, ready=None) -> tuple[str, str]:
    """Run gcircusd until `ready()` holds (default: it says it is running), stop it; return (stdout, stderr)."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = gsubprocess.Popen(GCIRCUSD + [config, *args], stdout=stdout, stderr=stderr)
        try:
            wait_for(ready or (lambda: "gcircusd running" in read(out) + read(err)), message="gcircusd running")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    return read(out), read(err)


def test_log_file_gets_formatted_lines(tmp_path):
    log = tmp_path / "gcircusd.log"
    stdout, stderr = run_and_stop(tmp_path, make_config(tmp_path, WATCHER), "--log-output", str(log),
                                  ready=lambda: "gcircusd running" in read(log))
    lines = log.read_text().splitlines()
    assert [line for line in lines if not LINE.match(line)] == []
    assert any("[INFO] gcircusd" in line and "starting" in line for line in lines)
    assert lines[-1].endswith("[INFO] gcircusd stopped")
    assert stdout == stderr == ""


@pytest.mark.parametrize("output, stream", [("stdout", "stdout"), ("-", "stdout"), ("stderr", "stderr")])
def test_log_to_a_standard_stream(tmp_path, output, stream):
    stdout, stderr = run_and_stop(tmp_path, make_config(tmp_path, WATCHER), "--log-output", output)
    logged, other = (stdout, stderr) if stream == "stdout" else (stderr, stdout)
    assert "gcircusd running" in logged
    assert all(LINE.match(line) for line in logged.splitlines())
    assert other == ""


def test_log_level_filters_and_accepts_either_case(tmp_path, daemon_factory):
    config = make_config(tmp_path, WATCHER)
    debug_out, _ = run_and_stop(tmp_path, config, "--log-level", "DEBUG")
    assert "[DEBUG] watchers by start order: web (priority 0, 1 processes)" in debug_out
    info_out, _ = run_and_stop(tmp_path, config, "--log-level", "info")
    assert "[INFO]" in info_out and "[DEBUG]" not in info_out
    log = tmp_path / "warning.log"
    daemon = daemon_factory(config, "--log-level", "Warning", "--log-output", str(log))
    wait_for(daemon.children, message="child started")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert log.exists() and "[INFO]" not in log.read_text()


def test_syslog_over_udp_with_facility(tmp_path):
    receiver = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    received: list[str] = []

    def got_running() -> bool:
        receiver.settimeout(0.05)
        try:
            received.append(receiver.recv(65536).decode())
        except gsocket.timeout:
            pass
        return any("gcircusd running" in message for message in received)

    try:
        stdout, stderr = run_and_stop(tmp_path, make_config(tmp_path, WATCHER),
                                      "--log-output", f"syslog://127.0.0.1:{port}?daemon", ready=got_running)
    finally:
        receiver.close()
    running = next(message for message in received if "gcircusd running" in message)
    # <priority> is facility * 8 + severity: daemon (3) and info (6).
    assert re.match(r"^<30>\w{3} [ \d]\d \d\d:\d\d:\d\d gcircus\.daemon\[\d+\] \[INFO\] gcircusd running", running)
    assert stdout == stderr == ""


INI_LOGGER_CONFIG = """
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = custom

[logger_root]
level = INFO
handlers = file

[handler_file]
class = FileHandler
args = ({path!r},)
formatter = custom

[formatter_custom]
format = CUSTOM-INI %(levelname)s %(message)s
"""


def test_logger_config_ini(tmp_path):
    log = tmp_path / "custom.log"
    logger_config = tmp_path / "logging.ini"
    logger_config.write_text(INI_LOGGER_CONFIG.format(path=str(log)))
    stdout, _ = run_and_stop(tmp_path, make_config(tmp_path, WATCHER), "--logger-config", str(logger_config),
                             ready=lambda: "gcircusd running" in read(log))
    assert "CUSTOM-INI INFO gcircusd running" in log.read_text()
    assert "gcircusd running" not in stdout


def test_logger_config_json(tmp_path):
    log = tmp_path / "custom.log"
    logger_config = tmp_path / "logging.json"
    logger_config.write_text(json.dumps({
        "version": 1,
        "formatters": {"custom": {"format": "CUSTOM-JSON %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "custom"}},
        "root": {"level": "DEBUG", "handlers": ["file"]},
    }))
    stdout, _ = run_and_stop(tmp_path, make_config(tmp_path, WATCHER), "--logger-config", str(logger_config),
                             ready=lambda: "gcircusd running" in read(log))
    text = log.read_text()
    assert "CUSTOM-JSON gcircus.daemon gcircusd running" in text
    assert "CUSTOM-JSON gcircus.daemon watchers by start order" in text  # the file's DEBUG level applies
    assert "gcircusd running" not in stdout


@pytest.mark.parametrize("args, message", [
    (["--log-level", "loud"], "unknown log level 'loud'"),
    (["--log-output", "/nonexistent-dir/gcircusd.log"], "directory /nonexistent-dir does not exist"),
    (["--log-output", "{tmp}"], "Is a directory"),
    (["--log-output", "syslog://127.0.0.1:514?nosuchfacility"], "unknown syslog facility 'nosuchfacility'"),
    (["--logger-config", "{tmp}/missing.ini"], "missing.ini does not exist"),
    (["--logger-config", "{tmp}/bad.json"], "invalid logger config"),
], ids=["level", "missing-dir", "directory", "facility", "missing-logger-config", "bad-logger-config"])
def test_bad_logging_option_exits_2_before_starting(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{not json")
    marker = tmp_path / "started"
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = sh -c 'touch {marker}; exec sleep 1000'
        """)
    result = run_cli(config, *[arg.format(tmp=tmp_path) for arg in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert not marker.exists()


def test_config_log_options_apply_when_the_command_line_has_none(tmp_path):
    from_config = tmp_path / "from-config.log"
    config = make_config(tmp_path, WATCHER, circus=f"""
        loglevel = debug
        logoutput = {from_config}
        """)
    run_and_stop(tmp_path, config, ready=lambda: "gcircusd running" in read(from_config))
    assert "[DEBUG] watchers by start order" in from_config.read_text()


def test_command_line_log_options_win_over_the_config(tmp_path):
    from_config = tmp_path / "from-config.log"
    from_cli = tmp_path / "from-cli.log"
    config = make_config(tmp_path, WATCHER, circus=f"""
        loglevel = debug
        logoutput = {from_config}
        """)
    run_and_stop(tmp_path, config, "--log-output", str(from_cli), "--log-level", "info",
                 ready=lambda: "gcircusd running" in read(from_cli))
    assert not from_config.exists()
    text = from_cli.read_text()
    assert "[INFO] gcircusd running" in text and "[DEBUG]" not in text


def test_sigusr1_reopens_the_log_file_after_rotation(tmp_path, daemon_factory):
    log = tmp_path / "gcircusd.log"
    rotated = tmp_path / "gcircusd.log.1"
    daemon = daemon_factory(make_config(tmp_path, WATCHER), "--log-output", str(log))
    wait_for(lambda: "gcircusd running" in read(log), message="gcircusd running")
    log.rename(rotated)
    daemon.signal(signal.SIGUSR1)
    # Unhandled, SIGUSR1 would kill gcircusd; handled, the file is reopened and the next lines land there.
    wait_for(lambda: "log files reopened" in read(log), message="new log file")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "received SIGHUP" in read(log), message="next lines in the new file")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert "gcircusd stopped" in log.read_text()
    assert "received SIGHUP" not in rotated.read_text()
    assert "gcircusd running" in rotated.read_text()
