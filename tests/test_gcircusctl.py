"""gcircusctl against a real gcircusd: console output, --json, exit codes, endpoints, listen."""
from __future__ import annotations

import json
import signal
import time

import gevent
import pytest
from gevent import subprocess as gsubprocess

from gcircus import __version__
from gcircus.cli.gcircusctl import main
from gcircus.cli.session import usage_line
from gcircus.control.commands import COMMANDS
from tests.support.daemons import write_config
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def ctl(capsys, *argv: str) -> tuple[int, str, str]:
    """Run gcircusctl in this process; (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_ctl(*argv: str, env: dict | None = None, timeout: float = 10) -> gsubprocess.CompletedProcess:
    """Run gcircusctl as its own process."""
    return gsubprocess.run(GCIRCUSCTL + list(argv), stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True,
                           timeout=timeout, env=env or ctl_env())


# -- without a daemon ------------------------------------------------------------------------------------------

def test_version(capsys):
    assert ctl(capsys, "--version") == (0, f"gcircusctl {__version__}\n", "")


def test_help_lists_every_command_and_the_exit_codes(capsys):
    code, out, _ = ctl(capsys, "--help")
    assert code == 0
    assert "Exit codes: 0 ok, 1 no reply" in out and "3 the daemon answered with an error" in out
    listed = {line.split()[0] for line in out.split("Commands:\n")[1].splitlines()}
    assert listed == set(COMMANDS) | {"listen"}
    assert ctl(capsys, "help")[1] == out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_each_command_shows_its_text_and_options(capsys, name):
    command = COMMANDS[name]
    code, out, _ = ctl(capsys, "help", name)
    assert code == 0
    assert out.startswith(command.summary)
    for flag in command.flags:
        assert f"--{flag.name}" in out.split("Options:")[1]
    assert usage_line(command).split()[0] == name
    assert ctl(capsys, name, "--help")[1] == out


def test_unknown_command_is_a_usage_error_with_a_suggestion(capsys):
    code, out, err = ctl(capsys, "lsit")
    assert (code, out) == (2, "")
    assert "unknown command 'lsit' (did you mean 'list'?)" in err
    assert ctl(capsys, "help", "nope")[0] == 2


def test_bad_arguments_print_the_message_and_the_command_usage(capsys):
    code, _, err = ctl(capsys, "list", "a", "b")
    assert code == 2
    assert "Invalid number of arguments" in err and "usage: list [NAME]" in err
    code, _, err = ctl(capsys, "stop", "--frobnicate")
    assert code == 2 and "unknown option --frobnicate for stop" in err and "usage: stop" in err
    code, _, err = ctl(capsys, "stop", "--match")
    assert code == 2 and "--match needs a value" in err
    assert ctl(capsys, "--timeout", "zero", "list")[0] == 2
    assert ctl(capsys, "--bogus")[0] == 2


def test_no_daemon_exits_1_naming_the_endpoint_and_the_way_out(capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out, err = ctl(capsys, "--endpoint", endpoint, "--timeout", "60", "status")
    assert time.monotonic() - started < 30  # long before the 60 s timeout
    assert (code, out) == (1, "")
    assert endpoint in err and "-c CONFIG" in err and "--endpoint" in err


def test_a_daemon_that_does_not_answer_exits_1_after_the_timeout(capsys, silent_router):
    endpoint, _ = silent_router
    code, out, err = ctl(capsys, "--endpoint", endpoint, "--timeout", "0.3", "list")
    assert (code, out) == (1, "")
    assert f"the daemon at {endpoint} did not answer within 0.3 s" in err


# -- console output -----------------------------------------------------------------------------------------------

def test_status_and_list_console_output(capsys, running):
    ep = ("--endpoint", running.endpoint)
    assert ctl(capsys, *ep, "status") == (0, "sleeper: active\n", "")
    assert ctl(capsys, *ep, "status", "sleeper") == (0, "active\n", "")
    assert ctl(capsys, *ep, "list") == (0, "sleeper\n", "")
    code, out, _ = ctl(capsys, *ep, "list", "sleeper")
    assert code == 0 and out == ",".join(map(str, running.pids())) + "\n"
    assert ctl(capsys, *ep, "LIST") == (0, "sleeper\n", "")


def test_status_of_an_unknown_watcher_prints_the_reason_and_exits_3(capsys, running):
    assert ctl(capsys, "--endpoint", running.endpoint, "status", "nope") == \
        (3, "", "error: program nope not found\n")


def test_lifecycle_commands_print_ok_and_take_effect(capsys, running):
    ep = ("--endpoint", running.endpoint)
    old = set(running.pids())
    assert ctl(capsys, *ep, "stop", "sleeper", "--waiting") == (0, "ok\n", "")
    assert ctl(capsys, *ep, "status", "sleeper")[1] == "stopped\n"
    assert ctl(capsys, *ep, "start", "--waiting", "--match", "simple", "sleeper") == (0, "ok\n", "")
    assert ctl(capsys, *ep, "status", "sleeper")[1] == "active\n"
    assert ctl(capsys, *ep, "restart", "sleep*", "--waiting") == (0, "ok\n", "")
    assert ctl(capsys, *ep, "reload", "sleeper", "--waiting", "--terminate") == (0, "ok\n", "")
    new = set(running.pids())
    assert len(new) == 2 and not new & old


def test_json_prints_the_raw_reply_and_exits_0_even_for_errors(capsys, running):
    code, out, _ = ctl(capsys, "--endpoint", running.endpoint, "--json", "list")
    assert code == 0
    reply = json.loads(out)
    assert reply["watchers"] == ["sleeper"] and out.startswith('{"status": "ok", "time": ')
    code, out, err = ctl(capsys, "--endpoint", running.endpoint, "--json", "status", "nope")
    assert (code, err) == (0, "")
    assert json.loads(out)["reason"] == "program nope not found"


def test_prettify_indents_by_2_with_sorted_keys(capsys, running):
    code, out, _ = ctl(capsys, "--endpoint", running.endpoint, "--json", "--prettify", "list")
    reply = json.loads(out)
    assert code == 0 and out == json.dumps(reply, indent=2, sort_keys=True) + "\n"
    assert ctl(capsys, "--endpoint", running.endpoint, "--prettify", "list")[1].startswith('{\n  "id": ')


def test_global_options_may_follow_the_command_and_double_dash_ends_options(capsys, running):
    code, out, _ = ctl(capsys, "list", "--json", "--endpoint", running.endpoint)
    assert code == 0 and json.loads(out)["watchers"] == ["sleeper"]
    assert ctl(capsys, "--endpoint", running.endpoint, "status", "--", "--waiting")[0] == 3  # a name, not a flag


def test_quit_stops_the_daemon(capsys, running):
    assert ctl(capsys, "--endpoint", running.endpoint, "quit", "--waiting") == (0, "ok\n", "")
    assert running.daemon.wait(timeout=10) == 0


def test_exit_codes_of_the_real_program(running):
    """The same codes through `python -m gcircus.cli.gcircusctl`, i.e. what the console script runs."""
    ok = run_ctl("--endpoint", running.endpoint, "status", "sleeper")
    assert (ok.returncode, ok.stdout) == (0, "active\n")
    error = run_ctl("--endpoint", running.endpoint, "status", "nope")
    assert (error.returncode, error.stderr) == (3, "error: program nope not found\n")
    assert run_ctl("--endpoint", f"tcp://127.0.0.1:{free_port()}", "list").returncode == 1
    assert run_ctl("nosuchcommand").returncode == 2


# -- endpoint precedence --------------------------------------------------------------------------------------------

def dead_config(tmp_path) -> str:
    return write_config(tmp_path / "dead.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        """)


def test_config_file_gives_the_endpoint(capsys, running, tmp_path):
    assert ctl(capsys, "-c", running.config, "list") == (0, "sleeper\n", "")
    assert ctl(capsys, "--config", dead_config(tmp_path), "list")[0] == 1


def test_command_line_beats_the_environment_and_endpoint_beats_the_config(capsys, running, tmp_path,
                                                                          monkeypatch):
    dead = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GCIRCUSCTL_ENDPOINT", running.endpoint)
    assert ctl(capsys, "list")[:2] == (0, "sleeper\n")
    assert ctl(capsys, "-c", dead_config(tmp_path), "list")[0] == 1  # an explicit -c beats the environment
    assert ctl(capsys, "--endpoint", dead, "list")[0] == 1
    monkeypatch.setenv("GCIRCUSCTL_ENDPOINT", dead)
    assert ctl(capsys, "--endpoint", running.endpoint, "list")[:2] == (0, "sleeper\n")
    assert ctl(capsys, "-c", running.config, "list")[:2] == (0, "sleeper\n")
    assert ctl(capsys, "-c", dead_config(tmp_path), "--endpoint", running.endpoint, "list")[:2] == (0, "sleeper\n")


def test_circusctl_endpoint_variable_is_accepted(capsys, running, monkeypatch):
    monkeypatch.setenv("CIRCUSCTL_ENDPOINT", running.endpoint)
    assert ctl(capsys, "list") == (0, "sleeper\n", "")


def test_an_unreadable_config_is_a_usage_error(capsys, tmp_path):
    code, _, err = ctl(capsys, "-c", str(tmp_path / "missing.ini"), "list")
    assert code == 2 and "missing.ini" in err


# -- listen ---------------------------------------------------------------------------------------------------------

def start_listener(*argv: str) -> tuple[gsubprocess.Popen, list[str], list[str]]:
    """gcircusctl listen in its own process, its stdout and stderr lines collected by greenlets."""
    proc = gsubprocess.Popen(GCIRCUSCTL + list(argv), stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE,
                             text=True, env=ctl_env())
    out: list[str] = []
    err: list[str] = []
    for stream, lines in ((proc.stdout, out), (proc.stderr, err)):
        gevent.spawn(lambda s=stream, ls=lines: [ls.append(line.rstrip("\n")) for line in s])
    return proc, out, err


def test_listen_prints_events_until_ctrl_c(running):
    proc, out, err = start_listener("-c", running.config, "listen", "watcher.sleeper.")
    try:
        wait_for(lambda: any("listening on " + running.pubsub in line for line in err), message="the banner")
        # A subscription takes effect asynchronously: restart until its events get through.
        wait_for(lambda: running.call("restart", name="sleeper", waiting=True) and
                 wait_for_spawn(out), message="a spawn event", timeout=15)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    spawn = next(line for line in out if line.startswith("watcher.sleeper.spawn: "))
    assert json.loads(spawn.split(": ", 1)[1])["process_pid"] in running.pids()
    assert all(line.startswith("watcher.sleeper.") for line in out)


def wait_for_spawn(lines: list[str]) -> bool:
    try:
        return wait_for(lambda: any(line.startswith("watcher.sleeper.spawn: ") for line in lines), timeout=1)
    except AssertionError:
        return False


def test_listen_uses_the_endpoint_option_as_the_pubsub_endpoint(running):
    proc, out, err = start_listener("--endpoint", running.pubsub, "listen")
    try:
        wait_for(lambda: running.call("restart", name="sleeper", waiting=True) and wait_for_spawn(out),
                 message="a spawn event", timeout=15)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
