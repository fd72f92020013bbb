"""What operators rely on from the `rshub` command itself (issue 27, the CLI): `check`
validates a directory without starting anything; `settings` lists every secret and never a
value; commands for people print no library log lines; `find` has a header and its JSON no
storage formats; mistyped states, stages and symbols are errors that name the valid ones;
`console-user add` without a terminal says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.relay_fixtures import SUPPORTED, relay_partners

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "consortium.yaml"


def rshub(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: no broker configured, and no terminal."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RSHUB_", "KAFKA_"))}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        input=stdin if stdin is not None else "",
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        start_new_session=True,  # no controlling terminal, as under cron or CI
    )


def test_check_accepts_a_good_directory_and_starts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = rshub("check", "--directory", str(EXAMPLE), env={"RSHUB_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    assert "Example Library Consortium" in done.stdout and "4 partners" in done.stdout
    # The unset partner secrets are said (the hub would start, those partners get 401s).
    assert "warning: NORTH inbound: $RSHUB_SECRET_NORTH is not set" in done.stdout
    assert not data.exists()  # no broker, no id secret, no index: nothing was started


def test_check_names_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "consortium: X\npartners:\n"
        "  - {symbol: NORTH, name: N, protocol: ncip, endpoint: 'tcp://127.0.0.1:9'}\n"
        "  - {symbol: SOUTH, name: S, protocol: iso18626, endpoint: 'ftp://x/y'}\n"
    )
    done = rshub("check", "--directory", str(bad))
    assert done.returncode == 2
    assert "would not start (2 problems)" in done.stderr
    assert "partner NORTH: endpoint 'tcp://127.0.0.1:9'" in done.stderr
    assert "partner SOUTH: endpoint 'ftp://x/y'" in done.stderr
    missing = rshub("check", "--directory", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr


def test_check_reads_the_directory_setting_when_no_option_is_given(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("consortium: X\npartners: [\n")
    done = rshub("check", env={"RSHUB_DIRECTORY": str(broken)})
    assert done.returncode == 2 and "not valid YAML" in done.stderr


def _relay_directory(tmp_path: Path) -> Path:
    partners = relay_partners()
    south = next(p for p in partners if p["symbol"] == "SOUTH-CIRC")
    south["options"]["query_token"] = {"param": "apikey", "secret_env": "RSHUB_SOUTH_API_KEY"}
    path = tmp_path / "relay.yaml"
    path.write_text(
        yaml.safe_dump(
            {"consortium": "Relay", "supported_protocols": sorted(SUPPORTED), "partners": partners}
        )
    )
    return path


def test_settings_takes_a_directory_and_lists_every_secret_never_a_value(tmp_path: Path) -> None:
    env = {
        "RSHUB_ID_SECRET": "id-very-secret",
        "RSHUB_NORTH_NCIP_AUTH": "north-very-secret",
        "RSHUB_DATA_DIR": str(tmp_path / "data"),
    }
    done = rshub("settings", "--directory", str(_relay_directory(tmp_path)), env=env)
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line for line in done.stdout.splitlines() if line.strip()}
    assert "$RSHUB_ID_SECRET" in rows[("hub", "transaction")]
    assert rows[("hub", "transaction")].rstrip().endswith(" set")
    north = rows[("NORTH-CIRC", "from_agency_authentication")]
    assert "$RSHUB_NORTH_NCIP_AUTH" in north and north.rstrip().endswith(" set")
    south = rows[("SOUTH-CIRC", "query_token")]
    assert "$RSHUB_SOUTH_API_KEY" in south and south.rstrip().endswith("NOT SET")
    assert "id-very-secret" not in done.stdout and "north-very-secret" not in done.stdout
    # Without RSHUB_ID_SECRET: where the hub's key comes from instead.
    done = rshub("settings", "--directory", str(EXAMPLE), env={"RSHUB_DATA_DIR": str(tmp_path)})
    assert f"{tmp_path / 'id-secret'} is made at first start" in done.stdout
    assert "$RSHUB_SECRET_NORTH" in done.stdout
