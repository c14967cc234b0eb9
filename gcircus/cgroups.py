"""A cgroup (v2) per watcher: where it lives, how a process is put in it, how it is emptied, its limits.

With `[circus] cgroup_root`, gcircusd makes one directory per daemon under that root (named stably, so a gcircusd
restarted on the same configuration finds the previous run's) and in it one cgroup per watcher. A cgroup is the only
grouping of processes nothing can leave: not a `setsid` double fork, not a daemonizing program. So stopping a
watcher ends with emptying its cgroup, and a gcircusd that was SIGKILLed finds what its children left running.

Plain filesystem calls on cgroupfs (they never block on anything but the kernel); the one wait, for `cgroup.events`
to say `populated 0`, polls cooperatively with gevent.sleep, bounded by a deadline.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import signal
import time

import gevent
import gevent.pool

log = logging.getLogger(__name__)

CGROUP2_FSTYPE = "cgroup2"
# The limit options and the controller each needs, with the interface file it writes (cgroup v2 names).
LIMIT_FILES = {"memory_max": ("memory", "memory.max"), "pids_max": ("pids", "pids.max"),
               "cpu_weight": ("cpu", "cpu.weight")}
LIMIT_DEFAULTS = {"memory_max": "max", "pids_max": "max", "cpu_weight": "100"}  # what an unset limit writes back
DEFAULT_GRACEFUL_TIMEOUT = 30.0  # for a previous run's cgroup no configured watcher names (the option's default)
EMPTY_TIMEOUT = 10.0  # seconds a killed cgroup may take to empty (processes in uninterruptible sleep) before a warning


class CgroupError(OSError):
    """A cgroup cannot be found, made, written, locked or emptied; the message names the path and the reason.

    An OSError, as a socket that cannot be bound is: gcircusd reports either as a failed start in plain words."""


# -- where: the root, the daemon's directory ---------------------------------------------------------------------


def _own_cgroup() -> str | None:
    """The cgroup v2 path gcircusd runs in ("/..." from /proc/self/cgroup's `0::` line), or None."""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def cgroup2_mounts() -> list[str]:
    """Mount points of cgroup2 filesystems, from /proc/self/mountinfo (in mount order)."""
    mounts = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if " - " in line:
                after = line.split(" - ", 1)[1].split()
                if after and after[0] == CGROUP2_FSTYPE:
                    mounts.append(fields[4].replace("\\040", " "))
    return mounts


def is_writable_cgroup(path: str) -> bool:
    """True if `path` is a cgroup v2 directory in which gcircusd may make cgroups and move processes."""
    return (os.path.isfile(os.path.join(path, "cgroup.procs")) and os.access(path, os.W_OK | os.X_OK)
            and os.access(os.path.join(path, "cgroup.procs"), os.W_OK))


def find_root() -> str:
    """`cgroup_root = auto`: the delegated cgroup gcircusd runs in when writable (a container's, a systemd unit's
    with Delegate=yes), else the first writable cgroup2 mount (a hybrid host's `unified`). CgroupError if none."""
    own = _own_cgroup()
    mounts = cgroup2_mounts()
    candidates = [os.path.normpath(m + own) for m in mounts if own and own != "/"] + mounts
    for path in candidates:
        if is_writable_cgroup(path):
            return path
    where = ", ".join(mounts) if mounts else "no cgroup2 filesystem is mounted"
    raise CgroupError(f"no writable cgroup v2 directory found ({where}; gcircusd runs in {own or 'no v2 cgroup'})")


def resolve_root(setting: str) -> str:
    """The root directory `cgroup_root` names (auto, or a path); CgroupError unless it is a writable cgroup v2 one."""
    if setting == "auto":
        return find_root()
    path = os.path.abspath(setting)
    if not is_writable_cgroup(path):
        raise CgroupError(f"{path} is not a writable cgroup v2 directory")
    return path


def sanitize(name: str) -> str:
    """A cgroup directory name for `name`: letters, digits, `.`, `_` and `-`; never a cgroupfs interface name (those
    contain a dot after a controller name, so a leading dot-free prefix keeps ours apart)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    return cleaned[:80]


def watcher_dirname(name: str) -> str:
    """A watcher's cgroup name: its name when that is a safe directory name, else a sanitized form with a hash of
    the name (so `a b` and `a_b` never share one)."""
    cleaned = sanitize(name)
    if cleaned == name:
        return name
    import hashlib  # here, not at the top: it loads OpenSSL (4 MiB of RSS), only worth it with cgroups

    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def daemon_dirname(name: str | None, config_path: str | None) -> str:
    """The daemon's directory name: from `[circus] name`, else from the configuration file's absolute path (its
    base name for reading, a hash of the whole path so two files of the same name never share one)."""
    if name:
        return "gcircus-" + sanitize(name)
    path = os.path.realpath(config_path) if config_path else f"pid-{os.getpid()}"
    import hashlib  # here, not at the top: it loads OpenSSL (4 MiB of RSS), only worth it with cgroups

    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    base = sanitize(os.path.splitext(os.path.basename(path))[0])
    return f"gcircus-{base}-{digest}"


# -- reading and writing cgroupfs ----------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    """One write(2) of `text` (cgroupfs takes one value per write)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def pids_of(path: str) -> list[int]:
    """The processes in the cgroup at `path` (empty once it is gone)."""
    try:
        return [int(line) for line in _read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def is_populated(path: str) -> bool:
    """`cgroup.events` says `populated 1` (a process in it or below it; zombies do not count)."""
    try:
        text = _read(os.path.join(path, "cgroup.events"))
    except FileNotFoundError:
        return False
    return "populated 1" in text


def describe_pids(pids: list[int]) -> str:
    """`pid (command line)` for each pid, for the log of what was found in a cgroup."""
    parts = []
    for pid in pids:
        try:
            cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
        except OSError:
            cmdline = "?"
        parts.append(f"{pid} ({cmdline[:120]})")
    return ", ".join(parts)


def wait_empty(path: str, deadline: float) -> bool:
    """Wait (cooperatively: polling with gevent.sleep, 5 ms growing to 100 ms) until the cgroup at `path` is not
    populated, or `deadline` (time.monotonic()); True if it emptied."""
    delay = 0.005
    while is_populated(path):
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def signal_all(path: str, signum: int) -> list[int]:
    """Send `signum` to every process in the cgroup; the pids signalled."""
    sent = []
    for pid in pids_of(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            sent.append(pid)
    return sent


def stop_all(path: str, stop_signal: int, graceful_timeout: float) -> bool:
    """Stop what is in a cgroup no watcher supervises (a previous run's): `stop_signal` (and SIGCONT, for a stopped
    process) to each process, `graceful_timeout` to exit, then kill_all. True if it emptied."""
    signal_all(path, stop_signal)
    signal_all(path, signal.SIGCONT)
    if wait_empty(path, time.monotonic() + max(0.0, graceful_timeout)):
        return True
    return kill_all(path)


def kill_all(path: str, timeout: float = EMPTY_TIMEOUT) -> bool:
    """SIGKILL everything in the cgroup and wait until it is empty; True if it emptied within `timeout`.

    `cgroup.kill` (Linux 5.14+) kills every process at once, including those forking meanwhile; without it each pid
    of `cgroup.procs` gets SIGKILL, round after round, until none is left.
    """
    deadline = time.monotonic() + timeout
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        with contextlib.suppress(FileNotFoundError):
            _write(kill_file, "1")
        return wait_empty(path, deadline)
    return kill_by_signals(path, deadline)


def kill_by_signals(path: str, deadline: float) -> bool:
    """kill_all without `cgroup.kill` (before Linux 5.14): SIGKILL each pid of `cgroup.procs`, round after round
    (a process may fork between the read and the kill), until the cgroup is empty or `deadline`."""
    while signal_all(path, signal.SIGKILL):
        if wait_empty(path, min(deadline, time.monotonic() + 0.1)):
            return True
        if time.monotonic() >= deadline:
            return False
    return wait_empty(path, deadline)


def remove(path: str) -> bool:
    """rmdir the cgroup if it exists and is empty; True if it is gone. A populated one stays (logged)."""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("cannot remove the cgroup %s: %s", path, exc.strerror)
        return False


def enable_controller(parent: str, controller: str) -> None:
    """Make `controller` available to the children of `parent` (its cgroup.subtree_control); CgroupError naming the
    controller and the path when the host does not delegate it there."""
    available = _read(os.path.join(parent, "cgroup.controllers")).split()
    if controller not in available:
        raise CgroupError(f"the host does not delegate the {controller} controller to cgroup v2 at {parent} "
                          f"(available there: {' '.join(available) or 'none'})")
    if controller in _read(os.path.join(parent, "cgroup.subtree_control")).split():
        return
    try:
        _write(os.path.join(parent, "cgroup.subtree_control"), "+" + controller)
    except OSError as exc:
        hint = " (processes live in it: cgroup v2 lets only a cgroup without processes hand controllers down)" if (
            exc.errno == errno.EBUSY) else ""
        raise CgroupError(f"cannot enable the {controller} controller in {parent}: {exc.strerror}{hint}") from None


def limits_problem(tree: DaemonCgroups | None, limits: dict) -> str | None:
    """Why `limits` (option -> value; None: unset) cannot be had, naming the option; None when they can."""
    wanted = sorted(key for key, value in limits.items() if value is not None)
    if not wanted:
        return None
    if tree is None:
        return f"{wanted[0]} needs [circus] cgroup_root"
    missing = missing_controllers(tree.root, limits)
    if missing:
        return (f"{', '.join(wanted)}: the host does not delegate the {missing[0]} controller to cgroup v2 at "
                f"{tree.root}")
    return None


def missing_controllers(root: str, limits: dict) -> list[str]:
    """The controllers `limits` (option -> value, unset ones None) need that `root` does not offer."""
    try:
        available = _read(os.path.join(root, "cgroup.controllers")).split()
    except OSError:
        available = []
    return sorted({LIMIT_FILES[key][0] for key, value in limits.items() if value is not None} - set(available))


# -- the daemon's tree and the watchers' cgroups ---------------------------------------------------------------------


class WatcherCgroup:
    """The cgroup of one watcher: made on the first spawn, its limits written, emptied on stop, removed on rm."""

    def __init__(self, daemon: DaemonCgroups, name: str):
        self.daemon = daemon
        self.name = name
        self.path = os.path.join(daemon.path, watcher_dirname(name))
        self._limits: dict = {}  # what was last written, so a spawn writes again only what changed

    def prepare(self, limits: dict) -> None:
        """Make the cgroup (and the daemon's directory) if needed and write the limits that changed; CgroupError.

        Locks the daemon's directory first if the arbiter did not yet (see DaemonCgroups.lock)."""
        self.daemon.lock()
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise CgroupError(f"cannot make the cgroup {self.path}: {exc.strerror}") from None
        for key, value in limits.items():
            if self._limits.get(key, None) != value:
                self._write_limit(key, value)

    def _write_limit(self, key: str, value: str | None) -> None:
        """Write one limit (None: back to the kernel's default, where the controller was ever enabled)."""
        controller, filename = LIMIT_FILES[key]
        path = os.path.join(self.path, filename)
        if value is not None:
            self.daemon.enable(controller)
        elif not os.path.exists(path):
            self._limits[key] = value
            return  # unset, and its controller is not enabled here: nothing to reset
        try:
            _write(path, LIMIT_DEFAULTS[key] if value is None else str(value))
        except OSError as exc:
            raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None
        self._limits[key] = value

    @property
    def procs_path(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def open_procs(self) -> int:
        """A write descriptor (close-on-exec) on cgroup.procs: a child writes "0" to it to enter the cgroup."""
        try:
            return os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise CgroupError(f"cannot open {self.path}/cgroup.procs: {exc.strerror}") from None

    def pids(self) -> list[int]:
        return pids_of(self.path)

    def populated(self) -> bool:
        return is_populated(self.path)

    def kill_rest(self, timeout: float = EMPTY_TIMEOUT) -> list[int]:
        """Kill what is left in the cgroup and wait until it is empty (bounded); the pids that were left."""
        if not self.daemon.locked:
            return []  # another gcircusd's (this one could not start): not ours to touch
        left = self.pids()
        if not left and not self.populated():
            return []
        if not kill_all(self.path, timeout):
            log.error("watcher %r: its cgroup %s is still populated %.0f s after it was killed (%s)", self.name,
                      self.path, timeout, describe_pids(self.pids()))
        return left

    def kill_now(self) -> None:
        """SIGKILL everything in the cgroup without waiting (a forced shutdown; kill_rest waits)."""
        if not self.daemon.locked:
            return
        if not os.path.exists(os.path.join(self.path, "cgroup.kill")):
            signal_all(self.path, signal.SIGKILL)
            return
        with contextlib.suppress(FileNotFoundError):
            _write(os.path.join(self.path, "cgroup.kill"), "1")

    def usage(self) -> dict:
        """The cgroup's process count and memory.current (None where the memory controller is not enabled)."""
        memory = None
        with contextlib.suppress(OSError, ValueError):
            memory = int(_read(os.path.join(self.path, "memory.current")))
        return {"path": self.path, "procs": len(self.pids()), "memory_current": memory}

    def remove(self) -> bool:
        return remove(self.path)


class DaemonCgroups:
    """The daemon's directory under the root, and a WatcherCgroup per watcher name."""

    def __init__(self, root: str, dirname: str):
        self.root = root
        self.path = os.path.join(root, dirname)
        self._enabled: set[str] = set()
        self._lock_fd: int | None = None

    @classmethod
    def configure(cls, setting: str, name: str | None, config_path: str | None) -> DaemonCgroups:
        """From `[circus] cgroup_root` (auto or a path) and the daemon's name or config path; CgroupError."""
        return cls(resolve_root(setting), daemon_dirname(name, config_path))

    def prepare(self) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise CgroupError(f"cannot make the cgroup {self.path}: {exc.strerror}") from None

    def lock(self) -> None:
        """Hold an exclusive flock on the daemon's directory while gcircusd runs; CgroupError if another gcircusd
        holds it (the same [circus] name, or the same file started twice), before anything of its is touched.

        Close-on-exec, so no child keeps it: a SIGKILLed gcircusd's lock is gone with it, whatever it left running.
        """
        if self._lock_fd is not None:
            return
        self.prepare()
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno != errno.EWOULDBLOCK:
                raise CgroupError(f"cannot lock the cgroup {self.path}: {exc.strerror}") from None
            raise CgroupError(f"another gcircusd already runs with the cgroup {self.path} (the same [circus] name "
                              "or configuration file): not starting") from None
        self._lock_fd = fd

    @property
    def locked(self) -> bool:
        """This gcircusd holds the directory: what is in it is its own to stop, kill and remove."""
        return self._lock_fd is not None

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def enable(self, controller: str) -> None:
        """Hand `controller` down from the root to the watchers' cgroups (once per daemon)."""
        if controller not in self._enabled:
            self._leave_root()
            enable_controller(self.root, controller)
            enable_controller(self.path, controller)
            self._enabled.add(controller)

    def _leave_root(self) -> None:
        """If gcircusd runs in the root itself (`auto` in a container or a systemd unit with Delegate=yes), move it
        into a leaf of its own, `<daemon directory>.supervisor`, beside the daemon's directory.

        cgroup v2 hands controllers down only from a cgroup without processes (the host's root cgroup excepted), so
        a limit could not be had while gcircusd sits in the root. Only then does it move: without limits it stays
        where its service manager put it. Its leaf is not removed on exit (gcircusd is still in it): the container's
        or the unit's cgroup goes with it.
        """
        if os.getpid() not in pids_of(self.root):
            return
        leaf = self.path + ".supervisor"
        try:
            os.makedirs(leaf, exist_ok=True)
            _write(os.path.join(leaf, "cgroup.procs"), "0")
        except OSError as exc:
            raise CgroupError(f"cannot move gcircusd out of {self.root} into {leaf} (to hand controllers down): "
                              f"{exc.strerror}") from None
        log.info("gcircusd moved itself from the cgroup %s into %s, so that %s can hand controllers down", self.root,
                 leaf, self.root)

    def watcher(self, name: str) -> WatcherCgroup:
        return WatcherCgroup(self, name)

    def existing(self) -> list[str]:
        """The names of the cgroups in the daemon's directory (a previous run's included)."""
        try:
            return sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())
        except FileNotFoundError:
            return []

    def remove_if_empty(self) -> None:
        """On a clean exit: remove the watchers' empty cgroups, then the daemon's directory if nothing is left."""
        if not self.locked:
            return
        for name in self.existing():
            path = os.path.join(self.path, name)
            if not is_populated(path):
                remove(path)
        if not self.existing():
            remove(self.path)  # still locked: a daemon starting meanwhile makes a new directory
        self.unlock()


def stop_previous_run(tree: DaemonCgroups, configured: dict[str, tuple[int, float]]) -> None:
    """Before the first spawn: stop what a previous gcircusd (SIGKILLed, its children alive) left in the daemon's
    cgroups, and remove them; all of them at once, each within its own bound.

    `configured` maps a watcher's cgroup name to its (stop_signal, graceful_timeout): its processes get those, then
    SIGKILL. The cgroups of watchers no longer configured get SIGTERM and the default graceful timeout the same way.
    Every finding is logged with the pids and command lines, so no duplicate runs unnoticed.
    """
    names = tree.existing()
    if not names:
        return
    group = gevent.pool.Group()
    try:
        for name in names:
            stop_signal, grace = configured.get(name, (signal.SIGTERM, DEFAULT_GRACEFUL_TIMEOUT))
            group.spawn(_stop_previous, os.path.join(tree.path, name), name in configured, stop_signal, grace)
        group.join()
    finally:
        group.kill()


def _stop_previous(path: str, configured: bool, stop_signal: int, graceful_timeout: float) -> None:
    pids = pids_of(path)
    whose = "watcher" if configured else "watcher no longer configured"
    if pids:
        log.warning("cgroup %s (%s) still holds processes of a previous gcircusd: %s; stopping them", path, whose,
                    describe_pids(pids))
        if not stop_all(path, stop_signal, graceful_timeout):
            log.error("cgroup %s is still populated after SIGKILL: %s", path, describe_pids(pids_of(path)))
            return
    elif not configured:
        log.info("removing the empty cgroup %s of a watcher no longer configured", path)
    remove(path)
