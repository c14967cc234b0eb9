"""Load a Circus-compatible ini file into validated, typed plain data.

Reading happens in two steps. ``_scan`` applies the Circus ini dialect line
by line (``=``/``:`` separators, ``;`` comments only after whitespace, ``rem``
lines, continuation lines, first definition wins) because configobj's own
grammar differs on each of those points: it treats ``#`` inside values as a
comment, unquotes values, nests ``[[sections]]`` and rejects duplicate keys.
The scanned records are then handed to configobj in an escaped form that its
grammar cannot misread, and configobj assembles the sections.

The result is a :class:`Config`: every option typed by the table in
:mod:`gcircus.options`, every mistake reported as a :class:`ConfigError`
naming the file, section, option and value.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from configobj import ConfigObj, ConfigObjError

from gcircus import config_sections, dependencies, grants, integrity
from gcircus import options as opts
from gcircus.errors import ConfigError, InvalidValue, quote_value, shorten
from gcircus.expand import expand_circus_vars, expand_env_value, expand_file_placeholders
from gcircus.suggest import closest
from gcircus.watcher_spec import TYPO_CUTOFF, WatcherSpec

log = logging.getLogger("gcircus.config")

FLAPPING_PLUGIN_SUFFIX = "flapping.Flapping"
# Largest configuration file, and largest main file plus includes, gcircus reads: parsing takes several times the
# file's size in memory, and a real configuration is a few KiB.
MAX_CONFIG_FILE_SIZE = 4 << 20
MAX_CONFIG_TOTAL_SIZE = 16 << 20


@dataclass
class Config:
    """Everything gcircusd needs from a configuration file."""

    path: str
    circus: dict
    watchers: list[WatcherSpec]
    sockets: list[dict]
    plugins: list[dict]
    env: dict
    flapping: dict
    # Defaults a watcher added at run time (the `add` command) takes from this file, as configured ones did.
    watcher_defaults: dict = field(default_factory=dict)
    access: grants.Grants = field(default_factory=grants.Grants)  # the [access] section
    # The HTTP server's settings ([http], or Circus's httpd options), None when it is off.
    http: dict | None = None
    http_from_httpd: bool = False  # they come from [circus] httpd, httpd_host and httpd_port (no [http] section)


@dataclass
class Entry:
    """One option value and where it was defined."""

    value: str
    file: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    entries: dict[str, Entry] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading

_SECTION_LINE = re.compile(r"\[(?P<name>.+)\]")
_OPTION_LINE = re.compile(r"(?P<key>.*?)\s*(?P<sep>[=:])")
# [access] keys hold a colon (`user:deploy = operate`): there, only `=` separates a key from its value.
_ACCESS_OPTION_LINE = re.compile(r"(?P<key>.*?)\s*(?P<sep>=)")
_INLINE_COMMENT = re.compile(r"\s;")


def _scan(text: str, path: str) -> dict[str, Section]:
    """Apply the Circus ini dialect to *text*; the first definition of a key wins."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    last: Entry | None = None  # target of continuation lines; None after a skipped duplicate
    in_option = False
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line[0] in "#;":
            continue
        if line[0] in "rR" and line.split(None, 1)[0].lower() == "rem":
            continue
        if line[0].isspace() and current is not None and in_option:
            extra = line.strip()
            if extra and last is not None:
                last.value = f"{last.value}\n{extra}"
            continue
        match = _SECTION_LINE.match(line)
        if match:
            name = match.group("name")
            current = sections.setdefault(name, Section(name, path, lineno))
            in_option, last = False, None
            continue
        if current is None:
            raise ConfigError(f"line {lineno}: option outside of any [section]: {quote_value(line.strip())}",
                              file=path, line=lineno)
        match = (_ACCESS_OPTION_LINE if current.name == "access" else _OPTION_LINE).match(line)
        if match is None or not match.group("key").strip():
            raise ConfigError(f"line {lineno}: expected 'name = value', got {quote_value(line.strip())}",
                              file=path, section=current.name, line=lineno)
        key, value = match.group("key").strip(), line[match.end():]
        comment = _INLINE_COMMENT.search(value)
        if comment:
            value = value[:comment.start()]
        value = value.strip()
        if value == '""':
            value = ""
        in_option = True
        if key in current.entries:
            last = None
        else:
            last = current.entries[key] = Entry(value, path, lineno)
    return sections


def _escape(text: str) -> str:
    # configobj must see every name and value as plain opaque text.
    return quote(text, safe="")


def _assemble(sections: dict[str, Section], path: str) -> dict[str, Section]:
    """Let configobj build the section structure from the scanned records."""
    lines = []
    for section in sections.values():
        lines.append(f"[{_escape(section.name)}]")
        lines.extend(f"{_escape(k)} = {_escape(e.value)}" for k, e in section.entries.items())
    try:
        parsed = ConfigObj(lines, list_values=False, interpolation=False, raise_errors=True,
                           write_empty_values=True, default_encoding="utf-8")
    except ConfigObjError as exc:  # pragma: no cover - the escaped input is always well formed
        raise ConfigError(f"cannot parse: {exc}", file=path) from exc
    result: dict[str, Section] = {}
    for escaped_name, values in parsed.items():
        original = sections[unquote(escaped_name)]
        section = result[original.name] = Section(original.name, original.file, original.line)
        for escaped_key, value in values.items():
            key = unquote(escaped_key)
            section.entries[key] = Entry(unquote(value), path, original.entries[key].line)
    return result


def _read_text(path: str, budget: int, what: str) -> str:
    """The file's text, refused (ConfigError naming it) past MAX_CONFIG_FILE_SIZE or the `budget` left, or, when
    gcircusd runs as root, if another user can change it or a directory above it (gcircus.integrity).

    At most one byte more than the limit is ever read, whatever the file is (a FIFO or /dev/zero included).
    """
    limit = min(MAX_CONFIG_FILE_SIZE, budget)
    if integrity.enforced():
        problem = integrity.untrusted(path, what)
        if problem is not None:
            raise ConfigError(problem, file=path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            if limit < MAX_CONFIG_FILE_SIZE:
                raise ConfigError(f"the configuration files together are larger than {MAX_CONFIG_TOTAL_SIZE} bytes "
                                  f"(the limit); this include is where the limit was passed", file=path)
            raise ConfigError(f"the configuration file is larger than {MAX_CONFIG_FILE_SIZE} bytes (the limit)",
                              file=path)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the configuration file {quote_value(path)} does not exist", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file: {exc}", file=path) from None


def _read_file(path: str, budget: int = MAX_CONFIG_TOTAL_SIZE, what: str = "configuration file"
               ) -> tuple[dict[str, Section], int]:
    """The file's sections, and how many bytes of the total budget it used."""
    text = _read_text(path, budget, what)
    sections = _assemble(_scan(text, path), path)
    # $(circus.config_dir) and $(circus.python) belong to the file a value is written in, so they are filled now,
    # before includes merge sections from several files.
    for section in sections.values():
        for entry in section.entries.values():
            entry.value = expand_file_placeholders(entry.value, os.path.abspath(path))
    return sections, len(text.encode("utf-8"))


def _merge(into: dict[str, Section], other: dict[str, Section]) -> None:
    """Add *other*'s sections and keys to *into*, keeping *into*'s definitions."""
    for name, section in other.items():
        target = into.setdefault(name, Section(name, section.file, section.line))
        for key, entry in section.entries.items():
            target.entries.setdefault(key, entry)


def _include_paths(circus: Section | None, main: str) -> list[str]:
    """Files named by the main file's include/include_dir, in a stable order."""
    if circus is None:
        return []
    base = os.path.dirname(main)
    found: list[str] = []
    patterns = []
    if "include" in circus.entries:
        patterns += circus.entries["include"].value.split()
    if "include_dir" in circus.entries:
        patterns += [os.path.join(d, "*.ini") for d in circus.entries["include_dir"].value.split()]
    for pattern in patterns:
        pattern = expand_circus_vars(pattern, {"env": dict(os.environ)})
        full = os.path.join(base, os.path.expanduser(pattern))
        _check_include_directory(full)
        matches = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        if not matches:
            log.warning("%s does not lead to any config. Make sure include paths are relative to "
                        "the main config file", quote_value(pattern))
        found += [os.path.abspath(p) for p in matches]
    return found


def _check_include_directory(pattern: str) -> None:
    """As root, ConfigError if another user can add a file to the directory an include glob lists (even a sticky one:
    a new file is enough)."""
    directory, name = os.path.split(pattern)
    if not integrity.enforced() or not glob.has_magic(name) or glob.has_magic(directory):
        return
    problem = integrity.untrusted(directory, "include directory", listed_directory=True)
    if problem is not None:
        raise ConfigError(problem, section="circus")


def _read_all(path: str) -> dict[str, Section]:
    sections, used = _read_file(path)
    seen = {path}
    for include in _include_paths(sections.get("circus"), path):
        if include not in seen:
            seen.add(include)
            included, size = _read_file(include, MAX_CONFIG_TOTAL_SIZE - used, "included file")
            used += size
            _merge(sections, included)
    # A section with no keys is ignored, as in Circus; [DEFAULT] then reaches every other section.
    sections = {name: s for name, s in sections.items() if s.entries}
    default = sections.pop("DEFAULT", None)
    if default is not None:
        for section in sections.values():
            for key, entry in default.entries.items():
                section.entries.setdefault(key, entry)
    return sections


# --------------------------------------------------------------------------- typing helpers

def _error(reason: str, section: Section, key: str | None = None, entry: Entry | None = None,
           value: str | None = None, suggestion: str | None = None) -> ConfigError:
    return ConfigError(reason, file=entry.file if entry else section.file, section=section.name,
                       option=key, value=value, suggestion=suggestion,
                       line=entry.line if entry else section.line)


def _convert(convert: Any, raw: str, section: Section, key: str, entry: Entry) -> Any:
    try:
        return convert(raw)
    except opts.UnknownStreamClass as exc:
        raise _error("unknown stream class", section, key, entry, raw, suggestion=exc.suggestion) from None
    except InvalidValue as exc:
        raise _error(exc.reason, section, key, entry, raw) from None
    except ValueError as exc:
        raise _error(str(exc), section, key, entry, raw) from None


def _unknown(section: Section, key: str, entry: Entry, kind: str, cutoff: float = 0.8) -> None:
    """Raise for a likely typo of a known option, otherwise log and ignore the key."""
    suggestion = opts.suggest(key, kind, cutoff)
    if suggestion:
        raise _error(f"unknown option {quote_value(key)}", section, key, entry, entry.value, suggestion=suggestion)
    log.warning("%s: [%s] ignoring unknown option %s", entry.file, shorten(section.name), quote_value(key))


# --------------------------------------------------------------------------- sections

def _add_env(env: dict[str, str], section: Section, circus_vars: bool = False) -> dict[str, str]:
    """Add an env section's entries to `env`, with $VAR (and, for [env], $(circus.env.X)) expanded.

    Both see os.environ plus the entries of `env` so far (Circus only consults os.environ here). A name or value
    exec would refuse is refused here, with its place.
    """
    for key, entry in section.entries.items():
        seen = {**os.environ, **env}
        value = expand_circus_vars(entry.value.strip(), {"env": seen}) if circus_vars else entry.value.strip()
        value = _convert(opts.check_exec_text, expand_env_value(value, seen), section, key, entry)
        env[_convert(opts.check_env_name, key.strip(), section, key, entry)] = value
    return env


def _load_table(section: Section, kind: str, mapping: dict, values: dict, unknown=None) -> dict:
    """Convert each entry of `section` with the `kind` table into `values`; other keys go to `unknown(key, raw)`,
    else are refused as typos or ignored with a warning (see _unknown)."""
    for key, entry in section.entries.items():
        option = opts.OPTIONS[kind].get(key)
        raw = expand_circus_vars(entry.value, mapping)
        if option is not None:
            values[key] = _convert(option.parse, raw, section, key, entry)
        elif unknown is not None:
            unknown(key, raw)
        else:
            _unknown(section, key, entry, kind)
    return values


def _load_circus(section: Section | None, mapping: dict) -> dict:
    if section is None:
        return opts.defaults("circus")
    circus = _load_table(section, "circus", mapping, opts.defaults("circus"))
    if "stats_endpoint" in section.entries and not circus["statsd"]:
        # Circus's examples turn stats on with a stats_endpoint line alone, so circusd runs its stats for either.
        if "statsd" in section.entries:
            log.warning("%s: [circus] stats_endpoint is set, so stats are published although statsd is false "
                        "(as circusd does)", section.file)
        circus["statsd"] = True
    return circus


def _load_http(section: Section | None, circus: dict, mapping: dict) -> dict | None:
    """[http] typed by its table; without the section, Circus's `httpd = true` asks for it on httpd_host:httpd_port.
    None: no HTTP server."""
    if section is not None:
        return _load_table(section, "http", mapping, opts.defaults("http"))
    if not circus["httpd"]:
        return None
    host = circus["httpd_host"]
    return {**opts.defaults("http"), "bind": f"[{host}]:{circus['httpd_port']}" if ":" in host else
            f"{host}:{circus['httpd_port']}"}


def _load_socket(section: Section, mapping: dict) -> dict:
    sock = _load_table(section, "socket", mapping,
                       {"name": section.name.split(":", 1)[1].lower(), **opts.defaults("socket")})
    if sock["path"]:
        sock["family"] = int(socket.AF_UNIX)
    elif sock["family"] == socket.AF_UNIX:
        entry = section.entries.get("family")
        raise _error("family AF_UNIX needs a 'path'", section, "family", entry, entry.value if entry else None)
    return sock


def _load_plugin(section: Section, mapping: dict) -> dict:
    config: dict[str, str] = {}
    plugin = _load_table(section, "plugin", mapping, {"name": section.name, **opts.defaults("plugin"),
                                                      "config": config}, config.__setitem__)
    if not plugin["use"]:
        raise _error("missing required option 'use' (the plugin class)", section)
    return plugin


def _load_access(section: Section | None) -> grants.Grants:
    """The [access] section's grants. An unknown key is refused, not ignored: a misspelt grant would silently leave
    a user without the access the operator meant, or a wildcard wider than meant."""
    result = grants.Grants()
    if section is None:
        return result
    for key, entry in section.entries.items():
        option = opts.get_option(key, "access")
        if option is None:
            raise _error(f"unknown option {quote_value(key)} (keys are {grants.KEYS_HELP})", section, key, entry,
                         entry.value)
        value = _convert(option.parse, entry.value, section, key, entry)
        try:
            result = grants.with_grant(result, key, value)
        except grants.UnknownName as exc:
            log.warning("%s:%d: [access] %s: %s; this entry grants nothing", entry.file, entry.line, key, exc)
        except ValueError as exc:
            raise _error(str(exc), section, key, entry, entry.value) from None
    return result


def _flapping_from_plugin(plugin: dict, section: Section, base: dict) -> dict:
    flapping = dict(base)
    for key, option in opts.FLAPPING_OPTIONS.items():
        if key in plugin["config"]:
            entry = section.entries[key]
            flapping[key] = _convert(option.parse, plugin["config"][key], section, key, entry)
    return flapping


def _watcher_env(name: str, env: dict, env_sections: list[tuple[list[str], Section]]) -> dict:
    """[env] then every matching [env:PATTERNS] section in order; later definitions win."""
    result = dict(env)
    for patterns, section in env_sections:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            _add_env(result, section)
    return result


def _watcher_member(w: dict, key: str, raw: str, section: Section, entry: Entry) -> bool:
    """Fold a member of an option family (rlimit_*, streams, hooks.*, flapping.*) into `w`; False for other keys."""
    family = opts.family_member(key)
    if family is None:
        return False
    field, member = family
    problem = opts.member_problem(field, member)
    if problem:
        meant = {"hooks": closest(member, opts.HOOK_NAMES), "flapping": opts.suggest(member, "flapping")}.get(field)
        if field == "flapping" and not meant:  # no typo of a flapping option: a free-form option, as in Circus
            w["options"][key] = raw
            return True
        raise _error(problem, section, key, entry, raw, suggestion=f"{key[:-len(member)]}{meant}" if meant else None)
    value = _convert(functools.partial(opts.parse_member, field, member), raw, section, key, entry)
    if value is None:  # an empty hook: a file names one, refused as to_dotted refuses it (`set` removes one so)
        _convert(opts.to_dotted, raw, section, key, entry)
    return opts.fold(w, key, value, mirror=raw)


def _load_watcher(section: Section, defaults: dict, env: dict, global_env: dict, env_sections: list) -> WatcherSpec:
    """One [watcher:NAME] section; `defaults` are what [circus] and the flapping plugin give every watcher."""
    name_entry = section.entries.get("name")
    name = name_entry.value if name_entry else section.name.split(":", 1)[1]
    if not name:
        raise _error("a watcher needs a name: [watcher:NAME]", section)
    name = _convert(opts.check_name, name, section, "name", name_entry or Entry(name, section.file, section.line))
    wenv = _watcher_env(name, env, env_sections)
    mapping = {"env": {**global_env, **wenv}}
    w: dict[str, Any] = {"name": name, **opts.defaults("watcher"), **defaults, "env": wenv, "options": {},
                         "flapping": dict(defaults["flapping"]), "rlimits": {}, "stdout_stream": {},
                         "stderr_stream": {}, "hooks": {}}
    for key, entry in section.entries.items():
        if key == "name":
            continue
        if key == "env":
            log.warning("%s: [%s] 'env' is ignored here; use an [env:%s] section",
                        entry.file, section.name, name)
            continue
        raw = expand_circus_vars(entry.value, mapping)
        option = opts.WATCHER_OPTIONS.get(key)
        if option is not None:
            w[key] = _convert(option.parse, raw, section, key, entry)
        elif not _watcher_member(w, key, raw, section, entry):
            suggestion = None if "." in key else opts.suggest(key, "watcher", TYPO_CUTOFF)
            if suggestion:
                raise _error(f"unknown option {quote_value(key)}", section, key, entry, raw, suggestion=suggestion)
            w["options"][key] = raw
    return _checked_spec(w, section)


def _checked_spec(w: dict, section: Section) -> WatcherSpec:
    """The watcher's spec, or the ConfigError naming the option that makes it unable to run."""
    if not w["cmd"].strip():
        raise _error("missing required option 'cmd'", section)
    spec = WatcherSpec(**w)
    problem = spec.problem()
    if problem is not None:
        key, reason = problem
        entry = section.entries.get(key)
        raise _error(reason, section, key, entry, entry.value if entry else None)
    return spec


# --------------------------------------------------------------------------- entry point

def _unique(kind: str, loaded: list[tuple[Any, str]], sections: dict[str, Section]) -> list:
    """The loaded items (each with its section name) sorted by name; ConfigError for two with one name."""
    def name_of(item) -> str:
        return item.name if isinstance(item, WatcherSpec) else item["name"]

    seen: dict[str, str] = {}
    for item, section in sorted(loaded, key=lambda pair: name_of(pair[0])):
        name = name_of(item)
        if name.lower() in seen:
            raise ConfigError(f"duplicate {kind} name {name!r} (names are case-insensitive; "
                              f"{seen[name.lower()]!r} exists)", file=sections[section].file, section=section)
        seen[name.lower()] = name
    return sorted((item for item, _ in loaded), key=name_of)


def _check_section_names(sections: dict[str, Section]) -> None:
    """Refuse a section that is close to a kind gcircus reads, or supervisord's syntax (see config_sections)."""
    for name, section in sections.items():
        if config_sections.is_known(name):
            continue
        problem = config_sections.diagnose(name)
        if problem is not None:
            raise ConfigError(problem.reason, file=section.file, section=name, suggestion=problem.suggestion,
                              line=section.line)


def _check_dependencies(loaded: list[tuple[WatcherSpec, str]], sections: dict[str, Section]) -> None:
    """A depends_on naming no watcher of the file, or a dependency cycle, is the error of the depends_on that
    names it (the first watcher of the cycle): ConfigError with file, section, option and the cycle printed."""
    graph = {spec.name: (spec.depends_on, spec.priority) for spec, _ in loaded}
    try:
        dependencies.check_graph(graph)
    except dependencies.DependencyError as exc:
        section = sections[next(name for spec, name in loaded if spec.name == exc.watcher)]
        entry = section.entries.get("depends_on")
        raise _error(exc.reason, section, "depends_on", entry, entry.value if entry else None,
                     suggestion=exc.suggestion) from None


def load_config(path: str) -> Config:
    """Read *path* (and its includes) into a :class:`Config`; raise ConfigError on any mistake."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"the configuration file {path!r} does not exist", file=path)
    sections = _read_all(path)

    env = _add_env({}, sections["env"], circus_vars=True) if "env" in sections else {}
    global_env = {**os.environ, **env}
    mapping = {"env": global_env}
    circus = _load_circus(sections.get("circus"), mapping)

    watcher_sections, socket_dicts, plugin_dicts = [], [], []
    env_sections: list[tuple[list[str], Section]] = []
    flapping = opts.defaults("flapping")
    flapping_active = True
    _check_section_names(sections)
    for name, section in sections.items():
        kind, sep, rest = name.partition(":")
        if name in ("circus", "env", "access", "http"):
            continue
        if kind == "watcher" and sep:
            watcher_sections.append(section)
        elif kind == "socket" and sep:
            socket_dicts.append((_load_socket(section, mapping), name))
        elif kind == "plugin" and sep:
            plugin = _load_plugin(section, mapping)
            if plugin["use"].replace(":", ".").endswith(FLAPPING_PLUGIN_SUFFIX):
                flapping = _flapping_from_plugin(plugin, section, flapping)
                flapping_active = plugin["active"]
            else:
                plugin_dicts.append((plugin, name))
        elif kind == "env" and sep:
            env_sections.append(([p.strip() for p in rest.split(",") if p.strip()], section))
        else:
            log.warning("%s: %s", section.file, config_sections.unknown_section_warning(shorten(name)))

    defaults = {"pdeathsig": circus["pdeathsig"], "prefix_output": circus["prefix_output"],
                "check_flapping": flapping_active, "flapping": dict(flapping)}
    watchers = [(_load_watcher(s, defaults, env, global_env, env_sections), s.name) for s in watcher_sections]
    specs = _unique("watcher", watchers, sections)
    _check_dependencies(watchers, sections)
    return Config(path=path, circus=circus, watchers=specs,
                  sockets=_unique("socket", socket_dicts, sections), plugins=_unique("plugin", plugin_dicts, sections),
                  env=env, flapping=flapping, watcher_defaults=defaults, access=_load_access(sections.get("access")),
                  http=_load_http(sections.get("http"), circus, mapping),
                  http_from_httpd="http" not in sections and circus["httpd"])
