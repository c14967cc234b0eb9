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
    """`unknown option --x[ where]`, with the closest known long option for a long one (one letter has no close).

    Names are compared without their leading dashes: the `--` every candidate shares would make any two names look
    alike (`--bogsu` and `--pubsub`).
    """
    meant = None
    if name.startswith("--"):
        meant = closest(name[2:], [k[2:] for k in known if k.startswith("--")])
    return f"unknown option {name}{where}" + (f" (did you mean --{meant}?)" if meant else "")


def _read(argv: list[str], declared: dict[str, int], options_first: bool = False):
    """Read `argv` as docopt does: yield ("option", its declared name), ("argument", token), and at the first
    option `doc` does not declare ("mistake", what is wrong with it), after which reading stops.

    A long option may be shortened to a unique prefix; an option that takes a value consumes the next token;
    short options may be bundled (`-hc FILE`); `--` ends the options, and so does the first positional argument
    when options come first.
    """
    longs = [name for name in declared if name.startswith("--")]
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            yield from (("argument", rest) for rest in tokens)
            return
        if token.startswith("--"):
            name, has_value, _ = token.partition("=")
            matches = [known for known in longs if known == name] or [known for known in longs
                                                                       if known.startswith(name)]
            if not matches:
                yield "mistake", unknown_option_message(name, longs)
                return
            if len(matches) > 1:
                yield "mistake", f"option {name} is ambiguous: it may be {', '.join(matches)}"
                return
            yield "option", matches[0]
            if declared[matches[0]] and not has_value:
                next(tokens, None)
        elif token.startswith("-") and token != "-" and not _is_number(token):
            for index, letter in enumerate(token[1:], 2):
                if f"-{letter}" not in declared:
                    yield "mistake", unknown_option_message(f"-{letter}", longs)
                    return
                yield "option", f"-{letter}"
                if declared[f"-{letter}"]:
                    if index == len(token):
                        next(tokens, None)
                    break
        else:
            yield "argument", token
            if options_first:
                yield from (("argument", rest) for rest in tokens)
                return


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _reason(doc: str, argv: list[str], message: str, usage: str, options_first: bool) -> str:
    declared = declared_options(doc)
    read = list(_read(argv, declared, options_first))
    mistake = next((value for kind, value in read if kind == "mistake"), None)
    if mistake:
        return mistake
    if message.endswith(usage):
        message = message[:-len(usage)].strip()
    if message and not message.startswith(UNMATCHED):
        return message
    # docopt-ng reports a missing argument as options it could not place (`gcircusd --daemon`): look first.
    missing = missing_arguments(usage, sum(kind == "argument" for kind, _ in read))
    if missing:
        return f"missing {' '.join(missing)}"
    if message:
        return _leftover(message[len(UNMATCHED):].strip(), [value for kind, value in read if kind == "option"])
    return "the arguments do not fit the usage"


def missing_arguments(usage: str, given: int) -> list[str]:
    """The required positional arguments (`<config>`) that `given` arguments leave out, in the usage patterns
    options go with (those requiring no option: `gcircusd [options] <config>`, not `gcircusd --version`).

    Nothing is missing when any such pattern is satisfied by `given` arguments.
    """
    missing: list[str] | None = None
    for line in usage.splitlines()[1:]:
        words = line.split()[1:]
        required, depth = [], 0
        for word in re.findall(r"\[|\]|[^\s\[\]|()]+", " ".join(words)):
            if word in ("[", "]"):
                depth += 1 if word == "[" else -1
            elif depth == 0 and word.startswith("-"):
                break  # a pattern that requires an option (--version, -h): not the one options go with
            elif depth == 0 and word.startswith("<"):
                required.append(word.removesuffix("..."))
        else:
            if given >= len(required):
                return []
            if missing is None:
                missing = required[given:]
    return missing or []


UNMATCHED = "Warning: found unmatched (duplicate?) arguments"


def _leftover(patterns: str, options_given: list[str]) -> str:
    """Say what docopt-ng could not place. It gives its leftover patterns only as their reprs in its message
    (`[Argument(None, 'b')]`), which are Python literals once the class name is dropped. An option is said to be
    given twice only when `options_given` (the command line's options, by declared name) really holds it twice."""
    for kind, fields in re.findall(r"(Option|Argument)\((.*?)\)(?=, Option|, Argument|\]$)", patterns):
        try:
            values = ast.literal_eval(f"({fields},)")
        except (ValueError, SyntaxError):
            continue
        if kind == "Argument":
            return f"unexpected argument {values[1]!r}"
        name = values[1] or values[0]
        if sum(given in (values[0], values[1]) for given in options_given) > 1:
            return f"option {name} is given twice"
        return f"option {name} does not go with the other arguments"
    return "the arguments do not fit the usage"
