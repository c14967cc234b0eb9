"""Loading Circus ini files: sections, defaults, expansion, includes and errors."""

from __future__ import annotations

import logging
import resource
import signal
import socket
import textwrap

import pytest

from gcircus.config import load_config
from gcircus.errors import ConfigError


@pytest.fixture
def write(tmp_path):
    """Write a dedented ini file under tmp_path and return its path."""
    def write(text: str, name: str = "circus.ini") -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


@pytest.fixture
def load(write):
    def load(text: str):
        return load_config(write(text))
    return load


def watcher(config, name):
    return next(w for w in config.watchers if w["name"] == name)


# --------------------------------------------------------------------------- [circus]

def test_circus_defaults_fill_every_option(load):
    config = load("[watcher:a]\ncmd = true\n")
    assert config.circus["endpoint"] == "tcp://127.0.0.1:5555"
    assert config.circus["pubsub_endpoint"] == "tcp://127.0.0.1:5556"
    assert config.circus["multicast_endpoint"] is None
    assert config.circus["check_delay"] == 5.0
    assert config.circus["umask"] is None
    assert config.circus["pdeathsig"] is True
    assert config.circus["stream_backend"] == "thread"


def test_circus_values_are_typed(load):
    config = load("""
        [circus]
        endpoint = tcp://127.0.0.1:7000
        warmup_delay = 0.5
        check_delay = 2
        umask = 027
        statsd = yes
        httpd_port = 9000
        statsd_close_outputs = true
        httpd_close_outputs = false
        stream_backend = gevent
        pdeathsig = off
        multicast_endpoint = udp://237.219.251.97:12027
    """)
    c = config.circus
    assert c["endpoint"] == "tcp://127.0.0.1:7000"
    assert c["warmup_delay"] == 0.5
    assert c["check_delay"] == 2.0
    assert c["umask"] == 0o27
    assert c["statsd"] is True
    assert c["httpd_port"] == 9000
    assert c["statsd_close_outputs"] is True
    assert c["httpd_close_outputs"] is False
    assert c["stream_backend"] == "gevent"
    assert c["pdeathsig"] is False
    assert c["multicast_endpoint"] == "udp://237.219.251.97:12027"


def test_circus_empty_multicast_endpoint_means_off(load):
    config = load("[circus]\nmulticast_endpoint =\ndebug = true\n")
    assert config.circus["multicast_endpoint"] is None


def test_circus_typo_is_an_error_with_suggestion(write):
    path = write("[circus]\nendpont = tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.section, err.option, err.suggestion) == (path, "circus", "endpont", "endpoint")
    assert str(err) == (f"{path}: [circus] endpont = 'tcp://127.0.0.1:1': unknown option 'endpont' "
                        "(did you mean 'endpoint'?)")


def test_circus_unrelated_unknown_key_is_a_warning(load, caplog):
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        config = load("[circus]\nssh_server = somewhere\n")
    assert "ssh_server" not in config.circus
    assert "ignoring unknown option 'ssh_server'" in caplog.text


def test_circus_bad_value(write):
    path = write("[circus]\nwarmup_delay = soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: [circus] warmup_delay = 'soon': expected a number"
    assert info.value.value == "soon"


# --------------------------------------------------------------------------- watchers

def test_watcher_defaults(load):
    w = watcher(load("[watcher:a]\ncmd = sleep 10\n"), "a")
    assert w == {
        "name": "a", "cmd": "sleep 10", "args": "", "numprocesses": 1, "warmup_delay": 0.0,
        "working_dir": None, "shell": False, "shell_args": None, "executable": None, "uid": None,
        "gid": None, "send_hup": False, "stop_signal": 15, "stop_children": False, "max_retry": 5,
        "graceful_timeout": 30.0, "priority": 0, "singleton": False, "use_sockets": False,
        "copy_env": False, "copy_path": False, "max_age": 0.0, "max_age_variance": 30.0,
        "respawn": True, "autostart": True, "on_demand": False, "close_child_stdin": True,
        "close_child_stdout": False, "close_child_stderr": False, "virtualenv": None,
        "virtualenv_py_ver": None, "stdin_socket": None, "rlimits": {}, "stdout_stream": {},
        "stderr_stream": {}, "hooks": {}, "env": {}, "umask": None, "pdeathsig": True, "prefix_output": False,
        "hook_timeout": 30.0, "check_flapping": True,
        "flapping": {"attempts": 2, "window": 1.0, "retry_in": 7.0, "max_retry": 5},
        "ready": "none", "ready_timeout": 60.0, "health": "none", "health_interval": 10.0, "health_timeout": 5.0,
        "health_retries": 3, "watchdog_sec": 0.0, "essential": False, "depends_on": (),
        "memory_max": None, "pids_max": None, "cpu_weight": None,
        "options": {},
    }


def test_watcher_values_are_typed(load):
    w = watcher(load("""
        [watcher:a]
        cmd = sleep 10
        args = --x 1
        numprocesses = 3
        warmup_delay = 0.25
        working_dir = /tmp
        shell = True
        shell_args = -e
        uid = nobody
        gid = 0
        send_hup = 1
        stop_signal = int
        stop_children = on
        max_retry = -1
        graceful_timeout = 2.5
        priority = 10
        use_sockets = yes
        copy_env = true
        copy_path = true
        max_age = 1.5
        max_age_variance = 0.5
        respawn = false
        autostart = false
        on_demand = true
        close_child_stdin = false
        close_child_stdout = true
        close_child_stderr = true
        stdin_socket = s
        umask = 002
        pdeathsig = false
        hook_timeout = 3
        check_flapping = false
    """), "a")
    assert w["args"] == "--x 1"
    assert w["numprocesses"] == 3 and w["warmup_delay"] == 0.25
    assert w["working_dir"] == "/tmp" and w["shell"] is True and w["shell_args"] == "-e"
    assert (w["uid"], w["gid"]) == ("nobody", "0")
    assert w["send_hup"] is True and w["stop_children"] is True
    assert w["stop_signal"] == signal.SIGINT
    assert w["max_retry"] == -1 and w["graceful_timeout"] == 2.5 and w["priority"] == 10
    assert w["use_sockets"] and w["copy_env"] and w["copy_path"]
    assert w["max_age"] == 1.5 and w["max_age_variance"] == 0.5
    assert not w["respawn"] and not w["autostart"] and w["on_demand"]
    assert (w["close_child_stdin"], w["close_child_stdout"], w["close_child_stderr"]) == (False, True, True)
    assert w["stdin_socket"] == "s" and w["umask"] == 0o2
    assert w["pdeathsig"] is False and w["hook_timeout"] == 3.0 and w["check_flapping"] is False


@pytest.mark.parametrize("text, expected", [
    ("TERM", 15), ("SIGKILL", 9), ("sighup", 1), ("quit", 3), ("10", 10),
])
def test_stop_signal_forms(load, text, expected):
    assert watcher(load(f"[watcher:a]\ncmd = x\nstop_signal = {text}\n"), "a")["stop_signal"] == expected


def test_watchers_sorted_by_name_and_case_kept(load):
    config = load("""
        [watcher:zeta]
        cmd = z
        [watcher:Echo Upper]
        cmd = e
        [watcher:alpha]
        cmd = a
    """)
    assert [w["name"] for w in config.watchers] == ["Echo Upper", "alpha", "zeta"]


def test_name_key_overrides_section_name(load):
    config = load("[watcher:a]\ncmd = x\nname = renamed\n")
    assert [w["name"] for w in config.watchers] == ["renamed"]
    assert "name" not in config.watchers[0]["options"]


def test_pdeathsig_default_comes_from_circus(load):
    config = load("[circus]\npdeathsig = false\n[watcher:a]\ncmd = x\n[watcher:b]\ncmd = x\npdeathsig = true\n")
    assert watcher(config, "a")["pdeathsig"] is False
    assert watcher(config, "b")["pdeathsig"] is True


def test_rlimits(load):
    w = watcher(load("[watcher:a]\ncmd = x\nrlimit_nofile = 1024\nrlimit_CORE =\n"), "a")
    assert w["rlimits"] == {"nofile": 1024, "core": resource.RLIM_INFINITY}


def test_unknown_rlimit_is_an_error(write):
    path = write("[watcher:a]\ncmd = x\nrlimit_bogus = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.option == "rlimit_bogus"
    assert "RLIMIT_BOGUS" in str(info.value)


def test_streams_are_raw_dicts(load):
    w = watcher(load("""
        [watcher:a]
        cmd = x
        stdout_stream.class = FileStream
        stdout_stream.filename = /tmp/out.log
        stdout_stream.max_bytes = 1024
        stderr_stream.class = mypkg.streams:Custom
    """), "a")
    assert w["stdout_stream"] == {"class": "FileStream", "filename": "/tmp/out.log", "max_bytes": "1024"}
    assert w["stderr_stream"] == {"class": "mypkg.streams:Custom"}


def test_stream_class_names_match_in_any_case(write):
    # As README says and as the stream factory resolves them; a misspelt name: tests/test_issue9_messages.py
    config = load_config(write("[watcher:a]\ncmd = x\nstdout_stream.class = filestream\n"))
    assert config.watchers[0]["stdout_stream"] == {"class": "filestream"}


def test_hooks(load):
    w = watcher(load("""
        [watcher:a]
        cmd = x
        hooks.before_start = mypkg.hooks.check
        hooks.after_reap = mypkg.hooks:reaped, true
        hooks.before_stop = mypkg.hooks.stop,false
    """), "a")
    assert w["hooks"] == {
        "before_start": ("mypkg.hooks.check", False),
        "after_reap": ("mypkg.hooks:reaped", True),
        "before_stop": ("mypkg.hooks.stop", False),
    }


@pytest.mark.parametrize("line, option, fragment", [
    ("hooks.before_strat = a.b", "hooks.before_strat", "unknown hook 'before_strat'"),
    ("hooks.before_start = not a path", "hooks.before_start", "expected a dotted path"),
    ("hooks.before_start = a.b, maybe", "hooks.before_start", "expected a boolean"),
])
def test_bad_hooks(write, line, option, fragment):
    path = write(f"[watcher:a]\ncmd = x\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.option == option
    assert fragment in str(info.value)


def test_hook_typo_suggestion(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[watcher:a]\ncmd = x\nhooks.before_strat = a.b\n"))
    assert info.value.suggestion == "hooks.before_start"


def test_free_form_options_kept_raw(load):
    w = watcher(load("""
        [watcher:a]
        cmd = x
        my.custom = value
        flapping.attempts = 4
        flapping.retry_in = 0.5
        something_else = 1
    """), "a")
    assert w["options"] == {"my.custom": "value", "flapping.attempts": "4", "flapping.retry_in": "0.5",
                            "something_else": "1"}
    assert w["flapping"] == {"attempts": 4, "window": 1.0, "retry_in": 0.5, "max_retry": 5}


@pytest.mark.parametrize("key, suggestion", [
    ("numProcesses", "numprocesses"),
    ("numprocess", "numprocesses"),
    ("graceful_timout", "graceful_timeout"),
    ("Copy_Env", "copy_env"),
])
def test_watcher_typo_is_an_error(write, key, suggestion):
    path = write(f"[watcher:web]\ncmd = x\n{key} = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.section, err.option, err.suggestion) == (path, "watcher:web", key, suggestion)
    assert str(err) == f"{path}: [watcher:web] {key} = '2': unknown option {key!r} (did you mean {suggestion!r}?)"


def test_flapping_typo_in_watcher_is_an_error(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[watcher:a]\ncmd = x\nflapping.atempts = 3\n"))
    assert info.value.suggestion == "flapping.attempts"


def test_bad_watcher_value_message(write):
    path = write("[watcher:web]\ncmd = x\nnumprocesses = abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: [watcher:web] numprocesses = 'abc': expected an integer"
    assert info.value.line == 3


@pytest.mark.parametrize("line, option, fragment", [
    ("stop_signal = FOO", "stop_signal", "unknown signal"),
    ("shell = ", "shell", "expected a boolean"),
    ("graceful_timeout = soon", "graceful_timeout", "expected a number"),
    ("umask = 099", "umask", "octal"),
    ("numprocesses = -1", "numprocesses", "must not be negative"),
    ("max_retry = -2", "max_retry", "-1"),
    ("max_age = -3", "max_age", "must not be negative"),
])
def test_bad_watcher_values(write, line, option, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(f"[watcher:a]\ncmd = x\n{line}\n"))
    assert info.value.option == option
    assert fragment in str(info.value)


def test_singleton_with_many_processes_is_an_error(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[watcher:a]\ncmd = x\nsingleton = true\nnumprocesses = 2\n"))
    assert info.value.option == "numprocesses" and info.value.value == "2"
    assert "singleton" in str(info.value)


def test_singleton_with_one_process_is_fine(load):
    assert watcher(load("[watcher:a]\ncmd = x\nsingleton = true\n"), "a")["singleton"] is True


@pytest.mark.parametrize("key", ["copy_path = true", "virtualenv = /opt/venv"])
def test_copy_path_and_virtualenv_need_copy_env(write, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(f"[watcher:a]\ncmd = x\n{key}\n"))
    assert info.value.option == key.split()[0]
    assert "copy_env" in str(info.value)


def test_missing_cmd_is_an_error(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[watcher:a]\nnumprocesses = 2\n"))
    assert info.value.section == "watcher:a"
    assert "cmd" in str(info.value)


def test_duplicate_watcher_names_case_insensitive(write):
    with pytest.raises(ConfigError, match="duplicate watcher name"):
        load_config(write("[watcher:Web]\ncmd = x\n[watcher:web]\ncmd = y\n"))


def test_env_key_in_watcher_is_ignored(load, caplog):
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        w = watcher(load("[watcher:a]\ncmd = x\nenv = A=1\n"), "a")
    assert w["env"] == {} and "env" not in w["options"]
    assert "'env' is ignored" in caplog.text


# --------------------------------------------------------------------------- sockets

def test_socket_defaults_and_lowercased_name(load):
    config = load("[socket:Web]\nhost = 127.0.0.1\n")
    assert config.sockets == [{
        "name": "web", "host": "127.0.0.1", "port": 8080, "path": None, "family": socket.AF_INET,
        "type": socket.SOCK_STREAM, "proto": 0, "backlog": 2048, "umask": None, "replace": False,
        "blocking": False, "interface": None, "so_reuseport": False,
    }]


def test_socket_values_are_typed(load):
    config = load("""
        [socket:b]
        port = 0
        family = af_inet6
        type = SOCK_DGRAM
        proto = udp
        backlog = 10
        umask = 022
        replace = true
        blocking = yes
        interface = eth0
        so_reuseport = 1
        [socket:a]
        path = /tmp/a.sock
    """)
    a, b = config.sockets
    assert a["name"] == "a" and a["path"] == "/tmp/a.sock" and a["family"] == socket.AF_UNIX
    assert b["port"] == 0 and b["family"] == socket.AF_INET6 and b["type"] == socket.SOCK_DGRAM
    assert b["proto"] == socket.IPPROTO_UDP and b["backlog"] == 10 and b["umask"] == 0o22
    assert b["replace"] and b["blocking"] and b["so_reuseport"] and b["interface"] == "eth0"


@pytest.mark.parametrize("line, option, fragment", [
    ("port = 70000", "port", "out of range"),
    ("port = http", "port", "expected an integer"),
    ("family = AF_BOGUS", "family", "unknown family"),
    ("type = SOCK_WEIRD", "type", "unknown socket type"),
    ("proto = nosuchproto", "proto", "unknown protocol"),
    ("family = AF_UNIX", "family", "needs a 'path'"),
    ("prot = tcp", "prot", "unknown option"),
])
def test_bad_socket_values(write, line, option, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(f"[socket:s]\n{line}\n"))
    assert info.value.option == option and info.value.section == "socket:s"
    assert fragment in str(info.value)


def test_duplicate_socket_names_after_lowercasing(write):
    with pytest.raises(ConfigError, match="duplicate socket name"):
        load_config(write("[socket:S]\nport = 1\n[socket:s]\nport = 2\n"))


# --------------------------------------------------------------------------- plugins and flapping

def test_plugins(load):
    config = load("""
        [plugin:b]
        use = circus.plugins.statsd.StatsdEmitter
        host = localhost
        [plugin:A]
        use = mypkg:Plugin
        priority = 3
        active = false
    """)
    assert config.plugins == [
        {"name": "plugin:A", "use": "mypkg:Plugin", "priority": 3, "active": False, "config": {}},
        {"name": "plugin:b", "use": "circus.plugins.statsd.StatsdEmitter", "priority": 1,
         "active": True, "config": {"host": "localhost"}},
    ]


def test_plugin_without_use_is_an_error(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[plugin:p]\nhost = x\n"))
    assert info.value.section == "plugin:p" and "'use'" in str(info.value)


def test_flapping_defaults(load):
    assert load("[watcher:a]\ncmd = x\n").flapping == {"attempts": 2, "window": 1.0, "retry_in": 7.0,
                                                        "max_retry": 5}


@pytest.mark.parametrize("use", ["circus.plugins.flapping.Flapping", "gcircus.plugins.flapping.Flapping"])
def test_flapping_plugin_sets_defaults_and_is_not_a_plugin(load, use):
    config = load(f"""
        [plugin:flapping]
        use = {use}
        attempts = 3
        window = 0.5
        retry_in = 2
        max_retry = -1
        [watcher:a]
        cmd = x
        [watcher:b]
        cmd = x
        flapping.max_retry = 1
    """)
    assert config.plugins == []
    assert config.flapping == {"attempts": 3, "window": 0.5, "retry_in": 2.0, "max_retry": -1}
    assert watcher(config, "a")["flapping"] == config.flapping
    assert watcher(config, "b")["flapping"] == {**config.flapping, "max_retry": 1}


def test_inactive_flapping_plugin_turns_check_flapping_off_by_default(load):
    config = load("""
        [plugin:f]
        use = circus.plugins.flapping.Flapping
        active = false
        [watcher:a]
        cmd = x
        [watcher:b]
        cmd = x
        check_flapping = true
    """)
    assert watcher(config, "a")["check_flapping"] is False
    assert watcher(config, "b")["check_flapping"] is True


def test_bad_flapping_value(write):
    with pytest.raises(ConfigError) as info:
        load_config(write("[plugin:f]\nuse = circus.plugins.flapping.Flapping\nattempts = many\n"))
    assert (info.value.section, info.value.option, info.value.value) == ("plugin:f", "attempts", "many")
