"""What a child runs before its command, so that it sets its parent-death signal and enters its cgroup without
Python running between its fork and its exec.

gcircusd spawns on CPython's C fork/exec path, a vfork: the hub waits only for the child's exec. A preexec function
would force a full fork and run the interpreter in the child, about 1.5 ms of the hub's time per spawn. Two steps
must still happen in the child: PR_SET_PDEATHSIG (the kernel clears it in every forked child) and the move into the
watcher's cgroup. So the child first execs a launcher that does them and then execs the command:

- `gcircus-launch` (gcircus/native/launch.c, built by setup.py when a C compiler is present): one exec of a small
  static program. Measured spawning 2000 `sleep`s on this 2-core machine: 0.68 ms of CPU per spawn against 0.52 ms
  for the command alone;
- without it, util-linux's `setpriv --pdeathsig SIG -- /bin/sh -c '...'`: two execs, 1.23 ms per spawn;
- a spawn that needs a preexec step anyway (rlimits, a readiness descriptor, `executable`) does both steps there,
  and so does a child of another user that enters a cgroup: it does so as root, before the uid switch (see plan).

Both launchers close the window the kernel leaves: the parent-death signal is only sent if the parent dies after the
prctl, so each checks, after arming it, that its parent is still gcircusd, and signals itself otherwise. Neither ever
runs the command outside its cgroup: exit 125 and a message on the child's stderr instead.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import signal

# The native launcher, where setup.py builds it (in place for an editable install, in the wheel otherwise).
NATIVE_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "gcircus-launch")
# Set to "shell" to use setpriv and /bin/sh even where gcircus-launch is built (the fallback's own tests).
LAUNCHER_ENV = "GCIRCUS_LAUNCHER"
# What a child may be running before its command (the names /proc shows meanwhile): see Process.program_shown.
LAUNCHER_PROGRAMS = frozenset({os.path.basename(NATIVE_LAUNCHER), "setpriv", "sh"})
# Exit status of either launcher when the child could not enter its cgroup (the command never ran).
CGROUP_PLACEMENT_FAILED = 125

# The shell launcher's steps, run by /bin/sh in the child before it execs the command ("$@").
_PARENT_CHECK = '[ "$PPID" = {parent_pid} ] || kill -{signum} $$; '
_CGROUP_STEP = (f'echo 0 > "$0" || {{ echo "gcircus: cannot enter the cgroup $0: the command was not started" >&2; '
                f'exit {CGROUP_PLACEMENT_FAILED}; }}; ')


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """How one spawn sets its parent-death signal and enters its cgroup (see `plan`)."""

    prefix: list[str] | None = None  # the argv to run before the command; None: exec the command itself
    pass_fds: tuple[int, ...] = ()  # descriptors the prefix needs in the child (the cgroup's cgroup.procs)
    preexec: bool = False  # the preexec step must do them (it gets the cgroup descriptor)


def plan(*, can_skip_preexec: bool, other_user: bool, pdeathsig, parent_pid: int, cgroup_fd: int | None,
         cgroup_procs: str | None, keep_pwd: bool) -> LaunchPlan:
    """The cheapest way for a child to set `pdeathsig` and enter the cgroup whose cgroup.procs (`cgroup_procs`)
    gcircusd opened as `cgroup_fd`.

    `can_skip_preexec`: the spawn needs no preexec step for anything else. `other_user`: the child switches user or
    group before it execs. `keep_pwd`: the child's environment sets PWD (a shell would export its own otherwise).
    """
    if not pdeathsig and cgroup_fd is None:
        return LaunchPlan()
    if not can_skip_preexec or (cgroup_fd is not None and other_user):
        # Another user's child enters its cgroup in the preexec step, as root before the uid switch: a launcher
        # would hold gcircusd's cgroup.procs descriptor while running as that user, whose other processes could
        # take it (pidfd_getfd, ptrace) and move any process into the cgroup with gcircusd's rights; and kernels
        # before 5.16 check the writer's rights, not the opener's.
        return LaunchPlan(preexec=True)
    native = native_launcher(other_user)
    if native is not None:
        fd = -1 if cgroup_fd is None else cgroup_fd
        prefix = [native, str(int(pdeathsig or 0)), str(parent_pid), str(fd), cgroup_procs or "", "--"]
        return LaunchPlan(prefix, () if cgroup_fd is None else (cgroup_fd,))
    setpriv = setpriv_prefix(pdeathsig) if pdeathsig else None
    if pdeathsig and setpriv is None:
        return LaunchPlan(preexec=True)
    procs_path = None if cgroup_fd is None else cgroup_procs
    return LaunchPlan(shell_launcher(setpriv, pdeathsig, parent_pid, procs_path, keep_pwd))


@functools.cache
def native_launcher(other_user: bool = False) -> str | None:
    """The path of gcircus-launch if it was built and may be used, else None; looked up once per kind of child.

    A child that switched to another user execs it as that user: it is used for such a child only if anyone may
    reach and run it (a checkout under a private home directory may not be), so the spawn never fails for that.
    """
    if os.environ.get(LAUNCHER_ENV) == "shell":
        return None
    try:
        path = os.path.realpath(NATIVE_LAUNCHER)  # the directories to check are the real ones, not a symlink's
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            return None
        if other_user and not all(os.stat(part).st_mode & 0o001 for part in _path_and_parents(path)):
            return None
    except OSError:
        return None
    return path


def _path_and_parents(path: str) -> list[str]:
    """`path` and every directory above it, up to /."""
    found = [path]
    while (parent := os.path.dirname(found[-1])) != found[-1]:
        found.append(parent)
    return found


def describe() -> str | None:
    """What gcircusd should log at start about its launcher, or None when the native one is in use."""
    if native_launcher() is not None:
        return None
    if os.environ.get(LAUNCHER_ENV) == "shell":
        why = f"{LAUNCHER_ENV}=shell is set"
    else:
        why = f"{NATIVE_LAUNCHER} was not built (no C compiler when gcircus was installed)"
    how = "setpriv and /bin/sh" if _setpriv() else "a preexec step (no util-linux setpriv with --pdeathsig either)"
    return (f"{why}: children with a parent-death signal or a cgroup start through {how}, "
            f"which costs about twice the CPU per spawn")


@functools.cache
def _setpriv() -> str | None:
    """The path of a setpriv that knows --pdeathsig (util-linux 2.33+), or None; looked up once."""
    import shutil  # (only the fallback launcher needs it: not imported at every start)

    path = shutil.which("setpriv", path=os.defpath + os.pathsep + "/usr/bin:/bin:/usr/sbin:/sbin")
    try:
        with open(path or "", "rb") as f:
            return path if b"pdeathsig" in f.read() else None
    except OSError:
        return None


def setpriv_prefix(signum) -> list[str] | None:
    """`setpriv --pdeathsig SIG --` (util-linux), or None without a setpriv that knows it or for a signal without a
    name. setpriv alone leaves the window described in the module docstring: see shell_launcher."""
    setpriv = _setpriv() if signum else None
    if setpriv is None:
        return None
    try:
        name = signal.Signals(int(signum)).name
    except ValueError:
        return None
    return [setpriv, "--pdeathsig", name[3:], "--"]


def shell_launcher(setpriv: list[str] | None, signum, parent_pid: int, procs_path: str | None,
                   keep_pwd: bool = False) -> list[str] | None:
    """The fallback launcher's argv: `setpriv --pdeathsig SIG -- /bin/sh -c '[ "$PPID" = PARENT ] || kill -SIG $$;
    [echo 0 > cgroup.procs || exit 125;] exec "$@"'`; None if there is nothing to do.

    One shell does both steps, so the fallback costs two execs (setpriv, sh) in the child and none in the hub. The
    shell exports PWD to the command: unset again unless the child's environment has it (`keep_pwd`), so its
    environment is exactly the one configured.
    """
    script = _PARENT_CHECK.format(parent_pid=parent_pid, signum=int(signum)) if setpriv else ""
    if procs_path is not None:
        script += _CGROUP_STEP
    if not script:
        return None
    script += "" if keep_pwd else "unset PWD; "
    return [*(setpriv or []), "/bin/sh", "-c", script + 'exec "$@"', procs_path or "gcircus-launcher"]
