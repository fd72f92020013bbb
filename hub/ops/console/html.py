"""Server-side HTML with escaping by default.

Every value put into a page goes through `h`, which escapes it (`&<>"'`) unless it is `Html`,
the type of markup this module (or a template) made. Templates are `string.Template`s filled
by `fill`, which escapes every value the same way, so a partner's bytes, a title or a dead
letter's reason can never become markup or script. Attribute values are always quoted.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from string import Template
from typing import Any
from urllib.parse import urlencode


class Html(str):
    """Markup that is safe as it is (made here from escaped parts)."""

    __slots__ = ()


def h(value: Any) -> Html:
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(h(sep).join(h(p) for p in parts))


def fill(template: Template, **values: Any) -> Html:
    return Html(template.substitute({k: h(v) for k, v in values.items()}))


def _attributes(attributes: dict[str, Any]) -> str:
    """Attributes whose value is None or False are left out, True ones are written bare; a
    trailing _ in a name is dropped (class_, for_), other _ become - (data_txn)."""
    attrs = []
    for key, value in attributes.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        attrs.append(f" {key}" if value is True else f' {key}="{h(value)}"')
    return "".join(attrs)


def tag(name: str, content: Any = "", /, **attributes: Any) -> Html:
    """<name attr="value">content</name>"""
    return Html(f"<{name}{_attributes(attributes)}>{h(content)}</{name}>")


def void(name: str, /, **attributes: Any) -> Html:
    """<name attr="value"> (input, meta ...)"""
    return Html(f"<{name}{_attributes(attributes)}>")


def link(href: str, text: Any, /, **attributes: Any) -> Html:
    return tag("a", text, href=href, **attributes)


def url(path: str, **query: Any) -> str:
    """A local URL with its query (values percent-encoded; empty ones left out)."""
    pairs = [(k, str(v)) for k, v in query.items() if v not in (None, "", False)]
    return path + ("?" + urlencode(pairs) if pairs else "")


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], **attributes: Any) -> Html:
    head = tag("tr", join(tag("th", c) for c in headers))
    body = join(tag("tr", join(tag("td", c) for c in row)) for row in rows)
    return tag("table", join([tag("thead", head), tag("tbody", body)]), **attributes)


def row(cells: Iterable[Any], **attributes: Any) -> Html:
    return tag("tr", join(tag("td", c) for c in cells), **attributes)
