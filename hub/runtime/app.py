"""The composition root's parts: the connectors of this hub (the registry plus any named in
RSHUB_EXTRA_CONNECTORS), their settings, the limits every transport shares, and the start-up
checks of the directory against them. Only this module, the CLI and the demo import the
registry; the rest of the hub knows connectors through `connectors.core.contract` alone."""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from connectors.core.contract import Connector, Listener, Registry
from connectors.core.directory import Directory
from connectors.core.holdings import Client
from hub.runtime.settings import Settings, SettingsError

# The cyclic garbage collector, tuned for a long-running worker (`tune_gc`). A young
# collection every GC_YOUNG allocations instead of CPython's 700: a request allocates
# thousands of short-lived objects (pydantic models, Kafka records, futures) that reference
# counting frees anyway, and with the default a young collection ran every few hundred
# microseconds of work, each promoting survivors that the older collections then walk again.
GC_YOUNG = 20_000
GC_OLDER = 20


def tune_gc() -> None:
    """Called once everything long-lived is built (modules, schemas, the faust app): those
    objects are moved out of the collector's sight (`gc.freeze`), so no collection walks
    them again; young collections are made rarer (GC_YOUNG). Nothing is freed later than it
    would be by reference counting; only cycles wait longer. (The transaction agent alone on
    an in-memory step log: about a quarter less CPU per step.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, GC_OLDER, GC_OLDER)


def catalogue_clients() -> dict[str, Client]:
    from connectors.registry import catalogue_clients

    return catalogue_clients()


def connectors(settings: Settings) -> Registry:
    """The registry's connectors, then those named by `extra_connectors`
    ("package.module:NAME", comma-separated): a connector maintained outside rshub plugs in
    without an edit here."""
    from connectors.registry import CONNECTORS

    found: list[Connector[Any, Any]] = list(CONNECTORS)
    for spec in filter(None, (s.strip() for s in settings.extra_connectors.split(","))):
        module, _, name = spec.partition(":")
        try:
            connector = getattr(importlib.import_module(module), name or "CONNECTOR")
        except (ImportError, AttributeError) as error:
            raise SettingsError(f"RSHUB_EXTRA_CONNECTORS: cannot load {spec!r}: {error}") from None
        if not isinstance(connector, Connector):
            raise SettingsError(f"RSHUB_EXTRA_CONNECTORS: {spec!r} is not a Connector")
        found.append(connector)
    return Registry(found)


def connector_settings(
    registry: Registry, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Each connector's settings from its RSHUB_<NAME>_<FIELD> variables."""
    env = os.environ if environ is None else environ
    loaded: dict[str, Any] = {}
    for connector in registry:
        try:
            loaded[connector.name] = connector.load_settings(env)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise SettingsError(
                f"{connector.env_prefix()}{field.upper()}: {first['msg']}"
            ) from None
    return loaded


def listeners(
    registry: Registry,
    settings: Settings,
    loaded: dict[str, Any],
    directory: Directory,
    every: bool = False,
) -> list[Listener]:
    """The listeners of the connectors that have partners in the directory (a port is
    opened only for a protocol someone speaks; `every`: all of them)."""
    shared = settings.limits()
    wanted = set(registry.names) if every else spoken(directory)
    built: list[Listener] = []
    for connector in registry:
        if connector.listeners is not None and connector.name in wanted:
            built.extend(connector.listeners(shared, loaded[connector.name], directory))
    return built


def unspoken_outbound(registry: Registry, directory: Directory) -> dict[str, str]:
    """The outbound topics of the connectors with a sender that no partner speaks, with
    the connector's name."""
    speaking = spoken(directory)
    return {
        connector.outbound_topic: connector.name
        for connector in registry
        if connector.sender is not None and connector.name not in speaking
    }


def delivering(registry: Registry, directory: Directory, unread: Mapping[str, int]) -> set[str]:
    """The connectors an outbound agent runs for: those a partner speaks, and those whose
    outbound topic still holds commands (from before the directory changed), which are
    delivered or failed, never left (`unread`: counts per topic; -1 for not known, which
    counts as holding some). Every other agent would only add its partitions to each
    fetch the worker makes: with all of the registry's connectors, that was 18% of the
    hub's CPU per request and 30% of the embedded broker's (bench.hub, one directory of
    NCIP partners)."""
    quiet = unspoken_outbound(registry, directory)
    return {
        connector.name
        for connector in registry
        if connector.sender is not None
        and (connector.outbound_topic not in quiet or unread.get(connector.outbound_topic, 0) != 0)
    }


def spoken(directory: Directory) -> set[str]:
    """The protocols the directory's partners speak."""
    return {partner.protocol for partner in directory.partners}
