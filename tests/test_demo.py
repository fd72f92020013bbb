"""`rshub demo` runs to completion, including a step the hub refuses (it used to crash on
the refusal: the demo read an attribute the simulator's answer does not have)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kafka
def test_demo_completes_and_shows_the_refused_step(tmp_path: Path) -> None:
    env = {**os.environ, "RSHUB_DATA_DIR": str(tmp_path), "RSHUB_LOG_FORMAT": "json"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    refused = [line for line in done.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and "NORTH" in refused[0] and "State Transition" in refused[0]
    assert "done: both loans completed" in done.stdout
