"""The XSD diagnostic on inbound NCIP: first message of each kind from each partner, every
message of a kind whose last check found errors, one in XSD_SAMPLE_EVERY of the others."""

from __future__ import annotations

from connectors.core.contract import Limits
from connectors.core.model import Event, Message
from connectors.ncip import connector, writer
from tests.test_ncip_codec import sample


def body(answer: bool | None) -> bytes:
    """A RequestItem; with an Alma Ext/Answer, which the schema's strict wildcard rejects."""
    message: Message = sample(Event.REQUEST).model_copy(update={"answer": answer})
    return writer.encode(message, from_agency="01A||MAIN", to_agency="01B||MAIN")


def schema_errors(sender: str, answer: bool | None) -> list[str] | None:
    decoded = connector.NcipCodec().decode(body(answer), sender, Limits())
    errors: list[str] | None = decoded.message.extensions["ncip"].get("schema_errors")
    return errors


def test_a_kind_with_errors_is_checked_every_time() -> None:
    assert schema_errors("XSD-A", True)
    assert schema_errors("XSD-A", True)
    assert schema_errors("XSD-A", True)


def test_a_clean_kind_is_sampled() -> None:
    assert schema_errors("XSD-B", None) is None  # checked: clean
    # Not checked (a clean kind is sampled): the errors of these go unreported ...
    unchecked = [schema_errors("XSD-B", True) for _ in range(connector.XSD_SAMPLE_EVERY - 1)]
    assert unchecked == [None] * (connector.XSD_SAMPLE_EVERY - 1)
    # ... until the next sample finds them; from then on every message is checked.
    assert schema_errors("XSD-B", True)
    assert schema_errors("XSD-B", True)
    assert schema_errors("XSD-C", True)  # another partner's first message is checked


def test_no_check_when_switched_off() -> None:
    decoded = connector.NcipCodec().decode(body(True), "XSD-D", Limits(validate_xsd=False))
    assert "schema_errors" not in decoded.message.extensions["ncip"]
