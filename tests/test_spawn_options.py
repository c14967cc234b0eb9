"""Spawn options (PROTOCOL 1.5, 1.11, 1.12) as a child really sees them: argv, cwd, env, fds, session, umask.

Every option is checked through `Process` directly and through `Watcher`, the layer that composes the options from a
configuration. A child reports what it got by dumping it as JSON to a file, or is inspected through /proc.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import sys

import pytest
from gevent import subprocess as gsubprocess

from gcircus import launcher, procinfo
from gcircus.process import Process, SpawnError
from gcircus.watcher import Watcher
from tests.support.waiting import wait_for

PYTHON = sys.executable

# Dumps what the child received to argv[1] (atomically), then stays alive until stopped. The environment is read
# from /proc/self/environ, which holds exactly what exec passed: Python may add LC_CTYPE to os.environ (PEP 538).
DUMP = r"""
import json, os, signal, sys
with open("/proc/self/environ", "rb") as f:
    env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)
mask = os.umask(0)
info = {"argv": sys.argv, "cwd": os.getcwd(), "env": env, "umask": mask}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.pause()
"""


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch):
    """A Watcher adds its PYTHONPATH entries to sys.path (for hooks); keep that out of the other tests."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def dump(tmp_path):
    """(command line of a child that dumps what it received to a file, function that waits for and reads it)."""
    script = tmp_path / "dump.py"
    script.write_text(DUMP)
    out = tmp_path / "dump.json"

    def read():
        wait_for(out.exists, message="the child's dump")
        return json.loads(out.read_text())

    return f"{shlex.quote(PYTHON)} {shlex.quote(str(script))} {shlex.quote(str(out))}", read


@pytest.fixture
def spawn():
    """Create Processes (they spawn at once); every one is stopped at the end of the test."""
    started: list[Process] = []

    def make(cmd, **kwargs) -> Process:
        kwargs.setdefault("pipe_stdout", False)
        kwargs.setdefault("pipe_stderr", False)
        process = Process("test", kwargs.pop("wid", 1), cmd, **kwargs)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop(graceful_timeout=2)


@pytest.fixture
def watch():
    """Create and start Watchers; every one is stopped at the end of the test."""
    created: list[Watcher] = []

    def make(cmd, start=True, **kwargs) -> Watcher:
        kwargs.setdefault("graceful_timeout", 2)
        sockets = kwargs.pop("sockets", None)
        watcher = Watcher("test", cmd, **kwargs)
        if sockets:
            watcher.sockets = sockets
        created.append(watcher)
        if start:
            watcher.start()
        return watcher

    yield make
    for watcher in created:
        watcher.stop()


def only_process(watcher: Watcher) -> Process:
    assert len(watcher.processes) == 1, watcher.processes
    return next(iter(watcher.processes.values()))


def fd_target(pid: int | str, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def open_fds(pid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def settled_fds(pid: int, expected: set[int]) -> set[int]:
    """The child's open fds once they match `expected`, or after 30 s. Popen returns while the exec is finishing
    and the new program starts up (the dynamic loader briefly opens libraries, for as long as a loaded machine
    takes): a leaked fd never goes away, so the deadline is only how long a failure takes to show."""
    try:
        wait_for(lambda: open_fds(pid) == expected, timeout=30)
    except AssertionError:
        pass
    return open_fds(pid)


def cmdline(pid: int) -> list[str]:
    """The child's argv, once the kernel has finished laying it out (Popen can return just before that)."""
    def read():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode().split("\0")[:-1]
    return wait_for(read, message="the exec to complete")


# -- cmd and args --------------------------------------------------------------------------------------------------

def test_string_args_are_shell_split_after_cmd(spawn, dump):
    cmd, read = dump
    spawn(cmd, args="'two words' plain \"quoted arg\"")
    assert read()["argv"][2:] == ["two words", "plain", "quoted arg"]


def test_list_args_reach_the_child_verbatim(spawn, dump):
    cmd, read = dump
    spawn(cmd, args=["two words", "$HOME", "'q'"])
    assert read()["argv"][2:] == ["two words", "$HOME", "'q'"]


def test_watcher_passes_cmd_and_args(watch, dump):
    cmd, read = dump
    watch(cmd, args="a 'b c'")
    assert read()["argv"][2:] == ["a", "b c"]


# -- shell ---------------------------------------------------------------------------------------------------------

def test_shell_runs_pipes_and_and_lists(spawn, tmp_path):
    out = tmp_path / "out"
    process = spawn(f"printf 'a\\nb\\nc\\n' | wc -l > {out} && echo second >> {out}", shell=True)
    assert process.wait(10) == 0
    assert out.read_text().split() == ["3", "second"]


def test_shell_args_become_the_shell_positional_parameters(spawn, tmp_path):
    out = tmp_path / "out"
    process = spawn(f'echo "$0 $1 $2" > {out}', shell=True, shell_args="zero 'one two' three")
    assert process.wait(10) == 0
    assert out.read_text().strip() == "zero one two three"


def test_shell_appends_quoted_args(spawn, tmp_path):
    out = tmp_path / "out"
    process = spawn("printf '%s|' ", args=["a b", "$HOME"], shell=True, stdout=os.open(out, os.O_WRONLY | os.O_CREAT))
    try:
        assert process.wait(10) == 0
    finally:
        os.close(process.stdout_target)
    assert out.read_text() == "a b|$HOME|"


def test_watcher_shell_with_pipe_and_shell_args(watch, tmp_path):
    out = tmp_path / "out"
    watch(f'echo "$1" | tr a-z A-Z > {out}.tmp && mv {out}.tmp {out} && exec sleep 1000', shell=True,
          shell_args="_ lower")
    wait_for(out.exists, message="the shell's output")
    assert out.read_text().strip() == "LOWER"


# -- executable ----------------------------------------------------------------------------------------------------

def test_executable_runs_while_argv0_is_the_cmd(spawn):
    process = spawn("fancy-name 1000", executable="/bin/sleep")
    assert cmdline(process.pid) == ["fancy-name", "1000"]
    assert os.path.realpath(f"/proc/{process.pid}/exe") == os.path.realpath("/bin/sleep")


def test_the_program_reported_is_the_command_not_its_launcher(spawn):
    """`stats` reports the command's program even while the child still runs its launcher (gcircus-launch, or
    setpriv and /bin/sh) or is inside execve (an empty command line), and what /proc says once it runs it."""
    process = spawn("/bin/sleep 1000")
    assert process.program == "sleep"
    wait_for(lambda: cmdline(process.pid) == ["/bin/sleep", "1000"], message="sleep running")
    for read in ("gcircus-launch", "setpriv", "sh", "N/A", "sleep"):
        assert process.program_shown(read) == "sleep"
    assert process.program_shown("renamed-itself") == "renamed-itself"
    assert procinfo.process_info(process)["cmdline"] == "sleep"
    assert spawn("fancy-name 1000", executable="/bin/sleep", wid=2).program == "fancy-name"


def test_watcher_executable(watch):
    watcher = watch("not-sleep 1000", executable="/bin/sleep")
    pid = only_process(watcher).pid
    assert cmdline(pid)[0] == "not-sleep"
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath("/bin/sleep")


# -- working_dir ---------------------------------------------------------------------------------------------------

def test_working_dir_is_the_child_cwd(spawn, dump, tmp_path):
    cmd, read = dump
    workdir = tmp_path / "work"
    workdir.mkdir()
    spawn(cmd, working_dir=str(workdir))
    assert read()["cwd"] == str(workdir)


def test_watcher_working_dir(watch, tmp_path):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    watcher = watch("sleep 1000", working_dir=str(workdir))
    assert os.readlink(f"/proc/{only_process(watcher).pid}/cwd") == str(workdir)


def test_missing_working_dir_is_a_spawn_error_saying_so(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(SpawnError, match=r"working_dir .*nope.* does not exist"):
        Process("test", 1, "sleep 1000", working_dir=missing)


def test_watcher_missing_working_dir(watch, tmp_path):
    watcher = watch("sleep 1000", working_dir=str(tmp_path / "gone"), start=False)
    with pytest.raises(SpawnError, match="working_dir .*gone.* does not exist"):
        watcher.spawn_process()
    assert watcher.processes == {}


def test_working_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(SpawnError, match="is not a directory"):
        Process("test", 1, "sleep 1000", working_dir=str(afile))


# -- $(circus.*) and $WID ------------------------------------------------------------------------------------------

def test_wid_placeholders_in_cmd_and_args(spawn, dump):
    cmd, read = dump
    spawn(cmd + " $(circus.wid) ((circus.wid))", args=["$(circus.WID)", "w$WID"], wid=7)
    assert read()["argv"][2:] == ["7", "7", "7", "w7"]


def test_watcher_expands_its_attributes_and_env_at_spawn(watch, tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import os, signal, sys\n"
                      "out = sys.argv[1]\n"
                      "open(out + '.tmp', 'w').write('\\n'.join(sys.argv[2:]))\n"
                      "os.rename(out + '.tmp', out)\n"
                      "signal.pause()\n")
    out = tmp_path / "wid-$(circus.wid)"
    watch(f"{PYTHON} {script} {out} $(circus.numprocesses) $(circus.env.greeting)",
          args="$WID $(circus.graceful_timeout) $(circus.name) $(circus.unknown)",
          numprocesses=2, env={"GREETING": "hello"})
    seen = {}
    for wid in (1, 2):
        path = tmp_path / f"wid-{wid}"
        wait_for(path.exists, message=f"worker {wid}")
        seen[wid] = path.read_text().split("\n")
    for wid in (1, 2):
        assert seen[wid] == ["2", "hello", str(wid), "2.0", "test", "$(circus.unknown)"]


# -- environment ---------------------------------------------------------------------------------------------------

def test_process_env_is_exactly_what_is_given(spawn, dump):
    cmd, read = dump
    spawn(cmd, env={"ONLY": "this", "AND": "that"})
    assert read()["env"] == {"ONLY": "this", "AND": "that"}


def test_watcher_without_copy_env_passes_only_configured_variables(watch, dump):
    cmd, read = dump
    watch(cmd, env={"APP_MODE": "prod", "COUNT": 3})
    assert read()["env"] == {"APP_MODE": "prod", "COUNT": "3"}


def test_watcher_without_env_gives_an_empty_environment(watch, dump):
    cmd, read = dump
    watch(cmd)
    assert read()["env"] == {}


def test_copy_env_passes_the_daemon_environment_with_configured_on_top(watch, dump, monkeypatch):
    cmd, read = dump
    monkeypatch.setenv("GCIRCUS_TEST_INHERITED", "from-daemon")
    monkeypatch.setenv("GCIRCUS_TEST_OVERRIDDEN", "from-daemon")
    watch(cmd, copy_env=True, env={"GCIRCUS_TEST_OVERRIDDEN": "configured", "EXTRA": "x"})
    expected = dict(os.environ, GCIRCUS_TEST_OVERRIDDEN="configured", EXTRA="x")
    assert read()["env"] == expected


def test_copy_path_sets_pythonpath_from_sys_path(watch, dump):
    cmd, read = dump
    expected = os.pathsep.join(p for p in sys.path if p)  # before the watcher adds its PYTHONPATH to sys.path
    watch(cmd, copy_env=True, copy_path=True)
    assert read()["env"]["PYTHONPATH"] == expected


def test_copy_path_and_virtualenv_need_copy_env(tmp_path):
    with pytest.raises(ValueError, match="copy_env"):
        Watcher("test", "sleep 1", copy_path=True)
    with pytest.raises(ValueError, match="copy_env"):
        Watcher("test", "sleep 1", virtualenv=str(tmp_path))


def make_venv(root, version: str):
    """A minimal virtualenv tree: bin/ and lib/pythonX.Y/site-packages with a .pth file."""
    (root / "bin").mkdir(parents=True)
    site = root / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True)
    (root / "src" / "project").mkdir(parents=True)
    (site / "project.pth").write_text("# a comment\n../../../src/project\nimport sys\n/opt/absolute/entry\n\n")
    return site


def test_virtualenv_prepends_bin_to_path_and_sets_pythonpath(watch, dump, tmp_path, monkeypatch):
    cmd, read = dump
    venv = tmp_path / "venv"
    site = make_venv(venv, f"{sys.version_info.major}.{sys.version_info.minor}")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    watch(cmd, copy_env=True, virtualenv=str(venv))
    env = read()["env"]
    assert env["PATH"] == f"{venv}/bin:/usr/bin:/bin"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(site), str(venv / "src" / "project"), "/opt/absolute/entry"]


def test_virtualenv_py_ver_selects_the_site_packages(watch, dump, tmp_path, monkeypatch):
    cmd, read = dump
    venv = tmp_path / "venv"
    site = make_venv(venv, "2.7")
    watch(cmd, copy_env=True, virtualenv=str(venv), virtualenv_py_ver="2.7", env={"PYTHONPATH": "/configured"})
    assert read()["env"]["PYTHONPATH"].split(os.pathsep) == [str(site), str(venv / "src" / "project"),
                                                           "/opt/absolute/entry", "/configured"]


def test_virtualenv_without_matching_site_packages_is_refused(tmp_path):
    venv = tmp_path / "venv"
    make_venv(venv, "2.7")
    with pytest.raises(ValueError, match="site-packages"):
        Watcher("test", "sleep 1", copy_env=True, virtualenv=str(venv), virtualenv_py_ver="3.99")
    with pytest.raises(ValueError, match="does not exist"):
        Watcher("test", "sleep 1", copy_env=True, virtualenv=str(tmp_path / "missing"))


# -- umask ---------------------------------------------------------------------------------------------------------

def test_umask_applies_to_files_the_child_creates(spawn, tmp_path):
    target = tmp_path / "created"
    process = spawn(f"touch {target}", shell=True, umask=0o027)
    assert process.wait(10) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_watcher_umask(watch, dump):
    cmd, read = dump
    watch(cmd, umask=0o077)
    assert read()["umask"] == 0o077


# -- standard streams ----------------------------------------------------------------------------------------------

def test_stdin_is_dev_null_by_default(spawn):
    process = spawn("sleep 1000")
    assert fd_target(process.pid, 0) == "/dev/null"


def test_stdin_is_inherited_without_close_child_stdin(spawn):
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(read_end, 0)
        process = spawn("sleep 1000", close_child_stdin=False)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    try:
        assert fd_target(process.pid, 0) == fd_target("self", read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_stdout_and_stderr_are_inherited_by_default(watch):
    watcher = watch("sleep 1000")
    pid = only_process(watcher).pid
    assert fd_target(pid, 1) == fd_target("self", 1)
    assert fd_target(pid, 2) == fd_target("self", 2)


def test_close_child_stdout_and_stderr_point_to_dev_null(spawn):
    out_closed = spawn("sleep 1000", close_child_stdout=True)
    err_closed = spawn("sleep 1000", close_child_stderr=True)
    assert fd_target(out_closed.pid, 1) == "/dev/null"
    assert fd_target(out_closed.pid, 2) == fd_target("self", 2)
    assert fd_target(err_closed.pid, 2) == "/dev/null"
    assert fd_target(err_closed.pid, 1) == fd_target("self", 1)


def test_watcher_close_child_streams(watch):
    watcher = watch("sleep 1000", close_child_stdin=True, close_child_stdout=True, close_child_stderr=True)
    pid = only_process(watcher).pid
    assert [fd_target(pid, fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3


def test_process_pipes_stdout_by_default():
    process = Process("test", 1, "echo hello")
    try:
        assert process.stdout.read() == b"hello\n"
        assert process.wait(10) == 0
    finally:
        process.stop(graceful_timeout=1)


# -- file descriptors and sockets ----------------------------------------------------------------------------------

@pytest.fixture
def sockets():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    ours, theirs = socket.socketpair()
    yield {"web": listener, "pair": theirs}, ours
    for sock in (listener, ours, theirs):
        sock.close()


def test_no_daemon_fd_leaks_into_the_child(spawn, sockets):
    assert len(open_fds(os.getpid())) > 3  # the test process holds more than the standard streams
    process = spawn("sleep 1000")
    assert settled_fds(process.pid, {0, 1, 2}) == {0, 1, 2}


def test_without_use_sockets_no_socket_reaches_the_child(watch, sockets):
    socks, _ = sockets
    watcher = watch("sleep 1000", sockets=socks)
    assert settled_fds(only_process(watcher).pid, {0, 1, 2}) == {0, 1, 2}


def test_use_sockets_passes_exactly_the_sockets_and_expands_their_fds(watch, dump, sockets):
    cmd, read = dump
    socks, _ = sockets
    watcher = watch(cmd, args="$(circus.sockets.web) $(circus.sockets.PAIR)", use_sockets=True, sockets=socks)
    argv = read()["argv"]
    web, pair = socks["web"].fileno(), socks["pair"].fileno()
    assert argv[2:] == [str(web), str(pair)]
    pid = only_process(watcher).pid
    assert settled_fds(pid, {0, 1, 2, web, pair}) == {0, 1, 2, web, pair}
    assert fd_target(pid, web) == fd_target("self", web)
    assert fd_target(pid, pair) == fd_target("self", pair)


def test_process_use_fds_passes_its_sockets(spawn, sockets):
    socks, _ = sockets
    fd = socks["web"].fileno()
    process = spawn("sleep 1000", use_fds=True, sockets={"web": fd})
    assert settled_fds(process.pid, {0, 1, 2, fd}) == {0, 1, 2, fd}


def test_stdin_socket_is_the_child_stdin(watch, sockets, tmp_path):
    socks, ours = sockets
    out = tmp_path / "line"
    watcher = watch(f"head -n1 > {out}.tmp && mv {out}.tmp {out} && exec sleep 1000", shell=True,
                    stdin_socket="pair", sockets=socks)
    pid = only_process(watcher).pid
    assert fd_target(pid, 0) == fd_target("self", socks["pair"].fileno())
    ours.sendall(b"through the socket\n")
    wait_for(out.exists, message="the line read from stdin")
    assert out.read_text() == "through the socket\n"


def test_missing_stdin_socket_fails_the_spawn_clearly(watch, sockets):
    socks, _ = sockets
    watcher = watch("sleep 1000", stdin_socket="nope", sockets=socks, max_retry=1, start=False)
    with pytest.raises(SpawnError, match="stdin_socket 'nope' does not exist"):
        watcher.spawn_process()
    watcher.start()
    assert watcher.wait_for_state({"failed"}, timeout=60) == "failed" and watcher.processes == {}
    assert "stdin_socket 'nope' does not exist" in watcher.reason


# -- session -------------------------------------------------------------------------------------------------------

def test_child_leads_its_own_session_and_process_group(spawn, watch):
    process = spawn("sleep 1000")
    watched = only_process(watch("sleep 1000"))
    for pid in (process.pid, watched.pid):
        assert os.getsid(pid) == pid == os.getpgid(pid)
    assert os.getsid(process.pid) != os.getsid(0)


# -- spawn errors --------------------------------------------------------------------------------------------------

def test_missing_command_is_a_readable_spawn_error(tmp_path):
    with pytest.raises(SpawnError, match=r"command not found: '/no/such/program'"):
        Process("test", 1, "/no/such/program --flag")
    with pytest.raises(SpawnError, match=r"command not found: 'gcircus-no-such-command'"):
        Process("test", 1, "gcircus-no-such-command", env={"PATH": str(tmp_path)})


def test_non_executable_file_is_a_readable_spawn_error(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(SpawnError, match=r"permission denied: '.*script\.sh'"):
        Process("test", 1, str(script))


def test_watcher_gives_up_on_a_missing_command(watch, caplog):
    watcher = watch("/no/such/program", max_retry=2, start=False)
    with pytest.raises(SpawnError, match="command not found"):
        watcher.spawn_process()
    watcher.start()
    assert watcher.wait_for_state({"failed"}, timeout=60) == "failed" and watcher.processes == {}
    assert "command not found: '/no/such/program'" in caplog.text


def test_empty_command_is_a_spawn_error():
    with pytest.raises(SpawnError, match="empty command"):
        Process("test", 1, "  ")


def test_unknown_rlimit_is_a_spawn_error_naming_it():
    with pytest.raises(SpawnError, match="rlimit_bogus"):
        Process("test", 1, "sleep 1000", rlimits={"bogus": 1})


def test_stopping_a_process_that_never_spawned_returns_at_once():
    process = Process("test", 1, "sleep 1000", spawn=False)
    assert process.stop(signal.SIGTERM, graceful_timeout=5) is None


@pytest.fixture(params=["native", "shell"])
def launcher_kind(request, monkeypatch):
    """Each launcher in turn (see gcircus.launcher): gcircus-launch, then util-linux's setpriv and /bin/sh."""
    if request.param == "shell":
        monkeypatch.setenv(launcher.LAUNCHER_ENV, "shell")
        if launcher.setpriv_prefix(signal.SIGTERM) is None:
            pytest.skip("no util-linux setpriv with --pdeathsig on this machine: the preexec path is used instead")
    launcher.native_launcher.cache_clear()
    if request.param == "native" and launcher.native_launcher() is None:
        pytest.skip("gcircus-launch is not built here (no C compiler at install)")
    yield request.param
    monkeypatch.undo()
    launcher.native_launcher.cache_clear()


def launcher_prefix(kind: str, signum, parent_pid: int) -> list[str]:
    prefix = launcher.plan(can_skip_preexec=True, other_user=False, pdeathsig=signum, parent_pid=parent_pid,
                           cgroup_fd=None, cgroup_procs=None, keep_pwd=False).prefix
    assert prefix is not None
    assert os.path.basename(prefix[0]) == ("gcircus-launch" if kind == "native" else "setpriv")
    return prefix


def test_the_parent_death_fast_path_runs_the_command_and_still_reports_spawn_errors(tmp_path, launcher_kind):
    process = Process("p", 1, "/bin/sleep 1000", pdeathsig=signal.SIGTERM, pipe_stdout=False, pipe_stderr=False)
    try:
        from tests.support.waiting import wait_for
        wait_for(lambda: open(f"/proc/{process.pid}/cmdline", "rb").read() == b"/bin/sleep\x001000\x00",
                 message="the launcher exec'd the command")
        with open(f"/proc/{process.pid}/status") as f:
            assert f"PPid:\t{os.getpid()}\n" in f.read()  # exec'd in place: still gcircus's own child
    finally:
        process.stop(graceful_timeout=1)
    with pytest.raises(SpawnError, match="command not found"):
        Process("p", 1, "no-such-command-anywhere", pdeathsig=signal.SIGTERM)
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(SpawnError, match="not executable"):
        Process("p", 1, str(script), pdeathsig=signal.SIGTERM)


def test_the_launcher_stops_a_child_whose_parent_died_before_the_prctl(tmp_path, launcher_kind):
    """The launcher run by a process that is not the parent it names: as if gcircusd had died before the launcher
    armed the signal (the child re-parented). It sends itself the signal; the command never runs."""
    marker = tmp_path / "ran"
    command = ["/bin/sh", "-c", f"touch {marker}"]
    orphaned = gsubprocess.run([*launcher_prefix(launcher_kind, signal.SIGTERM, os.getpid() + 1), *command],
                               timeout=30)
    assert orphaned.returncode == -signal.SIGTERM and not marker.exists()
    parented = gsubprocess.run([*launcher_prefix(launcher_kind, signal.SIGTERM, os.getpid()), *command], timeout=30)
    assert parented.returncode == 0 and marker.exists()


def test_the_native_launcher_never_runs_a_command_whose_parent_is_gone_even_if_the_signal_is_ignored(tmp_path):
    """An ignored signal survives exec: the shell launcher's `kill` would then fall through to the command, while
    gcircus-launch exits instead (128 + the signal)."""
    native = launcher.native_launcher()
    if native is None:
        pytest.skip("gcircus-launch is not built here (no C compiler at install)")
    marker = tmp_path / "ran"
    ignoring = gsubprocess.run([native, str(int(signal.SIGTERM)), str(os.getpid() + 1), "-1", "", "--",
                                "/bin/sh", "-c", f"touch {marker}"],
                               preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN), timeout=30)
    assert ignoring.returncode == 128 + signal.SIGTERM and not marker.exists()


def test_the_native_launcher_refuses_bad_usage_and_reports_a_cgroup_it_cannot_enter(tmp_path):
    native = launcher.native_launcher()
    if native is None:
        pytest.skip("gcircus-launch is not built here (no C compiler at install)")
    for argv in ([native], [native, "x", "1", "-1", "", "--", "true"], [native, "0", "1", "-1", "", "true", "x"]):
        result = gsubprocess.run(argv, stderr=gsubprocess.PIPE, timeout=30)
        assert result.returncode == 127 and b"usage: gcircus-launch" in result.stderr
    marker = tmp_path / "ran"
    read_only = os.open(os.devnull, os.O_RDONLY)  # a write to it fails, as on a cgroup removed meanwhile
    try:
        result = gsubprocess.run([native, "0", "1", str(read_only), "/sys/fs/cgroup/x/cgroup.procs", "--",
                                  "touch", str(marker)], pass_fds=(read_only,), stderr=gsubprocess.PIPE, timeout=30)
    finally:
        os.close(read_only)
    assert result.returncode == launcher.CGROUP_PLACEMENT_FAILED and not marker.exists()
    assert b"cannot enter the cgroup /sys/fs/cgroup/x/cgroup.procs" in result.stderr
    assert b"the command was not started" in result.stderr
