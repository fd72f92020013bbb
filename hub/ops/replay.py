"""Replaying a dead letter: its raw bytes, as its partner sent them, through the gateway
again with the directory as it is now (`rshub deadletters replay` and the console)."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import Registry
from connectors.core.directory import Directory, DirectoryError
from hub.runtime.settings import Settings, SettingsError


async def replay_letter(
    settings: Settings,
    bootstrap: str,
    ref: str,
    letter: dict[str, Any] | None,
    raw: dict[str, Any] | None,
    trust_sender: bool,
) -> tuple[int, str]:
    """`rshub deadletters replay` (and the console's Replay): the checks, then the replay;
    (exit code, what to say)."""
    from connectors.core import directory as directory_module
    from hub.runtime import app as assembly

    if letter is None:
        return 1, f"no dead letter {ref} (see rshub deadletters)"
    if raw is None:
        return 2, f"{ref} has no raw message to replay ({letter['stage']})"
    if letter["stage"] == "authenticate" and not trust_sender:
        return 2, (
            f"{ref} was refused before its sender was authenticated: nothing says "
            f"it came from {letter['partner']}; replay with --trust-sender if you know it did"
        )
    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.names)
    except (DirectoryError, SettingsError) as error:
        return 2, str(error)
    partner = directory.partner(letter["partner"] or "")
    if partner is None:
        return 2, f"{letter['partner']} is still not a partner in {settings.directory}"
    connector = registry.get(partner.protocol)
    if connector is None or connector.name != (raw["protocol"] or connector.name):
        return 2, (
            f"{partner.symbol} speaks {partner.protocol} in the directory; the message "
            f"is {raw['protocol']}"
        )
    body = str(raw["body"]).encode("latin-1")
    if raw.get("size") is not None:
        return 2, (
            f"only the first {len(body)} of its {raw['size']} bytes were kept (it was refused "
            f"before authentication or as too large); ask {partner.symbol} to send it again"
        )
    return await _replay(bootstrap, settings, directory, registry, connector, partner, raw, body)


async def _replay(
    bootstrap: str,
    settings: Settings,
    directory: Directory,
    registry: Registry,
    connector: Any,
    partner: Any,
    raw: dict[str, Any],
    body: bytes,
) -> tuple[int, str]:
    from connectors.core.contract import Refusal
    from hub.kafka.producer import KafkaIO
    from hub.runtime import app as assembly
    from hub.runtime.gateway import Gateway

    io = KafkaIO(bootstrap)
    await io.start()
    gateway = Gateway(
        settings,
        directory,
        io,
        registry,
        settings.limits(),
        connector_settings=assembly.connector_settings(registry),
    )
    try:
        answer = await gateway.take(connector.codec, partner.symbol, body, raw["content_type"])
    except Refusal as refusal:
        await gateway.refuse(refusal, partner.symbol, connector.name)
        return 2, f"refused again ({refusal.stage}): {refusal.reason}"
    finally:
        await io.stop()
    reply = answer.body.decode("utf-8", "replace")
    return 0, f"replayed {raw['ref']} as from {partner.symbol}; its answer:\n{reply}"
