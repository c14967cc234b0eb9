"""What a root gcircusd refuses to trust: files other users can change, and symbolic links they planted.

A root gcircusd runs what its configuration says, imports hook, plugin and stream-class modules into itself, and
opens its pidfile and the stream files as root. Whoever can change one of those files, or a directory on the way to
it (a writable directory lets its entries be replaced), could make root run their code or write where they choose.

So, when gcircusd runs as root (`enforced()`), the configuration files (the main one, its includes), the module files
it imports for hooks, plugins and stream classes, the directories a watcher's PYTHONPATH adds for hooks, and every
directory above each of them, must be writable by nobody but root and gcircusd's own user: owned by one of them, not
group- or world-writable. A directory with the sticky bit (/tmp) is the exception (others cannot replace what root
owns in it), except a directory whose files are included by a glob (`include_dir`), where a new file is enough.

The pidfile and the stream files are opened without following a symbolic link in their last component unless root
(or gcircusd's user) owns the link: a link another user planted there is refused (OSError ELOOP naming its owner).
"""
from __future__ import annotations

import errno
import os
import pwd
import stat
from grp import getgrgid


def enforced() -> bool:
    """True when gcircusd runs as root: only then are these checks made (a user's gcircusd has nothing to lose)."""
    return os.geteuid() == 0


def trusted_uids() -> set[int]:
    return {0, os.geteuid()}


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return f"{getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def other_writers(info: os.stat_result, sticky_protects: bool = True) -> str | None:
    """Who besides root and gcircusd's user can change a file or directory with this stat, in words; None if nobody."""
    if stat.S_ISDIR(info.st_mode) and sticky_protects and info.st_mode & stat.S_ISVTX:
        return None if info.st_uid in trusted_uids() else f"its owner, user {user_name(info.st_uid)}"
    if info.st_uid not in trusted_uids():
        return f"its owner, user {user_name(info.st_uid)}"
    if info.st_mode & stat.S_IWOTH:
        return "every user (it is world-writable)"
    if info.st_mode & stat.S_IWGRP:
        return f"the members of group {group_name(info.st_gid)} (it is group-writable)"
    return None


def untrusted(path: str, what: str, listed_directory: bool = False) -> str | None:
    """Why a root gcircusd must not use `path` (the first of it and the directories above it that another user can
    change), in a message naming it and who can write it; None when it may. `listed_directory`: `path` is a
    directory whose entries are all used (include_dir), so its sticky bit does not protect it."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return None  # what does not exist is reported by whoever opens it
    who = other_writers(info, sticky_protects=not listed_directory)
    if who is not None:
        return f"{what} {path} can be changed by {who}: a root gcircusd refuses it (make it root's, not writable " \
               "by group or others)"
    directory = os.path.dirname(real)
    while True:
        info = os.stat(directory)
        who = other_writers(info)
        if who is not None:
            return f"{what} {path}: the directory {directory} can be changed by {who}, who could replace it: a " \
                   "root gcircusd refuses it (make the directory root's, not writable by group or others)"
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def open_unplanted(path: str, flags: int, mode: int, what: str) -> int:
    """os.open(path, flags, mode), not following a symbolic link in the last component that another user owns
    (when enforced): OSError ELOOP naming the link's owner for that. A link root or gcircusd's user owns is followed."""
    if not enforced():
        return os.open(path, flags, mode)
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        link = os.lstat(path)
        if not stat.S_ISLNK(link.st_mode):
            raise  # too many links in the directories above: as the plain open says
    if link.st_uid not in trusted_uids():
        raise OSError(errno.ELOOP, f"{what} {path} is a symbolic link owned by user {user_name(link.st_uid)}: "
                                   "a root gcircusd does not follow it (another user may have planted it)")
    return os.open(path, flags, mode)
