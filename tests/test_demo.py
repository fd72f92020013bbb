"""`rshub demo` runs to completion, including a step the hub refuses (it used to crash on
the refusal: the demo read an attribute the simulator's answer does not have), in the
protocols chosen; it prints the story and no log lines, and leaves no files behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("borrower", "lender", "refusal"),
    [("ncip", "ncip", "State Transition"), ("slnp", "iso10161", "SLNP_CMD_EXECUTION_ERROR")],
)
def test_demo_completes_and_shows_the_refused_step(
    tmp_path: Path, borrower: str, lender: str, refusal: str
) -> None:
    temporary, data = tmp_path / "tmp", tmp_path / "data"
    temporary.mkdir()
    env = {
        **os.environ,
        "RSHUB_DATA_DIR": str(data),
        "RSHUB_LOG_FORMAT": "json",
        "TMPDIR": str(temporary),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "demo", "--borrower", borrower, "--lender", lender],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    refused = [line for line in done.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and "NORTH" in refused[0] and refusal in refused[0]
    assert "done: both loans completed" in done.stdout
    # The story and nothing else: no log lines on either stream.
    logged = [
        line for line in (done.stdout + done.stderr).splitlines() if line.lstrip().startswith("{")
    ]
    assert logged == []
    # The hub's folder (directory, log) is removed; nothing is written to the data folder.
    assert list(temporary.iterdir()) == []
    assert not data.exists() or list(data.iterdir()) == []
