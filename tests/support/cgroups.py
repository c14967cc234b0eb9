"""A scratch cgroup v2 directory per test, as `cgroup_root`: skipped with the reason where none is writable, and
emptied and removed afterwards (processes killed, cgroups removed bottom-up) whatever the test left."""
from __future__ import annotations

import os
import uuid

import pytest

from gcircus import cgroups


def writable_root() -> str:
    """The cgroup v2 directory `cgroup_root = auto` would pick; pytest.skip with the reason where there is none."""
    if os.geteuid() != 0:
        pytest.skip("cgroup tests move processes between cgroups: they run as root")
    try:
        return cgroups.find_root()
    except cgroups.CgroupError as exc:
        pytest.skip(f"cgroup v2 is not writable here: {exc}")


def available_controllers(path: str) -> list[str]:
    with open(os.path.join(path, "cgroup.controllers")) as f:
        return f.read().split()


def controller_or_skip(root: str, controller: str) -> None:
    """Skip, with the reason, unless the host delegates `controller` to cgroup v2 at `root`."""
    if controller not in available_controllers(root):
        pytest.skip(f"the host does not delegate the {controller} controller to cgroup v2 at {root} "
                    f"(available: {' '.join(available_controllers(root)) or 'none'})")


def empty_and_remove(path: str) -> None:
    """Kill everything in the cgroup tree at `path` and remove it, deepest cgroups first."""
    if not os.path.isdir(path):
        return
    for directory, subdirs, _ in os.walk(path, topdown=False):
        for sub in subdirs:
            child = os.path.join(directory, sub)
            cgroups.kill_all(child, timeout=10)
            os.rmdir(child)
    cgroups.kill_all(path, timeout=10)
    os.rmdir(path)


class ScratchRoot:
    """`path`: a fresh cgroup under the writable root, to give gcircusd as cgroup_root; `mount_root`: that root."""

    def __init__(self):
        self.mount_root = writable_root()
        self.path = os.path.join(self.mount_root, f"gcircus-test-{uuid.uuid4().hex[:10]}")
        os.mkdir(self.path)

    def daemon_dirs(self) -> list[str]:
        return sorted(e.path for e in os.scandir(self.path) if e.is_dir())

    def only_daemon_dir(self) -> str:
        dirs = self.daemon_dirs()
        assert len(dirs) == 1, dirs
        return dirs[0]

    def relative(self, path: str) -> str:
        """`path` as /proc/PID/cgroup shows it (relative to the cgroup2 mount gcircusd's tree is on)."""
        mount = next(m for m in sorted(cgroups.cgroup2_mounts(), key=len, reverse=True)
                     if path.startswith(m.rstrip("/") + "/"))
        return path[len(mount.rstrip("/")):]

    def close(self) -> None:
        """Kill and remove everything under the scratch cgroup (again: a no-op once done)."""
        empty_and_remove(self.path)
