"""uid/gid, supplementary groups and resource limits of spawned children, read back from /proc/PID.

Switching identity needs root: those tests run for real as root (as in CI) and are skipped otherwise. Each identity
case goes through every way the switch can happen: the stdlib's C set-up (plain Process), the preexec step (rlimits
or a parent-death signal), and a Watcher (which sets a parent-death signal by default).
"""
from __future__ import annotations

import os
import pwd
import resource
import subprocess
import sys

import pytest

from gcircus.process import Process, SpawnError
from gcircus.watcher import Watcher
from tests.support.waiting import wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing uid/gid or raising a hard limit needs root")

NOBODY = pwd.getpwnam("nobody")
CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as f:
        effective = next(line for line in f if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> bit & 1)

HARD_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def status(pid: int) -> dict[str, list[int]]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                fields[key] = [int(v) for v in value.split()]
    return fields


def environ(pid: int) -> dict[str, str]:
    """The child's environment, once the kernel has laid it out (Popen can return just before the exec ends)."""
    def read():
        with open(f"/proc/{pid}/environ", "rb") as f:
            return dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)
    return wait_for(read, message="the exec to complete")


def limits(pid: int) -> dict[str, tuple[str, str]]:
    """{'Max open files': (soft, hard), ...} from /proc/PID/limits."""
    result = {}
    with open(f"/proc/{pid}/limits") as f:
        next(f)
        for line in f:
            name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
            result[name] = (soft, hard)
    return result


def user_with_supplementary_groups() -> pwd.struct_passwd:
    """A system user that belongs to more groups than its primary one, so initgroups is visible; else nobody."""
    for entry in pwd.getpwall():
        if entry.pw_uid != 0 and len(set(os.getgrouplist(entry.pw_name, entry.pw_gid))) > 1:
            return entry
    return NOBODY


@pytest.fixture
def run():
    """Spawn `sleep` through one of the identity paths; everything started is stopped at the end of the test."""
    cleanup = []

    def start(path: str, **options) -> int:
        if path.startswith("watcher"):
            if path == "watcher-no-pdeathsig":
                options["pdeathsig"] = False
            watcher = Watcher("ident", "sleep 1000", graceful_timeout=2, max_retry=1, **options)
            cleanup.append(watcher.stop)
            watcher.start()
            assert len(watcher.processes) == 1
            return next(iter(watcher.processes))
        if path == "rlimits":
            options.setdefault("rlimits", {"core": 0})
        elif path == "pdeathsig":
            options["pdeathsig"] = 15
        process = Process("ident", 1, "sleep 1000", pipe_stdout=False, pipe_stderr=False, **options)
        cleanup.append(lambda: process.stop(graceful_timeout=2))
        return process.pid

    yield start
    for stop in cleanup:
        stop()


PATHS = ["plain", "rlimits", "pdeathsig", "watcher", "watcher-no-pdeathsig"]


@needs_root
@pytest.mark.parametrize("path", PATHS)
def test_uid_runs_the_child_as_that_user_with_its_groups(run, path):
    user = user_with_supplementary_groups()
    pid = run(path, uid=user.pw_name, env={"KEEP": "me"})
    fields = status(pid)
    assert fields["Uid"] == [user.pw_uid] * 4
    assert fields["Gid"] == [user.pw_gid] * 4
    assert sorted(fields["Groups"]) == sorted(set(os.getgrouplist(user.pw_name, user.pw_gid)))
    assert environ(pid) == {"KEEP": "me", "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}


@needs_root
@pytest.mark.parametrize("path", ["plain", "rlimits", "watcher"])
def test_nobody_by_number_gets_its_name_home_and_groups(run, path):
    pid = run(path, uid=str(NOBODY.pw_uid))
    fields = status(pid)
    assert fields["Uid"] == [NOBODY.pw_uid] * 4
    assert fields["Gid"] == [NOBODY.pw_gid] * 4
    assert 0 not in fields["Groups"]
    assert sorted(fields["Groups"]) == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
    assert environ(pid)["USER"] == "nobody" and environ(pid)["HOME"] == NOBODY.pw_dir


@needs_root
@pytest.mark.parametrize("path", ["plain", "rlimits", "watcher"])
def test_explicit_gid_replaces_the_primary_group(run, path):
    pid = run(path, uid="nobody", gid="daemon")
    fields = status(pid)
    daemon_gid = 1
    assert fields["Uid"] == [NOBODY.pw_uid] * 4
    assert fields["Gid"] == [daemon_gid] * 4
    assert sorted(fields["Groups"]) == sorted(set(os.getgrouplist("nobody", daemon_gid)))


@needs_root
@pytest.mark.parametrize("path", ["plain", "rlimits"])
def test_gid_alone_changes_only_the_group(run, path):
    pid = run(path, gid=1)
    fields = status(pid)
    assert fields["Uid"] == [0] * 4
    assert fields["Gid"] == [1] * 4


@needs_root
@pytest.mark.parametrize("path", ["plain", "rlimits", "watcher"])
def test_uid_without_passwd_entry_keeps_none_of_roots_groups(run, path):
    uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    pid = run(path, uid=uid, gid=NOBODY.pw_gid, env={"KEEP": "me"})
    fields = status(pid)
    assert fields["Uid"] == [uid] * 4
    assert fields["Gid"] == [NOBODY.pw_gid] * 4
    assert fields["Groups"] == [NOBODY.pw_gid]
    assert environ(pid) == {"KEEP": "me"}


def test_unknown_user_or_group_is_a_spawn_error_naming_it():
    with pytest.raises(SpawnError, match="unknown user 'gcircus-no-such-user'"):
        Process("ident", 1, "sleep 1000", uid="gcircus-no-such-user")
    with pytest.raises(SpawnError, match="unknown group 'gcircus-no-such-group'"):
        Process("ident", 1, "sleep 1000", uid="nobody", gid="gcircus-no-such-group")


def test_watcher_refuses_an_unknown_user_or_group_when_built():
    with pytest.raises(ValueError, match="unknown user 'gcircus-no-such-user'"):
        Watcher("ident", "sleep 1000", uid="gcircus-no-such-user")
    with pytest.raises(ValueError, match="unknown group 'gcircus-no-such-group'"):
        Watcher("ident", "sleep 1000", gid="gcircus-no-such-group")


@pytest.mark.skipif(os.geteuid() == 0, reason="only an unprivileged daemon is refused a uid switch")
def test_switching_uid_without_privilege_is_a_spawn_error():
    with pytest.raises(SpawnError, match="cannot switch to uid"):
        Process("ident", 1, "sleep 1000", uid="nobody")


BEYOND_NR_OPEN = 2 ** 40  # no process may have that many files open, whatever its privileges


def test_a_failing_preexec_step_is_a_spawn_error():
    with pytest.raises(SpawnError, match="child set-up failed"):
        Process("ident", 1, "sleep 1000", rlimits={"nofile": BEYOND_NR_OPEN})


def test_a_failing_preexec_step_is_a_spawn_error_in_a_monkeypatched_host():
    # gevent's Popen runs the preexec step there and re-raises the child's own exception in the parent.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("from gevent import monkey; monkey.patch_all()\n"
            f"import sys; sys.path.insert(0, {root!r})\n"
            "from gcircus.process import Process, SpawnError\n"
            "try:\n"
            f"    Process('x', 1, 'sleep 1000', pipe_stdout=False, rlimits={{'nofile': {BEYOND_NR_OPEN}}})\n"
            "except SpawnError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("child set-up failed"), out
    assert "setrlimit failed" in out.stdout


# -- resource limits -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["rlimits", "watcher"])
def test_rlimits_are_set_soft_and_hard(run, path):
    pid = run(path, rlimits={"nofile": 1234, "core": 0, "NPROC": 777})
    seen = limits(pid)
    assert seen["Max open files"] == ("1234", "1234")
    assert seen["Max core file size"] == ("0", "0")
    assert seen["Max processes"] == ("777", "777")


@pytest.mark.parametrize("path", ["rlimits", "watcher"])
def test_unlimited_nofile_falls_back_to_the_hard_limit(run, path):
    pid = run(path, rlimits={"nofile": resource.RLIM_INFINITY})
    assert limits(pid)["Max open files"] == (str(HARD_NOFILE), str(HARD_NOFILE))


@needs_root
def test_unlimited_core(run):
    pid = run("rlimits", rlimits={"core": resource.RLIM_INFINITY})
    assert limits(pid)["Max core file size"] == ("unlimited", "unlimited")


@needs_root
@pytest.mark.skipif(not has_capability(CAP_SYS_RESOURCE),
                    reason="raising a hard limit needs CAP_SYS_RESOURCE, which this container's root lacks")
@pytest.mark.parametrize("path", ["rlimits", "watcher"])
def test_rlimits_are_raised_before_the_uid_switch(run, path):
    with open("/proc/sys/fs/nr_open") as f:
        ceiling = int(f.read())
    raised = min(HARD_NOFILE + 1000, ceiling)
    assert raised > HARD_NOFILE, "nr_open leaves no room above the current hard limit"
    pid = run(path, uid="nobody", rlimits={"nofile": raised})
    assert limits(pid)["Max open files"] == (str(raised), str(raised))
    assert status(pid)["Uid"] == [NOBODY.pw_uid] * 4
