"""conf/kubernetes/Dockerfile, checked without Docker (no registry to pull python:3.11-slim from here): the
invariants that make gcircusd a correct PID 1 of the image, and the files it copies and runs exist and load.

tests/test_kubernetes_pid1.py runs the same ENTRYPOINT and CMD as PID 1 of a PID namespace.
"""
import configparser
import os
import re

from gevent import subprocess

from gcircus.config import load_config
from tests.support import kubernetes as k8s
from tests.support.ports import free_port

BASE_IMAGE = "python:3.11-slim"


def test_gcircusd_is_pid_1_in_exec_form_without_an_init_in_front():
    command = k8s.container_command()
    assert command[0] == "gcircusd", "gcircusd itself must be PID 1: it handles the runtime's signals and reaps"
    assert not {"tini", "dumb-init", "sh", "/bin/sh", "bash"} & {os.path.basename(part) for part in command}
    assert command[-1] == "/etc/gcircus/gcircusd.ini"


def test_the_stop_signal_is_sigterm_and_the_image_runs_as_a_numeric_non_root_user():
    stage = k8s.final_stage(k8s.instructions())
    assert k8s.only(stage, "STOPSIGNAL") == "SIGTERM"
    user, _, group = k8s.only(stage, "USER").partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it; matches the manifest's runAsUser.
    assert user.isdigit() and int(user) != 0 and (not group or group.isdigit())
    assert int(user) == k8s.integer("runAsUser")


def test_both_stages_start_from_the_slim_official_python_image():
    bases = [arguments.split()[0] for keyword, arguments in k8s.instructions() if keyword == "FROM"]
    assert bases and set(bases) == {BASE_IMAGE}


def test_what_the_image_copies_exists_and_the_build_context_keeps_it():
    parsed = k8s.instructions()
    sources = [source for sources, _ in k8s.copies(parsed) for source in sources if not source.startswith("--")]
    assert {"setup.py", "setup.cfg", "README.md", "gcircus", "conf/kubernetes/gcircusd.ini"} <= set(sources)
    with open(k8s.DOCKERFILE + ".dockerignore") as f:
        kept = {line[1:].rstrip("/") for line in f.read().splitlines() if line.startswith("!")}
    for source in sources:
        if source not in ("./", "."):
            assert os.path.exists(os.path.join(k8s.ROOT, source)), source
            assert source.rstrip("/") in kept, f"{source} is copied but Dockerfile.dockerignore leaves it out"


def test_the_build_stage_copies_every_file_the_package_metadata_names():
    """pip builds gcircus in the build stage from what was copied there: setup.cfg's `file:` references included."""
    metadata = configparser.ConfigParser()
    metadata.read(os.path.join(k8s.ROOT, "setup.cfg"))
    named = re.findall(r"file:\s*(\S+)", "\n".join(v for s in metadata.sections() for v in metadata[s].values()))
    copied = {source for sources, _ in k8s.copies(k8s.instructions()) for source in sources}
    assert named and set(named) <= copied


def test_the_config_the_image_runs_loads_with_the_config_loader():
    path = k8s.image_file(k8s.container_command()[-1])
    assert path == k8s.CONFIG
    config = load_config(path)
    assert config.circus["endpoint"] == k8s.ENDPOINT and config.circus["pubsub_endpoint"].startswith("ipc:///run/")
    assert config.circus["prefix_output"] and config.circus.get("logoutput") in (None, "", "-")
    (web,) = config.watchers
    assert web.name == "web" and web.use_sockets and web.numprocesses >= 2
    assert str(web.ready) == "notify" and str(web.health) == "watchdog"
    assert web.essential is True


def test_gcircusctl_in_the_image_finds_the_control_socket_by_itself():
    variables = dict(item.split("=", 1) for item in k8s.only(k8s.final_stage(k8s.instructions()), "ENV").split())
    assert variables["GCIRCUSCTL_ENDPOINT"] == load_config(k8s.CONFIG).circus["endpoint"] == k8s.ENDPOINT


def test_the_build_time_validation_accepts_the_config(tmp_path):
    """The Dockerfile's validation RUN (gcircusd --check-config, or the loader where that option is missing) passes
    on the shipped config (its image paths moved to ones that exist here), and fails the build on a broken one."""
    (validation,) = [arguments for keyword, arguments in k8s.instructions() if "--check-config" in arguments]
    broken = tmp_path / "broken.ini"
    broken.write_text("[watcher:web]\ncmd = sleep 1\nnumprocesses = many\n")
    run_dir = k8s.short_run_dir()
    try:
        for config, valid in ((k8s.local_config(run_dir, free_port()), True), (str(broken), False)):
            script = k8s.replace_counted(validation, "/etc/gcircus/gcircusd.ini", config, count=2)
            result = subprocess.run(["sh", "-c", script], env=k8s.tool_env(), capture_output=True, text=True,
                                    timeout=60)
            if valid:
                assert result.returncode == 0, result.stdout + result.stderr
            else:
                assert result.returncode != 0 and "numprocesses" in result.stdout + result.stderr
    finally:
        k8s.remove_run_dir(run_dir)
