"""The operators' console: web pages on their own port, behind their own login.

    users.py     the users file (scrypt hashes), `rshub console-user`
    sessions.py  sessions, CSRF tokens, login throttling
    html.py      escaping HTML builder; pages.py: templates and pages; static.py: CSS and JS
    views.py     what the pages read from the operators' index
    pretty.py    raw messages as people read them
    app.py       the aiohttp application and the mode Service `rshub serve` starts

`build` makes the console `rshub serve` runs; `user_command` is `rshub console-user`.
"""

from __future__ import annotations

import getpass
import socket
import sys
from typing import Any
from zoneinfo import ZoneInfo

from connectors.core.directory import Directory
from hub.ops.console.app import Console
from hub.ops.console.users import ROLES, UsersError
from hub.ops.console.users import add as add_user
from hub.ops.console.users import load as load_users
from hub.ops.console.users import remove as remove_user
from hub.runtime.settings import Settings

__all__ = ["Console", "build", "user_command"]


def build(
    settings: Settings,
    directory: Directory,
    bootstrap: str,
    sock: socket.socket,
    notes: dict[str, Any],
    load: Any,
) -> Console:
    """The console of a running hub: its pages read the index `serve` keeps; its actions are
    the staff actions of `hub.ops.actions` (as `rshub route`, `rshub redeliver`...) and
    `rshub deadletters replay`/`ack`, with the console user as who asked."""
    from hub.ops import actions
    from hub.ops import deliveries as delivery_cli
    from hub.ops import index as index_module
    from hub.ops import replay as replaying

    staff = actions.Staff(actions.Link.of(settings, directory, bootstrap))

    async def redeliver(txn: str | None, partner: str | None, by: str) -> tuple[int, str]:
        if txn is not None:
            return await staff.redeliver(txn, partner, by)
        assert partner is not None
        # Request by request, so the operator hears what came of each try.
        steps = (await delivery_cli.waiting(bootstrap)).get(partner, [])
        txns = [s["transaction_id"] for s in steps if s["status"] in delivery_cli.WAITING]
        return await staff.redeliver_partner(partner, txns, by)

    async def replay(
        ref: str, letter: dict[str, Any] | None, raw: dict[str, Any] | None, trust: bool, by: str
    ) -> tuple[int, str]:
        return await replaying.replay_letter(settings, bootstrap, ref, letter, raw, trust, by)

    async def acknowledge(
        ref: str, letter: dict[str, Any] | None, by: str, note: str
    ) -> tuple[int, str]:
        return await replaying.acknowledge(bootstrap, ref, letter, by, note)

    async def waiting() -> dict[str, list[dict[str, Any]]]:
        return await delivery_cli.waiting(bootstrap)

    said = [str(notes["warning"])] if notes.get("warning") else []
    return Console(
        index_path=index_module.index_path(settings.data_dir),
        users_file=settings.console_users(),
        directory=directory,
        host=settings.console_host,
        sock=sock,
        session_idle_s=settings.console_session_hours * 3600.0,
        idle_timeout_s=settings.idle_timeout_s,
        max_connections_per_source=settings.max_connections_per_source,
        max_connections=settings.console_max_connections,
        secure_cookies=settings.console_secure_cookies,
        live_interval_s=settings.console_live_interval_s,
        notes=said,
        load=load,
        waiting=waiting,
        redeliver=redeliver,
        replay=replay,
        acknowledge=acknowledge,
        staff=staff,
        zone=ZoneInfo(settings.console_timezone),  # checked when the settings were read
    )


def user_command(settings: Settings, action: str, name: str | None, role: str, stdin: bool) -> int:
    """`rshub console-user add NAME --role operator|reader [--password-stdin]`, `remove NAME`,
    `list`. The password is asked twice on the terminal (or read from one line of stdin)."""
    path = settings.console_users()
    try:
        if action == "list":
            for user in load_users(path).values():
                print(f"{user.name:<24} {user.role}")
            return 0
        if not name:
            print(f"rshub: usage: rshub console-user {action} NAME", file=sys.stderr)
            return 2
        if action == "remove":
            if not remove_user(path, name):
                print(f"rshub: no console user {name} in {path}", file=sys.stderr)
                return 1
            print(f"removed {name} from {path} (a running console logs them out at once)")
            return 0
        if role not in ROLES:
            print(f"rshub: --role is one of {', '.join(ROLES)}", file=sys.stderr)
            return 2
        if stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != password:
                print("rshub: the passwords differ", file=sys.stderr)
                return 2
        new = add_user(path, name, role, password)
    except UsersError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    print(f"{'added' if new else 'updated'} {name} ({role}) in {path}")
    return 0
