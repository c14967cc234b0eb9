"""A cgroup (v2) per watcher, for real: placement before exec, stop empties the cgroup (a setsid escape included),
a restarted gcircusd stops what a SIGKILLed one left, limits or a clear error, clean exit, one directory per daemon.

Every test runs gcircusd with a scratch cgroup of its own as cgroup_root (tests.support.cgroups); it is skipped, with
the reason, where no cgroup v2 directory is writable.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import time

import pytest
from gevent import subprocess

from gcircus import cgroups, launcher, linux
from gcircus.config import load_config
from gcircus.daemon import Arbiter
from gcircus.errors import ConfigError
from tests.support.cgroups import ScratchRoot, available_controllers, controller_or_skip
from tests.support.control import Wire
from tests.support.daemons import circus_config, make_config
from tests.support.processes import alive, kill
from tests.support.waiting import wait_for


@pytest.fixture
def scratch():
    root = ScratchRoot()
    yield root
    root.close()


def start(daemon_factory, config: str, env: dict | None = None):
    daemon = daemon_factory(config, env=env)
    wait_for(lambda: "gcircusd running" in daemon.output() or daemon.proc.poll() is not None, 20,
             message="gcircusd running")
    assert daemon.proc.poll() is None, daemon.output()
    return daemon


def procs_of(path: str) -> list[int]:
    return cgroups.pids_of(path)


def read_pids(path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def escaper(tmp_path, record) -> str:
    """A shell whose `setsid` child backgrounds a sleep (recorded in `record`) and exits: the sleep leaves the
    process group and the tree (it is re-parented), which only the cgroup still holds."""
    script = tmp_path / "escape.sh"
    script.write_text(f"setsid sh -c 'sleep 1000 & echo $! > {record}'\nexec sleep 1000\n")
    return f"sh {script}"


CGROUP_PATHS = {
    # path: (watcher options, environment)
    "native launcher": ("", {}),
    "shell launcher": ("", {launcher.LAUNCHER_ENV: "shell"}),
    "preexec, other user": ("uid = nobody", {}),
    "preexec rlimits": ("rlimit_nofile = 1024", {}),
    "shell = true": ("shell = true", {}),
}


@pytest.mark.parametrize("path", list(CGROUP_PATHS))
def test_a_process_is_in_its_cgroup_before_it_runs(tmp_path, scratch, daemon_factory, path):
    """cat's first action is to print its own cgroup, whichever way its spawn entered it (see gcircus.launcher):
    gcircus-launch writing to the descriptor gcircusd opened, the fallback shell launcher writing to the path, or
    the preexec step (rlimits; another user, as root before the uid switch)."""
    extra, env = CGROUP_PATHS[path]
    if path.startswith("native") and launcher.native_launcher() is None:
        pytest.skip("gcircus-launch is not built here (no C compiler at install)")
    out = tmp_path / "cgroup.txt"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:web]
        cmd = cat /proc/self/cgroup
        {extra}
        respawn = false
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        """, circus=f"cgroup_root = {scratch.path}\n")
    daemon = start(daemon_factory, config, env=env)
    text = wait_for(lambda: out.exists() and "0::" in out.read_text() and out.read_text(), message="cat's output")
    watcher_dir = os.path.join(scratch.only_daemon_dir(), "web")
    assert f"0::{scratch.relative(watcher_dir)}\n" in text
    with open(f"/proc/{daemon.pid}/cgroup") as f:
        assert scratch.relative(watcher_dir) not in f.read()  # gcircusd itself stays where it was


def test_stop_kills_what_escaped_with_setsid(tmp_path, scratch, daemon_factory):
    record = tmp_path / "escaped"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:esc]
        cmd = {escaper(tmp_path, record)}
        graceful_timeout = 5
        """, circus=f"cgroup_root = {scratch.path}\n")
    daemon = start(daemon_factory, config)
    [escaped] = wait_for(lambda: read_pids(record), message="the escaped sleep")
    watcher_dir = os.path.join(scratch.only_daemon_dir(), "esc")
    assert escaped in procs_of(watcher_dir)
    wire = Wire(endpoint)
    try:
        header = wire.command("procs", name="esc")["watcher"]
        assert header["cgroup"]["procs"] == 2 and header["cgroup"]["path"] == watcher_dir
        assert wire.command("stats", name="esc")["cgroup"]["procs"] == 2
        assert wire.command("stop", name="esc", waiting=True)["status"] == "ok"
        assert wire.command("status", name="esc")["status"] == "stopped"
    finally:
        wire.close()
    assert not linux.is_running(escaped)
    assert procs_of(watcher_dir) == [] and not cgroups.is_populated(watcher_dir)
    wait_for(lambda: f"killed 1 process(es) left in its cgroup: {escaped}" in daemon.output(),  # logged in the
             message="the log line")  # background: the reply may come first


def test_a_restarted_gcircusd_stops_what_the_killed_one_left(tmp_path, scratch, daemon_factory):
    record = tmp_path / "escaped"
    circus = f"cgroup_root = {scratch.path}\npdeathsig = false\n"
    config, _ = circus_config(tmp_path, f"""
        [watcher:esc]
        cmd = {escaper(tmp_path, record)}
        graceful_timeout = 5
        [watcher:old]
        cmd = sleep 1000
        """, circus=circus)
    first = start(daemon_factory, config)
    [escaped] = wait_for(lambda: read_pids(record), message="the escaped sleep")
    directory = scratch.only_daemon_dir()
    esc_dir, old_dir = os.path.join(directory, "esc"), os.path.join(directory, "old")
    before = wait_for(lambda: len(procs_of(esc_dir)) == 2 and procs_of(esc_dir), message="esc's two processes")
    [old_pid] = wait_for(lambda: procs_of(old_dir), message="old's process")
    first.signal(signal.SIGKILL)
    first.wait()
    assert all(alive(pid) for pid in [*before, old_pid])  # no parent-death signal: they outlive it
    old_ones = {(pid, linux.read_stat(pid).start_time) for pid in [*before, old_pid]}  # pids alone may be reused
    record.unlink()
    # Whatever happens next, the scratch fixture kills them (they are in its cgroups): never by pid, which may be
    # reused once they are gone.
    circus_config(tmp_path, f"""
        [watcher:esc]
        cmd = {escaper(tmp_path, record)}
        graceful_timeout = 5
        """, circus=circus, endpoint=_endpoint_of(config))
    second = start(daemon_factory, config)
    assert scratch.only_daemon_dir() == directory  # the same configuration finds the same directory
    [new_escaped] = wait_for(lambda: read_pids(record), message="the new escaped sleep")
    now = wait_for(lambda: len(procs_of(esc_dir)) == 2 and procs_of(esc_dir), message="esc's new processes")
    assert new_escaped in now and not {(pid, linux.read_stat(pid).start_time) for pid in now} & old_ones
    assert not any(linux.is_running(pid, start_time) for pid, start_time in old_ones)
    output = second.output().split(f"starting (pid {second.pid}", 1)[1]  # the file holds both runs' logs
    # Found and stopped before the first spawn: the old and the new processes never ran side by side.
    assert output.index("still holds processes of a previous gcircusd") < output.index("watcher 'esc' started")
    assert all(str(pid) in output for pid in [*before, old_pid])
    assert "sleep 1000" in output and "no longer configured" in output
    assert not os.path.exists(old_dir)


def _endpoint_of(config: str) -> str:
    return load_config(config).circus["endpoint"]


def test_a_clean_exit_removes_the_cgroups(tmp_path, scratch, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:a]
        cmd = sleep 1000
        [watcher:b]
        cmd = sleep 1000
        numprocesses = 2
        """, circus=f"cgroup_root = {scratch.path}\n")
    daemon = start(daemon_factory, config)
    directory = scratch.only_daemon_dir()
    wait_for(lambda: len(procs_of(os.path.join(directory, "b"))) == 2, message="b's processes")
    assert daemon.stop() == 0
    assert scratch.daemon_dirs() == []


def test_rm_removes_the_watchers_cgroup(tmp_path, scratch, daemon_factory):
    config, endpoint = circus_config(tmp_path, """
        [watcher:a]
        cmd = sleep 1000
        [watcher:b]
        cmd = sleep 1000
        """, circus=f"cgroup_root = {scratch.path}\n")
    start(daemon_factory, config)
    b_dir = os.path.join(scratch.only_daemon_dir(), "b")
    wait_for(lambda: procs_of(b_dir), message="b's process")
    wire = Wire(endpoint)
    try:
        assert wire.command("rm", name="b", waiting=True)["status"] == "ok"
    finally:
        wire.close()
    wait_for(lambda: not os.path.exists(b_dir), message="b's cgroup removed")


def test_two_daemons_never_share_a_directory(tmp_path, scratch, daemon_factory):
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        configs.append(make_config(tmp_path / name, """
            [watcher:web]
            cmd = sleep 1000
            """, circus=f"cgroup_root = {scratch.path}\n"))
    daemons = [start(daemon_factory, config) for config in configs]
    dirs = wait_for(lambda: len(scratch.daemon_dirs()) == 2 and scratch.daemon_dirs(), message="two directories")
    pids = [wait_for(lambda d=d: procs_of(os.path.join(d, "web")), message="web's process") for d in dirs]
    assert len(set(pids[0]) | set(pids[1])) == 2
    assert {p for d in daemons for p in d.children()} == set(pids[0]) | set(pids[1])


def test_a_named_daemon_uses_its_name(tmp_path, scratch, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:web server]
        cmd = sleep 1000
        """, circus=f"cgroup_root = {scratch.path}\nname = shop\n")
    start(daemon_factory, config)
    directory = wait_for(lambda: scratch.daemon_dirs(), message="the daemon's directory")[0]
    assert os.path.basename(directory) == "gcircus-shop"
    [watcher_dir] = wait_for(lambda: [e.path for e in os.scandir(directory) if e.is_dir()], message="web's cgroup")
    assert os.path.basename(watcher_dir).startswith("web_server-")
    wait_for(lambda: procs_of(watcher_dir), message="web server's process")


@pytest.mark.parametrize(("option", "value", "controller"),
                         [("memory_max", "64M", "memory"), ("pids_max", "5", "pids"), ("cpu_weight", "50", "cpu")])
def test_a_limit_needs_its_controller(tmp_path, scratch, option, value, controller):
    if controller in available_controllers(scratch.path):
        pytest.skip(f"the {controller} controller is delegated here: the limit is enforced, not refused")
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = sleep 1000
        {option} = {value}
        """, circus=f"cgroup_root = {scratch.path}\n")
    with pytest.raises(ConfigError) as caught:
        Arbiter.load_from_config(config)
    message = str(caught.value)
    assert config in message and "[watcher:web]" in message and option in message
    assert f"the host does not delegate the {controller} controller to cgroup v2 at {scratch.path}" in message


def test_memory_max_is_enforced(tmp_path, scratch, daemon_factory):
    controller_or_skip(scratch.mount_root, "memory")
    with open(os.path.join(scratch.mount_root, "cgroup.subtree_control"), "w") as f:
        f.write("+memory")
    record = tmp_path / "exit"
    hog = tmp_path / "hog.py"
    hog.write_text("import sys\nblocks = [bytearray(1 << 20) for _ in range(256)]\nsys.exit(0)\n")
    config = make_config(tmp_path, f"""
        [watcher:hog]
        cmd = sh -c '{sys.executable} {hog}; echo $? > {record}; exec sleep 1000'
        memory_max = 64M
        """, circus=f"cgroup_root = {scratch.path}\n")
    start(daemon_factory, config)
    assert wait_for(lambda: record.exists() and record.read_text().strip(), message="the hog's exit") == "137"


def test_cgroup_root_errors_name_the_option(tmp_path):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        """, circus=f"cgroup_root = {tmp_path}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "cgroup_root" in str(caught.value) and "no cgroup.procs there" in str(caught.value)


def test_a_limit_without_cgroup_root_is_refused(tmp_path):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        pids_max = 10
        """)
    with pytest.raises(ConfigError, match=r"\[watcher:web\] pids_max needs \[circus\] cgroup_root"):
        Arbiter.load_from_config(config)


def test_without_cgroup_kill_each_process_is_signalled_until_none_is_left(tmp_path, scratch):
    """The fallback of kernels before 5.14 (no cgroup.kill): a forking shell is emptied all the same."""
    cgroup = os.path.join(scratch.path, "fallback")
    os.mkdir(cgroup)
    script = "sh -c 'while :; do sleep 1000 & sleep 0.01; done' & sleep 1000 & wait"
    proc = subprocess.Popen(["sh", "-c", f"echo 0 > {cgroup}/cgroup.procs && exec sh -c \"$0\"", script])
    try:
        wait_for(lambda: len(cgroups.pids_of(cgroup)) >= 4, message="a few processes in the cgroup")
        assert cgroups.kill_by_signals(cgroup, time.monotonic() + 10)
        assert cgroups.pids_of(cgroup) == [] and not cgroups.is_populated(cgroup)
    finally:
        kill([proc.pid])
        proc.wait()


def test_set_refuses_a_limit_the_host_cannot_enforce(tmp_path, scratch, daemon_factory):
    if "pids" in available_controllers(scratch.path):
        pytest.skip("the pids controller is delegated here: the limit is accepted")
    config, endpoint = circus_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        """, circus=f"cgroup_root = {scratch.path}\n")
    start(daemon_factory, config)
    wire = Wire(endpoint)
    try:
        reply = wire.command("set", name="web", options={"pids_max": "10"})
    finally:
        wire.close()
    assert reply["status"] == "error"
    assert f"the host does not delegate the pids controller to cgroup v2 at {scratch.path}" in reply["reason"]


def test_a_second_gcircusd_on_the_same_directory_touches_nothing(tmp_path, scratch, daemon_factory):
    """The same [circus] name twice (or one file started twice): the second refuses to start before it could take
    the first one's processes for a previous run's."""
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        configs.append(make_config(tmp_path / name, """
            [watcher:web]
            cmd = sleep 1000
            """, circus=f"cgroup_root = {scratch.path}\nname = shop\n"))
    start(daemon_factory, configs[0])
    web = os.path.join(scratch.only_daemon_dir(), "web")
    [pid] = wait_for(lambda: procs_of(web), message="web's process")
    second = daemon_factory(configs[1])
    assert second.wait() != 0
    assert "another gcircusd already runs with the cgroup" in second.output()
    assert procs_of(web) == [pid] and alive(pid)


LEAVE_ROOT = """
import sys
from gcircus import cgroups
root = sys.argv[1]
with open(root + "/cgroup.procs", "w") as f:
    f.write("0")
tree = cgroups.DaemonCgroups(root, "gcircus-x")
tree.prepare()
tree.enable("hugetlb")
print(open("/proc/self/cgroup").read().splitlines()[-1])
"""


@pytest.fixture
def hugetlb(scratch):
    """hugetlb made available to the scratch cgroup (enabled at the mount's root if needed, disabled again after)."""
    controller_or_skip(scratch.mount_root, "hugetlb")
    control = os.path.join(scratch.mount_root, "cgroup.subtree_control")
    with open(tempfile.gettempdir() + "/gcircus-test-hugetlb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one such test at a time (xdist workers): one enables, the same disables
        with open(control) as f:
            enabled_before = "hugetlb" in f.read().split()
        if not enabled_before:
            cgroups._write(control, "+hugetlb")
        yield
        if not enabled_before:
            scratch.close()  # its children use the controller: they go first
            with contextlib.suppress(OSError):  # another cgroup uses it meanwhile: leave it on
                cgroups._write(control, "-hugetlb")


def test_gcircusd_leaves_a_root_it_runs_in_to_hand_controllers_down(tmp_path, scratch, hugetlb):
    """`auto` in a container or a delegated systemd unit: gcircusd's own cgroup is the root, and cgroup v2 enables
    controllers for children only in a cgroup without processes. hugetlb stands for any controller (the one cgroup
    v2 offers everywhere these tests ran)."""
    script = tmp_path / "leave_root.py"
    script.write_text(LEAVE_ROOT)
    result = subprocess.run([sys.executable, str(script), scratch.path], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    leaf = os.path.join(scratch.path, "gcircus-x.supervisor")
    assert result.stdout.strip() == f"0::{scratch.relative(leaf)}"
    with open(os.path.join(scratch.path, "cgroup.subtree_control")) as f:
        assert "hugetlb" in f.read().split()
    with open(os.path.join(scratch.path, "gcircus-x", "cgroup.subtree_control")) as f:
        assert "hugetlb" in f.read().split()


def test_a_controller_cannot_be_handed_down_past_processes(tmp_path, scratch, hugetlb):
    parent = os.path.join(scratch.path, "busy")
    os.mkdir(parent)
    cgroups.enable_controller(scratch.path, "hugetlb")  # offered to `busy`, which cannot hand it down
    proc = subprocess.Popen(["sh", "-c", f'echo 0 > {parent}/cgroup.procs && exec sleep 1000'])
    try:
        wait_for(lambda: proc.pid in procs_of(parent), message="the sleeper in the cgroup")
        with pytest.raises(cgroups.CgroupError, match="processes live in it"):
            cgroups.enable_controller(parent, "hugetlb")
        if "memory" not in available_controllers(parent):
            with pytest.raises(cgroups.CgroupError, match=f"does not delegate the memory controller to cgroup v2 "
                                                          f"at {parent}"):
                cgroups.enable_controller(parent, "memory")
    finally:
        kill([proc.pid])
        proc.wait()
