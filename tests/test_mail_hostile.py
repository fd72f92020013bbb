"""Hostile mail: each kind is a MailError (Failed + dead letter), never another exception."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.artemail.codec import ArtemailCodec
from connectors.core.contract import Fault, Limits, Refusal
from connectors.mail.mime import MailError, MailLimits, parse_mail

HEAD = b"From: bldss@bl.uk\r\nSubject: x\r\nMIME-Version: 1.0\r\n"


def nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\nDUE\r\n"
    for level in range(depth):
        b = f"b{level}".encode()
        body = (
            b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
            + body + b"\r\n--" + b + b"--\r\n"
        )  # fmt: skip
    return HEAD + body


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"


HOSTILE: dict[str, tuple[bytes, Fault, str]] = {
    "huge": (HEAD + b"\r\n" + b"x" * 3_000_000, Fault.TOO_LARGE, "over"),
    "mime bomb": (many_parts(5000), Fault.TOO_LARGE, "MIME parts"),
    "deep nesting": (nested(20), Fault.SYNTAX, "nested deeper"),
    "boundary bomb": (nested(400), Fault.TOO_LARGE, "boundaries"),
    "unknown charset": (
        HEAD + b"Content-Type: text/plain; charset=x-klingon\r\n\r\nDUE\r\n",
        Fault.SYNTAX,
        "unknown charset",
    ),
    "wrong charset": (
        HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nDUE \xff\xfe\xfd\r\n",
        Fault.SYNTAX,
        "not valid utf-8",
    ),
    "html only": (
        HEAD + b"Content-Type: text/html\r\n\r\n<b>SHIPPED COPY</b>\r\n",
        Fault.SYNTAX,
        "HTML-only",
    ),
    "attachment only": (
        HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--B--\r\n",
        Fault.SYNTAX,
        "no text/plain",
    ),
    "too much text": (HEAD + b"\r\n" + b"y" * 250_000, Fault.TOO_LARGE, "characters"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_mail_is_a_mail_error_naming_the_problem(kind: str) -> None:
    raw, fault, words = HOSTILE[kind]
    with pytest.raises(MailError) as caught:
        parse_mail(raw, MailLimits())
    assert caught.value.fault is fault
    assert words in caught.value.detail


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_codec_refuses_hostile_mail_in_its_own_terms(kind: str) -> None:
    raw, fault, _ = HOSTILE[kind]
    with pytest.raises(Refusal) as caught:
        ArtemailCodec().decode(raw, "BL", Limits(max_body_bytes=2_000_000))
    assert caught.value.answer.body.startswith(fault.value.encode())


def test_html_beside_plain_text_reads_the_plain_text() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/alternative; boundary=A\r\n\r\n"
        b"--A\r\nContent-Type: text/plain\r\n\r\nTXt0123456789abcdef.1\r\nSHIPPED COPY\r\n"
        b"--A\r\nContent-Type: text/html\r\n\r\n<p>SHIPPED COPY</p>\r\n--A--\r\n"
    )
    assert "SHIPPED COPY" in parse_mail(raw).text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_any_bytes_are_read_or_refused(raw: bytes) -> None:
    with contextlib.suppress(Refusal):  # read, or refused in ARTEmail's terms: nothing else
        ArtemailCodec().decode(HEAD + raw, "BL", Limits(max_body_bytes=1_000_000))
