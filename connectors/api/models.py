"""What an API client sends: the canonical request and the borrower's actions, as pydantic
models. The JSON API's OpenAPI document is generated from these (hub.ops.api.openapi), and
the codec decodes with them, so the document and what the hub accepts cannot drift apart.

Field names and bounds are the canonical model's (`connectors.core.model`), so a value the
API accepts fits every protocol a lender may speak."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.model import (
    Address,
    Bibliographic,
    Id,
    Moment,
    Money,
    Note,
    RequestFormat,
    ServiceType,
    Text,
)

# A request id is chosen by the client and appears in URLs: no slash, no spaces, printable.
RequestId = Annotated[
    Id,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:~-]+$",
        description="the client's own id for the request; placing it again is harmless",
    ),
]


class Item(Bibliographic):
    """The canonical bibliographic data; a misspelled field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", title="Bibliographic")


class Patron(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id | None = Field(None, description="the patron's id at the borrowing library")
    name: Text | None = Field(None, description="the patron's name as one text")
    surname: Text | None = None
    given_name: Text | None = None
    email: Address | None = Field(None, description="the patron's own e-mail address")


class PlaceRequest(BaseModel):
    """A request on behalf of the token's library (the borrower)."""

    model_config = ConfigDict(extra="forbid", title="PlaceRequest")

    request_id: RequestId
    bibliographic: Item = Field(description="what is asked for: a title or an identifier")
    patron: Patron | None = None
    service: ServiceType = Field(ServiceType.LOAN, description="Loan or Copy")
    format: RequestFormat | None = Field(
        None, description="Physical, Digital or NonReturnable (default: by the service)"
    )
    pickup_location: Text | None = Field(None, description="where the patron collects the item")
    need_before: Moment | None = Field(None, description="not wanted after this moment")
    delivery_email: Address | None = Field(None, description="for electronic delivery")
    delivery_address: Address | None = None
    loan_condition: Id | None = Field(
        None, description="a condition on the loan the borrower asks for (ISO 18626 code)"
    )
    max_cost: Money | None = Field(
        None, description="the most the borrower will pay, with its ISO 4217 currency"
    )
    note: Note | None = Field(None, description="a note for the lender")


class ActionBody(BaseModel):
    """The optional body of an action (cancel, renew, received, returned)."""

    model_config = ConfigDict(extra="forbid", title="ActionBody")

    note: Note | None = Field(None, description="a note for the lender")
    desired_due_date: Moment | None = Field(None, description="renew: the due date asked for")


Action = Literal["cancel", "renew", "received", "returned"]
ACTIONS: tuple[Action, ...] = ("cancel", "renew", "received", "returned")


class ActionCall(ActionBody):
    """What the hub's API hands the codec for an action: the body with the action and the
    request named by the URL (so the audited record says what was asked, of which request)."""

    model_config = ConfigDict(extra="forbid", title="ActionCall")

    action: Action
    request_id: RequestId
