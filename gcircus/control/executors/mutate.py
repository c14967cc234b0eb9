"""incr, decr, add, rm, set: commands that change which watchers exist and how they are configured.

Every change to a watcher goes through that watcher's lock (in Watcher), so these compose with a stop or restart in
progress: they wait their turn instead of failing as Circus's global lock makes them. What can be checked without
the lock (properties, option keys and values, users, hooks) is checked before anything changes, so an invalid
request is answered with errno 3 and leaves everything as it was.
"""
from __future__ import annotations

from gcircus import runtime_options
from gcircus.arbiter import DuplicateWatcher
from gcircus.control import ownership
from gcircus.control.executors.base import Deferred, executes, get_watcher
from gcircus.wire.errors import CommandError, MessageError


def _limit(arbiter, props):
    """Who the watchers of this request may run as: the endpoint owner's rights on its endpoint, else the limits of
    the request's sender (executors.base.Props.run_as); None for no limit."""
    return ownership.owner_of(arbiter) or getattr(props, "run_as", None)


def _parse_options(options: dict, parse) -> dict:
    """Convert every option first; the first bad key or value is a MessageError and nothing is applied."""
    converted = {}
    for key, value in options.items():
        try:
            converted[key] = parse(key, value)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
    return converted


def _executes_count_change(method: str) -> None:
    """Register the executor of incr or decr: `method` is the Watcher method of the same name."""
    @executes(method)
    def change_count(arbiter, props):
        watcher = get_watcher(arbiter, props["name"])
        if watcher.singleton:
            return {"numprocesses": watcher.numprocesses, "singleton": True}
        change, nb = getattr(watcher, method), props["nb"]
        return Deferred(lambda: {"numprocesses": change(nb)})


_executes_count_change("incr")
_executes_count_change("decr")


@executes("add")
def add(arbiter, props):
    name = props["name"]
    if not name.strip():
        raise MessageError("a watcher needs a non-empty name")
    options = dict(props["options"] or {})
    if "cmd" in options:
        raise MessageError("'cmd' is a property of add, not an option")
    if props["args"] is not None:
        if "args" in options:
            raise MessageError("'args' is given both as a property and as an option")
        options["args"] = props["args"]
    limit = _limit(arbiter, props)
    options = ownership.with_default_uid(limit, options)
    ownership.check_add(limit, _parse_options(options, runtime_options.parse))
    try:
        kwargs = runtime_options.watcher_kwargs(options)
        watcher = arbiter.add_watcher(name, runtime_options.parse("cmd", props["cmd"]), **kwargs)
    except DuplicateWatcher:
        raise CommandError(f"{name!r} already exist") from None  # circusd's words, errno 5
    except (ValueError, TypeError) as exc:
        raise MessageError(str(exc)) from None
    if props["start"]:
        return Deferred(watcher.start)
    return None


@executes("rm")
def rm(arbiter, props):
    """A watcher others depend on is not removed: they would wait for it forever. The error names them."""
    dependents = arbiter.dependents_of(get_watcher(arbiter, props["name"]), recursive=False)
    if dependents:
        names = ", ".join(w.name for w in dependents)
        raise MessageError(f"cannot remove {props['name']}: {names} depend{'s' if len(dependents) == 1 else ''} "
                           f"on it (depends_on); remove {'it' if len(dependents) == 1 else 'them'} first")
    try:
        watcher = arbiter.unregister_watcher(props["name"])
    except KeyError:
        raise MessageError(f"program {props['name']} not found") from None
    nostop = props["nostop"]
    return Deferred(lambda: arbiter.finish_removal(watcher, nostop))


@executes("set")
def set_options(arbiter, props):
    watcher = get_watcher(arbiter, props["name"])
    changes = _parse_options(props["options"], runtime_options.parse_set)
    ownership.check_set(_limit(arbiter, props), watcher, changes)
    try:
        if "depends_on" in changes:  # a name no watcher has, or a cycle
            arbiter.check_dependencies(arbiter.watchers, {watcher.name: changes["depends_on"]})
        watcher.check_options(changes)
    except ValueError as exc:
        raise MessageError(str(exc)) from None

    def guard():  # again under the watcher's lock: a reloadconfig may have changed who it runs as meanwhile
        ownership.check_set(_limit(arbiter, props), watcher, changes)

    def apply():
        try:
            watcher.apply_options(changes, guard)  # converted once, above
        except ValueError as exc:  # the watcher changed meanwhile (checked again under its lock)
            raise MessageError(str(exc)) from None
    return Deferred(apply)
