"""ISO 18626 as data: statuses, actions and reasons <-> canonical events; error vocabulary."""

from __future__ import annotations

from connectors.core.model import Event, ServiceType

NS = "http://illtransactions.org/2013/iso18626"
VERSION = "1.2"
# What rshub can write: ill:version -> schemaLocation. Partners choose (directory).
SCHEMA_LOCATIONS: dict[str, str] = {
    "1.2": f"{NS} https://illtransactions.org/schemas/ISO-18626-v1_2.xsd",
    "2021-2": f"{NS} https://illtransactions.org/schemas/ISO-18626-2021-2.xsd",
}

# supplyingAgencyMessage: (reasonForMessage, status) -> event, most specific first; None is any.
SUPPLIER: list[tuple[str | None, str | None, Event]] = [
    ("CancelResponse", None, Event.CANCEL_REPLY),
    ("RenewResponse", None, Event.RENEW_ANSWER),
    ("Notification", None, Event.LENDER_NOTE),
    (None, "RequestReceived", Event.LENDER_NOTE),
    (None, "ExpectToSupply", Event.WILL_SUPPLY),
    (None, "WillSupply", Event.WILL_SUPPLY),
    (None, "Loaned", Event.LOANED),
    (None, "Overdue", Event.OVERDUE),
    (None, "Recalled", Event.RECALLED),
    (None, "RetryPossible", Event.RETRY_POSSIBLE),
    (None, "Unfilled", Event.UNFILLED),
    (None, "CopyCompleted", Event.COPY_COMPLETED),
    (None, "LoanCompleted", Event.LOAN_COMPLETED),
    (None, "CompletedWithoutReturn", Event.LOAN_COMPLETED),
    (None, "Cancelled", Event.CANCEL_REPLY),
]
REASONS = frozenset(
    {
        "RequestResponse",
        "StatusRequestResponse",
        "RenewResponse",
        "CancelResponse",
        "StatusChange",
        "Notification",
    }
)
STATUSES = frozenset(s for _r, s, _e in SUPPLIER if s) | {"ExpectToSupply"}

# requestingAgencyMessage action -> event. Known actions rshub does not relay are refused
# with UnsupportedActionType; unknown ones with UnrecognisedDataValue.
ACTIONS: dict[str, Event] = {
    "Received": Event.RECEIVED,
    "Cancel": Event.CANCEL,
    "Renew": Event.RENEW,
    "ShippedReturn": Event.SHIPPED_RETURN,
    "Notification": Event.BORROWER_NOTE,
}
UNSUPPORTED_ACTIONS = frozenset({"StatusRequest", "ShippedForward", "Lost", "HoldReturn"})

# event -> (status, reasonForMessage) when rshub writes a supplyingAgencyMessage.
SUPPLIER_OUT: dict[Event, tuple[str, str]] = {
    Event.WILL_SUPPLY: ("WillSupply", "RequestResponse"),
    Event.LOANED: ("Loaned", "StatusChange"),
    Event.COPY_COMPLETED: ("CopyCompleted", "StatusChange"),
    Event.UNFILLED: ("Unfilled", "RequestResponse"),
    Event.EXPIRED: ("Unfilled", "StatusChange"),
    Event.LOAN_COMPLETED: ("LoanCompleted", "StatusChange"),
    Event.CANCEL_REPLY: ("Cancelled", "CancelResponse"),
    Event.RENEW_ANSWER: ("Loaned", "RenewResponse"),
    Event.RECALLED: ("Recalled", "StatusChange"),
    Event.OVERDUE: ("Overdue", "StatusChange"),
    Event.LENDER_NOTE: ("ExpectToSupply", "Notification"),
}
ACTION_OUT: dict[Event, str] = {event: action for action, event in ACTIONS.items()}
# Evidence ISO 18626 has no message for: sent as a Notification whose note names it.
NOTIFIED: dict[Event, str] = {
    Event.CONDITIONAL: "Conditional",
    Event.LOST: "Lost",
    Event.DAMAGED: "Damaged",
}
# The hub's state as the supplier status a Notification carries (statusInfo/status is
# required in every supplyingAgencyMessage; a notification must not claim a new status).
STATE_STATUS: dict[str, str] = {
    "New": "RequestReceived",
    "Locating": "RequestReceived",
    "Requested": "ExpectToSupply",
    "WillSupply": "WillSupply",
    "CancelPending": "ExpectToSupply",
    "Loaned": "Loaned",
    "Received": "Loaned",
    "RenewPending": "Loaned",
    "Recalled": "Recalled",
    "Overdue": "Overdue",
    "Returned": "Loaned",
    "LoanCompleted": "LoanCompleted",
    "CopyCompleted": "CopyCompleted",
    "Cancelled": "Cancelled",
    "Unfilled": "Unfilled",
    "Expired": "Unfilled",
}

SERVICE_TYPES: dict[str, ServiceType] = {
    "Loan": ServiceType.LOAN,
    "Copy": ServiceType.COPY,
    "CopyOrLoan": ServiceType.LOAN,
}
# bibliographicInfo child -> canonical bibliographic field, in schema order (v1.2 and 2021).
# `volume` is repeatable in 2021: the first is the one asked for.
BIB_INFO: dict[str, str] = {
    "supplierUniqueRecordId": "local_id",
    "title": "title",
    "author": "author",
    "subtitle": "subtitle",
    "seriesTitle": "series_title_number",
    "edition": "edition",
    "titleOfComponent": "title_of_component",
    "authorOfComponent": "author_of_component",
    "volume": "volume",
    "issue": "issue",
    "pagesRequested": "pages_requested",
}
PUBLICATION_INFO: dict[str, str] = {
    "publisher": "publisher",
    "publicationType": "bibliographic_level",
    "publicationDate": "publication_date",
    "placeOfPublication": "place_of_publication",
}
# bibliographicItemIdentifierCode / bibliographicRecordIdentifierCode are open scheme-value
# pairs: read liberally (lowercase), written only with the codes of the standard's lists.
ITEM_ID_CODES: dict[str, str] = {
    "isbn": "isbn",
    "issn": "issn",
    "eissn": "eissn",
    "oclc": "oclc_number",
    "doi": "doi",
    "pmid": "pmid",
    "lccn": "lccn",
}
ITEM_ID_OUT: dict[str, str] = {"isbn": "ISBN", "issn": "ISSN", "doi": "DOI"}
RECORD_ID_CODES: dict[str, str] = {
    "oclc": "oclc_number",
    "lccn": "lccn",
    "local": "local_id",
    "pmid": "pmid",
}
RECORD_ID_OUT: dict[str, str] = {"oclc_number": "OCLC", "lccn": "LCCN"}

# Canonical fields of a request ISO 18626 carries in its own elements; the rest of a request
# goes into serviceInfo/note, readably (connectors.core.fidelity). The pickup location, the
# item's extent and medium have no element (v1.2 and 2021).
CARRIES: frozenset[str] = frozenset(
    {
        *(f"bibliographic.{field}" for field in BIB_INFO.values()),
        *(f"bibliographic.{field}" for field in PUBLICATION_INFO.values()),
        *(f"bibliographic.{field}" for field in ITEM_ID_OUT),
        *(f"bibliographic.{field}" for field in RECORD_ID_OUT),
        "bibliographic.call_number",
        "patron_id",
        "patron_name",
        "patron_email",
        "delivery_address",
        "delivery_email",
        "service_type",
        "need_before",
        "max_cost",
        "note",
    }
)
# Written in a request by 2021 only (serviceInfo/loanCondition); v1.2 notes it.
CARRIES_2021: frozenset[str] = CARRIES | {"loan_condition"}
# serviceInfo/requestType -> the event a request of that type is. A Reminder is a note on
# the request it reminds of (nothing is created twice). A Retry is the borrower's request
# again with changed data (a higher maximum cost, say), for the transaction it names by
# requestingAgencyPreviousRequestId (or by its own id when it keeps the same one): the
# lifecycle table continues that transaction with it (docs/iso18626.md).
REQUEST_TYPE_EVENTS: dict[str, Event] = {"Reminder": Event.BORROWER_NOTE, "Retry": Event.RETRY}

# The Confirmation each message is answered with, and the element echoed in it.
CONFIRMATION: dict[str, tuple[str, str | None]] = {
    "request": ("requestConfirmation", None),
    "supplyingAgencyMessage": ("supplyingAgencyMessageConfirmation", "reasonForMessage"),
    "requestingAgencyMessage": ("requestingAgencyMessageConfirmation", "action"),
}

# Bibliographic fields that identify an item without its title (bibliographicInfo/title is
# optional in ISO 18626).
IDENTIFYING = ("local_id", "isbn", "issn", "eissn", "oclc_number", "lccn", "doi", "pmid")

# Canonical field -> the ISO 18626 element it comes from, to name it in errorValue.
_BIB = "bibliographicInfo"
ELEMENTS: dict[str, str] = {
    "request_id": "header/requestingAgencyRequestId",
    "from_agency": "header/requestingAgencyId or supplyingAgencyId",
    "to_agency": "header/supplyingAgencyId or requestingAgencyId",
    "timestamp": "header/timestamp",
    "note": "note",
    "reason.name": "messageInfo/reasonUnfilled",
    "due_date": "statusInfo/dueDate",
    "date_shipped": "deliveryInfo/dateSent",
    "item_id": "deliveryInfo/itemId",
    "need_before": "serviceInfo/needBeforeDate",
    "patron_id": "patronInfo/patronId",
    "delivery_address": "requestedDeliveryInfo/address/physicalAddress",
    "delivery_email": "requestedDeliveryInfo/address/electronicAddress/electronicAddressData",
    "amount": "monetaryValue",
    "currency": "currencyCode",
    "bibliographic.title": f"{_BIB}/title",
    "bibliographic.author": f"{_BIB}/author",
    "bibliographic.edition": f"{_BIB}/edition",
    "bibliographic.title_of_component": f"{_BIB}/titleOfComponent",
    "bibliographic.author_of_component": f"{_BIB}/authorOfComponent",
    "bibliographic.pages_requested": f"{_BIB}/pagesRequested",
    "bibliographic.subtitle": f"{_BIB}/subtitle",
    "bibliographic.series_title_number": f"{_BIB}/seriesTitle",
    "bibliographic.call_number": "supplierInfo/callNumber",
    "bibliographic.lccn": f"{_BIB}/bibliographicRecordId",
    "bibliographic.eissn": f"{_BIB}/bibliographicItemId",
    "bibliographic.pmid": f"{_BIB}/bibliographicItemId or bibliographicRecordId",
    "patron_name": "patronInfo/surname",
    "patron_surname": "patronInfo/surname",
    "patron_given_name": "patronInfo/givenName",
    "patron_email": "patronInfo/address/electronicAddress/electronicAddressData",
    "loan_condition": "loanCondition",
    "previous_request_id": "serviceInfo/requestingAgencyPreviousRequestId",
    "bibliographic.volume": f"{_BIB}/volume",
    "bibliographic.issue": f"{_BIB}/issue",
    "bibliographic.doi": f"{_BIB}/bibliographicItemId",
    "bibliographic.local_id": f"{_BIB}/supplierUniqueRecordId or bibliographicRecordId",
    "bibliographic.isbn": f"{_BIB}/bibliographicItemId",
    "bibliographic.issn": f"{_BIB}/bibliographicItemId",
    "bibliographic.oclc_number": f"{_BIB}/bibliographicItemId or bibliographicRecordId",
    "bibliographic.publisher": "publicationInfo/publisher",
    "bibliographic.publication_date": "publicationInfo/publicationDate",
    "bibliographic.place_of_publication": "publicationInfo/placeOfPublication",
    "bibliographic.bibliographic_level": "publicationInfo/publicationType",
}
