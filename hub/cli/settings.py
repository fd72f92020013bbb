"""`rshub settings`: every setting in effect, and whether each secret is set."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from connectors.core.contract import Registry
from connectors.core.directory import DirectoryError
from hub.runtime.settings import Settings


def show_settings(settings: Settings) -> int:
    """Every setting as in effect now (with its default), then every secret (the hub's
    transaction-id key, the connectors' own, each the directory names for a partner or a
    relay member) and whether it is set; never a secret's value."""
    from connectors.core import directory as directory_module
    from hub.runtime import app as assembly

    print(f"{'variable':<34} {'in effect':<28} {'default':<28} meaning")
    for key, value, default, description in settings.rows():
        print(f"{key:<34} {value:<28} {default:<28} {description}")
    from hub.ops import index as index_module

    own_rows = (  # the operators' index reads its own two settings
        (
            index_module.INDEX_FILE_ENV,
            str(index_module.index_path(settings.data_dir)),
            "<RSHUB_DATA_DIR>/index.sqlite3",
            "the operators' index (rshub find/show/deadletters)",
        ),
        (
            index_module.STUCK_AFTER_ENV,
            os.environ.get(index_module.STUCK_AFTER_ENV) or f"{index_module.STUCK_AFTER_HOURS:g}",
            f"{index_module.STUCK_AFTER_HOURS:g}",
            "hours without progress in a waiting state before `find --needs-attention` lists it",
        ),
    )
    for key, value, default, description in own_rows:
        print(f"{key:<34} {value:<28} {default:<28} {description}")
    registry = assembly.connectors(settings)
    for connector in registry:
        own = connector.load_settings(os.environ)
        for name, field in connector.settings.model_fields.items():
            value, default = getattr(own, name), field.default
            key = f"{connector.env_prefix()}{name.upper()}"
            shown = "unset" if value is None else str(value)
            print(
                f"{key:<34} {shown:<28} {'unset' if default is None else str(default):<28} "
                f"{field.description or ''}"
            )
    try:
        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
    except DirectoryError as error:
        directory, unreadable = None, error
    spoken = {p.protocol for p in directory.partners} if directory else None
    print("\nsecrets (never their values):")
    for owner, what, source, state in _hub_secrets(settings, registry, spoken):
        print(f"  {owner:<12} {what:<9} {source:<40} {state}")
    if directory is None:
        print(f"\npartner secrets: cannot read the directory: {unreadable}")
        return 0
    print(f"\npartner secrets ({settings.directory}):")
    for partner, direction, credential in directory.credentials():
        state = "set" if credential.secret() is not None else "NOT SET"
        print(f"  {partner.symbol:<12} {direction:<9} {credential.source():<40} {state}")
    from connectors.ncip_relay import codec as relay_codec

    for partner, option, source, is_set in relay_codec.member_secrets(directory):
        state = "set" if is_set else "NOT SET"
        print(f"  {partner.symbol:<12} {option:<9} {source:<40} {state}")
    return 0


def _hub_secrets(
    settings: Settings, registry: Registry, spoken: set[str] | None
) -> list[tuple[str, str, str, str]]:
    """The hub's own secrets: the transaction-id key (RSHUB_ID_SECRET, else a file the hub
    makes in its data folder at first start) and each connector's Secret settings; as
    (owner, what, where it is read from, whether it is set). `spoken`: the directory's
    protocols, if it was read (a connector no partner speaks needs none of its secrets)."""
    from connectors.core.secret import ID_SECRET_FILE, ID_SECRET_VARIABLE, Secret

    if os.environ.get(ID_SECRET_VARIABLE):
        id_state = "set"
    elif (settings.data_dir / ID_SECRET_FILE).is_file():
        id_state = f"unset: the file {settings.data_dir / ID_SECRET_FILE} is used"
    else:
        id_state = f"unset: {settings.data_dir / ID_SECRET_FILE} is made at first start"
    found = [("hub", "transaction ids", f"${ID_SECRET_VARIABLE}", id_state)]
    for connector in registry:
        own = connector.load_settings(os.environ)
        for name in connector.settings.model_fields:
            secret = getattr(own, name)
            if isinstance(secret, Secret):
                state = "set" if secret.value() is not None else "NOT SET"
                if state != "set" and spoken is not None and connector.name not in spoken:
                    state = "not set (no partner speaks it)"
                found.append((connector.name, name, secret.source(), state))
    return found


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `settings` command's options."""
    p_settings = sub.add_parser(
        "settings",
        help="list every setting: value in effect, default; whether each secret is set",
    )
    p_settings.add_argument(
        "--directory", type=Path, help="consortium YAML whose secrets to list (RSHUB_DIRECTORY)"
    )
