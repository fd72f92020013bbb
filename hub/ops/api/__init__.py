"""The hub's JSON API (/api/v1 on the gateway's HTTP port; docs/api.md).

    tokens.py   the clients' tokens (hashed), `rshub api-token`
    views.py    what the API answers (pydantic), from the table row or the index
    openapi.py  the OpenAPI 3.1 document, generated from the models
    patron.py   the key of a patron's status link
    app.py      the aiohttp sub-application the gateway mounts (webhook subscriptions too;
                hub.runtime.webhooks delivers them)

`build` makes the API `rshub serve` mounts; `token_command` is `rshub api-token`. The request
models and the codec are the API connector's (connectors.api), handed over by the
composition root: the hub knows connectors through the contract only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from connectors.core.contract import Codec, Intake
from hub.ops.api.app import Api
from hub.ops.api.openapi import document
from hub.ops.api.tokens import TokenFile, TokensError
from hub.ops.api.tokens import add as add_token
from hub.ops.api.tokens import load as load_tokens
from hub.ops.api.tokens import remove as remove_token
from hub.runtime.settings import Settings

__all__ = ["Api", "build", "token_command"]


def build(
    settings: Settings,
    bootstrap: str,
    intake: Intake,
    codec: Codec[Any],
    models: tuple[type[BaseModel], type[BaseModel]],
    row: Callable[[str], Any] | None = None,
    renews: Callable[[str], bool] | None = None,
) -> Api:
    """The API of a running hub: its staff actions are the console's (`rshub redeliver`,
    `rshub route`, `rshub deadletters replay`), with the client's name as who asked."""
    from connectors.core.records import RouteAction
    from hub.ops import actions
    from hub.ops import index as index_module
    from hub.ops import replay as replaying
    from hub.runtime import webhook_store, webhooks

    link = actions.Link(bootstrap, settings.reply_timeout_s)
    path = index_module.index_path(settings.data_dir)

    async def redeliver(txn: str, partner: str | None, by: str) -> tuple[int, str]:
        # The API answers once the hub took the command (docs/api.md); the console waits.
        return await actions.redeliver(link, txn, partner, by, wait=False)

    async def route(txn: str, action: str, lender: str | None, by: str) -> tuple[int, str]:
        return await actions.route(link, txn, RouteAction(action), lender, by)

    async def manage(txn: str, action: str, text: str, to: str | None, by: str) -> tuple[int, str]:
        if action == "message":
            assert to is not None  # the API asks for it
            return await actions.message(link, txn, to, text, by)
        act = {"cancel": actions.cancel, "close": actions.close, "note": actions.note}[action]
        return await act(link, txn, text, by)

    async def replay(ref: str, trust: bool, by: str) -> tuple[int, str]:
        index = index_module.Index(path)
        try:
            letter = index.dead_letter(ref)
            raw = index.raw(letter["audit_ref"]) if letter and letter.get("audit_ref") else None
        finally:
            index.close()
        return await replaying.replay_letter(settings, bootstrap, ref, letter, raw, trust)

    return Api(
        intake=intake,
        codec=codec,
        tokens=TokenFile(settings.api_tokens()),
        index_path=path,
        document=document(*models),
        row=row,
        renews=renews,
        redeliver=redeliver,
        route=route,
        replay=replay,
        manage=manage,
        stuck=index_module.stuck_after(),
        webhooks=webhook_store.path_in(settings.data_dir),
        event_ends=lambda: webhooks.event_ends(bootstrap),
    )


def token_command(
    settings: Settings, action: str, name: str | None, partner: str | None, scopes: list[str]
) -> int:
    """`rshub api-token add NAME [--partner SYM] --scope S ...` prints the token once;
    `remove NAME`; `list` (never a token or its hash)."""
    path = settings.api_tokens()
    try:
        if action == "list":
            for client in sorted(load_tokens(path).values(), key=lambda c: c.name):
                owner = client.partner or "(staff)"
                print(f"{client.name:<24} {owner:<12} {','.join(sorted(client.scopes))}")
            return 0
        if not name:
            print(f"rshub: usage: rshub api-token {action} NAME", file=sys.stderr)
            return 2
        if action == "remove":
            if not remove_token(path, name):
                print(f"rshub: no API client {name} in {path}", file=sys.stderr)
                return 1
            print(f"removed {name} from {path} (its token is refused from now on)")
            return 0
        token = add_token(path, name, partner, scopes)
    except TokensError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    print(token)
    print(f"added {name} to {path}; the token above is shown only now", file=sys.stderr)
    return 0
