"""`rshub check [--directory FILE]`: the checks `serve` makes before it starts, without
starting anything (no broker, no port taken), so a directory can be checked before a
restart or in CI."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hub.cli import serve
from hub.runtime.settings import Settings


def check(settings: Settings) -> int:
    """Exit 0 with a one-line summary (and a line per unset secret: the hub starts without
    them, but those partners are refused), or 2 with every problem, one per line."""
    try:
        _, directory, _ = serve.load_checked(settings)
    except serve.NotStartable as refused:
        print(
            f"rshub: {settings.directory}: the hub would not start "
            f"({len(refused.problems)} problem{'s' if len(refused.problems) != 1 else ''}):",
            file=sys.stderr,
        )
        for problem in refused.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    protocols = Counter(partner.protocol for partner in directory.partners)
    spoken = ", ".join(f"{name} {count}" for name, count in sorted(protocols.items()))
    print(
        f"{settings.directory}: consortium {directory.consortium}, "
        f"{len(directory.partners)} partners ({spoken}), {len(directory.rotas)} rotas: "
        "the hub would start with it"
    )
    for unset in serve.unset_secrets(directory):
        print(
            f"warning: {unset['partner']} {unset['direction']}: {unset['secret']} is not set: "
            f"{unset['effect']}"
        )
    return 0


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`check`'s options."""
    p_check = sub.add_parser(
        "check", help="check a directory (and the settings) as `serve` would, starting nothing"
    )
    p_check.add_argument(
        "--directory", type=Path, help="consortium YAML (default: RSHUB_DIRECTORY)"
    )
