"""docs/translation.md is generated from the codecs' tables: it must say what they do."""

from __future__ import annotations

from connectors import translation


def test_the_checked_in_translation_table_is_what_the_codecs_carry() -> None:
    assert translation.DOCUMENT.read_text() == translation.render(), (
        "docs/translation.md is stale: run `python -m connectors.translation`"
    )


def test_the_fields_the_issue_names_are_carried_where_the_protocols_can() -> None:
    """Issue 24's concrete losses, as cells of the table."""
    columns = {c.name: c for c in translation.COLUMNS}
    for protocol, path in (
        ("NCIP P2P", "bibliographic.volume"),
        ("NCIP P2P", "bibliographic.pages_requested"),
        ("ISO 10161", "bibliographic.subtitle"),
        ("ISO 10161", "bibliographic.volume"),
        ("ISO 10161", "patron_name"),
        ("ISO 10161", "delivery_address"),
        ("ISO 18626 1.2", "patron_name"),
        ("ISO 18626 1.2", "bibliographic.call_number"),
        ("ISO 18626 1.2", "bibliographic.oclc_number"),
        ("ISO 18626 1.2", "bibliographic.subtitle"),
        ("ISO 18626 2021", "loan_condition"),
        ("OpenURL 1.0", "bibliographic.doi"),
    ):
        assert translation.cell(columns[protocol], path) == translation.CARRIED, (protocol, path)
