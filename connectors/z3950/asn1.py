"""The Z39.50 ASN.1 from YAZ (shared/standards/z3950/z3950v3.asn), compiled with asn1tools.

Only the protocol (Z39-50-APDU-1995) and the OPAC record syntax are needed.
`FIXES` lists every change made in memory before compiling and why; none changes a tag, so
the wire format is the standard's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import asn1tools

from connectors.iso10161.asn1 import EXTERNAL_X208

SOURCE = Path(__file__).parent / "asn" / "z3950v3.asn"
PROTOCOL_END = "END -- IR DEFINITIONS"

# Object identifiers used by the client.
BIB1 = "1.2.840.10003.3.1"
OPAC = "1.2.840.10003.5.102"
USMARC = "1.2.840.10003.5.10"


def _opac_in_protocol_module(text: str) -> str:
    """The protocol module followed, before its END, by the OPAC record syntax types."""
    protocol = text[: text.index(PROTOCOL_END)]
    start = text.index("OPACRecord ::=")
    opac = text[start : text.index("\nEND", start)]
    return protocol + "\n" + opac + "\n" + PROTOCOL_END + "\n"


def _typed_retrieval_record(text: str) -> str:
    """A retrieval record whose single-ASN1-type is an OPACRecord: asn1tools cannot read an
    ANY sent with indefinite length, which is how YAZ sends OPAC records."""
    typed = EXTERNAL_X208.replace("External-X208", "Retrieval-External").replace(
        "single-ASN1-type [0] ANY", "single-ASN1-type [0] OPACRecord"
    )
    text = text.replace(
        "retrievalRecord        [1] EXTERNAL", "retrievalRecord [1] Retrieval-External"
    )
    return text.replace(PROTOCOL_END, typed + "\n" + PROTOCOL_END, 1)


FIXES: list[tuple[str, Callable[[str], str]]] = [
    (
        "keep the protocol module only, with the OPAC record syntax types moved into it "
        "(asn1tools cannot parse the OPAC module's symbolic OID)",
        _opac_in_protocol_module,
    ),
    ("type retrieval records (OPAC or octet-aligned MARC)", _typed_retrieval_record),
    ("ANY DEFINED BY compiles only as ANY", lambda t: re.sub(r"ANY DEFINED BY [\w-]+", "ANY", t)),
    (
        "EXTERNAL in its X.208 form (as YAZ and Zebra send it), defined in the protocol module",
        lambda t: re.sub(r"\bEXTERNAL\b", "External-X208", t).replace(
            PROTOCOL_END, EXTERNAL_X208 + "\n" + PROTOCOL_END, 1
        ),
    ),
]


def module_text() -> str:
    text = SOURCE.read_text(encoding="latin-1")
    for _reason, fix in FIXES:
        text = fix(text)
    return text


@cache
def compiled() -> asn1tools.compiler.Specification:
    return asn1tools.compile_string(module_text(), "ber")
