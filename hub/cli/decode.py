"""`rshub decode PROTOCOL FILE`: a partner's message as the hub reads it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from connectors.core.contract import Registry
from hub.runtime.settings import Settings


def _hex_input(body: bytes) -> bytes | None:
    """The hex digits of a file holding BER as hex (spaces, new lines and a 0x prefix
    allowed), or None if it is not hex text."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    digits = "".join(text.split())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    return digits.encode()


def _jsonable(value: Any) -> Any:
    """An asn1tools value as JSON: CHOICEs as {name: value}, bytes as hex."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return {value[0]: _jsonable(value[1])}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _print_reply(protocol: str, body: bytes) -> None:
    """The answer a partner would get: XML as text; ISO 10161's BER decoded, as JSON."""
    if protocol == "iso10161":
        from connectors.iso10161 import codec

        name, value = codec.decode(body)
        print(json.dumps({name: _jsonable(value)}, indent=2))
    else:
        sys.stdout.write(body.decode("utf-8", errors="replace") + "\n")


def decode(protocol: str, path: Path, settings: Settings) -> int:
    """Print a partner's message as the hub reads it: canonical JSON (exit 0), a partner's
    response or confirmation (exit 0), or the protocol error the hub would answer (exit 2)."""
    from connectors.core.contract import Fault, Refusal
    from hub.runtime import app as assembly

    connector = assembly.connectors(settings).get(protocol)
    assert connector is not None  # argparse offers only known protocols
    codec = connector.codec
    try:
        body = path.read_bytes()
    except OSError as error:
        print(f"rshub: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 2
    if protocol == "iso10161" and (digits := _hex_input(body)) is not None:
        if len(digits) % 2:
            detail = f"hex input has an odd number of digits ({len(digits)})"
            _print_reply(protocol, codec.fault(Fault.SYNTAX, detail).body)
            return 2
        body = bytes.fromhex(digits.decode())
    describe = getattr(codec, "describe", None)
    if callable(describe):  # the NCIP relay: broker calls are relayed, never loan messages
        try:
            print(json.dumps(describe(body, settings.limits().max_body_bytes), indent=2))
            return 0
        except Refusal as refusal:
            answer = codec.read_answer(body)
            if answer is not None:
                print(json.dumps(answer, indent=2, default=str))
                return 0
            _print_reply(protocol, refusal.answer.body)
            return 2
    try:
        decoded = codec.decode(body, "", settings.limits())
    except Refusal as refusal:
        answer = codec.read_answer(body)
        if answer is not None:
            print(json.dumps(answer, indent=2, default=str))
            return 0
        _print_reply(protocol, refusal.answer.body)
        return 2
    print(decoded.message.model_dump_json(indent=2, exclude_none=True))
    return 0


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser], registry: Registry) -> None:
    """The `decode` command's options: one of the registry's protocols, a file."""
    p_decode = sub.add_parser("decode", help="print a partner message in canonical form")
    p_decode.add_argument("protocol", choices=registry.names)
    p_decode.add_argument("file", type=Path)
