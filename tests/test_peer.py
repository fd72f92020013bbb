"""`rshub peer` plays the directory's libraries against a real hub (real process, real
broker): one lender and one borrower per protocol (NCIP, ISO 18626 v1.2 and 2021-2, ISO 10161,
SLNP), all lending; `rshub peer send B request --to L ...` from each borrower to every lender
makes a whole loan per pair, which the borrowers see completed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.core.connections import free_port
from hub.cli.process import HubProcess

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent

# symbol stem -> (protocol, agency id, extra directory fields)
PROTOCOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "NCIP": ("ncip", "01{}_INST||MAIN", {}),
    "ISO": ("iso18626", "DK-{}", {}),
    "I21": ("iso18626", "DK-21{}", {"options": {"version": "2021-2"}}),
    "ILL": ("iso10161", "ILL-{}", {"addresses": ["127.0.0.1/32"]}),
    "ZFL": ("slnp", "ZFL{}", {"addresses": ["127.0.0.1/32"]}),
}


def _partner(stem: str, role: str) -> dict[str, Any]:
    protocol, agency, extra = PROTOCOLS[stem]
    symbol = f"{stem}-{role}"
    port = free_port()
    endpoint = {
        "ncip": f"http://127.0.0.1:{port}/ncip",
        "iso18626": f"http://127.0.0.1:{port}/iso18626",
        "iso10161": f"tcp://127.0.0.1:{port}",
        "slnp": f"slnp://127.0.0.1:{port}",
    }[protocol]
    entry: dict[str, Any] = {
        "symbol": symbol,
        "name": f"{symbol} library",
        "protocol": protocol,
        "endpoint": endpoint,
        "agency_ids": [agency.format(role)],
        "lends": role == "L",
        **extra,
    }
    secret_env = f"RSHUB_SECRET_{stem}_{role}"
    if protocol in ("ncip", "iso18626"):
        entry["inbound_auth"] = {"scheme": "bearer", "secret_env": secret_env}
    elif protocol == "slnp" and role == "B":  # two SLNP servers at one address: one logs in
        entry["inbound_auth"] = {"scheme": "basic", "username": "zfl-b", "secret_env": secret_env}
    return entry


def _read_until(stream: asyncio.StreamReader, done: Any, seen: list[str]) -> Any:
    async def read() -> None:
        while not done(seen):
            line = await stream.readline()
            if not line:
                raise AssertionError("rshub peer ended:\n" + "".join(seen[-40:]))
            seen.append(line.decode())

    return read()


async def test_peer_makes_a_loan_between_every_pair_of_protocols(
    bootstrap: str, tmp_path: Path
) -> None:
    partners = [_partner(stem, role) for role in ("B", "L") for stem in PROTOCOLS]
    lenders = [p["symbol"] for p in partners if p["lends"]]
    borrowers = [p["symbol"] for p in partners if not p["lends"]]
    document = {
        "consortium": "Every protocol",
        "partners": partners,
        "rotas": [{"name": "all", "members": lenders}],
        "default_rota": "all",
    }
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(document, sort_keys=False))
    secrets = {f"RSHUB_SECRET_{s.replace('-', '_')}": f"{s}-secret" for s in borrowers + lenders}
    env = {**secrets, "RSHUB_SLNP_PORT": str(free_port())}
    hub = HubProcess(bootstrap, directory, tmp_path / "hub", env)
    await hub.start()
    peer_env = {
        **hub.env,
        "PYTHONPATH": str(ROOT),
        "RSHUB_DATA_DIR": str(tmp_path / "peer"),
    }
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "peer",
        *borrowers,
        *lenders,
        "--behaviour",
        "lend",
        cwd=ROOT,
        env=peer_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert peer.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(
            _read_until(peer.stdout, lambda s: s and s[-1].startswith("ready"), seen), 60
        )
        assert sum("listening at" in line for line in seen) == 10, seen
        sends = []
        for borrower in borrowers:
            command = [sys.executable, "-m", "hub.cli", "peer", "send", borrower, "request"]
            command += [arg for lender in lenders for arg in ("--to", lender)]
            sends.append(
                await asyncio.create_subprocess_exec(
                    *command, cwd=ROOT, env=peer_env, stdout=asyncio.subprocess.PIPE
                )
            )
        for send in sends:
            out, _ = await asyncio.wait_for(send.communicate(), 60)
            assert send.returncode == 0, out.decode()
            assert out.decode().count("[accepted]") == len(lenders), out.decode()

        def completed(lines: list[str]) -> Counter[str]:
            return Counter(
                line.split()[1] for line in lines if "<- hub" in line and " LoanCompleted " in line
            )

        def every_loan_done(lines: list[str]) -> bool:
            done = completed(lines)
            return all(done[b] == len(lenders) for b in borrowers)

        await asyncio.wait_for(_read_until(peer.stdout, every_loan_done, seen), 240)
    finally:
        if peer.returncode is None:
            peer.terminate()
            await asyncio.wait_for(peer.wait(), 20)
        hub.stop()
    text = "".join(seen)
    assert "REFUSED" not in text and "NOT SENT" not in text, text
    for lender in lenders:  # each lender was asked once by every borrower, and lent
        asked = [line for line in seen if line.split()[1:4] == [lender, "<-", "hub"]]
        assert sum(" Request " in line for line in asked) == len(borrowers), (lender, text)
        checked_in = [
            line
            for line in seen
            if line.split()[1:4] == [lender, "->", "hub"] and " LoanCompleted " in line
        ]
        assert len(checked_in) == len(borrowers), (lender, text)
    assert peer.returncode == 0 or peer.returncode == -15, peer.returncode
