"""What the NCIP relay knows about NCIP as data: the circulation services brokers call, how
NCIP 1.0 and 2.0 name the same things, and the Problems the relay itself answers with.

Sources: the NCIP 1.0 DTD and the 2.02 XSD in shared/standards/ncip (element names, which
elements are Scheme/Value pairs), Alma's broker documentation (seeds 000-002: which services
brokers drive), shared/standards/ncip/NOTES.md (what real brokers send).
"""

from __future__ import annotations

from dataclasses import dataclass

NS = "http://www.niso.org/2008/ncip"
VERSION_2 = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
VERSION_1 = "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"
DOCTYPE_1 = f'<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1//EN" "{VERSION_1}">'

SCHEME_GENERAL = (
    "http://www.niso.org/ncip/v1_0/schemes/processingerrortype/generalprocessingerror.scm"
)
SCHEME_MESSAGING = "http://www.niso.org/ncip/v1_0/schemes/messagingerrortype/messagingerrortype.scm"
# What NCIP 1.0 requires where a 2.0 partner wrote no Scheme: the agency scheme Alma's v1
# responder writes (seen in shared/standards/ncip/samples/ncip1-ils__*), and NISO's pattern.
AGENCY_SCHEME_1 = "http://www.niso.org/ncip/v1_0/schemes/agency.scm"


def default_scheme(element: str) -> str:
    """The NISO 1.0 scheme URL of a Scheme/Value element that came without one."""
    name = element.lower()
    return f"http://www.niso.org/ncip/v1_0/imp1/schemes/{name}/{name}.scm"


@dataclass(frozen=True)
class Service:
    """A circulation service a broker may call through the relay."""

    changes_state: bool  # a retry with the same content is answered once (not called twice)
    in_v1: bool = True  # NCIP 1.0 has this service
    # The service a 2.0 member gets instead (the same event in Alma's NCIP 2 profile), or
    # None: the service itself.
    v2_as: str | None = None


# The broker-based services of Alma (seeds 000-002: LookupUser, AcceptItem, RequestItem,
# CheckOutItem, CheckInItem; Cancel, Recall and Renew for the renew/recall flows) and the two
# look-ups members may support. LookupRequest is new in 2.0.
# ItemRequested: "the ILL agrees to process the request" (lending side) in Alma's NCIP 1.0
# broker profile, what INN-Reach sends the owning library; Alma's NCIP 2 profile has
# RequestItem for the same event (developers.exlibrisgroup.com, broker NCIP profiles v1/v2).
# CreateUserFiscalTransaction: how a broker charges a patron an ILL fee at a member whose
# responder takes it (FOLIO's mod-ncip, ReShare-side members).
SERVICES: dict[str, Service] = {
    "LookupUser": Service(changes_state=False),
    "AcceptItem": Service(changes_state=True),
    "RequestItem": Service(changes_state=True),
    "CheckOutItem": Service(changes_state=True),
    "CheckInItem": Service(changes_state=True),
    "CancelRequestItem": Service(changes_state=True),
    "RecallItem": Service(changes_state=True),
    "RenewItem": Service(changes_state=True),
    "LookupItem": Service(changes_state=False),
    "LookupRequest": Service(changes_state=False, in_v1=False),
    "ItemRequested": Service(changes_state=True, v2_as="RequestItem"),
    "CreateUserFiscalTransaction": Service(changes_state=True),
}

# A call sent as another service (Service.v2_as): the elements that service has, in its
# schema order (NCIP 2.02 XSD); the others (ItemRequested's DateOfUserRequest, DateAvailable,
# UserOptionalFields) have no place in it and are left out (the broker's call is on
# ill.audit).
ORDER_V2: dict[str, tuple[str, ...]] = {
    "RequestItem": (
        "InitiationHeader",
        "MandatedAction",
        "UserId",
        "AuthenticationInput",
        "BibliographicId",
        "ItemId",
        "RequestId",
        "RequestType",
        "RequestScopeType",
        "ItemOptionalFields",
        "ShippingInformation",
        "EarliestDateNeeded",
        "NeedBeforeDate",
        "PickupLocation",
        "PickupExpiryDate",
        "AcknowledgedFeeAmount",
        "PaidFeeAmount",
        "AcknowledgedItemUseRestrictionType",
        "ItemElementType",
        "UserElementType",
        "Ext",
    ),
}

# What the response of a service holds when the member answered its stand-in (its
# RequestItemResponse for an ItemRequested): ItemRequestedResponse is a notification's
# acknowledgement, a header and errors only (1.0 DTD: ResponseHeader, MessagingError*;
# 2.02: ResponseHeader?, Problem*, Ext?).
RESPONSE_HOLDS: dict[str, tuple[str, ...]] = {
    "ItemRequestedResponse": ("ResponseHeader", "Problem"),
}

# NCIP 1.0 responses whose errors stand bare, not in a Problem (the DTD's notification
# acknowledgements: `(ResponseHeader , MessagingError*)`).
BARE_ERRORS_V1 = frozenset({"ItemRequestedResponse"})

# NCIP 1.0 wrapper -> NCIP 2.0 element (the 1.0 wrapper holds UniqueAgencyId + the value).
V1_TO_V2: dict[str, str] = {
    "UniqueAgencyId": "AgencyId",
    "UniqueUserId": "UserId",
    "UniqueItemId": "ItemId",
    "UniqueRequestId": "RequestId",
    "UniqueBibliographicId": "BibliographicId",
}
V2_TO_V1: dict[str, str] = {v2: v1 for v1, v2 in V1_TO_V2.items()}

# 1.0 wrappers whose UniqueAgencyId is required where 2.0's AgencyId is optional.
NEEDS_AGENCY_V1 = frozenset(
    {
        "UniqueUserId",
        "UniqueItemId",
        "UniqueRequestId",
        "FiscalTransactionReferenceId",
        "RelatedFiscalTransactionReferenceId",
    }
)

# NCIP 1.0's Visible*Id (the barcode or other id a patron or item shows) and the 2.0 element
# it became: 2.0 removed the Visible ids, its UserId/ItemId carry an identifier type instead.
# 1.0 name -> (2.0 name, 1.0 child -> 2.0 child).
VISIBLE_V1: dict[str, tuple[str, dict[str, str]]] = {
    "VisibleUserId": (
        "UserId",
        {
            "UniqueAgencyId": "UniqueAgencyId",  # becomes AgencyId with every 1.0 agency
            "VisibleUserIdentifierType": "UserIdentifierType",
            "VisibleUserIdentifier": "UserIdentifierValue",
        },
    ),
    "VisibleItemId": (
        "ItemId",
        {
            "VisibleItemIdentifierType": "ItemIdentifierType",
            "VisibleItemIdentifier": "ItemIdentifierValue",
        },
    ),
}
# 2.0 name -> (1.0 name, 2.0 child -> 1.0 child): a 2.0 id with an identifier type, where 1.0
# has a Visible id (VISIBLE_PLACES_V1); children 1.0 has no place for are left out (a
# VisibleItemId has no agency).
VISIBLE_V2: dict[str, tuple[str, dict[str, str]]] = {
    "UserId": (
        "VisibleUserId",
        {
            "AgencyId": "AgencyId",  # written as UniqueAgencyId with every 2.0 agency
            "UserIdentifierType": "VisibleUserIdentifierType",
            "UserIdentifierValue": "VisibleUserIdentifier",
        },
    ),
    "ItemId": (
        "VisibleItemId",
        {
            "ItemIdentifierType": "VisibleItemIdentifierType",
            "ItemIdentifierValue": "VisibleItemIdentifier",
        },
    ),
}
# Where 1.0 takes a Visible id: parent -> (the id, whether 1.0 writes it first in the parent
# while 2.0 writes it last: UserOptionalFields has VisibleUserId* first in the 1.0 DTD and
# UserId* after BlockOrTrap in 2.02). A 1.0 Visible id anywhere else (ItemDescription's
# VisibleItemId) has no place in 2.0 and is left out.
VISIBLE_PLACES_V1: dict[str, tuple[str, bool]] = {
    "LookupUser": ("VisibleUserId", False),
    "LookupItem": ("VisibleItemId", False),
    "UserOptionalFields": ("VisibleUserId", True),
}

# Elements that are Scheme/Value pairs in NCIP 1.0 (children) and scheme-attributed text in
# 2.0 (the DTD's `(Scheme , Value)` elements; UniqueAgencyId is handled as AgencyId).
SCHEME_VALUE_V1 = frozenset(
    [
        "AcknowledgedItemUseRestrictionType",
        "AgencyAddressRoleType",
        "AgencyElementType",
        "AgencyUserPrivilegeType",
        "ApplicationProfileType",
        "ApplicationProfileSupportedType",
        "AuthenticationDataFormatType",
        "AuthenticationInputType",
        "AuthenticationPromptType",
        "BibliographicItemIdentifierCode",
        "BibliographicLevel",
        "BibliographicRecordIdentifierCode",
        "BlockOrTrapType",
        "CirculationStatus",
        "ComponentIdentifierType",
        "ConsortiumAgreement",
        "CurrencyCode",
        "ElectronicAddressType",
        "ElectronicDataFormatType",
        "FiscalActionType",
        "FiscalTransactionType",
        "FromSystemId",
        "ItemDescriptionLevel",
        "ItemElementType",
        "ItemUseRestrictionType",
        "Language",
        "LocationType",
        "MediumType",
        "MessagingErrorType",
        "NoticeType",
        "OrganizationNameType",
        "PaymentMethodType",
        "PhysicalAddressType",
        "PhysicalConditionType",
        "ProcessingErrorType",
        "RequestedActionType",
        "RequestScopeType",
        "RequestStatusType",
        "RequestType",
        "RequiredItemUseRestrictionType",
        "SecurityMarker",
        "ToSystemId",
        "UnstructuredAddressType",
        "UserAddressRoleType",
        "UserElementType",
        "UserLanguage",
        "UserPrivilegeStatusType",
        "VisibleItemIdentifierType",
        "VisibleUserIdentifierType",
    ]
)

# 2.0 elements NCIP 1.0 has no place for: left out when writing 1.0 (the broker's bytes are
# on ill.audit). Identifier types are 2.0's; Ext holds 2.0 extensions a 1.0 DTD refuses.
V2_ONLY = frozenset(
    {
        "Ext",
        "UserIdentifierType",
        "ItemIdentifierType",
        "RequestIdentifierType",
        "PickupLocation",
        "ResponseElementControl",
        "RequestElementType",
    }
)

# Attributes NCIP 1.0 senders put on leaves (INN-Reach: datatype="string"): not 2.0's.
V1_ATTRIBUTES = frozenset({"datatype"})

# Problems the relay answers itself: (Problem type, scheme, HTTP status). Alma answers
# Problems with HTTP 200; authentication, addressing and size faults keep the status the
# peer NCIP endpoint uses, so a broker's monitoring sees the same thing at both doors.
SYNTAX = ("Invalid Message Syntax Error", SCHEME_MESSAGING, 400)
TOO_LARGE = ("Invalid Message Syntax Error", SCHEME_MESSAGING, 413)
UNSUPPORTED = ("Unsupported Service", SCHEME_MESSAGING, 200)
UNKNOWN_AGENCY = ("Unknown Agency", SCHEME_GENERAL, 200)
NOT_BROKER = ("Unknown Agency", SCHEME_GENERAL, 404)
ACCESS_DENIED = ("Agency Access Denied", SCHEME_GENERAL, 200)
UNAUTHENTICATED = ("Agency Authentication Failed", SCHEME_GENERAL, 401)
NEEDED_DATA = ("Needed Data Missing", SCHEME_GENERAL, 200)
TEMPORARY = ("Temporary Processing Failure", SCHEME_GENERAL, 200)

# How a 2.0 Problem is written in 1.0: MessagingError for the messaging scheme's types,
# ProcessingError for the rest.
MESSAGING_TYPES = frozenset(
    {"Invalid Message Syntax Error", "Unsupported Service", "Unknown Service", "Message Too Big"}
)

# A member's Problems that another try may cure (the broker's retry must reach the member).
TEMPORARY_PROBLEMS = frozenset({"Temporary Processing Failure"})

# The services of the NCIP 1.0 DTD (its NCIPMessage content, responses left out): a 1.0
# broker's refused call is answered with the response of its service when the DTD has it.
SERVICES_V1_DTD = frozenset(
    {
        "AcceptItem",
        "AgencyCreated",
        "AgencyUpdated",
        "AuthenticateUser",
        "CancelRecallItem",
        "CancelRequestItem",
        "CheckInItem",
        "CheckOutItem",
        "CirculationStatusChangeReported",
        "CirculationStatusUpdated",
        "CreateAgency",
        "CreateItem",
        "CreateUser",
        "CreateUserFiscalTransaction",
        "ItemCheckedIn",
        "ItemCheckedOut",
        "ItemCreated",
        "ItemRecallCancelled",
        "ItemRecalled",
        "ItemReceived",
        "ItemRenewed",
        "ItemRequestCancelled",
        "ItemRequestUpdated",
        "ItemRequested",
        "ItemShipped",
        "ItemUpdated",
        "LookupAgency",
        "LookupItem",
        "LookupUser",
        "RecallItem",
        "RenewItem",
        "ReportCirculationStatusChange",
        "RequestItem",
        "SendUserNotice",
        "UndoCheckOutItem",
        "UpdateAgency",
        "UpdateCirculationStatus",
        "UpdateItem",
        "UpdateRequestItem",
        "UpdateUser",
        "UserCreated",
        "UserFiscalTransactionCreated",
        "UserNoticeSent",
        "UserUpdated",
    }
)
# A 1.0 answer must be one of the DTD's responses: where the call named none (unreadable,
# not 1.0, refused before it was read) the relay answers as an agency would to a look-up of
# itself, LookupAgencyResponse (ResponseHeader, Problem), the Problem saying what went wrong.
V1_FALLBACK_SERVICE = "LookupAgency"
