"""The shipped host files work: conf/systemd/gcircusd.service passes `systemd-analyze verify` and its command lines
are gcircusd's; conf/logrotate/gcircusd rotates gcircusd's log and makes it reopen the file."""
from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal

import pytest
from gevent import subprocess as gsubprocess

from gcircus.cli import gcircusd
from gcircus.cli.usage import parse_command_line
from tests.support.daemons import read_pid, run_cli, write_config
from tests.support.ports import free_port
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "conf", "systemd", "gcircusd.service")
LOGROTATE = os.path.join(ROOT, "conf", "logrotate", "gcircusd")
GCIRCUSD_BIN = os.path.join(os.path.dirname(PYTHON), "gcircusd")


def unit_service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNIT)
    return parser["Service"]


def exec_start() -> list[str]:
    return shlex.split(unit_service()["ExecStart"])


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    with open(UNIT, encoding="utf-8") as f:
        text = f.read()
    program = exec_start()[0]
    copy = tmp_path / "gcircusd.service"  # verify checks that ExecStart's program exists: point it at ours
    copy.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={GCIRCUSD_BIN} "))
    done = gsubprocess.run(["systemd-analyze", "verify", str(copy)], stdout=gsubprocess.PIPE,
                           stderr=gsubprocess.STDOUT, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stdout  # an unknown key is only a warning: none either


def test_the_units_command_lines_are_gcircusds():
    service = unit_service()
    argv = exec_start()
    assert os.path.basename(argv[0]) == "gcircusd"
    args = parse_command_line(gcircusd.__doc__, argv[1:], "gcircusd")
    assert args["<config>"] == "/etc/gcircus/gcircusd.ini"
    assert (service["Type"], service["NotifyAccess"], service["KillMode"]) == ("notify", "main", "mixed")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "2" in service["RestartPreventExitStatus"].split()  # a bad config is not retried
    assert service["NoNewPrivileges"] == "yes" and "User" not in service  # root, to start watchers as their users


def test_the_units_options_run_a_config_through_check_config(tmp_path):
    config = write_config(tmp_path / "gcircusd.ini", """
        [watcher:app]
        cmd = sleep 1000
        """)
    argv = [config if arg == "/etc/gcircus/gcircusd.ini" else arg for arg in exec_start()[1:]]
    done = run_cli("--check-config", *argv)
    assert done.returncode == 0, done
    assert "  app: 1 process: sleep 1000" in done.stdout


def test_logrotate_rotates_gcircusds_log_and_gcircusd_reopens_it(tmp_path, daemon_factory):
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed here")
    logs, pidfile = tmp_path / "log", tmp_path / "gcircusd.pid"
    logs.mkdir()
    with open(LOGROTATE, encoding="utf-8") as f:  # the shipped file, on this test's paths, without systemd
        text = f.read().replace("/var/log/gcircus", str(logs)).replace("/run/gcircusd.pid", str(pidfile))
    rules = tmp_path / "logrotate.conf"
    rules.write_text(text.replace("systemctl kill", "false"))
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        logoutput = {logs}/gcircusd.log
        pidfile = {pidfile}

        [watcher:app]
        cmd = sleep 1000
        graceful_timeout = 2
        """)
    daemon = daemon_factory(config)
    log = logs / "gcircusd.log"
    wait_for(lambda: log.exists() and "gcircusd running" in log.read_text() and read_pid(pidfile) == daemon.pid,
             30, message="gcircusd running, logging to its file")
    done = gsubprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(rules)],
                           stdout=gsubprocess.PIPE, stderr=gsubprocess.STDOUT, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert "gcircusd running" in (logs / "gcircusd.log.1").read_text()
    wait_for(lambda: log.exists() and "received SIGUSR1" in log.read_text(), 30, message="the log reopened")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
