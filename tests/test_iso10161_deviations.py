"""ISO 10161 APDUs whose tagging deviates inside: a refusal names the element at fault by its
ASN.1 path, in the Status-Or-Error-Report and in the dead letter's reason; an optional,
informative element that deviates is left out, the APDU kept, with a diagnostic and the
element's bytes. Each case is built by hand from rshub's own BER, in the standard form and in
the IMPLICIT form Convert::ASN1-based encoders write."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.core.contract import Limits, Refusal
from connectors.core.model import Bibliographic, Event, Message, Money, ServiceType
from connectors.iso10161 import asn1, codec, mapping
from connectors.iso10161.transport import Iso10161Codec
from connectors.simulator import Library, TcpLibrary, running
from tests.asn1_values import value_for
from tests.ber_tree import Nodes, build, find, parse
from tests.kafka_reader import wait_for_record

REQUEST = Message(
    event=Event.REQUEST,
    request_id="R-1",
    patron_id="p1",
    bibliographic=Bibliographic(
        title="Title", author="Auth", isbn="9780151446476", publisher="Pub", volume="3"
    ),
    service_type=ServiceType.LOAN,
    max_cost=Money(amount="30.00", currency="EUR"),
    note="a note",
)
LIMIT = Limits()
T = bytes.fromhex
# Context tags of ILL-Request elements (ISO 10161-2), as rshub writes them.
TRANSACTION_ID, SERVICE_DATE_TIME, REQUESTER_ID = T("a1"), T("a2"), T("a3")
CLIENT_ID, ITEM_ID, COST_INFO = T("af"), T("b0"), T("b2")
AUTHOR, TITLE, PUBLISHER, ISBN = T("a3"), T("a4"), T("a8"), T("b2")
GENERAL_STRING, UTF8_STRING = T("1b"), T("0c")


def forms() -> dict[str, tuple[bytes, list[bytes]]]:
    """The request in both forms, with the tags that lead to its SEQUENCE's elements."""
    name, value = mapping.from_canonical(REQUEST, "DK-1", "DK-2")
    standard = codec.encode(name, value)
    implicit = bytes(asn1.compiled_implicit().encode("ILL-APDU", (name.lower(), value)))
    return {"standard": (standard, [T("61"), T("30")]), "implicit": (implicit, [T("61")])}


def retagged(form: str, tags: list[bytes], tag: bytes) -> bytes:
    data, top = forms()[form]
    tree: Nodes = parse(data)
    find(tree, *top, *tags)[0] = tag
    return build(tree)


def refusal(body: bytes) -> Refusal:
    with pytest.raises(Refusal) as refused:
        Iso10161Codec().decode(body, "DK-1", LIMIT)
    return refused.value


FORMS = ["standard", "implicit"]
REFUSED = [
    # (tags down to the element, its new tag, the element named, depth below the APDU)
    ([ITEM_ID, TITLE, GENERAL_STRING], UTF8_STRING, "ILL-Request.item-id.title"),
    (
        [SERVICE_DATE_TIME, T("a0"), T("80")],
        T("84"),
        "ILL-Request.service-date-time.date-time-of-this-service.date",
    ),
    (
        [REQUESTER_ID, T("a0"), T("a1"), GENERAL_STRING],
        UTF8_STRING,
        "ILL-Request.requester-id.person-or-institution-symbol.institution-symbol",
    ),
    (
        [TRANSACTION_ID, T("a2")],
        T("a7"),
        "ILL-Request.transaction-id.transaction-qualifier",
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("tags", "tag", "element"), REFUSED)
def test_a_refusal_names_the_element_at_fault(
    form: str, tags: list[bytes], tag: bytes, element: str
) -> None:
    refused = refusal(retagged(form, tags, tag))
    # The dead letter's reason is the refusal's; it starts with the element at fault.
    assert refused.reason.startswith(f"not a valid ILL APDU: {element}:"), refused.reason
    name, report = codec.decode(refused.answer.body)
    assert name == "Status-Or-Error-Report"
    error = report["error-report"]
    assert error["provider-error-report"] == ("general-problem", "badly-structured-APDU")
    assert element in error["correlation-information"][1]  # within its 200 characters
    assert element in report["note"][1]


def test_an_element_rshub_needs_is_not_left_out_even_if_optional() -> None:
    # requester-id is OPTIONAL in ISO 10161, but it says who is asking.
    refused = refusal(retagged("standard", [REQUESTER_ID, T("a0"), T("a1"), T("1b")], T("0c")))
    assert "ILL-Request.requester-id cannot be left out" in refused.reason


LEFT_OUT = [
    # (tags down to the element, its new tag, the element left out, the fields still there)
    ([ITEM_ID, AUTHOR, GENERAL_STRING], UTF8_STRING, "ILL-Request.item-id.author"),
    ([COST_INFO, T("a1"), T("81")], T("04"), "ILL-Request.cost-info-type.maximum-cost"),
    ([CLIENT_ID, T("a2"), GENERAL_STRING], UTF8_STRING, "ILL-Request.client-id.client-identifier"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("tags", "tag", "element"), LEFT_OUT)
def test_an_optional_informative_element_that_deviates_is_left_out(
    form: str, tags: list[bytes], tag: bytes, element: str
) -> None:
    body = retagged(form, tags, tag)
    message = Iso10161Codec().decode(body, "DK-1", LIMIT).message
    bib = message.bibliographic
    assert bib is not None
    assert (bib.title, bib.isbn, bib.publisher, message.note) == (
        "Title",
        "9780151446476",
        "Pub",
        "a note",
    )
    [diagnostic] = [d for d in message.extensions["diagnostics"] if "left out" in d]
    assert diagnostic.startswith(f"{element}: left out")
    [kept] = message.extensions["iso10161"]["left-out"]
    assert kept["element"] == element
    assert bytes.fromhex(kept["ber"])[0] == find(parse(body), *forms()[form][1], *tags[:-1])[0][0]


@pytest.mark.parametrize("form", FORMS)
def test_an_unknown_element_drops_nothing_after_it(form: str) -> None:
    # asn1tools stops at an element its SEQUENCE has not and drops every element after it
    # (here the publisher and ISBN after the author): rshub leaves out that one element.
    body = retagged(form, [ITEM_ID, AUTHOR], T("be"))
    message = Iso10161Codec().decode(body, "DK-1", LIMIT).message
    bib = message.bibliographic
    assert bib is not None
    assert (bib.author, bib.title, bib.publisher, bib.isbn) == (
        None,
        "Title",
        "Pub",
        "9780151446476",
    )
    [kept] = message.extensions["iso10161"]["left-out"]
    assert kept == {
        "element": "ILL-Request.item-id",
        "reason": "no element of ILL-Request.item-id is tagged be",
        "ber": (T("be06") + GENERAL_STRING + T("04") + b"Auth").hex(),
    }


def test_a_missing_required_element_names_what_was_there_instead() -> None:
    refused = refusal(retagged("standard", [SERVICE_DATE_TIME], T("be")))
    assert refused.reason == (
        "not a valid ILL APDU: ILL-Request.service-date-time: is missing "
        "(an element tagged be was left out)"
    )


def test_an_unknown_element_inside_what_rshub_needs_refuses() -> None:
    data, top = forms()["standard"]
    tree = parse(data)
    transaction = find(tree, *top, TRANSACTION_ID)[1]
    assert isinstance(transaction, list)
    transaction.append([T("9e"), b"x"])
    refused = refusal(build(tree))
    assert refused.reason == (
        "not a valid ILL APDU: ILL-Request.transaction-id: an element tagged 9e is no element "
        "of ILL-Request.transaction-id (ILL-Request.transaction-id cannot be left out: it "
        "identifies the transaction)"
    )


def test_too_many_deviations_refuse_the_apdu() -> None:
    data, top = forms()["standard"]
    tree = parse(data)
    item = find(tree, *top, ITEM_ID)[1]
    assert isinstance(item, list)
    item.extend([[T("9e"), b"x"] for _ in range(asn1.MAX_DEVIATIONS + 1)])
    refused = refusal(build(tree))
    assert f"more than {asn1.MAX_DEVIATIONS} elements deviate" in refused.reason
    assert "ILL-Request.item-id" in refused.reason


def test_the_standard_request_reads_with_nothing_left_out() -> None:
    for data, _top in forms().values():
        assert codec.read(data).left_out == []


def test_a_deviating_element_with_a_default_reads_as_its_default() -> None:
    # retry-flag [21] IMPLICIT BOOLEAN DEFAULT FALSE, with two content octets.
    data, top = forms()["standard"]
    tree = parse(data)
    fields = find(tree, *top)[1]
    assert isinstance(fields, list)
    fields.insert(-1, [T("95"), b"\xff\xff"])
    _name, value, left_out = codec.read(build(tree))
    assert value["retry-flag"] is False
    assert [d.element for d in left_out] == ["ILL-Request.retry-flag"]


# -- end to end: over TCP to the real hub, to an NCIP lender -------------------------------


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library | TcpLibrary]]:
    libs: dict[str, Library | TcpLibrary] = {
        "VDX": TcpLibrary("VDX", "VDX-LIB"),
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
    }
    async with running(libs):
        yield libs


def from_vdx(form: str, tags: list[bytes], tag: bytes, request_id: str) -> bytes:
    message = REQUEST.model_copy(update={"request_id": request_id})
    name, value = mapping.from_canonical(message, "VDX-LIB", "RSHUB")
    data = (
        codec.encode(name, value)
        if form == "standard"
        else bytes(asn1.compiled_implicit().encode("ILL-APDU", (name.lower(), value)))
    )
    top = [T("61"), T("30")] if form == "standard" else [T("61")]
    tree = parse(data)
    find(tree, *top, *tags)[0] = tag
    return build(tree)


@pytest.mark.kafka
async def test_over_tcp_a_refusal_names_the_element_and_a_left_out_one_keeps_the_loan(
    hub, libraries, bootstrap
) -> None:
    vdx, south = libraries["VDX"], libraries["SOUTH"]
    assert isinstance(vdx, TcpLibrary)
    # A Convert::ASN1-style request whose title is a UTF8String: refused, naming the title.
    bad = from_vdx("implicit", [ITEM_ID, TITLE, GENERAL_STRING], UTF8_STRING, "V-BAD")
    _status, answer = await vdx.post(bad)
    assert not answer.ok and "ILL-Request.item-id.title" in answer.errors[0]
    letter = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: r["protocol"] == "iso10161"
    )
    assert letter["error"].startswith("not a valid ILL APDU: ILL-Request.item-id.title:")
    # The same request with a deviating author instead: the loan goes on without it.
    odd = from_vdx("implicit", [ITEM_ID, AUTHOR, GENERAL_STRING], UTF8_STRING, "V-ODD")
    _status, answer = await vdx.post(odd)
    assert answer.ok, answer
    asked = await south.next()
    assert asked.event is Event.REQUEST and asked.bibliographic is not None
    assert (asked.bibliographic.title, asked.bibliographic.isbn, asked.bibliographic.author) == (
        "Title",
        "9780151446476",
        None,
    )


def _node_paths(nodes: Nodes, above: tuple[bytes, ...] = ()) -> list[tuple[bytes, ...]]:
    """The tag path of every element in the tree (the first of equal tags at each level)."""
    out = []
    for tag, content in nodes:
        assert isinstance(tag, bytes)
        if any(other[0] == tag for other in nodes[: nodes.index([tag, content])]):
            continue  # find() reaches the first of equal tags only
        out.append((*above, tag))
        if isinstance(content, list):
            out.extend(_node_paths(content, (*above, tag)))
    return out


NEEDED_VALUES = ("transaction-id", "requester-id", "responder-id")


@pytest.mark.parametrize("form", FORMS)
def test_no_retagged_element_anywhere_leaves_out_what_rshub_needs(form: str) -> None:
    """Every element of a full ILL-Request, retagged three ways: the APDU is refused naming
    an element, or read with nothing NEEDED left out and, for a tag no element has there,
    what identifies the transaction and its parties as sent (or absent, when the retagged
    element was that one: then it is an element ILL-Request has not, and ISO 10161 lets a
    requester-id be absent). With its constructed bit flipped, an element is what an
    IMPLICIT-tagging encoder writes: its content is read as that form's."""
    value = {
        **mapping.from_canonical(REQUEST, "DK-1", "DK-2")[1],
        **{k: v for k, v in forms_full().items() if k not in NEEDED_VALUES},
    }
    name = "ILL-Request"
    data = (
        codec.encode(name, value)
        if form == "standard"
        else bytes(asn1.compiled_implicit().encode("ILL-APDU", ("ill-request", value)))
    )
    original = codec.decode(data)[1]
    tree = parse(data)
    for path in _node_paths(tree):
        for tag in (T("0c"), T("9e"), bytes([path[-1][0] ^ 0x20]) + path[-1][1:]):
            changed = parse(data)
            find(changed, *path)[0] = tag
            try:
                read = codec.read(build(changed))
            except codec.Iso10161Error as error:
                assert str(error).startswith("not a valid ILL APDU: "), error
                continue
            for needed in NEEDED_VALUES if tag in (T("0c"), T("9e")) else ():
                assert read.value.get(needed) in (original.get(needed), None), (path, tag)
            for deviation in read.left_out:
                under = deviation.element.split(".")[1:]
                for needed in asn1.NEEDED:
                    parts = needed.split(".")
                    assert under[: len(parts)] != parts, (path, tag, deviation)


def forms_full() -> dict[str, object]:
    """Every optional element of an ILL-Request, with a value of its type."""
    full: dict[str, object] = value_for(asn1.compiled().types["ILL-Request"].type, True)
    return full
