"""The relay's side of the `rshub` command: `decode ncip-relay FILE` prints a broker's call (or
a member's answer) as read, and the NCIP answer the relay would give a call it refuses;
`settings` lists the relay members' own secrets (where from, set or not, never a value), and
an unset one is warned about at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import yaml

from connectors.core.directory import Directory
from hub.cli import serve
from tests.relay_fixtures import SUPPORTED, relay_partners

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "standards" / "ncip" / "samples"


def rshub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_decode_prints_a_broker_call() -> None:
    done = rshub(
        "decode",
        "ncip-relay",
        str(SAMPLES / "innreach__ItemRequested__v1_0__placeholders-renamed.xml"),
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    call = json.loads(done.stdout)
    assert (call["service"], call["ncip_version"]) == ("ItemRequested", "1.0")
    assert (call["user_id"], call["item_id"]) == ("p999999", "30680002139924")
    done = rshub("decode", "ncip-relay", str(SAMPLES / "relais-to-folio__LookupUser.xml"))
    assert done.returncode == 0 and json.loads(done.stdout)["service"] == "LookupUser"


def test_decode_prints_a_member_answer() -> None:
    done = rshub(
        "decode", "ncip-relay", str(SAMPLES / "ncip1-ils__CheckInItemResponse__v1_0-problem.xml")
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    answer = json.loads(done.stdout)
    assert answer["name"] == "CheckInItemResponse"
    assert [p["type"] for p in answer["problems"]] == ["Item Not Checked Out"]


def test_decode_prints_the_relays_problem_and_exits_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"<NCIPMessage><LookupUser>")
    done = rshub("decode", "ncip-relay", str(garbage))
    assert done.returncode == 2 and "Invalid Message Syntax Error" in done.stdout
    assert "Traceback" not in done.stderr
    done = rshub("decode", "ncip-relay", str(SAMPLES / "folio-test__DeleteItem__ns1.xml"))
    assert done.returncode == 2 and "Unsupported Service" in done.stdout


def _directory(tmp_path: Path) -> Path:
    partners = relay_partners()
    south = next(p for p in partners if p["symbol"] == "SOUTH-CIRC")
    south["options"]["query_token"] = {"param": "apikey", "secret_env": "RSHUB_SOUTH_API_KEY"}
    path = tmp_path / "consortium.yaml"
    path.write_text(
        yaml.safe_dump(
            {"consortium": "Relay", "supported_protocols": sorted(SUPPORTED), "partners": partners}
        )
    )
    return path


def test_settings_lists_relay_member_secrets_never_their_values(tmp_path: Path) -> None:
    env = {
        "RSHUB_DIRECTORY": str(_directory(tmp_path)),
        "RSHUB_NORTH_NCIP_AUTH": "north-very-secret",
    }
    done = rshub("settings", env=env | {"RSHUB_SOUTH_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("partner secrets")[1].splitlines()
    rows = {
        (line.split()[0], line.split()[1]): line for line in listed if line.strip()[:1].isupper()
    }
    north = rows[("NORTH-CIRC", "from_agency_authentication")]
    assert "$RSHUB_NORTH_NCIP_AUTH" in north and north.rstrip().endswith(" set")
    south = rows[("SOUTH-CIRC", "query_token")]
    assert "$RSHUB_SOUTH_API_KEY" in south and south.rstrip().endswith("NOT SET")
    assert "north-very-secret" not in done.stdout


def test_an_unset_member_secret_is_warned_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RSHUB_NORTH_NCIP_AUTH", raising=False)
    monkeypatch.setenv("RSHUB_SOUTH_API_KEY", "south-key")
    directory = Directory.model_validate(yaml.safe_load(_directory(tmp_path).read_text()))
    with structlog.testing.capture_logs() as logs:
        serve.warn_unset_secrets(directory)
    warned = {(e["partner"], e["direction"]) for e in logs if e["event"] == "partner.secret_unset"}
    assert ("NORTH-CIRC", "from_agency_authentication") in warned
    assert ("SOUTH-CIRC", "query_token") not in warned
    assert "south-key" not in repr(logs)
