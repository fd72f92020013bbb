"""The console's Statistics page: the tables of hub.ops.statistics, a bar chart of the fill
rate drawn as inline SVG on the server (no script, no external CDN), and a CSV download."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hub.ops import statistics
from hub.ops.console.html import Html, h, join, link, table, tag, url, void
from hub.ops.statistics import GROUPINGS, Query

CHART_BAR_H = 18
CHART_WIDTH = 560
CHART_LABEL_W = 180
CHART_MAX_BARS = 40


def query_of(params: Mapping[str, str]) -> tuple[Query, list[str]]:
    """The page's query from its URL, and what in it was not understood."""
    errors = []
    by = params.get("by", "library")
    if by not in GROUPINGS:
        errors.append(f"unknown grouping {by!r}")
        by = "library"
    role = params.get("role", "borrower")
    if role not in ("borrower", "lender"):
        errors.append(f"unknown role {role!r}")
        role = "borrower"
    dates: list[str | None] = []
    for key in ("from", "to"):
        value = params.get(key, "").strip()
        try:
            dates.append(datetime.fromisoformat(value).date().isoformat() if value else None)
        except ValueError:
            errors.append(f"{key}: not a date (YYYY-MM-DD)")
            dates.append(None)
    return Query(by, role, dates[0], dates[1]), errors  # type: ignore[arg-type]


def _form(query: Query) -> Html:
    def select(name: str, options: tuple[str, ...], chosen: str) -> Html:
        return tag(
            "select",
            join(tag("option", o, value=o, selected=o == chosen) for o in options),
            id=f"s-{name}",
            name=name,
        )

    return tag(
        "form",
        join(
            [
                tag("label", "By", for_="s-by"),
                select("by", GROUPINGS, query.by),
                tag("label", "Role", for_="s-role"),
                select("role", ("borrower", "lender"), query.role),
                tag("label", "From", for_="s-from"),
                void("input", id="s-from", name="from", type="date", value=query.start or ""),
                tag("label", "To", for_="s-to"),
                void("input", id="s-to", name="to", type="date", value=query.end or ""),
                tag("button", "Show", type="submit"),
            ]
        ),
        method="get",
        action="/stats",
        class_="search",
    )


def chart(rows: list[dict[str, Any]]) -> Html:
    """Fill rate per group as horizontal bars, with the number of requests beside each."""
    shown = [r for r in rows if r["fill_rate"] is not None][:CHART_MAX_BARS]
    if not shown:
        return Html("")
    height = CHART_BAR_H * len(shown) + 24
    bar_room = CHART_WIDTH - CHART_LABEL_W - 90
    parts = []
    for i, row in enumerate(shown):
        y = i * CHART_BAR_H + 4
        width = round(bar_room * row["fill_rate"])
        parts.append(
            f'<text x="{CHART_LABEL_W - 6}" y="{y + 12}" text-anchor="end">'
            f"{h(str(row['group'])[:28])}</text>"
            f'<rect x="{CHART_LABEL_W}" y="{y}" width="{width}" height="{CHART_BAR_H - 4}"'
            ' class="bar"></rect>'
            f'<text x="{CHART_LABEL_W + width + 6}" y="{y + 12}">'
            f"{row['fill_rate']:.0%} of {row['filled'] + row['unfilled'] + row['expired']}</text>"
        )
    axis = f'<text x="{CHART_LABEL_W}" y="{height - 4}">fill rate</text>'
    return Html(
        f'<svg id="fill-chart" role="img" aria-label="fill rate per group" '
        f'width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" '
        f'font-size="12">{"".join(parts)}{axis}</svg>'
    )


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 24:.1f} d" if value >= 48 else f"{value:.1f} h"


def page(rows: list[dict[str, Any]], query: Query, errors: list[str]) -> Html:
    csv_link = link(
        url(
            "/stats.csv",
            by=query.by,
            role=query.role,
            **{"from": query.start or "", "to": query.end or ""},
        ),
        "Download CSV",
        id="stats-csv",
    )
    body = [
        (
            r["group"],
            r["requests"],
            r["filled"],
            r["unfilled"],
            r["cancelled"],
            r["expired"],
            r["open"],
            r["overdue"],
            r["lost"],
            "-" if r["fill_rate"] is None else f"{r['fill_rate']:.0%}",
            *(
                f"{_hours(r[f'{stage}_median_h'])} / {_hours(r[f'{stage}_p90_h'])}"
                for stage in statistics.STAGES
            ),
        )
        for r in rows
    ]
    headers = (
        "Library" if query.by == "library" else "Pair" if query.by == "pair" else "Period",
        "Requests",
        "Filled",
        "Unfilled",
        "Cancelled",
        "Expired",
        "Open",
        "Overdue",
        "Lost",
        "Fill rate",
        "To ship (median / p90)",
        "To receive",
        "To return",
        "To close",
    )
    listed = (
        table(headers, body, id="stats")
        if rows
        else tag("p", "No requests in this period.", id="stats")
    )
    shown_errors = join(tag("p", e, class_="flash") for e in errors)
    return join([shown_errors, _form(query), csv_link, chart(rows), listed])
