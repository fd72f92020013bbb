"""Who a mail is from, by the hub's MTA's verdict only (RFC 8601 section 5): forged and
misplaced Authentication-Results fields are not believed, and the signature must be the
partner's own domain.

Mails are written as they lie in the partner's mailbox: Dovecot's LMTP delivery on top
(Return-Path, Delivered-To, its Received), then what the MTA prepended (its
Authentication-Results above its own Received), then what the sender wrote."""

from __future__ import annotations

import pytest

from connectors.artemail.options import ArtemailOptions
from connectors.mail.identity import parse_results, problem, trusted_results
from connectors.mail.mime import parse_mail

MX = "mx.hub.example.org"
LMTP = (
    b"Return-Path: <bldss@bl.uk>\r\nDelivered-To: hub-bl@hub.example.org\r\n"
    b"Received: from mx.hub.example.org by mbox.hub.example.org with LMTP; "
    b"Mon, 07 Dec 2026 06:00:00 +0000\r\n"
)
MTA_RECEIVED = (
    b"Received: from mail.bl.uk (mail.bl.uk [192.0.2.1]) by mx.hub.example.org (Postfix) "
    b"with ESMTPS; Mon, 07 Dec 2026 06:00:00 +0000\r\n"
)
SENDER = b"From: bldss@bl.uk\r\nSubject: FILEREFNO t1\r\n\r\nTXt1\r\nDUE 01-01-2027\r\n"


def ar(results: str, authserv: str = MX) -> bytes:
    return f"Authentication-Results: {authserv};\r\n\t{results}\r\n".encode()


def options(**extra: object) -> ArtemailOptions:
    return ArtemailOptions.model_validate(
        {"address": "artemail@art.bl.uk", "from_addresses": ["@bl.uk"], "authserv_id": MX} | extra
    )


def verdict(raw: bytes, **extra: object) -> str | None:
    return problem(parse_mail(raw), options(**extra))


def test_the_mtas_own_pass_for_the_partners_domain_is_believed() -> None:
    raw = LMTP + ar("dkim=pass (2048-bit key) header.d=bl.uk header.s=s1") + MTA_RECEIVED + SENDER
    assert verdict(raw) is None
    assert verdict(raw, dkim_domains=["bl.uk"]) is None


def test_a_dmarc_pass_for_the_partners_from_domain_is_believed() -> None:
    raw = LMTP + ar("dkim=none; spf=pass smtp.mailfrom=bl.uk; dmarc=pass header.from=bl.uk")
    assert verdict(raw + MTA_RECEIVED + SENDER) is None


def test_a_sender_written_pass_below_the_mtas_fail_is_not_believed() -> None:
    forged = ar("dkim=pass header.d=bl.uk")
    raw = LMTP + ar("dkim=fail (bad signature) header.d=bl.uk") + MTA_RECEIVED + forged + SENDER
    assert "no dkim=pass" in (verdict(raw) or "")


def test_a_pass_for_another_domain_is_not_the_partners() -> None:
    for domain in ("evil.example", "bl.uk.evil.example", "evil.bl.uk", "uk"):
        raw = LMTP + ar(f"dkim=pass header.d={domain}") + MTA_RECEIVED + SENDER
        assert verdict(raw) is not None, domain  # dkim_domains unset: the From domains
        assert verdict(raw, dkim_domains=["bl.uk"]) is not None, domain


def test_a_subdomain_signs_only_when_configured() -> None:
    raw = LMTP + ar("dkim=pass header.d=mail.bl.uk") + MTA_RECEIVED + SENDER
    assert verdict(raw) is not None
    assert verdict(raw, dkim_domains=["mail.bl.uk"]) is None


def test_a_pass_below_received_fields_is_not_the_mtas() -> None:
    # The MTA wrote no verdict (a mail that bypassed it); the sender wrote one further down.
    raw = LMTP + MTA_RECEIVED + ar("dkim=pass header.d=bl.uk") + SENDER
    assert "no Authentication-Results" in (verdict(raw) or "")
    older = b"Received: from x.bl.uk by mail.bl.uk; Mon, 07 Dec 2026 05:59:00 +0000\r\n"
    assert verdict(LMTP + MTA_RECEIVED + older + ar("dkim=pass header.d=bl.uk") + SENDER)


def test_a_pass_on_a_mail_that_never_passed_the_mta_is_not_believed() -> None:
    # Straight into the mailbox (LMTP only): nothing in it was written by the MTA.
    assert verdict(LMTP + ar("dkim=pass header.d=bl.uk") + SENDER) is not None


def test_another_authserv_id_is_not_the_mtas() -> None:
    raw = LMTP + ar("dkim=pass header.d=bl.uk", authserv="mx.bl.uk") + MTA_RECEIVED + SENDER
    assert verdict(raw) is not None


def test_multiple_fields_of_the_mta_are_all_read_and_only_they() -> None:
    # OpenDKIM and OpenDMARC each add a field; a second signature of another domain fails.
    two = ar("dkim=fail header.d=evil.example") + ar("dmarc=pass header.from=bl.uk")
    assert verdict(LMTP + two + MTA_RECEIVED + SENDER) is None
    # Two fields of the MTA, neither a pass for the partner, and a forged pass below both.
    mta = ar("dkim=fail header.d=bl.uk") + ar("dmarc=fail header.from=bl.uk")
    forged = ar("dkim=pass header.d=bl.uk") + ar("dmarc=pass header.from=bl.uk")
    assert verdict(LMTP + mta + MTA_RECEIVED + forged + SENDER) is not None


def test_a_domain_in_a_comment_is_not_a_property() -> None:
    raw = LMTP + ar("dkim=pass (header.d=bl.uk (nested)) header.d=evil.example") + MTA_RECEIVED
    assert verdict(raw + SENDER) is not None


def test_without_lmtp_the_mtas_received_is_the_first() -> None:
    raw = ar("dkim=pass header.d=bl.uk") + MTA_RECEIVED + SENDER
    assert verdict(raw, local_received=0) is None
    # With LMTP's Received expected but absent, the MTA's own Received ends the trusted part.
    assert verdict(MTA_RECEIVED + ar("dkim=pass header.d=bl.uk") + SENDER, local_received=0)


@pytest.mark.parametrize(
    ("value", "authserv", "found"),
    [
        ('mx 1; dkim/1 = pass header.d="BL.UK"', "mx", [("dkim", "pass", "bl.uk")]),
        ("mx; none", "mx", []),
        ("(c) mx (x;y); dkim=pass header.d=a.b; spf=fail", "mx", [("dkim", "pass", "a.b")]),
        ("", "", []),
    ],
)
def test_fields_are_read_per_rfc_8601(
    value: str, authserv: str, found: list[tuple[str, str, str]]
) -> None:
    got_authserv, results = parse_results(value)
    assert got_authserv == authserv
    dkim = [(r.method, r.result, r.properties.get("header.d", "")) for r in results]
    assert [d for d in dkim if d[0] == "dkim"] == found


def test_trusted_results_stop_at_the_mtas_received() -> None:
    headers = parse_mail(LMTP + ar("dkim=pass header.d=a.b") + MTA_RECEIVED + SENDER).headers
    results = trusted_results(headers, MX, 1)
    assert results is not None and [r.properties["header.d"] for r in results] == ["a.b"]
    assert trusted_results(headers, MX, 2) is None  # a third Received was expected


# --- who may write: the sender rule, by default and by domain ------------------------------

PLAIN = b"Subject: FILEREFNO t1\r\n\r\nTXt1\r\nDUE 01-01-2027\r\n"


def sent_by(sender: str, **extra: object) -> str | None:
    rules = {"accept_unverified": True, "authserv_id": None} | extra
    return problem(parse_mail(f"From: {sender}\r\n".encode() + PLAIN), options(**rules))


def test_a_domain_rule_takes_that_domain_only_and_a_subdomain_rule_its_subdomains() -> None:
    assert sent_by("bldss@bl.uk") is None
    assert "not one of" in (sent_by("bldss@art.bl.uk") or "")
    assert "not one of" in (sent_by("x@evilbl.uk") or "")
    both = {"from_addresses": ["@bl.uk", "@*.bl.uk"]}
    assert sent_by("bldss@art.bl.uk", **both) is None
    assert sent_by("bldss@a.b.bl.uk", **both) is None
    assert "not one of" in (sent_by("x@evilbl.uk", **both) or "")
    only_sub = {"from_addresses": ["@*.bl.uk"]}
    assert "not one of" in (sent_by("bldss@bl.uk", **only_sub) or "")


def test_without_from_addresses_only_the_partners_address_may_write() -> None:
    assert sent_by("ARTEmail@Art.BL.uk", from_addresses=[]) is None
    assert "not one of" in (sent_by("bldss@bl.uk", from_addresses=[]) or "")


def test_no_sender_known_refuses_every_mail() -> None:
    assert "no sender" in (sent_by("bldss@bl.uk", from_addresses=[], address=None) or "")


def test_a_from_header_alone_is_refused_unless_the_operator_accepts_it() -> None:
    refused = sent_by("bldss@bl.uk", accept_unverified=False)
    assert refused is not None and "authserv_id" in refused
