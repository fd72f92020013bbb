"""`rshub settings`: every setting in effect, and whether each secret is set."""

from __future__ import annotations

import argparse
import os

from connectors.core.directory import DirectoryError
from hub.runtime.settings import Settings


def show_settings(settings: Settings) -> int:
    """Every setting as in effect now (with its default), then each partner secret the
    directory names and whether it is set; never a secret's value."""
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
        directory = directory_module.load(settings.directory, registry.names)
    except DirectoryError as error:
        print(f"\npartner secrets: cannot read the directory: {error}")
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


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `settings` command's options."""
    sub.add_parser(
        "settings",
        help="list every setting: value in effect, default; whether each partner secret is set",
    )
