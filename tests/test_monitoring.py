"""The shipped alert rules are valid Prometheus rules and each fires when it should (Debian's
promtool, installed by .ci/run: `promtool check rules` and `promtool test rules`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MONITORING = Path(__file__).resolve().parent.parent / "examples" / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    return subprocess.run(
        [tool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )


def test_the_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_prometheus_configuration_is_valid() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
