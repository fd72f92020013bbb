"""Fixtures: a real embedded broker per test, the hub as a real subprocess, NCIP libraries."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.simulator import Library, TcpLibrary, directory_yaml, running
from hub.cli.process import HubProcess
from hub.kafka import topics
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "standards" / "ncip" / "samples"
# Transaction ids are keyed with the deployment's secret (connectors.core.model.id_key). The tests and the
# hubs they start (which inherit the environment) share one, so a test can compute the id the
# hub gives a request.
os.environ.setdefault("RSHUB_ID_SECRET", "rshub-tests-id-secret")


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def bootstrap(broker: EmbeddedBroker) -> str:
    await wait_for_metadata(broker.bootstrap_servers)
    await topics.ensure(broker.bootstrap_servers, topics.load(ROOT / "topics.yaml"))
    return broker.bootstrap_servers


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    libs = {
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "EAST": Library("EAST", "01EAST_INST||CENTRAL", "east-secret"),
    }
    async with running(libs):
        yield libs


@pytest.fixture
def directory_extra() -> dict[str, dict[str, object]]:
    """Directory fields per library symbol (catalogue, thresholds); modules override it."""
    return {}


@pytest.fixture
def hub_env() -> dict[str, str]:
    """Extra settings for the hub process; modules override it."""
    return {}


@pytest.fixture
async def hub(
    bootstrap: str,
    libraries: dict[str, Library],
    directory_extra: dict[str, dict[str, object]],
    hub_env: dict[str, str],
    tmp_path: Path,
) -> AsyncIterator[HubProcess]:
    directory = tmp_path / "consortium.yaml"
    # The rota is the libraries in order; a library is never asked to lend to itself.
    directory.write_text(
        directory_yaml(list(libraries.values()), rota=list(libraries), extra=directory_extra)
    )
    env = {f"RSHUB_SECRET_{lib.symbol}": lib.secret for lib in libraries.values()}
    env.update(
        {
            "RSHUB_OUTBOUND_RETRIES": "3",
            "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
            "RSHUB_OUTBOUND_TIMEOUT_S": "5",
            **hub_env,
        }
    )
    running = HubProcess(bootstrap, directory, tmp_path, env)
    for lib in libraries.values():
        lib.hub_url = running.url
        if isinstance(lib, TcpLibrary):
            lib.hub_tcp = ("127.0.0.1", running.iso10161_port)
    await running.start()
    yield running
    running.stop()
