"""The NCIP P2P profile as data: which message means which canonical event, required fields.

Source: the Alma NCIP peer-to-peer field table (seed 004) and what real peers send
(shared/standards/ncip/NOTES.md: dotted NoticeContent values, Ext/ItemNote reason numbers).
"""

from __future__ import annotations

from connectors.core.model import Event, RequestFormat

NS = "http://www.niso.org/2008/ncip"
VERSION_URL = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
SCHEME_GENERAL = (
    "http://www.niso.org/ncip/v1_0/schemes/processingerrortype/generalprocessingerror.scm"
)
SCHEME_MESSAGING = "http://www.niso.org/ncip/v1_0/schemes/messagingerrortype/messagingerrortype.scm"
SCHEME_RSHUB = "urn:rshub:ncip:schemes:processingerrortype"

# Messages whose meaning does not depend on Ext/NoticeContent.
PLAIN: dict[str, Event] = {
    "RequestItem": Event.REQUEST,
    "ItemRequested": Event.REQUEST,
    "RenewItem": Event.RENEW,
    "ItemRenewed": Event.RENEW_ANSWER,
    "RecallItem": Event.RECALLED,
    "ItemRequestCancelled": Event.CANCEL_REPLY,
}

# (message, NoticeContent without dots) -> event. Alma writes ShippedByLender, NNCIPP peers
# write ShippedBy.Lender; both are read. Koha's NNCIPP rejects with CancelledBy.Lender.
BY_NOTICE: dict[tuple[str, str], Event] = {
    ("CancelRequestItem", "CancelledByBorrower"): Event.CANCEL,
    ("CancelRequestItem", "CancelledByLender"): Event.UNFILLED,
    ("CancelRequestItem", "RejectedByLender"): Event.UNFILLED,
    ("CancelRequestItem", "ExpiredByLender"): Event.EXPIRED,
    ("ItemRequestCancelled", "CancelledByLender"): Event.CANCEL_REPLY,
    ("ItemReceived", "ReceivedByBorrower"): Event.RECEIVED,
    ("ItemReceived", "ReceivedByLender"): Event.LOAN_COMPLETED,
    ("ItemShipped", "ShippedByLender"): Event.LOANED,
    ("ItemShipped", "ShippedByBorrower"): Event.SHIPPED_RETURN,
}

# event -> (message, NoticeContent as written: dotted, as real NNCIPP peers and Alma accept).
# WillSupply and Overdue have no NCIP P2P message; the outbound connector reports them as
# not applicable instead of inventing one.
ENCODE: dict[Event, tuple[str, str | None]] = {
    Event.REQUEST: ("RequestItem", None),
    Event.CANCEL: ("CancelRequestItem", "CancelledBy.Borrower"),
    Event.UNFILLED: ("CancelRequestItem", "RejectedBy.Lender"),
    Event.EXPIRED: ("CancelRequestItem", "ExpiredBy.Lender"),
    Event.CANCEL_REPLY: ("ItemRequestCancelled", "CancelledBy.Lender"),
    Event.RENEW: ("RenewItem", None),
    Event.RENEW_ANSWER: ("ItemRenewed", None),
    Event.RECEIVED: ("ItemReceived", "ReceivedBy.Borrower"),
    Event.LOAN_COMPLETED: ("ItemReceived", "ReceivedBy.Lender"),
    Event.LOANED: ("ItemShipped", "ShippedBy.Lender"),
    Event.COPY_COMPLETED: ("ItemShipped", "ShippedBy.Lender"),
    Event.SHIPPED_RETURN: ("ItemShipped", "ShippedBy.Borrower"),
    Event.RECALLED: ("RecallItem", None),
}

# Element order of each message we write (XSD sequence order). Builders in writer.py.
ORDER: dict[str, list[str]] = {
    "RequestItem": [
        "InitiationHeader",
        "UserId",
        "BibliographicId",
        "RequestId",
        "RequestType",
        "RequestScopeType",
        "ItemOptionalFields",
        "ShippingInformation",
        "NeedBeforeDate",
        "PickupLocation",
        "PickupExpiryDate",
        "AcknowledgedFeeAmount",
        "Ext",
    ],
    "CancelRequestItem": [
        "InitiationHeader",
        "UserId",
        "RequestId",
        "ItemId",
        "RequestType",
        "Ext",
    ],
    "ItemRequestCancelled": [
        "InitiationHeader",
        "UserId",
        "RequestId",
        "ItemId",
        "RequestType",
        "Ext",
    ],
    "RenewItem": ["InitiationHeader", "UserId", "ItemId", "DesiredDateDue", "Ext"],
    "ItemRenewed": ["InitiationHeader", "UserId", "ItemId", "DateDue", "Ext"],
    "ItemReceived": [
        "InitiationHeader",
        "ItemId",
        "UserId",
        "RequestId",
        "DateReceived",
        "ItemOptionalFields",
        "Ext",
    ],
    "ItemShipped": [
        "InitiationHeader",
        "RequestId",
        "ItemId",
        "UserId",
        "DateShipped",
        "ShippingInformation",
        "ItemOptionalFields",
        "Ext",
    ],
    "RecallItem": ["InitiationHeader", "ItemId", "DesiredDateDue", "Ext"],
}

# What a success response echoes from its initiation message, in XSD order.
RESPONSE_ECHO: dict[str, list[str]] = {
    "RequestItem": ["RequestId", "ItemId", "UserId", "RequestType", "RequestScopeType"],
    "CancelRequestItem": ["RequestId", "ItemId", "UserId"],
    "RenewItem": ["ItemId", "UserId"],
    "RecallItem": ["ItemId"],
}

REQUEST_TYPES: dict[str, RequestFormat] = {
    "physical": RequestFormat.PHYSICAL,
    "physicalnoreservation": RequestFormat.PHYSICAL,
    "lii": RequestFormat.PHYSICAL,
    "liinoreservation": RequestFormat.PHYSICAL,
    "loan": RequestFormat.PHYSICAL,
    "hold": RequestFormat.PHYSICAL,
    "page": RequestFormat.PHYSICAL,
    "digital": RequestFormat.DIGITAL,
    "non-returnable": RequestFormat.NON_RETURNABLE,
    "nonreturnable": RequestFormat.NON_RETURNABLE,
    "copy": RequestFormat.NON_RETURNABLE,
}
REQUEST_TYPE_OUT: dict[RequestFormat, str] = {
    RequestFormat.PHYSICAL: "Physical",
    RequestFormat.DIGITAL: "Digital",
    RequestFormat.NON_RETURNABLE: "Non-Returnable",
}

WITHOUT_RETURN = "Available For Supply Without Return"

# BibliographicDescription child -> canonical Bibliographic field.
BIB_FIELDS: dict[str, str] = {
    "Author": "author",
    "AuthorOfComponent": "author_of_component",
    "Edition": "edition",
    "Pagination": "pagination",
    "PlaceOfPublication": "place_of_publication",
    "PublicationDate": "publication_date",
    "PublicationDateOfComponent": "publication_date_of_component",
    "Publisher": "publisher",
    "SeriesTitleNumber": "series_title_number",
    "Title": "title",
    "TitleOfComponent": "title_of_component",
    "BibliographicLevel": "bibliographic_level",
    "MediumType": "medium_type",
}
# BibliographicRecordIdentifierCode (lowercase, spaces dropped) -> canonical field. Read
# liberally (other peers' codes too); written only as the seed's codes plus OCLC (WRITTEN_IDS).
RECORD_ID_CODES: dict[str, str] = {
    "isbn": "isbn",
    "issn": "issn",
    "localid": "local_id",
    "ean": "ean",
    "oclc": "oclc_number",
    "lccn": "lccn",
    "doi": "doi",
    "pmid": "pmid",
    "eissn": "eissn",
}
# canonical field -> the code rshub writes it with (the Alma P2P profile's, seed 004).
WRITTEN_IDS: dict[str, str] = {
    "isbn": "ISBN",
    "issn": "ISSN",
    "oclc_number": "OCLC",
    "ean": "EAN",
    "local_id": "LocalID",
}
# Alma's Ext children for the part of the item wanted (seed 004, RequestItem: Ext.Volumes,
# Ext.Issues, Ext.Pages, Ext.Chapters, Ext.Parts). NCIP's own Pagination is the item's
# extent as catalogued, not the pages wanted.
EXT_BIB: dict[str, str] = {
    "Volumes": "volume",
    "Issues": "issue",
    "Parts": "part",
    "Chapters": "chapter",
    "Pages": "pages_requested",
}
# Alma's `institution||library` agency: the institution goes to ToAgencyId, the library to
# OnBehalfOfAgency (seed 004: "Receiving Institution", "Receiving Library", both required).
AGENCY_SEPARATOR = "||"

# Canonical fields of a request the P2P profile carries in its own elements; the rest of a
# request is written into Ext/ItemNote, readably (connectors.core.fidelity).
CARRIES: frozenset[str] = frozenset(
    {
        *(f"bibliographic.{field}" for field in BIB_FIELDS.values()),
        *(f"bibliographic.{field}" for field in WRITTEN_IDS),
        *(f"bibliographic.{field}" for field in EXT_BIB.values()),
        "bibliographic.call_number",
        "patron_id",
        "delivery_address",
        "delivery_email",
        "pickup_location",
        "service_type",
        "request_format",
        "need_before",
        "max_cost",
        "note",
    }
)

# (canonical field, NCIP path) required per event, from the seed 004 field table. Renewals and
# recalls carry no RequestId in the schema and are addressed by ItemId.
COMMON_REQUIRED = [
    ("from_agency", "InitiationHeader.FromAgencyId.AgencyId"),
    ("to_agency", "InitiationHeader.ToAgencyId.AgencyId"),
]
_RID = ("request_id", "RequestId.RequestIdentifierValue")
_ITEM = ("item_id", "ItemId.ItemIdentifierValue")
REQUIRED: dict[Event, list[tuple[str, str]]] = {
    Event.REQUEST: [
        _RID,
        ("request_format", "RequestType"),
        ("bibliographic.title", "ItemOptionalFields.BibliographicDescription.Title"),
        (
            "bibliographic.bibliographic_level",
            "ItemOptionalFields.BibliographicDescription.BibliographicLevel",
        ),
    ],
    Event.CANCEL: [_RID, ("patron_id", "UserId.UserIdentifierValue")],
    Event.UNFILLED: [_RID, ("reason", "Ext.ItemNote")],
    Event.EXPIRED: [_RID],
    Event.CANCEL_REPLY: [_RID, ("answer", "Ext.Answer")],
    Event.RENEW: [_ITEM, ("desired_due_date", "Ext.DesiredDateDue")],
    Event.RENEW_ANSWER: [_ITEM, ("answer", "Ext.Answer"), ("due_date", "DateDue")],
    Event.RECEIVED: [_ITEM, ("date_received", "DateReceived")],
    Event.LOAN_COMPLETED: [_ITEM, ("date_received", "DateReceived")],
    Event.LOANED: [_RID, _ITEM],
    Event.COPY_COMPLETED: [_RID, _ITEM],
    Event.SHIPPED_RETURN: [_ITEM, ("date_shipped", "DateShipped")],
    Event.RECALLED: [_ITEM],
}

# What rshub cannot write a message without, though the canonical message may lack it: the
# P2P profile requires a title (an ISO 18626 request may come with an identifier only; the
# engine fills the title from holdings where it can). The bibliographic level is derived.
WRITE_REQUIRED: dict[Event, list[tuple[str, str]]] = {
    Event.REQUEST: [("bibliographic.title", "ItemOptionalFields.BibliographicDescription.Title")],
}

# (canonical date field) -> where it may stand, relative to the message element.
DATE_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "due_date": [("DateDue",), ("Ext", "DateDue"), ("ItemOptionalFields", "DateDue")],
    "desired_due_date": [("DesiredDateDue",), ("Ext", "DesiredDateDue")],
    "date_shipped": [("DateShipped",)],
    "date_received": [("DateReceived",)],
    "need_before": [("NeedBeforeDate",)],
    "pickup_expiry": [("PickupExpiryDate",)],
}

ANSWERS: dict[str, bool] = {
    "true": True,
    "yes": True,
    "y": True,
    "false": False,
    "no": False,
    "n": False,
}

# NCIP MonetaryValue is an integer in the currency's minor unit (cents); ISO 18626 and the
# canonical model use decimal amounts. Currencies without minor units are listed here.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "ISK", "CLP", "VND"})


def minor_units(currency: str | None) -> int:
    return 0 if (currency or "").upper() in ZERO_DECIMAL_CURRENCIES else 2


# Canonical field -> the NCIP element it comes from, to name it in a Problem (bibliographic
# fields and dates: BIB_ELEMENTS and DATE_FIELDS).
ELEMENTS: dict[str, str] = {
    "request_id": "RequestId.RequestIdentifierValue",
    "item_id": "ItemId.ItemIdentifierValue",
    "patron_id": "UserId.UserIdentifierValue",
    "from_agency": "InitiationHeader.FromAgencyId.AgencyId",
    "to_agency": "InitiationHeader.ToAgencyId.AgencyId",
    "on_behalf_of_agency": "InitiationHeader.OnBehalfOfAgency.AgencyId",
    "pickup_location": "PickupLocation",
    "delivery_address": "ShippingInformation.PhysicalAddress",
    "delivery_email": "ShippingInformation.ElectronicAddress.ElectronicAddressData",
    "note": "Ext.ItemNote",
    "reason.note": "Ext.ItemNote",
    "cost.amount": "Ext.RequiredFeeAmount.MonetaryValue",
    "cost.currency": "Ext.RequiredFeeAmount.CurrencyCode",
    "max_cost.amount": "AcknowledgedFeeAmount.MonetaryValue",
    "max_cost.currency": "AcknowledgedFeeAmount.CurrencyCode",
}
_RECORD_ID = "BibliographicId.BibliographicRecordId.BibliographicRecordIdentifier"
BIB_ELEMENTS: dict[str, str] = {
    **{
        field: f"ItemOptionalFields.BibliographicDescription.{name}"
        for name, field in BIB_FIELDS.items()
    },
    **{field: _RECORD_ID for field in RECORD_ID_CODES.values()},
    "oclc_number": _RECORD_ID,
    "call_number": "ItemOptionalFields.ItemDescription.CallNumber",
    **{field: f"Ext.{name}" for name, field in EXT_BIB.items()},
}
