"""reloadconfig: re-read the configuration file, compute what changed, and apply it without disturbing the rest.

`prepare(arbiter)` parses and validates the whole file through `Arbiter.load_from_config` (watchers and plugins are
built, endpoints checked; nothing is bound or started) and compares it with the configuration the running arbiter
was built from (`arbiter.loaded_config`, updated after each applied reload). Any error raises ConfigError before
anything changed. `apply(arbiter, plan)` then changes, in this order:

1. live `[circus]` settings (check_delay, warmup_delay, loglevel); the others are reported as needing a restart;
2. watchers whose only change is numprocesses: scaled (`set_numprocesses`); running processes are untouched;
3. watchers whose changed keys are all run-time options: `set_options` (one graceful reload: new processes first);
4. watchers with other changes: replaced (the old one stopped and removed, the new one added, started if autostart);
5. new watchers: added (started if autostart); 6. watchers gone from the file: removed (stopped);
7. plugins added, removed or changed.

Sockets (`[socket:NAME]`) are applied around those steps:

* before anything else, every new socket and every changed socket whose address changed is bound as a new
  socket object; if one cannot be bound, those already bound are closed and ConfigError is raised: nothing changed;
* a removed socket that a watcher staying in the file (or added at run time) still names is refused in `prepare`
  (Circus raises after it has already changed things: its bug 14); otherwise it is closed once the watchers using
  it were reloaded or removed;
* a changed socket with a new address: the new socket is swapped in, the watchers using it are reloaded gracefully
  (new processes get the new fd, old ones keep serving the old one until stopped), then the old socket is closed;
* a changed socket with the same address (backlog, umask, blocking...): the old socket has to be closed before the
  new one can be bound (the running workers hold the same listening socket), so its watchers are stopped, the
  socket closed and bound again, and the watchers started: connections to it are refused for that moment.

Runtime changes (incr, set) are not configuration: a watcher whose section did not change is left alone, whatever
its current numprocesses. Watchers added at run time (the `add` command) are not in the file and are left alone.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import gevent

from gcircus import dependencies, runtime_options
from gcircus.errors import ConfigError
from gcircus.options import APPLY, CIRCUS_OPTIONS, PARSE, to_names
from gcircus.sockets import CircusSocket, named_sockets

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Plan:
    config: Any  # the new gcircus.config.Config
    added: list[dict] = dataclasses.field(default_factory=list)  # watcher specs
    removed: list[str] = dataclasses.field(default_factory=list)
    scaled: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    reloaded: dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> {key: new value}
    replaced: dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> {"keys": [...], "spec": spec}
    unchanged: list[str] = dataclasses.field(default_factory=list)
    not_in_config: list[str] = dataclasses.field(default_factory=list)
    circus_changed: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    circus_applied: list[str] = dataclasses.field(default_factory=list)
    circus_needs_restart: list[str] = dataclasses.field(default_factory=list)
    # The HTTP server's settings ([http], or [circus] httpd...) before and after, when they changed: the server keeps
    # its socket and token until gcircusd restarts.
    http_changed: tuple[Any, Any] | None = None
    plugins_added: list[dict] = dataclasses.field(default_factory=list)
    plugins_removed: list[str] = dataclasses.field(default_factory=list)
    plugins_changed: list[dict] = dataclasses.field(default_factory=list)
    sockets_added: list[str] = dataclasses.field(default_factory=list)
    sockets_removed: list[str] = dataclasses.field(default_factory=list)
    sockets_changed: list[str] = dataclasses.field(default_factory=list)
    sockets_rebound: list[str] = dataclasses.field(default_factory=list)  # changed, same address: close, then bind
    socket_users: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # changed/removed -> watchers
    access_changed: bool = False  # the [access] grants differ: the new ones apply from the next request on

    def as_dict(self) -> dict:
        """The plan as JSON-able data (the `plan` field of the reloadconfig reply)."""
        return {
            "watchers": {
                "added": sorted(spec["name"] for spec in self.added),
                "removed": sorted(self.removed),
                "scaled": {name: {"numprocesses": list(pair)} for name, pair in sorted(self.scaled.items())},
                "reloaded": {name: sorted(changes) for name, changes in sorted(self.reloaded.items())},
                "replaced": {name: sorted(item["keys"]) for name, item in sorted(self.replaced.items())},
                "unchanged": sorted(self.unchanged),
                "not_in_config": sorted(self.not_in_config),
            },
            "circus": {
                "changed": {key: [_jsonable(old), _jsonable(new)]
                            for key, (old, new) in sorted(self.circus_changed.items())},
                "applied": sorted(self.circus_applied),
                "needs_restart": sorted(self.circus_needs_restart),
            },
            "http": {"changed": self.http_changed is not None, "needs_restart": self.http_changed is not None},
            "plugins": {
                "added": sorted(p["name"] for p in self.plugins_added),
                "removed": sorted(self.plugins_removed),
                "changed": sorted(p["name"] for p in self.plugins_changed),
            },
            "sockets": {
                "added": sorted(self.sockets_added),
                "removed": sorted(self.sockets_removed),
                "changed": sorted(self.sockets_changed),
                "rebound_in_place": sorted(self.sockets_rebound),
                "users": {name: sorted(users) for name, users in sorted(self.socket_users.items())},
                "needs_restart": False,  # every socket change is applied live (kept in the reply for compatibility)
            },
            "access": {"changed": self.access_changed},
        }


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# -- planning ------------------------------------------------------------------------------------------------------

def prepare(arbiter) -> Plan:
    """Parse and validate the arbiter's config file and diff it with the running one; ConfigError changes nothing.

    The file is validated by building an arbiter from it with the running arbiter's own class (whose
    `load_from_config` checks what its layer adds: endpoints, plugins); nothing of it is bound or started.
    """
    path = arbiter.config_path
    if not path:
        raise ConfigError("this arbiter was not loaded from a configuration file: nothing to reload")
    try:
        candidate = type(arbiter).load_from_config(path)
    except ConfigError:
        raise
    except (ValueError, TypeError, ImportError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    candidate.sockets.close_all()  # built, never bound: only their file descriptors to release
    new = candidate.loaded_config
    old = getattr(arbiter, "loaded_config", None)
    if old is None:
        raise ConfigError("the running configuration is unknown (not loaded from a file): nothing to compare with",
                          file=path)
    return _diff(arbiter, old, new)


def _diff(arbiter, old, new) -> Plan:
    plan = Plan(config=new)
    old_specs = {spec["name"].lower(): spec for spec in old.watchers}
    new_specs = {spec["name"].lower(): spec for spec in new.watchers}
    plugin_watchers = {spec["name"].lower() for spec in arbiter.plugin_manager.external}
    running = {w.name.lower(): w for w in arbiter.watchers}

    for key, spec in new_specs.items():
        watcher = running.get(key)
        if watcher is None:
            plan.added.append(spec)
            continue
        before = old_specs.get(key)
        if before is None:  # added at run time, now in the file: the file's version takes over
            plan.replaced[watcher.name] = {"keys": ["(added at run time)"], "spec": spec}
            continue
        changed = sorted(key for key in spec if before[key] != spec[key])
        if not changed:
            plan.unchanged.append(watcher.name)
        elif changed == ["numprocesses"]:
            plan.scaled[watcher.name] = (before["numprocesses"], spec["numprocesses"])
        elif spec["name"] == before["name"] and _settable(changed, spec):
            plan.reloaded[watcher.name] = {k: spec[k] for k in changed}
        else:
            plan.replaced[watcher.name] = {"keys": changed, "spec": spec}
    for key, watcher in running.items():
        if key in new_specs or key in plugin_watchers:
            continue
        if key in old_specs:
            plan.removed.append(watcher.name)
        else:
            plan.not_in_config.append(watcher.name)

    _diff_circus(plan, old.circus, new.circus)
    plan.access_changed = arbiter.access != new.access
    if getattr(old, "http", None) != getattr(new, "http", None):
        plan.http_changed = (old.http, new.http)
    _diff_plugins(plan, old.plugins, new.plugins)
    _diff_sockets(plan, old.sockets, new.sockets)
    _check_socket_users(arbiter, plan, new_specs)
    _check_dependencies(arbiter, plan)
    return plan


def _check_dependencies(arbiter, plan: Plan) -> None:
    """The file's watchers were checked among themselves when it loaded; the watchers added at run time stay, so
    theirs must still hold: one depending on a watcher the file removes is refused here, before anything changed."""
    staying = [arbiter.get_watcher(name) for name in plan.not_in_config]
    graph = {spec.name: (spec.depends_on, spec.priority) for spec in plan.config.watchers}
    graph.update({w.name: (to_names(w.depends_on), w.priority) for w in staying})
    try:
        dependencies.check_graph(graph)
    except dependencies.DependencyError as exc:
        raise ConfigError(f"{exc} (watcher {exc.watcher!r} was added at run time and stays; nothing was changed)",
                          file=getattr(plan.config, "path", None)) from None


def _replace_and_add(arbiter, plan: Plan) -> None:
    """Replace the changed watchers and add the new ones, together in the new file's start order: a watcher is
    (re)added after everything it depends on, which may be new or replaced too, so it starts after them."""
    replaced = {name.lower(): name for name in plan.replaced}
    added = {spec["name"].lower(): spec for spec in plan.added}
    for name in _start_order(plan.config.watchers):
        if name.lower() in replaced:
            old = replaced[name.lower()]
            log.info("reloadconfig: %s changed (%s): replacing it", old, ", ".join(plan.replaced[old]["keys"]))
            arbiter.rm_watcher(old)
            _add(arbiter, plan.replaced[old]["spec"])
        elif name.lower() in added:
            log.info("reloadconfig: adding %s", name)
            _add(arbiter, added[name.lower()])


def _start_order(specs: list) -> list[str]:
    """The names of these specs in start order (dependencies first, then priority; ties in the given order)."""
    graph = {spec["name"]: (to_names(spec["depends_on"]), spec["priority"]) for spec in specs}
    try:
        return dependencies.start_order(graph)
    except dependencies.DependencyError:  # checked on every change; never worse than the priority order
        return [name for name, _ in sorted(graph.items(), key=lambda item: -item[1][1])]


def _diff_circus(plan: Plan, old: dict, new: dict) -> None:
    """Changed [circus] keys: those the table says reloadconfig applies, and those that need a restart."""
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        plan.circus_changed[key] = (before, after)
        applied = key in CIRCUS_OPTIONS and CIRCUS_OPTIONS[key].on_change in (APPLY, PARSE)
        (plan.circus_applied if applied else plan.circus_needs_restart).append(key)


def _diff_plugins(plan: Plan, old: list[dict], new: list[dict]) -> None:
    old_plugins = {p["name"]: p for p in old}
    new_plugins = {p["name"]: p for p in new}
    for name, spec in new_plugins.items():
        if name not in old_plugins:
            plan.plugins_added.append(spec)
        elif old_plugins[name] != spec:
            plan.plugins_changed.append(spec)
    plan.plugins_removed = [name for name in old_plugins if name not in new_plugins]


def _diff_sockets(plan: Plan, old: list[dict], new: list[dict]) -> None:
    old_sockets = {s["name"].lower(): s for s in old}
    new_sockets = {s["name"].lower(): s for s in new}
    plan.sockets_added = [n for n in new_sockets if n not in old_sockets]
    plan.sockets_removed = [n for n in old_sockets if n not in new_sockets]
    plan.sockets_changed = [n for n in new_sockets if n in old_sockets and old_sockets[n] != new_sockets[n]]
    plan.sockets_rebound = [n for n in plan.sockets_changed
                            if _same_address(old_sockets[n], new_sockets[n])]


# What a socket is bound to; a change of anything else keeps the address (and needs close-then-bind). Port 0 is a
# new address each time it is bound.
_ADDRESS_KEYS = ("host", "port", "path", "family", "type", "proto", "interface")


def _same_address(old: dict, new: dict) -> bool:
    if not new.get("path") and str(new.get("port")) == "0":
        return False
    return all(old.get(key) == new.get(key) for key in _ADDRESS_KEYS)


def _spec_socket_names(spec: Any) -> set[str]:
    """Socket names a watcher spec (or a running watcher) names in cmd/args, plus its stdin_socket."""
    if isinstance(spec, Mapping):
        spec = SimpleNamespace(name=spec.get("name"), cmd=spec.get("cmd", ""), args=spec.get("args"),
                               stdin_socket=spec.get("stdin_socket"), use_sockets=spec.get("use_sockets"))
    names = named_sockets(spec)
    if spec.stdin_socket:
        names.add(str(spec.stdin_socket).lower())
    return names


def _check_socket_users(arbiter, plan: Plan, new_specs: dict) -> None:
    """Refuse removing a socket a staying watcher still names; record who uses each changed/removed socket."""
    removed = set(plan.sockets_removed)
    changed = set(plan.sockets_changed)
    users: dict[str, set[str]] = {name: set() for name in removed | changed}
    # The watchers that run after the reload: the file's, plus those added at run time (not in the file).
    staying = [(spec["name"], spec) for spec in new_specs.values()]
    staying += [(name, arbiter.get_watcher(name)) for name in plan.not_in_config]
    still_named: dict[str, list[str]] = {}
    for name, spec in staying:
        for sock in _spec_socket_names(spec) & removed:
            still_named.setdefault(sock, []).append(name)
    if still_named:
        what = "; ".join(f"[socket:{sock}] is removed but watcher(s) {', '.join(sorted(who))} still name it"
                         for sock, who in sorted(still_named.items()))
        raise ConfigError(f"{what}: remove or change those watchers in the same reload (nothing was changed)",
                          file=getattr(plan.config, "path", None))
    # Who uses them now: running watchers that name them, or that name no socket at all (they get every socket).
    for watcher in arbiter.watchers:
        named = _spec_socket_names(watcher)
        for sock in users:
            if sock in named or (not named and watcher.use_sockets):
                users[sock].add(watcher.name)
    plan.socket_users = {sock: sorted(who) for sock, who in users.items() if who}


def _settable(keys: list[str], spec: dict) -> bool:
    """True if every changed key is a run-time option whose new value `set` accepts as it is."""
    for key in keys:
        if not runtime_options.is_settable(key):
            return False
        try:
            runtime_options.parse_set(key, spec[key])
        except (ValueError, TypeError, KeyError):
            return False
    return True


# -- applying ------------------------------------------------------------------------------------------------------

def reload_from_config(arbiter, dry_run: bool = False) -> dict:
    """Validate, plan and (unless dry_run) apply; return the plan as a dict. ConfigError leaves everything as it was.

    The caller holds the arbiter's reload lock (Arbiter.reload_from_config), as for restart_from_config.
    """
    plan = prepare(arbiter)
    if not dry_run:
        apply(arbiter, plan)
    return plan.as_dict()


def check_restart(arbiter) -> None:
    """What `restart` without a name checks before its reply: the file loads and its new sockets can be bound (they
    are bound, then closed again). ConfigError says what fails; nothing is changed either way."""
    plan = prepare(arbiter)
    for sock in _bind_new_sockets(arbiter, plan).values():
        sock.close()


def restart_from_config(arbiter) -> dict:
    """`restart` of every watcher: validate and plan, bind the new sockets (ConfigError: nothing changed), stop every
    watcher, apply the plan to the stopped watchers, then start the autostart ones; return the plan as a dict.

    Should applying still fail once the watchers are stopped, they are started again as they are (the file is not
    taken as loaded), the failure is logged, and RestartFailed (a ConfigError) is raised.
    """
    plan = prepare(arbiter)
    fresh = _bind_new_sockets(arbiter, plan)  # what can fail fails here, before anything is stopped
    arbiter.stop_watchers()
    try:
        apply(arbiter, plan, fresh)
    except Exception as exc:
        log.exception("restart: applying %s failed with every watcher stopped; starting the watchers again",
                      getattr(plan.config, "path", None) or "the configuration file")
        in_use = {id(sock) for sock in arbiter.sockets.values()}
        for sock in fresh.values():
            if id(sock) not in in_use:
                sock.close()
        arbiter.start_watchers()
        raise RestartFailed(f"restart failed while applying the file ({exc}); the watchers were started again "
                            f"without it", file=getattr(plan.config, "path", None)) from exc
    arbiter.start_watchers()
    return plan.as_dict()


class RestartFailed(ConfigError):
    """`restart` without a name could not apply the file after stopping the watchers; they were started again."""


def apply(arbiter, plan: Plan, fresh: dict | None = None) -> None:
    """Apply `plan`; `fresh` are its new sockets if the caller bound them already (_bind_new_sockets)."""
    new = plan.config
    if fresh is None:
        fresh = _bind_new_sockets(arbiter, plan)  # ConfigError (nothing changed) if one cannot be bound
    _apply_circus(arbiter, plan)
    if plan.access_changed:
        log.info("reloadconfig: [access] changed: the new grants apply from the next request on")
    arbiter.access = new.access
    retired = _swap_sockets(arbiter, plan, fresh)
    order = _start_order([w.spec for w in arbiter.watchers])

    for name in [n for n in order if n in plan.scaled]:
        old, count = plan.scaled[name]
        log.info("reloadconfig: %s numprocesses %d -> %d", name, old, count)
        arbiter.get_watcher(name).set_numprocesses(count)
    for name in [n for n in order if n in plan.reloaded]:
        changes = plan.reloaded[name]
        log.info("reloadconfig: %s changed (%s): graceful reload", name, ", ".join(sorted(changes)))
        try:
            watcher = arbiter.get_watcher(name)
            if arbiter.running:  # the new processes get the sockets the new cmd/args name
                arbiter.give_sockets(watcher, _spec_for(new, name))
            watcher.set_options(changes)
        except ValueError as exc:  # checks that need the system (hooks, users) refused it: replace instead
            log.warning("reloadconfig: %s cannot be changed in place (%s): replacing it", name, exc)
            plan.replaced[name] = {"keys": sorted(changes), "spec": _spec_for(new, name)}
    _replace_and_add(arbiter, plan)
    for name in [n for n in reversed(order) if n in plan.removed]:
        log.info("reloadconfig: removing %s", name)
        arbiter.rm_watcher(name)
    _apply_plugins(arbiter, plan)
    _finish_sockets(arbiter, plan, retired, order)

    old = arbiter.loaded_config
    kept_circus = {key: old.circus.get(key) for key in plan.circus_needs_restart}
    arbiter.loaded_config = dataclasses.replace(new, circus={**new.circus, **kept_circus}, http=old.http,
                                                http_from_httpd=old.http_from_httpd)


# -- sockets -------------------------------------------------------------------------------------------------------

def _socket_specs(plan: Plan) -> dict[str, dict]:
    return {spec["name"].lower(): spec for spec in plan.config.sockets}


def _bind_new_sockets(arbiter, plan: Plan) -> dict:
    """Bind new sockets and changed ones with a new address, all or nothing, before anything else changes."""
    specs = _socket_specs(plan)
    names = plan.sockets_added + [n for n in plan.sockets_changed if n not in plan.sockets_rebound]
    fresh: dict = {}
    try:
        for name in names:
            sock = fresh[name] = CircusSocket.load_from_config(specs[name])
            if arbiter.running:
                sock.bind_and_listen()
    except (OSError, ValueError, TypeError) as exc:
        for sock in fresh.values():
            sock.close()
        raise ConfigError(f"{exc} (nothing was changed)", file=getattr(plan.config, "path", None)) from None
    return fresh


def _swap_sockets(arbiter, plan: Plan, fresh: dict) -> list:
    """Put the new socket objects in place of the old ones; return the old ones, to close after the reloads."""
    retired = []
    for name, sock in fresh.items():
        old = arbiter.sockets.get(name)
        if old is not None:
            retired.append(old)
            log.info("reloadconfig: socket %s: %s -> %s (old one closed after its watchers reloaded)",
                     name, old.location, sock.location)
        else:
            log.info("reloadconfig: socket %s added at %s", name, sock.location)
        arbiter.sockets[name] = sock
    if fresh and arbiter.running:
        for watcher in arbiter.watchers:
            arbiter.give_sockets(watcher)
    return retired


def _finish_sockets(arbiter, plan: Plan, retired: list, order: list[str]) -> None:
    """Reload the watchers of changed sockets, rebind same-address ones, close the old and removed ones."""
    done = {spec["name"].lower() for spec in plan.added} | {n.lower() for n in plan.replaced}
    done |= {n.lower() for n in plan.removed}
    by_name = {w.name.lower(): w for w in arbiter.watchers}
    specs = _socket_specs(plan)

    # Same address: the workers hold the listening socket too, so nothing else can bind it while they run.
    for name in plan.sockets_rebound:
        users = [by_name[u.lower()] for u in plan.socket_users.get(name, []) if u.lower() in by_name]
        running = [w for w in users if not w.is_stopped()] if arbiter.running else []
        log.warning("reloadconfig: socket %s changed at the same address: stopping %s, closing and binding it "
                    "again (connections are refused meanwhile)", name, ", ".join(w.name for w in running) or "-")
        gevent.joinall([gevent.spawn(w.stop) for w in running])
        old = arbiter.sockets[name]  # a changed socket was in the file the arbiter runs: it has it
        old.close()
        sock = arbiter.sockets[name] = CircusSocket.load_from_config(specs[name])
        if arbiter.running:
            try:
                sock.bind_and_listen()
            except OSError:
                log.exception("reloadconfig: socket %s cannot be bound again with its new settings: the old "
                              "settings are kept", name)
                sock = arbiter.sockets[name] = CircusSocket.load_from_config(old.config)
                sock.bind_and_listen()
            for watcher in arbiter.watchers:
                arbiter.give_sockets(watcher)
            gevent.joinall([gevent.spawn(w.start) for w in running])
        done |= {w.name.lower() for w in running}

    # A new address: the new processes get the new socket; the old ones serve the old one until they are stopped.
    moved = [name for name in plan.sockets_changed if name not in plan.sockets_rebound]
    moved_users = {user.lower() for name in moved for user in plan.socket_users.get(name, [])} - done
    rank = {name.lower(): i for i, name in enumerate(order)}
    for watcher in [by_name[key] for key in sorted(moved_users & by_name.keys(),
                                                   key=lambda k: rank.get(k, len(order)))]:
        if arbiter.running and not watcher.is_stopped():
            log.info("reloadconfig: %s uses a changed socket: graceful reload", watcher.name)
            watcher.reload(graceful=True)

    for sock in retired:
        sock.close()
    for name in plan.sockets_removed:
        sock = arbiter.sockets.pop(name, None)
        if sock is not None:
            log.info("reloadconfig: socket %s (%s) removed: closed", name, sock.location)
            sock.close()
    if plan.sockets_removed and arbiter.running:
        for watcher in arbiter.watchers:
            arbiter.give_sockets(watcher)


def _spec_for(config, name: str) -> dict:
    return next(spec for spec in config.watchers if spec["name"].lower() == name.lower())


def _add(arbiter, spec: dict) -> None:
    start = bool(spec.get("autostart", True)) and arbiter.running and not spec.get("on_demand")
    arbiter.add_watcher(start=start, **spec)


def _apply_circus(arbiter, plan: Plan) -> None:
    for key in plan.circus_applied:
        _, value = plan.circus_changed[key]
        if CIRCUS_OPTIONS[key].on_change == APPLY:  # the arbiter reads these where it uses them (parse-only: no)
            setattr(arbiter, key, value)
            if key == "loglevel" and value:  # and gcircusd's own logging follows it at once
                logging.getLogger().setLevel(str(value).upper())
    for key in plan.circus_needs_restart:
        old, new = plan.circus_changed[key]
        log.warning("reloadconfig: [circus] %s changed (%r -> %r): it applies at the next start of gcircusd",
                    key, old, new)
    if plan.http_changed is not None:
        log.warning("reloadconfig: the HTTP server's settings changed ([http], or httpd in [circus]): they apply at "
                    "the next start of gcircusd; the server keeps serving as it was")


def _apply_plugins(arbiter, plan: Plan) -> None:
    manager = arbiter.plugin_manager
    for name in plan.plugins_removed + [p["name"] for p in plan.plugins_changed]:
        manager.remove(name)
    manager.add(plan.plugins_added + plan.plugins_changed)
