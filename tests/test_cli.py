"""What operators rely on from the `rshub` command itself (issue 27, the CLI): `check`
validates a directory without starting anything; `settings` lists every secret and never a
value; commands for people print no library log lines; `find` has a header and its JSON no
storage formats; mistyped states, stages and symbols are errors that name the valid ones;
`console-user add` without a terminal says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
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


def _index_with_a_loan(data: Path) -> None:
    """An operators' index as a hub left it: one loan asked of SOUTH, then EAST; one dead
    letter."""
    from hub.ops import index as index_module

    index = index_module.Index(index_module.index_path(data))
    now = datetime.now(UTC).isoformat()
    index.db.execute(
        "INSERT INTO transactions (id, state, borrower, borrower_request_id, title, lender, "
        "lenders, deadlines, created, progressed, updated, snapshot_partition, snapshot_offset) "
        "VALUES (?, 'Loaned', 'NORTH', 'R-1', 'The Name of the Rose', 'EAST', ',SOUTH,EAST,', "
        "?, ?, ?, ?, 3, 41)",
        ("txn-rose", json.dumps({"due": "2030-01-01T00:00:00+00:00"}), now, now, now),
    )
    index.db.execute(
        "INSERT INTO deadletters (ref, at, stage, error, partner, protocol, detail) "
        "VALUES ('ill.deadletter/0/7', ?, 'parse', 'not XML', 'NORTH', 'ncip', ?)",
        (now, json.dumps({"bytes": 12})),
    )
    index.db.commit()
    index.close()


def test_find_prints_a_header_and_json_without_storage_formats(tmp_path: Path) -> None:
    _index_with_a_loan(tmp_path)
    env = {"RSHUB_DATA_DIR": str(tmp_path)}
    text = rshub("find", env=env)
    assert text.returncode == 0, text.stderr
    header, row = text.stdout.splitlines()[:2]
    assert header.split() == [
        "TRANSACTION",
        "STATE",
        "BORROWER",
        "REQUEST",
        "LENDER",
        "AGE",
        "TITLE",
    ]
    assert row.split()[:4] == ["txn-rose", "Loaned", "NORTH", "R-1"]
    assert header.index("STATE") == row.index("Loaned")  # the columns line up
    [found] = json.loads(rshub("find", "--json", env=env).stdout)
    assert found["lenders"] == ["SOUTH", "EAST"]
    assert found["deadlines"] == {"due": "2030-01-01T00:00:00+00:00"}
    assert "snapshot_offset" not in found and "snapshot_partition" not in found
    shown = json.loads(rshub("show", "txn-rose", "--json", env=env).stdout)
    assert shown["transaction"]["lenders"] == ["SOUTH", "EAST"]
    [letter] = json.loads(rshub("deadletters", "--json", env=env).stdout)
    assert letter["detail"] == {"bytes": 12}


def test_a_mistyped_state_or_stage_is_an_error_naming_the_valid_ones(tmp_path: Path) -> None:
    _index_with_a_loan(tmp_path)
    env = {"RSHUB_DATA_DIR": str(tmp_path)}
    done = rshub("find", "--state", "Loaned", "--state", "Requsted", env=env)
    assert done.returncode == 2
    assert "'Requsted' is not a state; did you mean Requested?" in done.stderr
    assert "WillSupply" in done.stderr and "LoanCompleted" in done.stderr  # all are named
    assert rshub("find", "--state", "loaned", env=env).returncode == 0  # case aside
    done = rshub("deadletters", "--stage", "authentcate", env=env)
    assert done.returncode == 2
    assert "did you mean authenticate?" in done.stderr and "parse" in done.stderr
    assert rshub("deadletters", "--stage", "parse", env=env).returncode == 0


def test_an_unknown_symbol_gets_did_you_mean(tmp_path: Path) -> None:
    _index_with_a_loan(tmp_path)
    env = {"RSHUB_DATA_DIR": str(tmp_path), "RSHUB_DIRECTORY": str(EXAMPLE)}
    done = rshub("find", "--borrower", "NROTH", env=env)
    assert done.returncode == 1 and "NROTH is not a partner" in done.stderr
    assert "did you mean NORTH?" in done.stderr
    # A staff command with a mistyped lender is refused before anything is sent (no broker
    # runs here: the answer comes from the directory).
    done = rshub("route", "txn-rose", "--lender", "SOTUH", env=env)
    assert done.returncode == 2 and "did you mean SOUTH?" in done.stderr
    done = rshub("redeliver", "--partner", "east", env=env)
    assert done.returncode == 2 and "did you mean EAST?" in done.stderr
    done = rshub("deadletters", "--partner", "NORHT", env=env)
    assert "did you mean NORTH?" in done.stderr
    assert "Traceback" not in done.stderr


def test_console_user_add_without_a_terminal_says_to_use_password_stdin(tmp_path: Path) -> None:
    env = {"RSHUB_DATA_DIR": str(tmp_path)}
    done = rshub("console-user", "add", "ada", "--role", "operator", env=env)
    assert done.returncode == 2
    assert "--password-stdin" in done.stderr and "Traceback" not in done.stderr
    done = rshub(
        "console-user",
        "add",
        "ada",
        "--role",
        "operator",
        "--password-stdin",
        env=env,
        stdin="a long enough password\n",
    )
    assert done.returncode == 0, done.stderr
    assert "ada" in rshub("console-user", "list", env=env).stdout


@pytest.mark.kafka
def test_commands_name_their_hub_and_print_no_library_log_lines(
    bootstrap: str, tmp_path: Path
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RSHUB_DATA_DIR": str(tmp_path)}
    for args in (["deliveries", "--json"], ["find"], ["deadletters"], ["route", "show", "t0"]):
        done = rshub(*args, env=env)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        lines = done.stderr.splitlines()
        assert not [line for line in lines if line.startswith("{")], (args, done.stderr)
        said = f"rshub: the hub of {tmp_path.resolve()}, Kafka at {bootstrap}"
        assert [line for line in lines if line.startswith(said)] == lines[:1], (args, lines)


@pytest.mark.kafka
async def test_a_broker_no_hub_uses_is_named_not_a_traceback(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """KAFKA_BOOTSTRAP_SERVERS pointing at some other Kafka: the commands that act on a hub
    say so (they ended in a CancelledError traceback from the Kafka client)."""
    await wait_for_metadata(broker.bootstrap_servers)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "RSHUB_DATA_DIR": str(tmp_path)}
    for args in (["deliveries"], ["redeliver", "--partner", "NORTH"], ["route", "t", "--restart"]):
        done = rshub(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert "holds no ill.events topic: not a hub's broker" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
