"""Every real NCIP message in shared/standards/ncip/samples decodes to its message type, or to
the specific Problem its defect deserves."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.model import Event
from connectors.ncip import codec

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards" / "ncip" / "samples"

# file -> (message name, expected: an Event, "response", or the Problem type, problem element)
EXPECTED: dict[str, tuple[str, object, str | None]] = {
    "alma-princeton__RenewItemResponse.xml": ("RenewItemResponse", "response", None),
    "bibsys-fixture__RenewItemResponse__problem.xml": (
        "RenewItemResponse",
        "response",
        "Not Renewable",
    ),
    "crosslink__AcceptItem__redundant-xmlns.xml": ("AcceptItem", "Unsupported Service", None),
    "folio-test__CheckOutItem__prefixed-version-attr.xml": (
        "CheckOutItem",
        "Unsupported Service",
        None,
    ),
    "folio-test__DeleteItem__ns1.xml": ("DeleteItem", "Unsupported Service", None),
    "illiad-to-alma__CheckInItem__latin1-decl__reconstructed.xml": (
        "CheckInItem",
        "Unsupported Service",
        None,
    ),
    # INN-Reach NCIP 1.0 sends no request id: the P2P profile requires one.
    "innreach__ItemRequested__v1_0__placeholders-renamed.xml": (
        "ItemRequested",
        "Needed Data Missing",
        "RequestId.RequestIdentifierValue",
    ),
    "koha-nncipp-to-alma__CancelRequestItem__lender-ext-itemnote.xml": (
        "CancelRequestItem",
        Event.UNFILLED,
        None,
    ),
    # Template placeholders where a date should be.
    "koha-nncipp-to-alma__ItemShipped__ext-noticecontent.xml": (
        "ItemShipped",
        "Invalid Date",
        "DateShipped",
    ),
    "koha-nncipp-to-alma__RenewItem.xml": (
        "RenewItem",
        "Needed Data Missing",
        "Ext.DesiredDateDue",
    ),
    "ncip1-ils__AcceptItemResponse__v1_0.xml": ("AcceptItemResponse", "response", None),
    "ncip1-ils__CheckInItemResponse__v1_0-problem.xml": (
        "CheckInItemResponse",
        "response",
        "Item Not Checked Out",
    ),
    "ncip1-ils__LookupUserResponse__v1_0.xml": ("LookupUserResponse", "response", None),
    "oclc-wcl__LookupUser__ext-foreign-ns.xml": ("LookupUser", "Unsupported Service", None),
    # ORIA sends empty RequestId children.
    "oria-to-alma-p2p__ItemRequested__ext-itemnote__reconstructed.xml": (
        "ItemRequested",
        "Needed Data Missing",
        "RequestId.RequestIdentifierValue",
    ),
    "princeton-to-alma__RenewItem__date-only-desireddatedue__reconstructed.xml": (
        "RenewItem",
        Event.RENEW,
        None,
    ),
    "relais-to-folio__AcceptItem__v2_0-default-ns.xml": ("AcceptItem", "Unsupported Service", None),
    "relais-to-folio__LookupUser.xml": ("LookupUser", "Unsupported Service", None),
    # Broker-to-ILS RequestItems without the P2P profile's bibliographic description.
    "relais-to-folio__RequestItem__no-namespace.xml": (
        "RequestItem",
        "Needed Data Missing",
        "ItemOptionalFields.BibliographicDescription.Title",
    ),
    "shareit-autographics__CheckInItem__v1_0.xml": ("CheckInItem", "Unsupported Service", None),
    "shareit-autographics__RequestItem__v1_0.xml": (
        "RequestItem",
        "Needed Data Missing",
        "ItemOptionalFields.BibliographicDescription.Title",
    ),
    "xc-koha-connector__RequestItemResponse__problem-fee.xml": (
        "RequestItemResponse",
        "response",
        "User Ineligible To Request This Item",
    ),
    "xc-toolkit__CheckOutItemResponse.xml": ("CheckOutItemResponse", "response", None),
    "xc-toolkit__Problem__message-level.xml": (
        "Problem",
        "response",
        "Agency Authentication Failed",
    ),
    "xc-toolkit__RequestItem.xml": (
        "RequestItem",
        "Needed Data Missing",
        "ItemOptionalFields.BibliographicDescription.Title",
    ),
}


def test_every_sample_is_listed() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    body = (SAMPLES / name).read_bytes()
    message_name, expected, extra = EXPECTED[name]
    parsed = codec.parse(body)
    assert parsed.name == message_name
    if expected == "response":
        response = codec.read_response(body)
        assert [p.type for p in response.problems][:1] == ([extra] if extra else [])
        return
    if isinstance(expected, Event):
        assert codec.to_canonical(parsed).event is expected
        return
    with pytest.raises(codec.NcipError) as caught:
        codec.to_canonical(codec.parse(body))
    assert caught.value.problem.type == expected
    if extra:
        assert caught.value.problem.element == extra


def test_koha_rejection_carries_the_reason_and_keeps_the_rest() -> None:
    body = (
        SAMPLES / "koha-nncipp-to-alma__CancelRequestItem__lender-ext-itemnote.xml"
    ).read_bytes()
    message = codec.decode(body)
    assert message.extensions["ncip"]["notice_content"] == "CancelledBy.Lender"
    assert message.reason is not None  # the template's placeholder becomes reason Other + note
    assert message.extensions["ncip"]["unmapped"]  # nothing the partner sent is dropped


def test_date_only_renewal_date_is_midnight_utc() -> None:
    name = "princeton-to-alma__RenewItem__date-only-desireddatedue__reconstructed.xml"
    message = codec.decode((SAMPLES / name).read_bytes())
    assert message.desired_due_date is not None
    assert message.desired_due_date.isoformat() == "2022-06-20T00:00:00+00:00"
    assert message.item_id == "23915763110006421"
    assert message.extensions["ncip"]["application_profile"] == "SCSB"
