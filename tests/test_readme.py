"""README stays true: what it generates is up to date, and every command and config snippet it shows runs.

- Generated blocks (option reference, the demo config) match their sources (`scripts/gen-readme-options --check`).
- Every ```ini block loads with gcircus's config loader; every ```python block compiles, and the embedding example
  runs for real.
- Every `gcircusd`/`gcircusctl`/`gcircusd-stats`/`gcircus-top` command line shown is accepted: gcircusctl commands
  run against the real demo, the others are parsed by their program's own usage; the options of each usage synopsis
  exist in the program's usage.
- The typo example is reproduced exactly.
- The demo (conf/app.ini) starts from another directory under `.venv/bin/gcircusd` with no virtualenv on PATH, its
  web workers answer HTTP, its worker logs, and SIGTERM stops it cleanly.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest
from docopt import DocoptExit, docopt
from gevent import subprocess as gsubprocess

from gcircus.client import Client
from gcircus.config import load_config
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_INI = os.path.join(ROOT, "conf", "app.ini")
VENV_BIN = os.path.dirname(sys.executable)  # the tests run under .venv/bin/python
CLEAN_PATH = "/usr/bin:/bin"  # no virtualenv on it

with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as _f:
    README = _f.read()


# -- reading the README ------------------------------------------------------------------------------------------

@dataclass
class Block:
    lang: str
    text: str


BLOCKS = [Block(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)]
PROSE = re.sub(r"^```\w*\n.*?^```", "", README, flags=re.S | re.M)
PROGRAMS = ("gcircusd", "gcircusctl", "gcircusd-stats", "gcircus-top")
# What a placeholder of a command line shown in README stands for when it is run here.
PLACEHOLDERS = {"NAME": "web", "KEY": "graceful_timeout", "VALUE": "10", "COMMAND": "stop", "N": "5",
                "E": "tcp://127.0.0.1:5555",
                "P": "tcp://127.0.0.1:5556", "S": "tcp://127.0.0.1:5557"}


def program_of(words: list[str]) -> str | None:
    """The gcircus program a command line runs (`.venv/bin/gcircusctl` counts as `gcircusctl`), else None."""
    if words and words[0].removeprefix(".venv/bin/") in PROGRAMS:
        return words[0].removeprefix(".venv/bin/")
    return None


def shown_commands() -> list[str]:
    """Command lines of gcircus programs: inline code in the prose, and the lines of ```sh / ```console blocks."""
    found = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", PROSE)]
    for block in BLOCKS:
        if block.lang == "sh":
            found += [line.split(" #")[0].strip() for line in block.text.splitlines()]
        elif block.lang == "console":
            found += [line[2:].strip() for line in block.text.splitlines() if line.startswith("$ ")]
    # A bare program name is a name, not a command line.
    return [c for c in found if program_of(c.split()) and len(c.split()) > 1]


def variants(command: str) -> list[list[str]]:
    """The command without and with its [optional] parts, placeholders filled in."""
    without = re.sub(r"\s*\[[^]]*\]", "", command)
    with_all = re.sub(r"\[([^]]*)\]", r"\1", command)
    result = []
    for text in dict.fromkeys([without, with_all]):
        words = [PLACEHOLDERS.get(w.rstrip("."), w) for w in shlex.split(text)]
        result.append(words)
    return result


def docopt_usage(program: str) -> str:
    module = {"gcircusd": "gcircusd", "gcircusctl": "gcircusctl", "gcircusd-stats": "gcircusd_stats",
              "gcircus-top": "gcircus_top"}[program]
    return __import__(f"gcircus.cli.{module}", fromlist=["__doc__"]).__doc__


# -- generated blocks, setup commands ----------------------------------------------------------------------------

def test_readme_generated_blocks_match_their_sources():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-readme-options"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_readme_walkthrough_shows_the_demo_config_itself():
    with open(DEMO_INI, encoding="utf-8") as f:
        demo = f.read().strip()
    assert any(b.lang == "ini" and b.text.strip() == demo for b in BLOCKS)


def test_readme_names_the_two_setup_commands_that_exist():
    for script in ("scripts/run", "scripts/test"):
        assert script in README
        assert os.access(os.path.join(ROOT, script), os.X_OK)
    assert subprocess.run([sys.executable, "-m", "gcircus.cli.gcircusd", "--version"],
                          capture_output=True, text=True).stdout.startswith("gcircusd ")


def test_readme_says_where_the_commands_are_installed():
    assert ". .venv/bin/activate" in README and ".venv/bin/gcircusctl status" in README


# -- snippets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if b.lang == "ini"])
def test_readme_ini_block_loads(index, tmp_path):
    path = tmp_path / "snippet.ini"
    path.write_text(BLOCKS[index].text)
    load_config(str(path))


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if b.lang == "python"])
def test_readme_python_block_compiles(index):
    compile(BLOCKS[index].text, f"README python block {index}", "exec")


def test_readme_embedding_example_runs(tmp_path):
    [example] = [b.text for b in BLOCKS if b.lang == "python" and "get_arbiter(" in b.text]
    # The `...` line stands for the host application's own work: here, checking that the workers run.
    check = ("pids = arbiter.get_watcher('workers').pids; assert len(pids) == 4, pids; "
             "[os.kill(pid, 0) for pid in pids]; print(json.dumps(pids), flush=True)")
    lines = [f"import json, os; {check}" if line.startswith("...") else line for line in example.splitlines()]
    assert len(lines) == len(example.splitlines()) and any(check in line for line in lines)
    (tmp_path / "worker.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "app.py").write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": CLEAN_PATH, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    pids = json.loads(result.stdout.strip().splitlines()[-1])
    assert not [pid for pid in pids if alive(pid)], "arbiter.stop() returned with workers still running"


# -- command lines -----------------------------------------------------------------------------------------------

def test_readme_shows_commands_to_check():
    programs = {program_of(c.split()) for c in shown_commands()}
    assert {"gcircusd", "gcircusctl", "gcircusd-stats", "gcircus-top"} <= programs


@pytest.mark.parametrize("command", [c for c in shown_commands() if program_of(c.split()) != "gcircusctl"])
def test_readme_command_line_is_accepted_by_its_program(command):
    for words in variants(command):
        program = program_of(words)
        try:
            docopt(docopt_usage(program), argv=words[1:], version="x")
        except DocoptExit as exc:
            pytest.fail(f"{' '.join(words)}: {exc}")


@pytest.mark.parametrize("program", ["gcircusd", "gcircusctl"])
def test_readme_usage_synopsis_options_exist(program):
    [synopsis] = [b.text for b in BLOCKS if b.lang == "" and b.text.startswith(f"{program} [")]
    usage = docopt_usage(program)
    for option in set(re.findall(r"(?<![\w-])(--?[\w-]+)", synopsis)) - {"--"}:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", usage), f"{program} has no {option}"


def test_readme_typo_example_is_what_gcircusd_prints(tmp_path):
    [block] = [b.text for b in BLOCKS if b.lang == "console" and "configuration error" in b.text]
    command, expected = block.strip().split("\n", 1)
    assert command == "$ .venv/bin/gcircusd conf/app.ini"
    # As the README says: the demo with `numprocess = 2` added to [watcher:web], run from the checkout.
    (tmp_path / "conf").mkdir()
    with open(DEMO_INI, encoding="utf-8") as f:
        demo = f.read()
    assert demo.count("[watcher:web]\n") == 1
    (tmp_path / "conf" / "app.ini").write_text(demo.replace("[watcher:web]\n", "[watcher:web]\nnumprocess = 2\n"))
    result = subprocess.run([os.path.join(VENV_BIN, "gcircusd"), "conf/app.ini"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env={"PATH": CLEAN_PATH})
    assert result.returncode == 2
    assert result.stderr.strip() == expected.replace("/home/me/gcircus", str(tmp_path)).strip()


# -- the demo, for real ------------------------------------------------------------------------------------------

def http_get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def answers(port: int):
    try:
        return http_get(port)
    except OSError:
        return None


def run_readme_command(words: list[str], endpoint: str, web_port: int) -> str | None:
    """Run one README command line against the demo; None if it worked, else what went wrong."""
    program = program_of(words)
    if program == "gcircusctl":
        argv = [os.path.join(VENV_BIN, "gcircusctl"), "--endpoint", endpoint, *words[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={"PATH": CLEAN_PATH})
        return None if result.returncode == 0 else f"exit {result.returncode}: {result.stdout}{result.stderr}"
    if words[0] == "curl":
        url = words[-1]
        assert url.startswith("http://127.0.0.1:8080/"), url
        status, body = http_get(web_port, url.removeprefix("http://127.0.0.1:8080"))
        return None if status == 200 else f"HTTP {status}: {body}"
    return None


def test_demo_runs_from_another_directory_without_the_venv_on_path(tmp_path):
    """`.venv/bin/gcircusd /path/to/conf/app.ini` from elsewhere, PATH without the venv: the real demo file, included
    by a config that only moves its ports and its log to free places (first definition wins, so these override)."""
    endpoint, pubsub, web_port = (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", free_port())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "ports.ini"
    config.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = {pubsub}\ninclude = {DEMO_INI}\n\n"
                      f"[socket:web]\nport = {web_port}\n\n"
                      f"[watcher:worker]\nstdout_stream.filename = {tmp_path}/worker-$(circus.wid).log\n")
    output = open(tmp_path / "gcircusd.out", "wb")
    daemon = gsubprocess.Popen([os.path.join(VENV_BIN, "gcircusd"), str(config)], cwd=elsewhere,
                               stdout=output, stderr=gsubprocess.STDOUT, env={"PATH": CLEAN_PATH})
    client = Client(endpoint, timeout=30)

    def log() -> str:
        return (tmp_path / "gcircusd.out").read_text(errors="replace")

    try:
        status, body = wait_for(lambda: daemon.poll() is None and answers(web_port) or daemon.poll() is not None,
                                60, interval=0.05, message="the demo's web workers answering HTTP")
        assert daemon.poll() is None, log()
        assert status == 200 and json.loads(body)["worker"] in ("1", "2"), body
        wait_for(lambda: len(client.call("list", name="web")["pids"]) == 2, 30, message="2 web workers")
        wait_for(lambda: (tmp_path / "worker-1.log").exists() and "finished job" in
                 (tmp_path / "worker-1.log").read_text(), 30, message="the demo worker's log line")

        failures = []
        for command in [c for c in shown_commands() if program_of(c.split()) == "gcircusctl"] + \
                [line.strip() for b in BLOCKS if b.lang == "sh" for line in b.text.splitlines()
                 if line.startswith("curl ")]:
            for words in variants(command):
                problem = run_readme_command(words, endpoint, web_port)
                if problem:
                    failures.append(f"{' '.join(words)}: {problem}")
        assert not failures, "\n".join(failures)
        wait_for(lambda: answers(web_port), 30, interval=0.05, message="the demo still serving after the commands")
    finally:
        client.close()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=60)
        finally:
            output.close()
    assert code == 0, log()
    assert "Traceback" not in log(), log()


def test_readme_lists_each_difference_from_circus_once():
    section = README.split("## Differences from Circus")[1].split("\n## ")[0]
    heads = [" ".join(re.sub(r"[^\w\s]", "", h.lower()).split())
             for h in re.findall(r"^- \*\*(.+?)\*\*", section, re.M)]
    assert len(heads) > 10
    repeated = [(a, b) for i, a in enumerate(heads) for b in heads[i + 1:] if a.startswith(b) or b.startswith(a)]
    assert not repeated, f"listed twice: {repeated}"
