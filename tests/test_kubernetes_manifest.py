"""conf/kubernetes/deployment.yaml: its probes say what they claim when sent to a real gcircusd on the image's
config, and its time limits fit the config's.

The manifest is YAML. PyYAML is no dependency of gcircus: the structure test runs where it is installed; the probes
and limits are read line by line (tests/support/kubernetes.py) everywhere.
"""
import importlib.util
import json
import re
import urllib.error
import urllib.request

import pytest

from gcircus.client import CallError, Client
from gcircus.config import load_config
from tests.support import kubernetes as k8s
from tests.support.ports import free_port
from tests.support.waiting import wait_for

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# A watcher whose command does not exist: `failed` after its one spawn attempt, at once.
BROKEN_WATCHER = "[watcher:broken]\ncmd = /nonexistent/gcircus-k8s-probe-test\nmax_retry = 1\n"


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed (no gcircus dependency)")
def test_the_manifest_is_yaml_and_says_what_the_line_reader_reads():
    import yaml  # only where installed: the skip above

    deployment, service = yaml.safe_load_all(k8s.manifest_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in PROBES:
        path, port = k8s.http_get_after(probe)
        assert container[probe]["httpGet"] == {"path": path, "port": port}
    assert {"name": "probes", "containerPort": k8s.container_port("probes")} in container["ports"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == k8s.command_after("preStop")
    assert pod["terminationGracePeriodSeconds"] == k8s.integer("terminationGracePeriodSeconds")
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert k8s.CONTROL_DIR in mounts and container["securityContext"]["readOnlyRootFilesystem"] is True


def _stop_timeout() -> float:
    """[circus] stop_timeout as gcircus reads the file."""
    return float(load_config(k8s.CONFIG).circus["stop_timeout"])


def test_the_grace_period_outlasts_every_stop_the_config_allows():
    """Kubernetes SIGKILLs the pod terminationGracePeriodSeconds after the preStop hook began: by then gcircusd must
    have stopped everything itself, each worker within its graceful_timeout, all of it within stop_timeout."""
    (web,) = load_config(k8s.CONFIG).watchers
    pre_stop = k8s.command_after("preStop")
    assert pre_stop[0] == "sleep"
    stop_timeout = _stop_timeout()
    (app_grace,) = re.findall(r"--grace (\d+)", web.cmd)
    assert float(app_grace) < web.graceful_timeout <= stop_timeout
    assert k8s.integer("terminationGracePeriodSeconds") > float(pre_stop[1]) + stop_timeout


def test_probes_ask_the_probe_listener_within_their_timeouts():
    """Every probe names the container port the config's probe listener binds, and waits longer than /healthz
    tolerates a held-up hub (max_hub_latency), so a slow answer is the hub's 503, not the kubelet's timeout."""
    http = load_config(k8s.CONFIG).http
    assert http["probe_bind"].rpartition(":")[2] == str(k8s.container_port("probes"))
    lines = k8s.manifest_text().splitlines()
    for probe in PROBES:
        path, port = k8s.http_get_after(probe)
        assert path in ("/healthz", "/readyz") and port == "probes", probe
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{probe}:")
        probe_timeout = next(int(line.split(":")[1]) for line in lines[start:] if "timeoutSeconds:" in line)
        assert probe_timeout > http["max_hub_latency"], probe


@pytest.fixture
def run_dir():
    path = k8s.short_run_dir()
    yield path
    k8s.remove_run_dir(path)


def _statuses(endpoint: str) -> dict:
    try:
        with Client(endpoint, timeout=5) as client:
            return client.call("status").get("statuses") or {}
    except CallError:
        return {}


def test_probes_against_gcircusd_on_the_image_config(run_dir, daemon_factory):
    """Liveness passes while gcircusd answers; readiness only while every watcher is active: not with one failed
    (whose name and state the 503 reply gives), again once it is gone. With no gcircusd, both fail. The probe
    listener serves the probes and nothing else."""
    endpoint = f"ipc://{run_dir}/control.sock"
    port = free_port()
    liveness, readiness, startup = PROBES
    assert k8s.probe_status(liveness, port) == 0 and k8s.probe_status(readiness, port) == 0

    daemon = daemon_factory(k8s.local_config(run_dir, free_port(), extra=BROKEN_WATCHER, probe_port=port))
    wait_for(lambda: _statuses(endpoint) == {"web": "active", "broken": "failed"}, 30,
             message=f"web active and broken failed:\n{daemon.output()}")
    assert k8s.probe_status(liveness, port) == 200 and k8s.probe_status(startup, port) == 200
    assert k8s.probe_status(readiness, port) == 503
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert json.loads(refused.value.read())["not_ready"][0]["watcher"] == "broken"
    for page in ("/metrics", "/api/list", "/"):
        assert k8s.status_of(f"http://127.0.0.1:{port}{page}") == 404, page

    with Client(endpoint, timeout=10) as client:
        client.call("rm", name="broken", waiting=True, check=True)
    assert _statuses(endpoint) == {"web": "active"}
    assert k8s.probe_status(readiness, port) == 200 and k8s.probe_status(liveness, port) == 200
    assert daemon.stop() == 0
