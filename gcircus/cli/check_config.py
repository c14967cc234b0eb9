"""`gcircusd --check-config FILE`: what a valid configuration would run, said without running any of it.

The file is loaded as gcircusd loads it (every watcher, socket and plugin built and checked, so a file that passes
here starts, short of what only the start can tell: a port in use, a command not found), then described. Nothing is
started, bound or written: no pidfile, no log file, no stream file; sockets are described, never bound.
"""
from __future__ import annotations

import shlex


def describe(arbiter) -> str:
    """The watchers in start order, the sockets and the plugins of an arbiter that was loaded but not started."""
    lines = [f"{arbiter.config_path}: configuration is valid", "", "watchers (in start order):"]
    watchers = arbiter.iter_watchers()
    lines += [line for watcher in watchers for line in _watcher(watcher)] or ["  (none)"]
    lines += ["", "sockets:"]
    lines += [f"  {name}: {sock.location}" for name, sock in sorted(arbiter.sockets.items())] or ["  (none)"]
    lines += ["", "plugins:"]
    lines += [f"  {plugin['name'].removeprefix('plugin:')}: {plugin['use']}" for plugin in arbiter.plugins] or \
        ["  (none)"]
    return "\n".join(lines)


def _watcher(watcher) -> list[str]:
    """`  name: N processes: command line`, then the readiness, health and dependencies it declares."""
    lines = [f"  {watcher.name}: {watcher.numprocesses} process{'' if watcher.numprocesses == 1 else 'es'}: "
             f"{command_line(watcher.cmd, watcher.args)}"]
    details = [("ready", watcher.ready), ("health", watcher.health),
               ("depends_on", ", ".join(watcher.depends_on) if not isinstance(watcher.depends_on, str)
                else watcher.depends_on)]
    for key, value in details:
        if value and str(value) != "none":
            lines.append(f"    {key} = {value}")
    if not watcher.autostart:
        lines.append("    autostart = false")
    return lines


def command_line(cmd: str, args) -> str:
    """The command as configured, `$(circus.*)` placeholders left as written (they are expanded at each spawn)."""
    if isinstance(args, (list, tuple)):
        return " ".join([cmd, shlex.join(str(arg) for arg in args)]) if args else cmd
    return f"{cmd} {args}" if args else cmd
