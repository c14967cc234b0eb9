"""Watcher hooks: resolve dotted names, call them with Circus's signature, and contain their failures.

A hook is `hook(watcher, arbiter, hook_name, **kwargs)`. Its truthiness decides (a falsy result of `before_start`
aborts the start, as in Circus); an exception counts as failure unless the hook is in the ignore list; a hook that
runs past its timeout is abandoned and counts as a failure, so a stuck hook can never wedge its watcher.

Hooks are user code that may block (a database ping, a blocking HTTP call, time.sleep): each call runs in gevent's
thread pool, so the hub keeps supervising meanwhile and the timeout really can abandon a stuck hook. A hook should
therefore read its watcher's state but not drive it (calling watcher.stop() from a hook is not supported).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import operator
import os
import site
import sys
from collections.abc import Callable

import gevent

from gcircus import integrity
from gcircus.options import HOOKS_IGNORED_BY_DEFAULT, member_problem

log = logging.getLogger(__name__)


class HookTimeout(Exception):
    """A hook ran longer than the watcher's hook_timeout."""


def resolve_name(dotted: str) -> Callable:
    """Import `a.b.c` or `a.b:c` and return the object it names; ImportError with the name if it cannot."""
    if ":" in dotted:
        module_name, _, attr_path = dotted.partition(":")
        refuse_untrusted_module(module_name)
        return operator.attrgetter(attr_path)(importlib.import_module(module_name))
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        refuse_untrusted_module(module_name)
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            if not _names_a_missing_part(exc, module_name):
                # The module exists but failed to import (a dependency it imports is missing, for one): that is
                # the cause to report, not "cannot import" the name.
                raise ImportError(f"importing {module_name!r} failed: {exc}", name=exc.name) from exc
            continue
        try:
            return operator.attrgetter(".".join(parts[cut:]))(obj)
        except AttributeError:
            break
    raise ImportError(f"cannot import {dotted!r}")


def refuse_untrusted_module(module_name: str) -> None:
    """As root, ImportError naming the file if `module_name`, or a package above it, not imported yet, would be
    imported from a file another user can change (gcircus.integrity): its code would run inside gcircusd, as root.

    Each level is located (importlib.util.find_spec) before it is imported, so nothing of it runs before it is checked.
    """
    if not integrity.enforced():
        return
    parts = module_name.split(".")
    for cut in range(1, len(parts) + 1):
        name = ".".join(parts[:cut])
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return  # the import itself says what is missing
        if spec is None or not spec.has_location or not spec.origin:
            return
        problem = integrity.untrusted(spec.origin, "module file")
        if problem is not None:
            raise ImportError(problem, name=name)


def _names_a_missing_part(exc: ImportError, module_name: str) -> bool:
    """True if `exc` only says that `module_name` (or a package above it) does not exist."""
    missing = exc.name
    return isinstance(exc, ModuleNotFoundError) and bool(missing) and f"{module_name}.".startswith(f"{missing}.")


def add_env_pythonpath(env: dict) -> None:
    """Make hooks importable from the watcher's PYTHONPATH, as Circus does; as root, ValueError for a directory another
    user can change (a hook module directory: see gcircus.integrity)."""
    for entry in (env.get("PYTHONPATH") or "").split(os.pathsep):
        # Only new, existing directories: addsitedir appends whatever it is given, so re-adding entries on every
        # watcher build would grow gcircusd's sys.path without end.
        if entry and entry not in sys.path and os.path.isdir(entry):
            problem = integrity.untrusted(entry, "PYTHONPATH directory", listed_directory=True) \
                if integrity.enforced() else None
            if problem is not None:  # gcircusd would import hooks (and run .pth lines) from it, as root
                raise ValueError(problem)
            site.addsitedir(entry)


class Hooks:
    """The resolved hooks of one watcher."""

    def __init__(self, hooks: dict | None, timeout: float = 30.0):
        self.timeout = timeout
        self.callables: dict[str, Callable] = {}
        self.ignore_failure: set[str] = set(HOOKS_IGNORED_BY_DEFAULT)
        for name, spec in (hooks or {}).items():
            self.set(name, spec)

    def set(self, name: str, spec) -> None:
        """Install hook `name` from `(callable_or_dotted, ignore_failure)` or a bare callable/dotted name."""
        if problem := member_problem("hooks", name):
            raise ValueError(problem)
        target, ignore = (spec if isinstance(spec, (tuple, list)) else (spec, False))
        if isinstance(target, str):
            try:
                target = resolve_name(target)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(f"hook {name}: cannot import {target!r}: {exc}") from None
        if not callable(target):
            raise ValueError(f"hook {name}: {target!r} is not callable")
        self.callables[name] = target
        if ignore:
            self.ignore_failure.add(name)
        elif name not in HOOKS_IGNORED_BY_DEFAULT:
            self.ignore_failure.discard(name)

    def __contains__(self, name: str) -> bool:
        return name in self.callables

    def call(self, name: str, watcher, arbiter, notify: Callable, **kwargs):
        """Run hook `name`; return its result, or (on exception/timeout) whether its failure is ignored.

        A missing hook counts as success. `notify` (Watcher.notify) publishes hook_success or hook_failure.
        """
        hook = self.callables.get(name)
        if hook is None:
            return True
        try:
            task = gevent.get_hub().threadpool.spawn(hook, watcher=watcher, arbiter=arbiter, hook_name=name, **kwargs)
            result = task.get(timeout=self.timeout or None)
        except gevent.Timeout:
            return self._failed(name, watcher, notify, HookTimeout(f"timed out after {self.timeout:g}s"))
        except Exception as exc:  # noqa: BLE001 - a hook is user code: any failure is reported, never fatal
            return self._failed(name, watcher, notify, exc)
        notify("hook_success", name=name)
        if not result and name not in self.ignore_failure:
            log.warning("hook %s of watcher %r returned %r, which counts as a failure", name,
                        getattr(watcher, "name", "?"), result)
        return result

    def _failed(self, name: str, watcher, notify, exc: Exception) -> bool:
        ignored = name in self.ignore_failure
        log.error("hook %s of watcher %r failed%s: %s", name, getattr(watcher, "name", "?"),
                  " (ignored)" if ignored else "", exc, exc_info=not isinstance(exc, HookTimeout))
        notify("hook_failure", name=name, error=str(exc))
        return ignored
