"""Placeholder expansion in configuration values.

Two separate mechanisms exist, both inherited from Circus:

* ``$(circus.X)`` / ``((circus.X))`` placeholders, filled from a mapping of
  known values (the file's own values of :data:`FILE_PLACEHOLDERS` as it is
  read, then the environment at load time; the worker id and socket fds at
  spawn time). Unknown placeholders are left in place so that a later stage
  can fill them.
* ``$NAME`` references inside ``[env]`` values, filled from an environment.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_CIRCUS_VAR = re.compile(r"\$\(circus\.([\w.-]+)\)|\(\(circus\.([\w.-]+)\)\)", re.IGNORECASE)
_ENV_VAR = re.compile(r"\$([A-Z][A-Z0-9_]*)")


def _flatten(mapping: Mapping) -> dict[str, str]:
    """Lowercased ``circus.<key>`` / ``circus.<key>.<subkey>`` names -> value.

    Nested dicts are flattened one level with lowercased subkeys, like Circus,
    so ``env`` keys differing only in case collide (the last one wins).
    """
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            for subkey, subvalue in value.items():
                flat[f"{key}.{subkey}".lower()] = str(subvalue)
        else:
            flat[str(key).lower()] = str(value)
    return flat


def expand_circus_vars(text: str, mapping: Mapping) -> str:
    """Replace ``$(circus.X)`` and ``((circus.X))`` in *text* from *mapping*.

    Names match case-insensitively; unknown names are left untouched so that
    spawn-time values such as ``$(circus.wid)`` survive a load-time pass.
    """
    if "circus." not in text.lower():
        return text
    flat = _flatten(mapping)

    def replace(match: re.Match) -> str:
        name = (match.group(1) or match.group(2)).lower()
        return flat.get(name, match.group(0))

    return _CIRCUS_VAR.sub(replace, text)


def expand_env_value(value: str, environ: Mapping[str, str]) -> str:
    """Replace ``$NAME`` references (uppercase names only) from *environ*.

    Like Circus, an unset variable becomes the empty string and lowercase
    ``$name`` is left alone. Unlike Circus, the caller passes ``os.environ``
    overlaid with the ``[env]`` entries defined earlier, so ``B = $A/bin``
    can build on an earlier ``A`` of the same file (Circus only consults its
    own process environment there).
    """
    if "$" not in value:
        return value
    return _ENV_VAR.sub(lambda m: environ.get(m.group(1), ""), value)


@dataclass(frozen=True)
class FilePlaceholder:
    """A ``$(circus.NAME)`` that gcircus adds to Circus's: filled in every value of an ini file as it is read."""

    name: str
    meaning: str
    value: Callable[[str], str]  # from the absolute path of the file being read


# gcircus additions (Circus has no such names and would leave them as written). They exist so that a config can
# name its own files and the interpreter gcircusd runs under, whatever directory gcircusd is started from and
# whatever is on PATH: relative paths elsewhere resolve against gcircusd's working directory, as in Circus.
FILE_PLACEHOLDERS = (
    FilePlaceholder("config_dir", "the directory of the ini file the value is written in (for an included file, "
                    "that file's own directory)", os.path.dirname),
    FilePlaceholder("python", "the Python interpreter gcircusd runs under (its sys.executable)",
                    lambda path: sys.executable),
)


def expand_file_placeholders(text: str, path: str) -> str:
    """Replace the :data:`FILE_PLACEHOLDERS` in *text*, a value read from the ini file at absolute *path*."""
    if "circus." not in text.lower():
        return text
    return expand_circus_vars(text, {p.name: p.value(path) for p in FILE_PLACEHOLDERS})
