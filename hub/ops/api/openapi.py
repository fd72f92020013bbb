"""The API's OpenAPI 3.1 document, generated from the pydantic models: the request models
come from the API connector (handed over by the composition root, as the hub knows
connectors only through the contract), the answers from `views`. `rshub serve` serves it at
/api/v1/openapi.json; docs/openapi.json is the same document, kept in step by a test."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hub.ops.api import views
from hub.runtime.webhooks import DELIVERY, SIGNATURE, WebhookEvent

VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
STATES = [
    "New", "Locating", "Requested", "WillSupply", "Loaned", "Received", "RenewPending",
    "CancelPending", "Recalled", "Overdue", "Returned", "LoanCompleted", "CopyCompleted",
    "Cancelled", "Unfilled", "Expired",
]  # fmt: skip
ACTIONS = ["cancel", "renew", "received", "returned"]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _problems(*statuses: int) -> dict[str, Any]:
    words = {
        400: "the query is not valid",
        401: "no token, or a token not accepted",
        403: "the token lacks the scope",
        404: "no such request (for this token)",
        409: "the request cannot take this step in its state",
        413: "the body is too large",
        422: "the body is not valid; `errors` names each field",
        429: "too many failed tokens from this address",
        503: "the hub cannot store messages now; try again",
    }
    return {
        str(s): {
            "description": words[s],
            "content": {PROBLEM: {"schema": _ref(views.Problem)}},
        }
        for s in statuses
    }


AUTH = (401, 403, 429)


def _id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[A-Za-z0-9._:~-]+$",
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


FIND_PARAMETERS = [
    _query("borrower", {"type": "string", "maxLength": 256}, "staff tokens: this borrower only"),
    _query("request_id", {"type": "string", "maxLength": 256}, "the borrower's request id"),
    _query("patron", {"type": "string", "maxLength": 256}, "the patron's id"),
    _query("lender", {"type": "string", "maxLength": 256}, "a lender asked at any time"),
    _query("title", {"type": "string", "maxLength": 1000}, "words of the title or author"),
    _query(
        "state",
        {"type": "array", "items": {"type": "string", "enum": STATES}},
        "in one of these states (repeat the parameter)",
    ),
    _query("open", {"type": "boolean"}, "open requests only"),
    _query("needs_attention", {"type": "boolean"}, "only those that need staff"),
    _query("older_than_hours", {"type": "number", "minimum": 0}, "created this long ago or more"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size"),
    _query(
        "offset", {"type": "integer", "minimum": 0, "maximum": 100000, "default": 0}, "page start"
    ),
]


def document(place: type[BaseModel], action: type[BaseModel]) -> dict[str, Any]:
    """The whole document; `place` and `action`: the API connector's request models."""
    models: list[type[BaseModel]] = [
        place, action, views.Accepted, views.RequestView, views.RequestPage, views.Outcome,
        views.Redeliver, views.Route, views.StaffAct, views.Replay, views.Problem,
        views.WebhookCreate, views.WebhookCreated, views.WebhookList, views.WebhookDeliveries,
        views.WebhookRedeliver, views.PatronStatus, WebhookEvent,
    ]  # fmt: skip
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    request = _id("request_id", "the borrower's own request id")
    transaction = _id("transaction_id", "the hub's transaction id")
    hook = {
        "name": "subscription_id",
        "in": "path",
        "required": True,
        "description": "the webhook's id",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    }
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "this document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/v1/requests": {
            "post": {
                "operationId": "placeRequest",
                "summary": "place a request on behalf of the token's library (scope `request`)",
                "description": "Idempotent by `request_id`: placing the same request again "
                "answers as the first time; a different request under the same id is a 409.",
                "requestBody": {"required": True, "content": _json(place)},
                "responses": {
                    "201": {"description": "durable and routed", "content": _json(views.Accepted)},
                    **_problems(*AUTH, 409, 413, 422, 503),
                },
            },
            "get": {
                "operationId": "findRequests",
                "summary": "find requests (scope `read`): a library's token sees its own only",
                "parameters": FIND_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "a page, newest first",
                        "content": _json(views.RequestPage),
                    },
                    **_problems(400, *AUTH),
                },
            },
        },
        "/api/v1/requests/{request_id}": {
            "get": {
                "operationId": "readRequest",
                "summary": "one of the library's requests (scope `read`)",
                "parameters": [request],
                "responses": {
                    "200": {"description": "the request", "content": _json(views.RequestView)},
                    **_problems(*AUTH, 404),
                },
            }
        },
        "/api/v1/requests/{request_id}/{action}": {
            "post": {
                "operationId": "actOnRequest",
                "summary": "cancel, renew, or (a borrower with no protocol of its own) mark "
                "received or returned (scope `act`)",
                "parameters": [
                    request,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ACTIONS},
                    },
                ],
                "requestBody": {"required": False, "content": _json(action)},
                "responses": {
                    "202": {
                        "description": "durable; the lender is told",
                        "content": _json(views.Accepted),
                    },
                    **_problems(*AUTH, 404, 409, 413, 422, 503),
                },
            }
        },
        "/api/v1/transactions/{transaction_id}": {
            "get": {
                "operationId": "readTransaction",
                "summary": "a request by the hub's id (scope `read`; a library's own only)",
                "parameters": [transaction],
                "responses": {
                    "200": {"description": "the request", "content": _json(views.RequestView)},
                    **_problems(*AUTH, 404),
                },
            }
        },
        "/api/v1/transactions/{transaction_id}/redeliver": {
            "post": {
                "operationId": "redeliver",
                "summary": "staff: send its waiting steps again now (scope `redeliver`)",
                "parameters": [transaction],
                "requestBody": {"required": False, "content": _json(views.Redeliver)},
                "responses": {
                    "200": {"description": "what the hub did", "content": _json(views.Outcome)},
                    **_problems(*AUTH, 404, 409, 422, 503),
                },
            }
        },
        "/api/v1/transactions/{transaction_id}/route": {
            "post": {
                "operationId": "reroute",
                "summary": "staff: ask a lender now, skip one, or search again (scope `reroute`)",
                "parameters": [transaction],
                "requestBody": {"required": True, "content": _json(views.Route)},
                "responses": {
                    "200": {"description": "what the hub did", "content": _json(views.Outcome)},
                    **_problems(*AUTH, 404, 409, 422, 503),
                },
            }
        },
        "/api/v1/transactions/{transaction_id}/staff": {
            "post": {
                "operationId": "manage",
                "summary": "staff: cancel, close, note or send a message (scope `manage`)",
                "parameters": [transaction],
                "requestBody": {"required": True, "content": _json(views.StaffAct)},
                "responses": {
                    "200": {"description": "what the hub did", "content": _json(views.Outcome)},
                    **_problems(*AUTH, 404, 409, 422, 503),
                },
            }
        },
        "/api/v1/deadletters/replay": {
            "post": {
                "operationId": "replay",
                "summary": "staff: replay a dead letter (scope `replay`)",
                "requestBody": {"required": True, "content": _json(views.Replay)},
                "responses": {
                    "200": {"description": "what the hub did", "content": _json(views.Outcome)},
                    **_problems(*AUTH, 404, 409, 422, 503),
                },
            }
        },
        **webhook_paths(hook),
        "/api/v1/status/{borrower}/{request_id}": {
            "get": {
                "operationId": "patronStatus",
                "summary": "the patron's status page of a placed request (the `status_url` "
                "of its placing): no token, the link's key",
                "security": [],
                "parameters": [
                    _id("borrower", "the borrowing library's symbol"),
                    request,
                    {
                        "name": "key",
                        "in": "query",
                        "required": True,
                        "description": "the key of the link",
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the page (HTML), or with Accept: application/json "
                        "what it says",
                        "content": {
                            **_json(views.PatronStatus),
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_problems(404),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rshub API",
            "version": VERSION,
            "description": "Place, follow and act on interlibrary loan requests through the "
            "hub (docs/api.md).",
        },
        "paths": paths,
        "webhooks": {
            "requestStateChanged": {
                "post": {
                    "operationId": "requestStateChanged",
                    "summary": "what the hub POSTs to a subscribed URL for each state change "
                    "of the library's requests (docs/api.md: Webhooks)",
                    "security": [],
                    "parameters": [
                        {
                            "name": SIGNATURE,
                            "in": "header",
                            "required": True,
                            "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 with the "
                            "subscription's secret over '<t>.' and the body>",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": DELIVERY,
                            "in": "header",
                            "required": True,
                            "description": "the delivery's id: take each once",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {"required": True, "content": _json(WebhookEvent)},
                    "responses": {"2XX": {"description": "accepted; anything else is tried again"}},
                }
            }
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }


def webhook_paths(hook: dict[str, Any]) -> dict[str, Any]:
    """Subscriptions of a library's token (scope `read`); docs/api.md says what a delivery
    carries and how a receiver checks it."""
    return {
        "/api/v1/webhooks": {
            "post": {
                "operationId": "addWebhook",
                "summary": "be told of state changes of the library's requests at a URL",
                "description": "The answer holds the secret that signs every delivery: shown "
                "only this once. Changes from now on are delivered, in order per request.",
                "requestBody": {"required": True, "content": _json(views.WebhookCreate)},
                "responses": {
                    "201": {
                        "description": "subscribed",
                        "content": _json(views.WebhookCreated),
                    },
                    **_problems(*AUTH, 413, 422, 503),
                },
            },
            "get": {
                "operationId": "listWebhooks",
                "summary": "the library's webhooks (staff: every library's; never a secret)",
                "responses": {
                    "200": {"description": "the webhooks", "content": _json(views.WebhookList)},
                    **_problems(*AUTH),
                },
            },
        },
        "/api/v1/webhooks/{subscription_id}": {
            "delete": {
                "operationId": "removeWebhook",
                "summary": "remove a webhook and its deliveries not yet made",
                "parameters": [hook],
                "responses": {
                    "204": {"description": "removed"},
                    **_problems(*AUTH, 404),
                },
            }
        },
        "/api/v1/webhooks/{subscription_id}/deliveries": {
            "get": {
                "operationId": "webhookDeliveries",
                "summary": "a webhook's deliveries, newest first, with their tries (staff: "
                "any webhook's)",
                "parameters": [
                    hook,
                    _query(
                        "status",
                        {"type": "string", "enum": ["waiting", "parked", "delivered"]},
                        "only these",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "page size",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 100000, "default": 0},
                        "page start",
                    ),
                ],
                "responses": {
                    "200": {"description": "a page", "content": _json(views.WebhookDeliveries)},
                    **_problems(400, *AUTH, 404),
                },
            }
        },
        "/api/v1/webhooks/{subscription_id}/redeliver": {
            "post": {
                "operationId": "redeliverWebhook",
                "summary": "send a delivery again now, or every one not yet delivered (staff: "
                "scope `redeliver`)",
                "parameters": [hook],
                "requestBody": {"required": False, "content": _json(views.WebhookRedeliver)},
                "responses": {
                    "200": {"description": "what the hub did", "content": _json(views.Outcome)},
                    **_problems(*AUTH, 404, 413, 422),
                },
            }
        },
    }


def text(place: type[BaseModel], action: type[BaseModel]) -> str:
    """As docs/openapi.json holds it."""
    return json.dumps(document(place, action), indent=2, sort_keys=True) + "\n"
