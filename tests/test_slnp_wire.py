"""SLNP framing and text form: however a stream is cut, whatever bytes it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.contract import Limits, Refusal
from connectors.slnp.codec import SlnpCodec
from connectors.slnp.wire import (
    Command,
    CommandFramer,
    FramingError,
    Group,
    ResponseFramer,
    SlnpError,
    escape,
    parse_command,
    parse_response,
    render_command,
    render_response,
    unescape,
)

SAMPLES = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "standards" / "slnp" / "samples"
)
ORDER = (SAMPLES / "01-flbestellung-pfl-minimal.request.txt").read_bytes()


def framer() -> CommandFramer:
    return CommandFramer(max_line=1024, max_command=8192)


def test_a_command_split_at_every_byte_is_one_frame() -> None:
    for cut in range(1, len(ORDER)):
        f = framer()
        assert f.feed(ORDER[:cut]) == []
        assert f.begun
        assert f.feed(ORDER[cut:]) == [ORDER]
        assert not f.begun


def test_a_command_a_byte_at_a_time() -> None:
    f = framer()
    frames = [frame for byte in ORDER for frame in f.feed(bytes([byte]))]
    assert frames == [ORDER]


def test_several_commands_in_one_read_are_each_a_frame() -> None:
    quit_ = b"SLNPQuit\n"
    frames = framer().feed(ORDER + b"\n\r\n" + ORDER.replace(b"\n", b"\r\n") + quit_)
    assert len(frames) == 3
    assert frames[0] == ORDER
    assert parse_command(frames[1].decode()) == parse_command(ORDER.decode())  # CRLF stripped
    assert frames[2] == quit_


def test_quit_with_or_without_its_end_line() -> None:
    assert parse_command("SLNPQuit\n") == Command("SLNPQuit")
    assert parse_command("SLNPQuit\r\nSLNPEndCommand\r\n") == Command("SLNPQuit")


def test_an_endless_line_is_a_framing_error_without_reading_it_all() -> None:
    f = framer()
    with pytest.raises(FramingError):
        for _ in range(10_000):
            f.feed(b"x" * 100)
    assert f.pending <= 1024 + 100


def test_an_oversized_command_of_short_lines_is_a_framing_error() -> None:
    f = framer()
    f.feed(b"SLNPFLBestellung\n")
    with pytest.raises(FramingError, match="longer than 8192"):
        for _ in range(1000):
            f.feed(b"Bemerkung:" + b"y" * 50 + b"\n")


def test_too_many_lines_is_a_framing_error() -> None:
    f = CommandFramer(max_line=1024, max_command=1 << 20, max_lines=50)
    with pytest.raises(FramingError, match="more than 50 lines"):
        f.feed(b"SLNPFLBestellung\n" + b"A:b\n" * 60)


def test_what_an_unfinished_command_holds() -> None:
    f = framer()
    f.feed(b"SLNPFLBestellung\nBsTyp:P")
    assert f.unfinished() == b"SLNPFLBestellung\nBsTyp:P"


@pytest.mark.parametrize(
    "value", ["", " lead", "a:b:c", "zwei\nZeilen", "back\\slash", "\\n literally", "ä€𝄞", "trail "]
)
def test_values_survive_escaping(value: str) -> None:
    assert unescape(escape(value)) == value
    command = Command("SLNPFLBestellung", (("Bemerkung", value), ("Titel", "x")))
    assert parse_command(render_command(command)) == command


def test_groups_nest_and_round_trip() -> None:
    command = Command("SLNPX", (("A", "1"), Group((("B", "2"), Group((("C", "3"),)))), ("D", "4")))
    text = render_command(command)
    assert "SLNPBegin\nB:2\nSLNPBegin\nC:3\nSLNPEnd\nSLNPEnd\n" in text
    assert parse_command(text) == command


def test_a_data_reply_with_a_group() -> None:
    text = "600 SLNPAlleBenutzerDaten\n601 Name:X\n604 SLNPBegin\n603 Titel:A\n605 SLNPEnd\n250 SLNPEndOfData \n"
    reply = parse_response(text)
    assert reply.items == (("Name", "X"), Group((("Titel", "A"),)))


def test_reply_framing_ends_at_each_replys_last_line() -> None:
    f = ResponseFramer(1024, 8192)
    stream = b"220 SLNP hello\n600 SLNPFLBestellung\n601 PFLNummer:1\n250 SLNPEndOfData\n240 OK: SLNPQuit success\n"
    frames = f.feed(stream[:30]) + f.feed(stream[30:])
    assert [parse_response(x.decode()).code for x in frames] == [220, 600, 240]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_any_bytes_cut_anyhow_give_frames_or_a_framing_error(chunks: list[bytes]) -> None:
    f = CommandFramer(max_line=200, max_command=1000)
    codec = SlnpCodec()
    try:
        for chunk in chunks:
            for frame in f.feed(chunk):
                try:
                    codec.decode(frame, "ZFL", Limits(max_body_bytes=1000))
                except Refusal as refusal:
                    assert refusal.answer.body.startswith(b"5")
                    assert refusal.answer.body.count(b"\n") == 1
    except FramingError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_a_command_or_an_slnp_error(text: str) -> None:
    try:
        command = parse_command(text)
    except SlnpError as error:
        assert error.kind.startswith("SLNP_")
        return
    assert parse_command(render_command(command)) == command


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_a_reply_or_an_slnp_error(text: str) -> None:
    try:
        response = parse_response(text)
    except SlnpError as error:
        assert error.kind == "SLNP_RESP_FORMAT_ERROR"
        return
    assert parse_response(render_response(response)) == response
