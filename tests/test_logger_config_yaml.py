"""A .yaml logger config needs PyYAML, which gcircus does not depend on: without it the error says so plainly."""
from __future__ import annotations

import importlib.util
import subprocess

import pytest

from tests.support.daemons import GCIRCUSD, write_config


@pytest.mark.skipif(importlib.util.find_spec("yaml") is not None, reason="PyYAML is installed here")
def test_a_yaml_logger_config_without_pyyaml_is_a_clear_usage_error(tmp_path):
    config = write_config(tmp_path / "app.ini", """
        [watcher:w]
        cmd = sleep 60
        """)
    (tmp_path / "logging.yaml").write_text("version: 1\n")
    result = subprocess.run(GCIRCUSD + ["--logger-config", str(tmp_path / "logging.yaml"), config],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{tmp_path}/logging.yaml: YAML logger configs need PyYAML installed" in result.stderr
    assert "Traceback" not in result.stderr
