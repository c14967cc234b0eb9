"""gcircus-install-aliases - add `circusd` and `circusctl` commands that run gcircusd and gcircusctl, for tools that
start Circus by name (circus-mcp's start-daemon, scripts, unit files) on an install without Circus.

Usage:
  gcircus-install-aliases [--bin DIR] [--remove]
  gcircus-install-aliases --version
  gcircus-install-aliases (-h | --help)

Options:
  --bin DIR   Where the commands go (default: this Python's scripts directory, .venv/bin in a virtualenv).
  --remove    Remove the aliases this command made there, and nothing else.
  --version   Print the version and exit.
  -h --help   Show this help.

Never replaces a real Circus: it refuses (exit 1) and changes nothing when this Python can import `circus`, or when
DIR already holds a `circusd` or `circusctl` it did not make. Running it again is harmless; `--remove` undoes it.
Exit codes: 0 done (or nothing to do), 1 refused, 2 bad command line.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig

from gcircus import __version__
from gcircus.cli.usage import CommandLineError, parse_command_line

EXIT_OK, EXIT_REFUSED = 0, 1
ALIASES = {"circusd": "gcircus.cli.gcircusd", "circusctl": "gcircus.cli.gcircusctl"}
MARKER = "# made by gcircus-install-aliases"


def wrapper_text(module: str) -> str:
    """The alias: this Python running `module`'s entry point (a file, so it works from any --bin directory)."""
    return (f"#!{sys.executable}\n{MARKER}: remove with `gcircus-install-aliases --remove`\n"
            f"from {module} import run\n\nrun()\n")


def is_ours(path: str) -> bool:
    """True if `path` is an alias this command wrote (only those are replaced or removed)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def circus_location() -> str | None:
    """Where this Python would import Circus from, or None if it cannot."""
    spec = importlib.util.find_spec("circus")
    return None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))


def install(bin_dir: str) -> tuple[int, list[str]]:
    """Write every alias into `bin_dir`, or none of them; (exit code, lines to print)."""
    circus = circus_location()
    if circus is not None:
        return EXIT_REFUSED, [f"refused: Circus is installed for {sys.executable} ({circus}); its own circusd and "
                              "circusctl are the ones to use there. Nothing was changed."]
    foreign = [path for path in (os.path.join(bin_dir, name) for name in ALIASES)
               if os.path.lexists(path) and not is_ours(path)]
    if foreign:
        return EXIT_REFUSED, [f"refused: {', '.join(foreign)} already exist{'s' if len(foreign) == 1 else ''} and "
                              "were not made by gcircus-install-aliases. Nothing was changed."]
    os.makedirs(bin_dir, exist_ok=True)
    lines = []
    for name, module in ALIASES.items():
        path = os.path.join(bin_dir, name)
        text = wrapper_text(module)
        if os.path.lexists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                if f.read() == text:
                    lines.append(f"{path}: already there")
                    continue
        temporary = f"{path}.gcircus-{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755), "w", encoding="utf-8") as f:
            f.write(text)
        if os.path.lexists(path):  # one of ours (checked above): replace it in one step
            os.replace(temporary, path)
        else:  # a link cannot overwrite a file that appeared meanwhile
            try:
                os.link(temporary, path)
            finally:
                os.unlink(temporary)
        lines.append(f"{path}: runs {module.rsplit('.', 1)[1]}")
    for name in ALIASES:
        found = shutil.which(name)
        if found and os.path.realpath(found) != os.path.realpath(os.path.join(bin_dir, name)):
            lines.append(f"warning: {found} comes first on PATH, so `{name}` still runs that one")
    return EXIT_OK, lines


def remove(bin_dir: str) -> tuple[int, list[str]]:
    """Remove the aliases this command wrote into `bin_dir`; anything else of those names stays."""
    lines = []
    for name in ALIASES:
        path = os.path.join(bin_dir, name)
        if not os.path.lexists(path):
            continue
        if is_ours(path):
            os.unlink(path)
            lines.append(f"{path}: removed")
        else:
            lines.append(f"{path}: left alone (not made by gcircus-install-aliases)")
    return EXIT_OK, lines


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(__doc__, argv, "gcircus-install-aliases",
                                  version=f"gcircus-install-aliases {__version__}")
    except CommandLineError as exc:
        return exc.report()
    bin_dir = os.path.abspath(args["--bin"] or sysconfig.get_path("scripts"))
    code, lines = (remove if args["--remove"] else install)(bin_dir)
    for line in lines:
        print(line, file=sys.stderr if code or line.startswith("warning") else sys.stdout)
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
