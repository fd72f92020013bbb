"""What every mail connector checks at start-up: each partner has a mail address, and a
mailbox the hub reads names the variable holding its password."""

from __future__ import annotations

import pytest

from connectors.artemail import CONNECTOR as ARTEMAIL
from connectors.artemail.options import ArtemailOptions
from connectors.core.directory import Directory, Partner
from connectors.illiad_email import CONNECTOR as ILLIAD
from connectors.mail.channel import mailbox_listeners, partner_address
from connectors.mail.options import MailSettings


def partner(endpoint: str | None, protocol: str = "artemail", **options: object) -> Partner:
    return Partner(
        symbol="BL", name="BL", protocol=protocol, endpoint=endpoint, options=dict(options)
    )


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [
        ("mailto:artemail@art.bl.uk", "artemail@art.bl.uk"),  # RFC 6068
        ("mailto://artemail@art.bl.uk", "artemail@art.bl.uk"),
        ("MAILTO:ill%2Bbl@example.org", "ill+bl@example.org"),
        ("https://example.org/x", None),
        (None, None),
    ],
)
def test_the_address_is_read_from_either_mailto_form(endpoint: str | None, address: str) -> None:
    assert partner_address(partner(endpoint), ArtemailOptions()) == address


def test_options_address_wins_over_the_endpoint() -> None:
    found = partner_address(partner("mailto:a@b.org"), ArtemailOptions(address="c@d.org"))
    assert found == "c@d.org"


@pytest.mark.parametrize("connector", [ARTEMAIL, ILLIAD], ids=lambda c: c.name)
def test_start_up_refuses_a_partner_without_an_address_or_mailbox_password(
    connector: object,
) -> None:
    assert connector.check is not None  # type: ignore[attr-defined]
    name = connector.name  # type: ignore[attr-defined]
    directory = Directory(
        consortium="c",
        partners=[
            partner("mailto:ok@example.org", name).model_copy(update={"symbol": "OK"}),
            partner("mailto://127.0.0.1:9/x", name).model_copy(update={"symbol": "HOST"}),
            partner(
                "mailto:in@example.org", name, mailbox_user="hub-in", accept_unverified=True
            ).model_copy(update={"symbol": "NOPW"}),
        ],
    )
    problems = connector.check(MailSettings(), directory)  # type: ignore[attr-defined]
    assert len(problems) == 2
    assert problems[0].startswith("partner HOST: no mail address")
    assert problems[1].startswith("partner NOPW: mailbox_user 'hub-in' needs mailbox_password_env")


def test_start_up_refuses_a_mailbox_anyone_could_write_to() -> None:
    base = {"mailbox_user": "hub-in", "mailbox_password_env": "PW"}
    directory = Directory(
        consortium="c",
        partners=[
            # The endpoint's address is the sender; a verdict is read: nothing to say.
            partner("mailto:in@example.org", authserv_id="mx.example.org", **base),
            partner("mailto:in@example.org", **base).model_copy(update={"symbol": "CLAIM"}),
            partner(
                "mailto:in@example.org",
                accept_unverified=True,
                from_addresses=["bl.uk"],
                **base,
            ).model_copy(update={"symbol": "RULE"}),
        ],
    )
    problems = ARTEMAIL.check(MailSettings(), directory)  # type: ignore[misc]
    assert len(problems) == 2, problems
    assert problems[0].startswith("partner CLAIM: mailbox 'hub-in': a From header is only a claim")
    assert problems[1].startswith("partner RULE: mailbox 'hub-in': from_addresses entry 'bl.uk'")


def test_the_listener_reads_the_sender_from_the_endpoint() -> None:
    directory = Directory(
        consortium="c",
        partners=[
            partner(
                "mailto:artemail@art.bl.uk",
                mailbox_user="hub-bl",
                mailbox_password_env="PW",
                accept_unverified=True,
            )
        ],
    )
    (found,) = mailbox_listeners(
        "artemail", ARTEMAIL.codec, ArtemailOptions, MailSettings(), directory
    )
    assert found.options.address == "artemail@art.bl.uk"
