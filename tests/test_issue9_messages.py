"""Issue 9: a mistake in a config section, a command line or a gcircusctl command gets a clear error and the
closest valid name, never silence or docopt's internal reprs."""
from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap

import gevent
import pytest
from gevent import subprocess as gsubprocess

from gcircus import linux, runtime_options
from gcircus.cli import gcircus_plugin, gcircus_top, gcircusctl, gcircusd, gcircusd_stats
from gcircus.client import CallError, Client
from gcircus.config import load_config
from gcircus.errors import ConfigError
from gcircus.suggest import closest, edit_distance
from tests.support.daemons import GCIRCUSD, write_config
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env, start_sleepers
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for


@pytest.fixture
def write(tmp_path):
    def write(text: str) -> str:
        return write_config(tmp_path / "circus.ini", text)
    return write


def config_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# -- 1. sections --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, suggestion", [
    ("watchers:web", "[watcher:web]"),
    ("Watcher:web", "[watcher:web]"),
    ("sockets:web", "[socket:web]"),
    ("plugins:web", "[plugin:web]"),
    ("envs:web", "[env:web]"),
    ("watcher-web", "[watcher:web]"),
    ("socket web", "[socket:web]"),
])
def test_a_misspelt_named_section_is_an_error_suggesting_the_kind(write, section, suggestion):
    path = write(f"""
        [watcher:ok]
        cmd = sleep 1

        [{section}]
        cmd = sleep 1
        """)
    err = config_error(path)
    assert (err.file, err.section, err.suggestion) == (path, section, suggestion)
    assert str(err).startswith(f"{path}: [{section}] ")
    assert f"(did you mean '{suggestion}'?)" in str(err)


@pytest.mark.parametrize("section, suggestion", [("circuz", "[circus]"), ("Circus", "[circus]"), ("ENV", "[env]"),
                                                 ("default", "[DEFAULT]")])
def test_a_misspelt_plain_section_is_an_error_suggesting_the_kind(write, section, suggestion):
    path = write(f"""
        [{section}]
        endpoint = tcp://127.0.0.1:5555
        """)
    err = config_error(path)
    assert (err.section, err.suggestion) == (section, suggestion)


@pytest.mark.parametrize("section, hint", [("watcher", "[watcher:NAME]"), ("socket", "[socket:NAME]"),
                                           ("circus:main", "[circus]")])
def test_a_section_kind_with_a_wrong_name_part_is_an_error(write, section, hint):
    err = config_error(write(f"[{section}]\ncmd = sleep 1\n"))
    assert err.section == section and hint in str(err)


def test_a_supervisord_program_section_is_named_as_such(write):
    path = write("""
        [program:web]
        command = sleep 1
        """)
    err = config_error(path)
    assert err.section == "program:web"
    assert "[program:web] is supervisord syntax; gcircus uses [watcher:web]" in str(err)


@pytest.mark.parametrize("section, equivalent", [("supervisord", "[circus]"), ("group:all", None),
                                                 ("include", "include = ")])
def test_other_supervisord_sections_are_named_as_such(write, section, equivalent):
    err = config_error(write(f"[{section}]\nfiles = x\n"))
    assert f"[{section}] is supervisord syntax" in str(err)
    if equivalent:
        assert equivalent in str(err)


def test_an_unrelated_section_stays_a_warning_as_in_circus(write, caplog):
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        config = load_config(write("""
            [myapp]
            colour = blue

            [watcher:web]
            cmd = sleep 1
            """))
    assert [w["name"] for w in config.watchers] == ["web"]
    assert "ignoring unknown section [myapp]" in caplog.text
    assert "[watcher:NAME]" in caplog.text  # the warning says which sections gcircus reads


@pytest.mark.parametrize("section", ["testenv:py39", "testenv", "dev", "environ", "logging", "pylint", "tool:pytest"])
def test_other_tools_sections_in_a_shared_ini_stay_warnings(write, caplog, section):
    """Only a slip of a kind gcircus reads is an error: [testenv] is tox's, not a misspelt [env]."""
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        config = load_config(write(f"[{section}]\nkey = value\n\n[watcher:web]\ncmd = sleep 1\n"))
    assert [w["name"] for w in config.watchers] == ["web"]
    assert f"ignoring unknown section [{section}]" in caplog.text


def test_a_misspelt_section_in_an_included_file_names_that_file(tmp_path):
    included = write_config(tmp_path / "extra.ini", "[watchers:web]\ncmd = sleep 1\n")
    main = write_config(tmp_path / "circus.ini", "[circus]\ninclude = extra.ini\n")
    err = config_error(main)
    assert err.file == included and err.suggestion == "[watcher:web]"


def test_gcircusd_refuses_a_misspelt_section_with_exit_2(write):
    path = write("""
        [watchers:web]
        cmd = sleep 1000
        """)
    result = gsubprocess.run(GCIRCUSD + [path], stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True,
                             timeout=60)
    assert result.returncode == 2
    assert f"{path}: [watchers:web]" in result.stderr and "did you mean '[watcher:web]'?" in result.stderr


# -- 2. command lines ---------------------------------------------------------------------------------------------

def test_gcircusd_names_an_unknown_option_and_the_closest_one(capsys):
    assert gcircusd.main(["--log-levle", "info", "x.ini"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("gcircusd: unknown option --log-levle (did you mean --log-level?)\n")
    assert "Usage:\n  gcircusd [options] <config>" in err and "gcircusd --help" in err
    assert "Option(" not in err and "Argument(" not in err


def test_gcircusd_as_a_process_prints_the_same(tmp_path):
    result = gsubprocess.run(GCIRCUSD + ["--log-levle", "info", "x.ini"], stdout=gsubprocess.PIPE,
                             stderr=gsubprocess.PIPE, text=True, timeout=60, cwd=str(tmp_path))
    assert result.returncode == 2
    assert "unknown option --log-levle (did you mean --log-level?)" in result.stderr
    assert "Option(" not in result.stderr


def test_gcircusctl_names_an_unknown_option(capsys):
    assert gcircusctl.main(["--bogus", "status"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("gcircusctl: unknown option --bogus\n")
    assert "Usage:" in err and "Option(" not in err
    assert gcircusctl.main(["--endpointt", "tcp://127.0.0.1:1", "status"]) == 2
    assert "unknown option --endpointt (did you mean --endpoint?)" in capsys.readouterr()[1]


@pytest.mark.parametrize("argv, reason", [
    (["--timeout"], "--timeout requires argument"),
    (["--json=yes", "status"], "--json must not have an argument"),
])
def test_gcircusctl_other_option_mistakes_read_plainly(capsys, argv, reason):
    assert gcircusctl.main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"gcircusctl: {reason}\n") and "Usage:" in err


def test_an_unknown_option_after_the_command_gets_the_closest_one(capsys):
    assert gcircusctl.main(["stop", "--waitng", "web"]) == 2
    _, err = capsys.readouterr()
    assert "unknown option --waitng for stop (did you mean --waiting?" in err


def test_a_missing_argument_is_said(capsys):
    assert gcircusd.main([]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("gcircusd: missing <config>\n") and "Usage:" in err


def test_an_extra_argument_is_said(capsys):
    assert gcircusd.main(["a.ini", "b.ini"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("gcircusd: unexpected argument 'b.ini'\n")


@pytest.mark.parametrize("main, name, typo, meant", [
    (gcircusd_stats.main, "gcircusd-stats", "--endpiont", "--endpoint"),
    (gcircus_top.main, "gcircus-top", "--process-timout", "--process-timeout"),
    (gcircus_plugin.main, "gcircus-plugin", "--endpiont", "--endpoint"),
])
def test_every_program_reports_option_typos_the_same_way(capsys, main, name, typo, meant):
    assert main([typo, "x"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"{name}: unknown option {typo} (did you mean {meant}?)\n")
    assert "Option(" not in err


# -- 3. stream classes --------------------------------------------------------------------------------------------

def test_a_misspelt_stream_class_gets_a_suggestion(write):
    err = config_error(write("""
        [watcher:web]
        cmd = sleep 1
        stdout_stream.class = FileStreem
        stdout_stream.filename = out.log
        """))
    assert (err.option, err.value, err.suggestion) == ("stdout_stream.class", "FileStreem", "FileStream")


def test_set_suggests_the_stream_class_too():
    with pytest.raises(ValueError, match="did you mean 'TimedRotatingFileStream'"):
        runtime_options.parse("stdout_stream.class", "TimedRotatingFilestraem")


# -- 4. gcircusctl commands ---------------------------------------------------------------------------------------

def test_suggestions_rank_swapped_letters_as_one_edit():
    assert edit_distance("stauts", "status") == edit_distance("stauts", "stats") == 1
    assert closest("stauts", ["status", "stats"]) == "status"
    assert closest("stast", ["status", "stats"]) == "stats"
    assert closest("bogus", ["endpoint", "timeout"]) is None


@pytest.mark.parametrize("typo, meant", [("stauts", "status"), ("statz", "stats"), ("lsit", "list"),
                                         ("restrat", "restart"), ("relaod", "reload"), ("stpo", "stop")])
def test_unknown_commands_suggest_the_command_most_likely_meant(capsys, typo, meant):
    assert gcircusctl.main(["--endpoint", f"tcp://127.0.0.1:{free_port()}", typo]) == 2
    assert f"unknown command {typo!r} (did you mean {meant!r}?)" in capsys.readouterr()[1]


def test_ipython_is_a_usage_error_without_asking_the_daemon():
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens: asking would exit 1 "nothing is listening"
    result = gsubprocess.run(GCIRCUSCTL + ["--endpoint", endpoint, "ipython"], stdout=gsubprocess.PIPE,
                             stderr=gsubprocess.PIPE, text=True, timeout=60, env=ctl_env())
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("gcircusctl: cannot open an IPython shell: gcircus does not embed")


# -- 5. listen on a control endpoint -------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_listen_on_the_control_endpoint_says_so_and_names_the_pubsub_endpoint(running, where):
    argv = ["--endpoint", running.endpoint, "listen"] if where == "before" else \
        ["listen", "--endpoint", running.endpoint]
    result = gsubprocess.run(GCIRCUSCTL + argv, stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True,
                             timeout=60, env=ctl_env())
    assert result.returncode == 2, result.stderr
    assert f"{running.endpoint} is a control endpoint, not a pubsub endpoint" in result.stderr
    assert f"--endpoint {running.pubsub}" in result.stderr


def test_listen_on_a_peer_that_is_no_publisher_warns_and_keeps_trying(silent_router):
    endpoint, _ = silent_router  # a ROUTER that never answers: not a control endpoint gcircusctl can name
    proc = gsubprocess.Popen(GCIRCUSCTL + ["--timeout", "0.5", "listen", "--endpoint", endpoint],
                             stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True, env=ctl_env())
    err: list[str] = []
    reader = gevent.spawn(lambda: [err.append(line) for line in proc.stderr])
    try:
        wait_for(lambda: any("refused the subscription" in line for line in err), timeout=60,
                 message="the warning")
        assert proc.poll() is None  # still listening
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    assert any(f"the peer at {endpoint} refused the subscription" in line for line in err)


# -- 6. the options command ---------------------------------------------------------------------------------------

CIRCUS_OPTNAMES = {  # what circusd 0.19 lists for a watcher (PROTOCOL.md 2.5, seen by running it), minus __name__
    "numprocesses", "warmup_delay", "working_dir", "uid", "gid", "send_hup", "stop_signal", "stop_children", "shell",
    "shell_args", "env", "max_retry", "cmd", "args", "respawn", "graceful_timeout", "executable", "use_sockets",
    "priority", "copy_env", "singleton", "stdout_stream_conf", "on_demand", "stderr_stream_conf", "max_age",
    "max_age_variance", "close_child_stdin", "close_child_stdout", "close_child_stderr"}


def test_options_lists_the_keys_circus_lists(running):
    options = running.call("options", name="sleeper")["options"]
    assert set(options) == CIRCUS_OPTNAMES
    assert options["stdout_stream_conf"] == {} and options["numprocesses"] == 2


def test_options_keys_match_a_running_circusd(tmp_path, daemon_factory):
    """The same watcher under circusd and gcircusd: the same keys (gcircus never lists `__name__`)."""
    extra = textwrap.dedent("""
        autostart = true
        copy_path = false
        rlimit_nofile = 1000
        hooks.extended_stats = tests.support.hookfuncs.record
        virtualenv_py_ver = 3.11
        flapping.attempts = 3
        my_free_option = yes
        """)
    (tmp_path / "g").mkdir()
    indented = textwrap.indent(extra.strip(), " " * 8).lstrip()  # start_sleepers's template is indented by 8
    gcircus_keys = set(start_sleepers(daemon_factory, tmp_path / "g", extra=indented).call("options", name="sleeper")
                       ["options"])
    circus_keys = circusd_option_keys(tmp_path / "c", extra)
    assert gcircus_keys == circus_keys - {"__name__"}
    assert {"my_free_option", "flapping.attempts"} <= gcircus_keys


def circusd_option_keys(directory, extra: str) -> set[str]:
    """Start circusd 0.19 on a `sleeper` watcher with `extra` options, ask for its options, stop it."""
    directory.mkdir()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(directory / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:sleeper]
        cmd = sleep 1000
        numprocesses = 2
        graceful_timeout = 2
        """ + textwrap.indent(extra, "        "))
    log = open(directory / "circusd.out", "wb")
    circusd = gsubprocess.Popen([sys.executable, "-m", "circus.circusd", config], stdout=log, stderr=log)
    try:
        def started():
            # Circus hangs on a SIGTERM that arrives while it still starts its watchers: wait until they run.
            if circusd.poll() is not None:
                raise AssertionError(f"circusd exited: {(directory / 'circusd.out').read_text()}")
            try:
                with Client(endpoint, timeout=5) as client:
                    return client.call("status", name="sleeper").get("status") == "active" and \
                        len(client.call("list", name="sleeper").get("pids") or []) == 2 and \
                        client.call("options", name="sleeper").get("options")
            except CallError:
                return None
        return set(wait_for(started, timeout=60, message="circusd to run its watcher"))
    finally:
        children = linux.descendants(circusd.pid)
        circusd.terminate()
        try:
            circusd.wait(timeout=30)
        except gsubprocess.TimeoutExpired:  # a Circus stop that hangs is not what this test checks
            circusd.kill()
            circusd.wait()
        for pid in children:  # circusd stops its children; any it left behind must not outlive the test
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


def test_the_most_typed_ranking_names_real_commands():
    from gcircus.control.commands import COMMANDS, MOST_TYPED

    assert set(MOST_TYPED) <= set(COMMANDS) and len(set(MOST_TYPED)) == len(MOST_TYPED)
