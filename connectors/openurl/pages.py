"""The patron's pages: the request form, the confirmation, the status and error pages.
Plain HTML, no script, usable with a keyboard and a screen reader (labels tied to fields,
fieldsets with legends, an error summary announced as an alert). Every value that came from
outside passes `escape`."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from connectors.openurl.citation import FIELDS, Citation

STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:1em auto;padding:0 1em;line-height:1.5}"
    "label{display:block;font-weight:bold;margin-top:.6em}"
    "input[type=text],input[type=date],input[type=email],select,textarea{width:100%;"
    "padding:.3em;font-size:1em;box-sizing:border-box}fieldset{margin-top:1em}"
    ".errors{border:2px solid #b00;padding:.5em 1em}button{margin-top:1em;font-size:1.1em}"
)
REQUIRED = ("title",)  # marked * (a title or an identifier is checked on submit)


def page(language: str, title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(language)}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    ).encode()


@dataclass
class FormState:
    """What the form shows and carries (hidden fields are bound by the CSRF token)."""

    action: str
    citation: Citation
    service: str
    hidden: dict[str, str]
    need_before: str = ""
    pickup: str = ""
    note: str = ""
    patron_known: str = ""  # a patron the link proved (shown, not editable)
    patron_id: str = ""
    patron_email: str = ""
    patron_editable: bool = True
    pickup_locations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _text_input(name: str, label: str, value: str, kind: str = "text", extra: str = "") -> str:
    return (
        f'<label for="f-{name}">{escape(label)}</label>'
        f'<input type="{kind}" id="f-{name}" name="{name}" value="{escape(value)}"{extra}>'
    )


def form(words: dict[str, str], state: FormState) -> str:
    parts: list[str] = [f"<p>{escape(words['form_intro'])}</p>"]
    if state.errors:
        items = "".join(f"<li>{escape(e)}</li>" for e in state.errors)
        parts.append(
            f'<div class="errors" role="alert" tabindex="-1" id="errors">'
            f"<h2>{escape(words['errors'])}</h2><ul>{items}</ul></div>"
        )
    parts.append(f'<form method="post" action="{escape(state.action)}" accept-charset="utf-8">')
    for name, value in state.hidden.items():
        parts.append(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">')
    parts.append(f"<fieldset><legend>{escape(words['citation'])}</legend>")
    for name in FIELDS:
        label = words[name] + (" *" if name in REQUIRED else "")
        parts.append(_text_input(name, label, str(getattr(state.citation, name))))
    parts.append(
        f'<input type="hidden" name="genre" value="{escape(state.citation.genre)}"></fieldset>'
    )
    parts.append(f"<fieldset><legend>{escape(words['service'])}</legend>")
    for value in ("loan", "copy"):
        checked = " checked" if state.service == value else ""
        parts.append(
            f'<input type="radio" id="f-service-{value}" name="service" value="{value}"{checked}>'
            f'<label for="f-service-{value}" style="display:inline;font-weight:normal">'
            f"{escape(words[value])}</label><br>"
        )
    parts.append("</fieldset>")
    parts.append(f"<fieldset><legend>{escape(words['request'])}</legend>")
    parts.append(_text_input("need_before", words["need_before"], state.need_before, "date"))
    if state.pickup_locations:
        options = [f'<option value="">{escape(words["choose"])}</option>']
        for place in state.pickup_locations:
            selected = " selected" if place == state.pickup else ""
            options.append(f'<option value="{escape(place)}"{selected}>{escape(place)}</option>')
        parts.append(
            f'<label for="f-pickup">{escape(words["pickup"])}</label>'
            f'<select id="f-pickup" name="pickup">{"".join(options)}</select>'
        )
    else:
        parts.append(_text_input("pickup", words["pickup"], state.pickup))
    parts.append(
        f'<label for="f-note">{escape(words["note"])}</label>'
        f'<textarea id="f-note" name="note" rows="3">{escape(state.note)}</textarea></fieldset>'
    )
    parts.append(f"<fieldset><legend>{escape(words['you'])}</legend>")
    if state.patron_known:
        parts.append(
            f"<p>{escape(words['patron_known'])}: <strong>{escape(state.patron_known)}</strong></p>"
        )
    elif state.patron_editable:
        parts.append(
            _text_input(
                "patron_id",
                words["patron_id"] + " *",
                state.patron_id,
                extra=' autocomplete="off" required',
            )
        )
        parts.append(
            _text_input(
                "patron_email",
                words["patron_email"],
                state.patron_email,
                "email",
                ' autocomplete="email"',
            )
        )
    parts.append("</fieldset>")
    parts.append(f'<button type="submit">{escape(words["submit"])}</button></form>')
    return "".join(parts)


def _number(words: dict[str, str], number: str, state_text: str) -> str:
    return (
        f"<p>{escape(words['done_number'])} "
        f'<strong id="request-number">{escape(number)}</strong>.</p>'
        f'<p id="request-state">{escape(state_text)}</p>'
    )


def confirmation(words: dict[str, str], number: str, status_link: str, state_text: str) -> str:
    link = f'<a id="status-link" href="{escape(status_link)}">{escape(words["done_status"])}</a>'
    return f"{_number(words, number, state_text)}<p>{link}</p>"


def status(words: dict[str, str], number: str, state_text: str) -> str:
    return _number(words, number, state_text)


def message(text: str, detail: str = "") -> str:
    extra = f"<p>{escape(detail)}</p>" if detail else ""
    return f'<p role="alert">{escape(text)}</p>{extra}'
