"""Which ini sections gcircus reads, and what to tell the author of a section it does not know.

Circus recognises a section only by an exact lowercase kind (PROTOCOL.md 1.1) and silently skips any other, so a
misspelt `[watchers:web]` or `[Circus]` quietly runs nothing. gcircus refuses a section that is close to a kind
it reads, or that is supervisord's syntax (a supervisord config given to gcircus is always a mistake), naming the
section it meant. A section unlike every kind stays a warning, as Circus skips it: a shared ini file may hold other
tools' sections.
"""
from __future__ import annotations

import difflib
import re

from gcircus.suggest import closest, edit_distance

# The kinds of section gcircus reads, as they are written. [env] is both: plain, and named by watcher patterns.
PLAIN_KINDS = {"circus": "[circus]", "env": "[env]", "access": "[access]", "http": "[http]", "DEFAULT": "[DEFAULT]"}
NAMED_KINDS = {"watcher": "[watcher:NAME]", "socket": "[socket:NAME]", "plugin": "[plugin:NAME]",
               "env": "[env:PATTERNS]"}

# supervisord's section kinds, with what gcircus uses instead ({name} is the part after the colon), or None.
SUPERVISORD_SECTIONS = {
    "program": "[watcher:{name}]",
    "fcgi-program": "[watcher:{name}] with a [socket:{name}] (use_sockets = true)",
    "eventlistener": "a [plugin:{name}] (use = the dotted path of a plugin class)",
    "group": None,
    "supervisord": "[circus]",
    "supervisorctl": None,
    "unix_http_server": "endpoint = ipc://PATH in [circus]",
    "inet_http_server": "endpoint = tcp://HOST:PORT in [circus]",
    "rpcinterface": None,
    "include": "include = GLOBS in [circus]",
}

READ_SECTIONS = ("[circus], [watcher:NAME], [socket:NAME], [plugin:NAME], [http], [env], [env:PATTERNS] "
                 "and [access]")


class SectionProblem:
    """Why a section name is wrong, and the section probably meant (None when no kind is close)."""

    def __init__(self, reason: str, suggestion: str | None = None):
        self.reason = reason
        self.suggestion = suggestion


def is_known(name: str) -> bool:
    """A section gcircus reads: a plain kind alone, or a named kind followed by a colon."""
    kind, colon, _ = name.partition(":")
    return kind in (NAMED_KINDS if colon else PLAIN_KINDS)


def diagnose(name: str) -> SectionProblem | None:
    """What is wrong with a section `name` that is_known refused; None when it is unlike every kind (only warn)."""
    kind, colon, rest = name.partition(":")
    lowered = kind.lower()
    if lowered in SUPERVISORD_SECTIONS:
        equivalent = SUPERVISORD_SECTIONS[lowered]
        instead = f"gcircus uses {equivalent.format(name=rest or 'NAME')}" if equivalent else \
            f"gcircus has no such section (it reads {READ_SECTIONS})"
        return SectionProblem(f"is supervisord syntax; {instead}")
    if colon and kind in PLAIN_KINDS and kind not in NAMED_KINDS:
        return SectionProblem(f"[{kind}] takes no name", PLAIN_KINDS[kind])
    if not colon and kind in NAMED_KINDS:
        return SectionProblem(f"a [{kind}] section needs a name: {NAMED_KINDS[kind]}")
    separated = None if colon else re.match(r"([A-Za-z]+)[\s._;/=-]+(\S.*)$", name)
    if separated and (meant := _closest_kind(separated[1], list(NAMED_KINDS))):
        return SectionProblem(f"unknown section; a named section is written {NAMED_KINDS[meant]}",
                              f"[{meant}:{separated[2]}]")
    forms = NAMED_KINDS if colon else {**PLAIN_KINDS, **NAMED_KINDS}
    meant = _closest_kind(kind, list(forms))
    if meant is None:
        return None
    suggestion = f"[{meant}:{rest}]" if colon else PLAIN_KINDS.get(meant, NAMED_KINDS.get(meant))
    if lowered == meant.lower():
        return SectionProblem(f"unknown section kind {kind!r} (section names are case-sensitive)", suggestion)
    return SectionProblem(f"unknown section kind {kind!r}", suggestion)


# A misspelt kind is an error, so "close" is strict here: another tool's section in a shared ini file ([testenv],
# [logging], [dev]) must stay a warning. Close means the same letters in another case, one edit (a swap of two
# letters counts as one) on a kind long enough that one edit is a slip rather than another word, or a spelling
# difflib rates this alike.
MIN_LENGTH_FOR_ONE_EDIT = 5
SECTION_TYPO_CUTOFF = 0.85


def _closest_kind(kind: str, kinds: list[str]) -> str | None:
    """The kind `kind` was probably meant to be, or None when it is not a slip of any kind gcircus reads."""
    by_lower = {candidate.lower(): candidate for candidate in kinds}
    word = kind.lower()
    if word in by_lower:
        return by_lower[word]
    meant = closest(word, list(by_lower), cutoff=SECTION_TYPO_CUTOFF)
    if meant is None:
        return None
    if edit_distance(word, meant) <= 1 and min(len(word), len(meant)) < MIN_LENGTH_FOR_ONE_EDIT and \
            difflib.SequenceMatcher(None, word, meant).ratio() < SECTION_TYPO_CUTOFF:
        return None  # [dev] is not a slip of [env]
    return by_lower[meant]


def unknown_section_warning(name: str) -> str:
    """The warning for a section unlike every kind gcircus reads: it is skipped, as Circus skips it."""
    return f"ignoring unknown section [{name}] (gcircus reads {READ_SECTIONS})"
