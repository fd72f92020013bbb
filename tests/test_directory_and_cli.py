"""Directory validation and the `rshub decode` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connectors.core.directory import DirectoryError, load
from connectors.core.model import Event, Message
from connectors.registry import CONNECTORS
from tests.test_ncip_samples import SAMPLES

ROOT = Path(__file__).resolve().parent.parent


def test_example_consortium_loads() -> None:
    directory = load(ROOT / "examples" / "consortium.yaml")
    assert directory.rota_for(Message(event=Event.REQUEST, sender="NORTH")) == ["SOUTH", "EAST"]
    assert directory.by_agency("01NORTH_INST||MAIN").symbol == "NORTH"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "yaml_text,words",
    [
        (
            "consortium: X\npartners:\n  - {symbol: A, name: A, protocol: ncip, endpoint: http://x, inbound_auth: {scheme: bearer}}\n",
            "partners[0] (A).inbound_auth: Value error, needs secret_env or secret_file",
        ),
        (
            "consortium: X\npartners:\n  - {symbol: A, name: A, protocol: carrier-pigeon, endpoint: http://x}\n",
            "partners[0] (A): protocol 'carrier-pigeon' is not one of",
        ),
        (
            "consortium: X\npartners:\n  - {symbol: A, name: A, protocol: ncip, endpoint: http://x}\nrotas:\n  - {name: r, members: [A, B]}\n",
            "rotas (r): unknown partner 'B'",
        ),
        (
            "consortium: X\npartners:\n  - {symbol: A, name: A, protocol: ncip}\n",
            "a lending partner needs an endpoint",
        ),
        ("consortium: X\npartners: [\n", "not valid YAML"),
    ],
)
def test_bad_directory_names_the_entry(tmp_path: Path, yaml_text: str, words: str) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(yaml_text)
    with pytest.raises(DirectoryError) as caught:
        load(path, CONNECTORS.names)
    assert words in str(caught.value)


def rshub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_decode_prints_canonical_json() -> None:
    done = rshub(
        "decode",
        "ncip",
        str(SAMPLES / "princeton-to-alma__RenewItem__date-only-desireddatedue__reconstructed.xml"),
    )
    assert done.returncode == 0, done.stderr
    assert '"event": "Renew"' in done.stdout and '"item_id": "23915763110006421"' in done.stdout


def test_decode_prints_the_problem_and_exits_2() -> None:
    done = rshub("decode", "ncip", str(SAMPLES / "xc-toolkit__RequestItem.xml"))
    assert done.returncode == 2
    assert (
        "<ns1:RequestItemResponse><ns1:Problem>" in done.stdout
        and "Needed Data Missing" in done.stdout
    )
    assert "Traceback" not in done.stderr


def test_decode_of_garbage_and_missing_file_never_tracebacks(tmp_path: Path) -> None:
    garbage = tmp_path / "g.xml"
    garbage.write_bytes(b"\x00\xffnot xml")
    done = rshub("decode", "ncip", str(garbage))
    assert done.returncode == 2 and "Invalid Message Syntax Error" in done.stdout
    missing = rshub("decode", "ncip", str(tmp_path / "none.xml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr


def test_decode_iso18626_message_and_its_error() -> None:
    samples = SAMPLES.parent.parent / "iso18626" / "samples"
    done = rshub("decode", "iso18626", str(samples / "crosslink_supmsg-ok.xml"))
    assert done.returncode == 0 and '"event": "Loaned"' in done.stdout
    bad = rshub("decode", "iso18626", str(samples / "crosslink_supmsg-invalid-status.xml"))
    assert bad.returncode == 2
    assert "<messageStatus>ERROR</messageStatus>" in bad.stdout and "WeCouldLoan" in bad.stdout
