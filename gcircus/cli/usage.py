"""Command-line parsing shared by every gcircus program: docopt, with its failures said in the user's words.

docopt-ng reports a mistyped option as `Warning: found unmatched (duplicate?) arguments [Option(None, '--x', 0,
True)]`, its internal patterns. `parse_command_line` turns each DocoptExit into a CommandLineError that names the
mistake (the unknown option and the declared one closest to it, the extra or missing argument) and prints the
program's usage after it, so gcircusd, gcircusctl, gcircusd-stats, gcircus-top and gcircus-plugin all answer a bad
command line the same way, with exit code 2.
"""
from __future__ import annotations

import ast
import re
import sys
from typing import TextIO

from docopt import DocoptExit, docopt, parse_docstring_sections, parse_options

from gcircus.suggest import closest

EXIT_USAGE = 2


class CommandLineError(Exception):
    """A command line that does not fit the program's usage: `program: reason`, then the usage; exit 2."""

    def __init__(self, program: str, reason: str, usage: str = ""):
        super().__init__(f"{program}: {reason}")
        self.program = program
        self.reason = reason
        self.usage = usage

    def report(self, stream: TextIO | None = None) -> int:
        """Print the error and the usage on stderr (or `stream`); return the exit code for a bad command line."""
        stream = stream or sys.stderr
        print(str(self), file=stream)
        if self.usage:
            print(self.usage, file=stream)
            print(f"See `{self.program} --help` for every option.", file=stream)
        return EXIT_USAGE


def parse_command_line(doc: str, argv: list[str] | None, program: str, **docopt_options):
    """docopt(doc, argv, ...) whose failures raise CommandLineError; --help and --version exit as in docopt."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return docopt(doc, argv=argv, **docopt_options)
    except DocoptExit as exc:
        usage = DocoptExit.usage.strip()
        reason = _reason(doc, argv, str(exc.code or ""), usage, docopt_options.get("options_first", False))
        raise CommandLineError(program, reason, usage) from None


def declared_options(doc: str) -> dict[str, int]:
    """The option names `doc` declares (long and short), each with the number of values it takes (0 or 1)."""
    sections = parse_docstring_sections(doc)
    names: dict[str, int] = {}
    for option in parse_options(sections.before_usage) + parse_options(sections.after_usage):
        names.update((name, option.argcount) for name in (option.longer, option.short) if name)
    return names


def unknown_option_message(name: str, known: list[str], where: str = "") -> str:
    """`unknown option --x[ where]`, with the closest known long option for a long one (one letter has no close)."""
    meant = closest(name, [k for k in known if k.startswith("--")]) if name.startswith("--") else None
    return f"unknown option {name}{where}" + (f" (did you mean {meant}?)" if meant else "")


def option_mistake(argv: list[str], declared: dict[str, int], options_first: bool = False) -> str | None:
    """What is wrong with the first option in `argv` that `doc` does not declare, read as docopt reads it.

    A long option may be shortened to a unique prefix; an option that takes a value consumes the next token;
    short options may be bundled (`-hc FILE`); `--` ends the options, and so does the first positional argument
    when options come first.
    """
    longs = [name for name in declared if name.startswith("--")]
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            return None
        if token.startswith("--"):
            name, has_value, _ = token.partition("=")
            matches = [known for known in longs if known == name] or [known for known in longs
                                                                       if known.startswith(name)]
            if not matches:
                return unknown_option_message(name, longs)
            if len(matches) > 1:
                return f"option {name} is ambiguous: it may be {', '.join(matches)}"
            if declared[matches[0]] and not has_value:
                next(tokens, None)
        elif token.startswith("-") and token != "-" and not _is_number(token):
            for index, letter in enumerate(token[1:], 2):
                if f"-{letter}" not in declared:
                    return unknown_option_message(f"-{letter}", longs)
                if declared[f"-{letter}"]:
                    if index == len(token):
                        next(tokens, None)
                    break
        elif options_first:
            return None
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _reason(doc: str, argv: list[str], message: str, usage: str, options_first: bool) -> str:
    declared = declared_options(doc)
    mistake = option_mistake(argv, declared, options_first)
    if mistake:
        return mistake
    if message.endswith(usage):
        message = message[:-len(usage)].strip()
    if message.startswith(UNMATCHED):
        return _leftover(message[len(UNMATCHED):].strip())
    if message:
        return message
    missing = [name for name in dict.fromkeys(re.findall(r"<[^>]+>", usage)) if name not in argv]
    return f"missing {' '.join(missing)}" if missing else "the arguments do not fit the usage"


UNMATCHED = "Warning: found unmatched (duplicate?) arguments"


def _leftover(patterns: str) -> str:
    """Say what docopt-ng could not place. It gives its leftover patterns only as their reprs in its message
    (`[Argument(None, 'b')]`), which are Python literals once the class name is dropped."""
    for kind, fields in re.findall(r"(Option|Argument)\((.*?)\)(?=, Option|, Argument|\]$)", patterns):
        try:
            values = ast.literal_eval(f"({fields},)")
        except (ValueError, SyntaxError):
            continue
        if kind == "Argument":
            return f"unexpected argument {values[1]!r}"
        return f"option {values[1] or values[0]} is given twice or does not go with the other arguments"
    return "the arguments do not fit the usage"
