"""The hub started as a child process (what `rshub demo`, the tests and the benchmarks run)
comes up even when the console's port it was given is taken meanwhile by another program:
the port is chosen again, not the whole start failed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from connectors.core.directory import load
from connectors.registry import CONNECTORS
from hub.cli.process import HubProcess
from tests.conftest import ROOT

pytestmark = pytest.mark.kafka


async def test_a_console_port_taken_before_the_start_is_chosen_again(
    bootstrap: str, tmp_path: Path
) -> None:
    directory = ROOT / "examples" / "consortium.yaml"
    load(directory, CONNECTORS.names)  # the example directory the hub is given
    hub = HubProcess(bootstrap, directory, tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", hub.console_port))
        squatter.listen()
        taken = hub.console_port
        try:
            await hub.start()
            assert hub.console_port != taken
            assert "Address already in use" in hub.log.read_text()
        finally:
            hub.stop()
