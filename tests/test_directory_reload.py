"""`rshub serve` reads its directory again on SIGHUP (issue 27): a good one is used from then
on without a restart; a bad one is refused with the reason in the log, and the hub goes on
with the one it had."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from hub.cli.process import HubProcess

pytestmark = pytest.mark.kafka


async def answer(hub: HubProcess, symbol: str, secret: str = "") -> str:
    """What the hub answers an NCIP message posted as from `symbol`."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with aiohttp.ClientSession() as session:
        body = b"<NCIPMessage/>"
        async with session.post(f"{hub.url}/ncip/{symbol}", data=body, headers=headers) as reply:
            return await reply.text()


async def logged(hub: HubProcess, event: str, after: int) -> dict[str, object]:
    """The first JSON log line named `event` past byte `after` of the hub's log."""
    for _ in range(100):
        for line in hub.log.read_bytes()[after:].decode(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                return dict(json.loads(line))
        await asyncio.sleep(0.1)  # the log is a file: nothing to await but its growth
    raise AssertionError(f"no {event} in {hub.log.read_text()[-2000:]}")


async def hang_up(hub: HubProcess, event: str) -> dict[str, object]:
    assert hub.process is not None
    mark = hub.log.stat().st_size
    hub.process.send_signal(signal.SIGHUP)
    return await logged(hub, event, mark)


async def test_sighup_reloads_a_good_directory_and_refuses_a_bad_one(
    hub: HubProcess, tmp_path: Path
) -> None:
    path = tmp_path / "consortium.yaml"
    first = yaml.safe_load(path.read_text())
    gone = "no ncip partner 'EAST'"
    assert gone not in await answer(hub, "EAST")

    # EAST leaves the consortium: answered as unknown at once, no restart.
    second = {**first, "partners": [p for p in first["partners"] if p["symbol"] != "EAST"]}
    second["rotas"] = [
        {**r, "members": [m for m in r["members"] if m != "EAST"]} for r in first["rotas"]
    ]
    path.write_text(yaml.safe_dump(second))
    reloaded = await hang_up(hub, "directory.reloaded")
    assert reloaded["partners"] == len(first["partners"]) - 1
    assert gone in await answer(hub, "EAST")

    # A broken file and one serve would refuse: the reason logged, the last good one kept.
    path.write_text("consortium: X\npartners: [\n")
    refused = await hang_up(hub, "directory.reload_refused")
    assert "not valid YAML" in str(refused["reason"])
    wrong = {
        **first,
        "partners": [{**p, "endpoint": "tcp://127.0.0.1:9"} for p in first["partners"]],
    }
    path.write_text(yaml.safe_dump(wrong))
    refused = await hang_up(hub, "directory.reload_refused")
    assert "endpoint 'tcp://127.0.0.1:9' is not a http:// or https:// address" in str(
        refused["reason"]
    )
    assert gone in await answer(hub, "EAST")  # still the second directory
    assert hub.process is not None and hub.process.poll() is None

    # EAST back: known again.
    path.write_text(yaml.safe_dump(first))
    await hang_up(hub, "directory.reloaded")
    assert gone not in await answer(hub, "EAST")

    # The same partners, NORTH's secret now in a file: its new secret is taken at once.
    secret = tmp_path / "north-secret"
    secret.write_text("north-rotated")
    north = next(p for p in first["partners"] if p["symbol"] == "NORTH")
    rotated = {"scheme": "bearer", "secret_file": str(secret)}
    partners = [{**p, "inbound_auth": rotated} if p is north else p for p in first["partners"]]
    refused = "credentials for NORTH not accepted"
    assert refused in await answer(hub, "NORTH", "north-rotated")
    path.write_text(yaml.safe_dump({**first, "partners": partners}))
    await hang_up(hub, "directory.reloaded")
    assert refused not in await answer(hub, "NORTH", "north-rotated")
