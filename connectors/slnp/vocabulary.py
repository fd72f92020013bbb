"""What SLNP's interlibrary-loan commands say, as tables: commands, their parameters, the
canonical fields they carry, and the status words of a data change.

Sources (standards/slnp/FORMAT.md): the order `SLNPFLBestellung` with its mandatory and
optional parameters is what the regional ILL servers ("ZFL") send and Koha's SLNP servers
accept; `BsTyp` PFL is passive ILL (the member borrows), AFL active ILL (the member lends);
`BsTyp2` C is a copy. `SLNPFLDatenÄnderung` is the command the ZFL servers take status and
data changes in (OCLC WorldShare docs); no public source gives its parameters, so the ones
below are rshub's convention, in the same style (German names, `Name:value`): `BestellId` and a
`Status` word from `STATUS`. German ILL speaks of the NB (nehmende Bibliothek, the borrowing
library) and the GB (gebende Bibliothek, the lending library).
"""

from __future__ import annotations

from connectors.core.model import Event, RequestFormat, ServiceType

ORDER = "SLNPFLBestellung"
CHANGE = "SLNPFLDatenÄnderung"
QUIT = "SLNPQuit"
LOGIN = "SLNPServerInit"
LOGOUT = "SLNPServerExit"

# Spellings of the same command: a partner whose encoding cannot carry "Ä" writes "Ae".
ALIASES: dict[str, str] = {"SLNPFLDatenAenderung": CHANGE, "SLNPFLDatenAnderung": CHANGE}

# Commands a session answers itself; they carry no interlibrary-loan step.
SESSION = frozenset({QUIT, LOGIN, LOGOUT})

# The order's mandatory parameters, in the order Koha's servers check them (the samples:
# an order with only BsTyp lacks SigelNB; one with all but Titel lacks Titel).
ORDER_MANDATORY: tuple[str, ...] = ("BsTyp", "SigelNB", "BestellId", "BenutzerNummer", "Titel")
CHANGE_MANDATORY: tuple[str, ...] = ("BestellId", "Status")

# BsTyp: PFL (passive Fernleihe) the member borrows; AFL (aktive Fernleihe) the member lends.
ORDER_TYPES = frozenset({"PFL", "AFL"})
# BsTyp2: C is a copy; V and F (seen, meaning undocumented) are loans.
SERVICE_TYPES: dict[str, ServiceType] = {"C": ServiceType.COPY}
COPY_TYPE = "C"
# What is delivered, per service type: a loan is the item; a copy (paper or scan) is never
# returned (ISO 18626 and ISO 10161 say so in the same words, and NCIP lenders need the
# format to tell a copy from a loan: NCIP's RequestType carries no service type).
REQUEST_FORMATS: dict[ServiceType, RequestFormat] = {
    ServiceType.LOAN: RequestFormat.PHYSICAL,
    ServiceType.COPY: RequestFormat.NON_RETURNABLE,
}

# Order parameter -> canonical bibliographic field.
ORDER_BIBLIOGRAPHIC: dict[str, str] = {
    "Titel": "title",
    "Verfasser": "author",
    "AufsatzTitel": "title_of_component",
    "AufsatzAutor": "author_of_component",
    "Auflage": "edition",
    "Seitenangabe": "pages_requested",  # the pages to copy, not the item's extent
    "EOrt": "place_of_publication",
    "EJahr": "publication_date",
    "Verlag": "publisher",
    "ReihenTitel": "series_title_number",
    "Band": "volume",
    "Heft": "issue",
    "Signatur": "call_number",
    "Isbn": "isbn",
    "Issn": "issn",
    "TitelId": "local_id",
}
# Order parameter -> canonical message field (text).
ORDER_FIELDS: dict[str, str] = {
    "BestellId": "request_id",
    "BenutzerNummer": "patron_id",
    "SigelNB": "from_agency",
    "AusgabeOrt": "pickup_location",
    "Email1": "delivery_email",
    "Bemerkung": "note",
}
# Canonical fields of a request an order carries in its own parameters; the rest goes into
# Bemerkung, readably (connectors.core.fidelity). The lender is not told the patron (the
# borrowing library is its patron), nor a postal address (the servers' address parameters
# are the NB's, known to the GB from its own directory).
CARRIES: frozenset[str] = frozenset(
    {
        *(f"bibliographic.{field}" for field in ORDER_BIBLIOGRAPHIC.values()),
        "delivery_email",
        "pickup_location",
        "service_type",
        "need_before",
        "max_cost",
        "note",
    }
)
# Not told the lender at all, by design (see `BenutzerNummer` in the codec): the patron.
WITHHELD: frozenset[str] = frozenset({"patron_id", "patron_name", "patron_email"})
# Order parameters rshub writes for canonical message fields (beside the bibliographic ones).
ORDER_FIELDS_OUT: dict[str, str] = {
    "AusgabeOrt": "pickup_location",
    "Email1": "delivery_email",
}
# Dates and amounts, parsed.
ORDER_DEADLINE = "ErledFrist"  # -> need_before
ORDER_MAX_COST = "MaxKostenKopie"  # -> max_cost (EUR)
# The postal address, in the order its lines are written.
ADDRESS_LINES: tuple[tuple[str, ...], ...] = (
    ("Bezeichung", "Vorname", "Nachname"),  # sic: "Bezeichung" is how the servers spell it
    ("AdressZusatz1",),
    ("Strasse1",),
    ("Plz1", "Ort1"),
)
# A TitelId that names no record (the servers' placeholder).
DUMMY_RECORD_IDS = frozenset({"999999999"})
CURRENCY = "EUR"

# Status word of a data change <-> the event it reports.
STATUS: dict[str, Event] = {
    "Bearbeitung": Event.WILL_SUPPLY,  # the GB works on it
    "Geliefert": Event.LOANED,  # the GB sent the item
    "KopieGeliefert": Event.COPY_COMPLETED,  # the GB sent the copy
    "Negativ": Event.UNFILLED,  # the GB cannot supply ("negativ erledigt")
    "Abgelaufen": Event.EXPIRED,
    "Eingang": Event.RECEIVED,  # the NB received the item
    "Rueckversand": Event.SHIPPED_RETURN,  # the NB sent it back
    "Erledigt": Event.LOAN_COMPLETED,  # the GB has it back
    "Storno": Event.CANCEL,  # the NB withdraws the order
    "StornoAntwort": Event.CANCEL_REPLY,  # with Antwort ja/nein
    "Verlaengerung": Event.RENEW,  # the NB asks for a longer loan
    "VerlaengerungAntwort": Event.RENEW_ANSWER,  # with Antwort, Leihfrist
    "Rueckforderung": Event.RECALLED,
    "Mahnung": Event.OVERDUE,
    "NachrichtGB": Event.LENDER_NOTE,
    "NachrichtNB": Event.BORROWER_NOTE,
    "SpaeterMoeglich": Event.RETRY_POSSIBLE,
    "Bedingung": Event.CONDITIONAL,
    "Verlust": Event.LOST,
    "Beschaedigt": Event.DAMAGED,
}
STATUS_OF: dict[Event, str] = {event: word for word, event in STATUS.items()}
_STATUS_FOLDED: dict[str, str] = {word.casefold(): word for word in STATUS}


def status_word(text: str) -> str | None:
    """The table's spelling of a status word, whatever its case; None if it is not one."""
    return _STATUS_FOLDED.get(text.strip().casefold())


# A transaction's state (the hub's `State` values) as SLNP partners are told it (`Zustand`
# in replies, and in the text of an error about a step the state does not allow): German,
# in the words of the status table where one fits, ASCII so any encoding carries them.
STATES: dict[str, str] = {
    "New": "Neu",
    "Locating": "Bestandssuche",  # the lenders' catalogues are searched
    "Requested": "Bestellt",  # a GB is asked
    "WillSupply": "Bearbeitung",
    "Loaned": "Geliefert",
    "Received": "Eingang",
    "RenewPending": "Verlaengerung",  # a longer loan is asked for
    "CancelPending": "Storno",  # the NB withdraws, the GB has not answered
    "Recalled": "Rueckforderung",
    "Overdue": "Mahnung",
    "Returned": "Rueckversand",
    "LoanCompleted": "Erledigt",
    "CopyCompleted": "KopieGeliefert",
    "Cancelled": "Storniert",
    "Unfilled": "Negativ",
    "Expired": "Abgelaufen",
}
# States an order is never in right after it is taken: an order answered in one of them
# was made before (the same order sent again).
STATES_AFTER_ORDER: frozenset[str] = frozenset(STATES) - {
    "New",
    "Locating",
    "Requested",
    "Unfilled",
}


def state_word(state: str) -> str:
    """The German word for a state; a state the table lacks is shown as the hub names it."""
    return STATES.get(state, state)


# SLNP has no form for these (no status question among the commands the notes establish;
# a Retry reaches lenders as a Request, never as itself).
NOT_APPLICABLE: frozenset[Event] = frozenset({Event.STATUS_QUERY, Event.RETRY})

# Data-change parameter -> canonical message field.
CHANGE_FIELDS: dict[str, str] = {
    "Mediennummer": "item_id",
    "Bemerkung": "note",
    "PFLNummer": "",  # the NB's local number: kept in extensions only
}
CHANGE_DATES: dict[str, str] = {
    "Leihfrist": "due_date",
    "WunschLeihfrist": "desired_due_date",
    "Versanddatum": "date_shipped",
    "Eingangsdatum": "date_received",
}
ANSWER_PARAM = "Antwort"
ANSWERS: dict[str, bool] = {"ja": True, "nein": False, "yes": True, "no": False}
REASON_PARAM = "Grund"
REASON_CODE_PARAM = "GrundCode"
COST_PARAM = "Kosten"
CURRENCY_PARAM = "Waehrung"

# Dates partners write; rshub writes the partner's `date_format` option.
DATE_FORMATS: tuple[str, ...] = ("%Y-%m-%d", "%d.%m.%Y", "%Y%m%d")

# Canonical field (dotted, as a validation error names it) -> the parameter that set it, so
# a value out of bounds is refused naming what the partner sent.
PARAMETER_OF: dict[str, str] = {
    **{f"bibliographic.{field}": param for param, field in ORDER_BIBLIOGRAPHIC.items()},
    **{field: param for param, field in ORDER_FIELDS.items()},
    **{field: param for param, field in CHANGE_DATES.items()},
    "item_id": "Mediennummer",
    "need_before": ORDER_DEADLINE,
    "max_cost.amount": ORDER_MAX_COST,
    "cost.amount": COST_PARAM,
    "cost.currency": CURRENCY_PARAM,
    "reason.name": REASON_PARAM,
    "reason.note": REASON_PARAM,
    "reason.code": REASON_CODE_PARAM,
    "delivery_address": "Strasse1",
    "to_agency": "SigelListe",
    "extensions": "(parameters)",
}
