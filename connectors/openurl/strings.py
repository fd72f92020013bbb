"""Every word a patron reads, by language (English is the default and the fallback), and a
request's state in words a patron understands."""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "form_title": "Request an item from another library",
        "form_intro": "Please check the details below and complete what is missing. "
        "Fields marked * are required.",
        "citation": "What you need",
        "title": "Title of the book or journal",
        "atitle": "Title of the article or chapter",
        "author": "Author",
        "volume": "Volume",
        "issue": "Issue",
        "pages": "Pages",
        "date": "Year or date of publication",
        "publisher": "Publisher",
        "place": "Place of publication",
        "edition": "Edition",
        "isbn": "ISBN",
        "issn": "ISSN",
        "doi": "DOI",
        "pmid": "PubMed ID",
        "oclc": "OCLC number",
        "service": "What you would like",
        "loan": "Borrow the item",
        "copy": "A copy of the article or chapter",
        "request": "Your request",
        "need_before": "Not needed after (YYYY-MM-DD)",
        "pickup": "Pickup location",
        "note": "Notes for the library",
        "you": "About you",
        "patron_id": "Library card number",
        "patron_email": "E-mail address",
        "patron_known": "Requested by",
        "submit": "Send request",
        "errors": "Please correct the following:",
        "need_item": "Give a title or an identifier (ISBN, ISSN, DOI, PubMed ID or OCLC number).",
        "need_patron": "Give your library card number.",
        "need_title": "Give the title of the journal or book: no library we would ask can "
        "take the request without it.",
        "bad_date": "The date must be written YYYY-MM-DD and must not be in the past.",
        "bad_identifier": "This identifier is not valid:",
        "expired": "This form has expired or was opened in another browser. "
        "Please check the details and send it again.",
        "expired_link": "This form has expired or was opened in another browser. "
        "Please follow the link in your library's catalogue again.",
        "done_title": "Your request has been sent",
        "done_number": "Your request number is",
        "done_status": "See the status of your request",
        "status_title": "Status of your request",
        "status_unknown": "We cannot show the status of this request at the moment.",
        "refused_title": "The request could not be made",
        "unauthorised": "This link is not valid for this library.",
        "unavailable": "The service is busy. Please try again in a few minutes.",
        "not_found": "There is no such request.",
        "choose": "Choose",
    },
    "de": {
        "form_title": "Fernleihbestellung",
        "form_intro": "Bitte prüfen Sie die Angaben und ergänzen Sie, was fehlt. "
        "Mit * gekennzeichnete Felder sind Pflichtfelder.",
        "citation": "Was Sie benötigen",
        "title": "Titel des Buches oder der Zeitschrift",
        "atitle": "Titel des Aufsatzes oder Kapitels",
        "author": "Verfasser",
        "volume": "Band",
        "issue": "Heft",
        "pages": "Seiten",
        "date": "Erscheinungsjahr",
        "publisher": "Verlag",
        "place": "Erscheinungsort",
        "edition": "Auflage",
        "isbn": "ISBN",
        "issn": "ISSN",
        "doi": "DOI",
        "pmid": "PubMed-ID",
        "oclc": "OCLC-Nummer",
        "service": "Was Sie wünschen",
        "loan": "Das Werk ausleihen",
        "copy": "Eine Kopie des Aufsatzes oder Kapitels",
        "request": "Ihre Bestellung",
        "need_before": "Nicht mehr benötigt nach (JJJJ-MM-TT)",
        "pickup": "Abholort",
        "note": "Hinweise an die Bibliothek",
        "you": "Ihre Angaben",
        "patron_id": "Ausweisnummer",
        "patron_email": "E-Mail-Adresse",
        "patron_known": "Bestellt von",
        "submit": "Bestellung absenden",
        "errors": "Bitte korrigieren Sie:",
        "need_item": "Geben Sie einen Titel oder eine Kennung an (ISBN, ISSN, DOI, "
        "PubMed-ID oder OCLC-Nummer).",
        "need_patron": "Geben Sie Ihre Ausweisnummer an.",
        "need_title": "Geben Sie den Titel der Zeitschrift oder des Buches an: keine der "
        "angefragten Bibliotheken kann die Bestellung ohne ihn annehmen.",
        "bad_date": "Das Datum muss als JJJJ-MM-TT geschrieben sein und darf nicht in der "
        "Vergangenheit liegen.",
        "bad_identifier": "Diese Kennung ist ungültig:",
        "expired": "Dieses Formular ist abgelaufen oder wurde in einem anderen Browser "
        "geöffnet. Bitte prüfen Sie die Angaben und senden Sie es erneut.",
        "expired_link": "Dieses Formular ist abgelaufen oder wurde in einem anderen Browser "
        "geöffnet. Bitte folgen Sie dem Link im Katalog Ihrer Bibliothek erneut.",
        "done_title": "Ihre Bestellung wurde abgeschickt",
        "done_number": "Ihre Bestellnummer lautet",
        "done_status": "Stand Ihrer Bestellung ansehen",
        "status_title": "Stand Ihrer Bestellung",
        "status_unknown": "Der Stand dieser Bestellung kann zurzeit nicht angezeigt werden.",
        "refused_title": "Die Bestellung konnte nicht aufgegeben werden",
        "unauthorised": "Dieser Link gilt nicht für diese Bibliothek.",
        "unavailable": "Der Dienst ist ausgelastet. Bitte versuchen Sie es in einigen "
        "Minuten erneut.",
        "not_found": "Diese Bestellung gibt es nicht.",
        "choose": "Bitte wählen",
    },
}

# The hub's transaction states (hub.domain.lifecycle.State values) as a patron would say them.
STATES: dict[str, dict[str, str]] = {
    "en": {
        "New": "Received; we are starting to work on it.",
        "Locating": "We are looking for a library that has it.",
        "Requested": "We have asked a library to supply it.",
        "WillSupply": "A library has agreed to supply it.",
        "Loaned": "It is on its way to your library.",
        "Received": "It has arrived; your library will tell you when you can pick it up.",
        "RenewPending": "We have asked to extend your loan.",
        "CancelPending": "We are cancelling your request.",
        "Recalled": "The lending library wants it back; please return it soon.",
        "Overdue": "It is overdue; please return it.",
        "Returned": "It has been returned. Thank you.",
        "LoanCompleted": "Completed: this loan is closed.",
        "CopyCompleted": "Completed: your copy has been supplied.",
        "Cancelled": "Cancelled.",
        "Unfilled": "Sorry, no library could supply it.",
        "Expired": "Sorry, it could not be supplied before the date you gave.",
    },
    "de": {
        "New": "Eingegangen; wir beginnen mit der Bearbeitung.",
        "Locating": "Wir suchen eine Bibliothek, die das Werk besitzt.",
        "Requested": "Wir haben eine Bibliothek um Lieferung gebeten.",
        "WillSupply": "Eine Bibliothek hat die Lieferung zugesagt.",
        "Loaned": "Das Werk ist auf dem Weg zu Ihrer Bibliothek.",
        "Received": "Das Werk ist eingetroffen; Ihre Bibliothek benachrichtigt Sie.",
        "RenewPending": "Wir haben eine Verlängerung beantragt.",
        "CancelPending": "Ihre Bestellung wird storniert.",
        "Recalled": "Die liefernde Bibliothek fordert das Werk zurück.",
        "Overdue": "Die Leihfrist ist überschritten; bitte geben Sie das Werk zurück.",
        "Returned": "Das Werk wurde zurückgegeben. Vielen Dank.",
        "LoanCompleted": "Abgeschlossen: diese Ausleihe ist beendet.",
        "CopyCompleted": "Abgeschlossen: Ihre Kopie wurde geliefert.",
        "Cancelled": "Storniert.",
        "Unfilled": "Leider konnte keine Bibliothek liefern.",
        "Expired": "Leider war eine Lieferung bis zu Ihrem Datum nicht möglich.",
    },
}
UNKNOWN_STATE = {"en": "Your request is being processed.", "de": "Ihre Bestellung wird bearbeitet."}


def words(language: str) -> dict[str, str]:
    """The strings of a language, English for any it lacks."""
    return {**STRINGS["en"], **STRINGS.get(language, {})}


def state_words(state: str, language: str) -> str:
    table = {**STATES["en"], **STATES.get(language, {})}
    fallback = UNKNOWN_STATE.get(language, UNKNOWN_STATE["en"])
    return table.get(state, fallback)


def language_of(configured: str) -> str:
    return configured if configured in STRINGS else "en"
