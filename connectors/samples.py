"""Sample messages: one canonical message per step a library can send the hub, and each
written in every protocol rshub speaks by the same simulated libraries `rshub peer send`
uses (so by the project's own writers). `python -m connectors.samples` (re)writes
examples/samples/<kind>/<step>.<ext>; tests/test_samples.py checks the files are what the
writers produce and that each is valid against its schema or ASN.1 and decodes to its step.

`rshub peer send` starts from `example(event)` and changes what its options say."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RenderError,
    RequestFormat,
    ServiceType,
    lender_request_id,
)
from connectors.simulator import AnyLibrary, Library, SlnpLibrary, TcpLibrary

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "samples"

# Fixed values, so the files do not change each time they are written.
AT = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
DUE = datetime(2026, 4, 1, 23, 59, tzinfo=UTC)
BORROWER_REQUEST = "NORTH-1001"  # the borrower's own id for its request
LENDER_REQUEST = lender_request_id("t0123456789abcdef", 1)  # the id the hub gives a lender
BOOK = Bibliographic(
    title="The Name of the Rose",
    author="Eco, Umberto",
    isbn="9780151446476",
    publisher="Harcourt",
    publication_date="1983",
    bibliographic_level="Book",
)

# What each step says besides its request id (the lender's steps carry the hub's id).
FIELDS: dict[Event, dict[str, Any]] = {
    Event.REQUEST: {
        "patron_id": "patron-42",
        "service_type": ServiceType.LOAN,
        "request_format": RequestFormat.PHYSICAL,
        "bibliographic": BOOK,
        "need_before": datetime(2026, 5, 1, tzinfo=UTC),
        "pickup_location": "Main desk",
    },
    Event.WILL_SUPPLY: {"note": "on the shelf, sent tomorrow"},
    Event.LOANED: {"item_id": "SOUTH-39001", "due_date": DUE, "date_shipped": AT},
    Event.COPY_COMPLETED: {"item_id": "SOUTH-39001", "note": "scan sent by e-mail"},
    # NCIP's CancelRequestItem and RenewItem need the patron (UserId) by its schema.
    Event.UNFILLED: {"reason": Reason.from_code(10, note="not on shelf"), "patron_id": "patron-42"},
    Event.RETRY_POSSIBLE: {"reason": Reason.from_code(1, note="on loan, ask again in May")},
    Event.CONDITIONAL: {"note": "library use only", "cost": Money(amount=Decimal("5.00"))},
    Event.RECEIVED: {"item_id": "SOUTH-39001", "date_received": AT},
    Event.SHIPPED_RETURN: {"item_id": "SOUTH-39001", "date_shipped": AT},
    Event.LOAN_COMPLETED: {"item_id": "SOUTH-39001"},
    Event.CANCEL: {"note": "the patron no longer needs it"},
    Event.CANCEL_REPLY: {"answer": True},
    Event.RENEW: {
        "item_id": "SOUTH-39001",
        "patron_id": "patron-42",
        "desired_due_date": datetime(2026, 5, 1, tzinfo=UTC),
    },
    Event.RENEW_ANSWER: {
        "item_id": "SOUTH-39001",
        "answer": True,
        "due_date": datetime(2026, 5, 1, 23, 59, tzinfo=UTC),
    },
    Event.RECALLED: {"item_id": "SOUTH-39001", "due_date": datetime(2026, 3, 16, tzinfo=UTC)},
    Event.OVERDUE: {"item_id": "SOUTH-39001", "due_date": DUE},
    Event.LOST: {"item_id": "SOUTH-39001", "note": "lost in transit"},
    Event.DAMAGED: {"item_id": "SOUTH-39001", "note": "water damage"},
    Event.LENDER_NOTE: {"note": "the item is at the bindery until Friday"},
    Event.BORROWER_NOTE: {"note": "please send it to the branch library"},
    Event.EXPIRED: {"note": "no answer in time", "patron_id": "patron-42"},
    Event.STATUS_QUERY: {},
}

# The lender's steps (and those either side may send, here from the lender).
LENDER_SIDE = frozenset(
    {
        Event.WILL_SUPPLY,
        Event.LOANED,
        Event.COPY_COMPLETED,
        Event.UNFILLED,
        Event.RETRY_POSSIBLE,
        Event.CONDITIONAL,
        Event.LOAN_COMPLETED,
        Event.CANCEL_REPLY,
        Event.RENEW_ANSWER,
        Event.RECALLED,
        Event.OVERDUE,
        Event.LOST,
        Event.DAMAGED,
        Event.LENDER_NOTE,
        Event.EXPIRED,
    }
)


def word(event: Event) -> str:
    """The step's name on the command line and in file names: WillSupply -> will-supply."""
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in event.value).lstrip("-")


def example(event: Event, request_id: str | None = None, **changes: Any) -> Message:
    """The sample canonical message of `event`, with `changes` (None values ignored)."""
    if request_id is None:
        request_id = LENDER_REQUEST if event in LENDER_SIDE else BORROWER_REQUEST
    fields = {**FIELDS.get(event, {}), **{k: v for k, v in changes.items() if v is not None}}
    return Message(event=event, request_id=request_id, timestamp=AT, **fields)


# kind -> (file extension, a library of that kind; its symbol and agency id appear in the
# samples as the sender's).
def _kinds() -> dict[str, tuple[str, AnyLibrary]]:
    return {
        "ncip": ("xml", Library("NORTH", "01NORTH_INST||MAIN", "", port=1)),
        "iso18626": ("xml", Library("NORTH", "DK-710100", "", port=1, protocol="iso18626")),
        "iso18626-2021": (
            "xml",
            Library("NORTH", "DK-710100", "", port=1, protocol="iso18626", version="2021-2"),
        ),
        "iso10161": ("hex", TcpLibrary("NORTH", "NORTH-ILL", port=1)),
        "slnp": ("txt", SlnpLibrary("NORTH", "123ABC", port=1)),
    }


KINDS = tuple(_kinds())
HUB_AGENCY = "RSHUB"


def render(kind: str, message: Message, to_agency: str = HUB_AGENCY) -> bytes | None:
    """The message as a library of `kind` writes it; None where the protocol has no
    message for the step (or cannot carry it from a library)."""
    extension, library = _kinds()[kind]
    try:
        body = library.encode(message, to_agency)
    except (NotApplicable, RenderError, KeyError):
        return None
    if kind == "iso10161":  # BER, kept as hex text (what `rshub decode` reads)
        text = body.hex()
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        return ("\n".join(lines) + "\n").encode()
    if extension == "xml":  # indented for people; the same document to a parser
        root = etree.fromstring(body)
        etree.indent(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"
    return body


def files() -> dict[Path, bytes]:
    """Every sample file, by its path relative to examples/samples."""
    out: dict[Path, bytes] = {}
    for kind, (extension, _library) in _kinds().items():
        for event in Event:
            body = render(kind, example(event))
            if body is not None:
                out[Path(kind) / f"{word(event)}.{extension}"] = body
    return out


def write(folder: Path = FOLDER) -> list[Path]:
    written = []
    for relative, body in files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
