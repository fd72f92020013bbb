"""docs/tutorial.md runs as written: its ```sh tutorial blocks, verbatim and in order, in one
shell in a temporary folder (with free ports for the hub it starts), each block succeeding
and printing what the ```text block after it shows (`<...>` stands for anything).

The page is what a newcomer follows first; run here, it cannot rot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.core.connections import free_port

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\S*)(?: (\S+))?\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, list[str]]]:
    """(script, expected lines) for every ```sh tutorial block."""
    found: list[tuple[str, list[str]]] = []
    for match in FENCE.finditer(TUTORIAL.read_text()):
        kind, mark, body = match.groups()
        if kind == "sh" and mark == "tutorial":
            found.append((body, []))
        elif kind == "text" and found and not found[-1][1]:
            following = TUTORIAL.read_text()[: match.start()].rstrip()
            if following.endswith("```"):  # an output block right after a tutorial block
                found[-1][1].extend(line for line in body.splitlines() if line.strip())
    return found


def pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in line.split("<...>")))


def test_the_tutorial_is_found_whole() -> None:
    found = blocks()
    assert len(found) >= 10
    assert any("rshub serve" in script for script, _ in found)
    assert sum(1 for _, expected in found if expected) >= 8


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    found = blocks()
    script = ["set -euo pipefail"]
    for i, (body, _) in enumerate(found):
        script += [f"printf '\\n@@block {i}@@\\n'", body.rstrip(), f"printf '\\n@@done {i}@@\\n'"]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RSHUB_") and key != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        RSHUB_HTTP_PORT=str(free_port()),
        RSHUB_CONSOLE_PORT=str(free_port()),
    )
    folder = tmp_path / "my-consortium"
    try:
        run = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        # The hub and its broker outlive a failed block: end them, whatever happened.
        pid_file = folder / "hub.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)
        if (folder / ".rshub-data").exists():
            subprocess.run(
                ["rshub", "broker", "stop", "--force"],
                cwd=folder,
                env=env,
                capture_output=True,
                timeout=120,
            )
    log = folder / "hub.log"
    context = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    if log.exists():
        context += f"\nhub.log (end):\n{log.read_text()[-3000:]}"
    for i, (body, expected) in enumerate(found):
        start, end = f"@@block {i}@@\n", f"\n@@done {i}@@"
        assert start in run.stdout and end in run.stdout, f"block {i} failed:\n{body}\n{context}"
        output = run.stdout.split(start, 1)[1].split(end, 1)[0]
        for line in expected:
            assert pattern(line).search(output), (
                f"block {i} did not print {line!r}:\n{body}\n--- it printed:\n{output}"
            )
    assert run.returncode == 0, context
