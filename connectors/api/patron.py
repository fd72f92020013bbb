"""The patron's status page of a request placed through the API (issue 29.4): its title, the
state in words and the dates the patron can expect, in the patron's language, as the OpenURL
form's status page says them (its words and its page are reused, so a patron reads one
vocabulary whichever way the request came). Pure: the hub's API decides who may see it (the
unguessable link) and hands over what the request says."""

from __future__ import annotations

from datetime import datetime
from html import escape

from connectors.openurl import pages
from connectors.openurl.strings import STRINGS, state_words, words

# What the OpenURL form has no words for: the dates a patron of a placed request expects.
DATES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Title",
        "state": "Status",
        "due_date": "Due back by",
        "need_before": "Not needed after",
    },
    "de": {
        "title": "Titel",
        "state": "Stand",
        "due_date": "Zurückzugeben bis",
        "need_before": "Nicht mehr benötigt nach",
    },
}


def language(accept_language: str) -> str:
    """The first of the patron's languages this page has (English otherwise)."""
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in STRINGS and tag in DATES:
            return tag
    return "en"


def state_text(state: str | None, lang: str) -> str:
    return state_words(state, lang) if state else words(lang)["status_unknown"]


def _day(value: datetime | None) -> str:
    return value.date().isoformat() if value else ""


def page(
    lang: str,
    request_id: str,
    state: str | None,
    title: str | None,
    due_date: datetime | None,
    need_before: datetime | None,
) -> bytes:
    said = {**DATES["en"], **DATES.get(lang, {})}
    rows = [
        ("request-title", said["title"], title or ""),
        ("request-state", said["state"], state_text(state, lang)),
        ("request-due", said["due_date"], _day(due_date)),
        ("request-need-before", said["need_before"], _day(need_before)),
    ]
    shown = "".join(
        f'<dt>{escape(label)}</dt><dd id="{name}">{escape(value)}</dd>'
        for name, label, value in rows
        if value
    )
    text = words(lang)
    body = (
        f"<p>{escape(text['done_number'])} "
        f'<strong id="request-number">{escape(request_id)}</strong>.</p><dl>{shown}</dl>'
    )
    return pages.page(lang, text["status_title"], body)


class PatronPages:
    """What the hub's API needs to show a patron a request (hub.ops.api.patron.Pages)."""

    language = staticmethod(language)
    state_text = staticmethod(state_text)
    page = staticmethod(page)
