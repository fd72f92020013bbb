"""Issue 26: the BL customer code and ART password never reach what operators read. The
operators' index (behind `rshub show`, the console and exports) keeps an ARTEmail body with
them replaced; what replay needs (the order's requests) still reads from it."""

from __future__ import annotations

import base64
from pathlib import Path

from connectors.artemail.codec import ArtemailCodec
from connectors.core.contract import Limits
from connectors.core.records import AuditRecord
from connectors.registry import CONNECTORS
from hub.cli.running import redactors
from hub.ops import index as index_module
from tests.test_artemail_codec import ENV, article_1301, render


def kept(tmp_path: Path, body: bytes, direction: str = "out") -> str:
    index = index_module.Index(tmp_path / "index.sqlite3", redactors(CONNECTORS))
    audit = AuditRecord.of(direction, "artemail", "BL", body, "message/rfc822", "t1")
    record = index_module.Record(
        "ill.audit", 0, 7, 1_700_000_000_000, "t1", audit.model_dump_json().encode()
    )
    index.apply([record])
    row = index.raw(record.ref)
    index.close()
    assert row is not None
    return str(row["body"])


def test_an_order_is_kept_without_its_customer_code_and_password(tmp_path: Path) -> None:
    raw = render(article_1301())
    secrets = list(ENV.values())
    assert all(s.encode() in raw for s in secrets)  # the mail itself carries them
    body = kept(tmp_path, raw)
    assert not any(s in body for s in secrets)
    assert "[customer code]" in body and "[ART password]" in body
    # What replay reads of it is the same request.
    again = ArtemailCodec().decode(body.encode("latin-1"), "BL", Limits())
    first = ArtemailCodec().decode(raw, "BL", Limits())
    assert again.message.bibliographic == first.message.bibliographic
    assert again.message.request_id == first.message.request_id


def test_an_order_mail_in_base64_is_kept_decoded_and_redacted(tmp_path: Path) -> None:
    text = render(article_1301()).split(b"\r\n\r\n", 1)[1]
    raw = (
        b"From: ill@library.example.ac.uk\r\nSubject: order\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(text)
    )
    body = kept(tmp_path, raw, "in")
    assert not any(s in body for s in ENV.values())
    assert "TX" in body and "[ART password]" in body


def test_a_reply_is_kept_as_it_came(tmp_path: Path) -> None:
    raw = b"From: bldss@bl.uk\r\nSubject: x\r\n\r\nTXt0000000000000001.1\r\nDUE 01-01-2027\r\n"
    assert kept(tmp_path, raw, "in") == raw.decode()
