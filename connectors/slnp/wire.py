"""SLNP on the wire, sans-IO: framing a byte stream into commands and responses, and the text
form of a command (a name line, `Name:value` lines, `SLNPBegin`/`SLNPEnd` groups,
`SLNPEndCommand`) and of a response (`600`/`601`/`603`/`604`/`605`/`250` data replies, `240 OK`,
one-line `5x0` errors).

Nothing here knows what a command means (see `vocabulary`) or who sent it; everything works on
`str` except the framers, which work on bytes so that they need no encoding: every line end and
every terminator SLNP has is ASCII, the same bytes in UTF-8 and in ISO 8859-1.

Facts from the format notes (standards/slnp/FORMAT.md): LF or CRLF line ends (CR stripped), the
first `:` separates a parameter's name from its value, values may be empty or hold `:`, `\\n`
and `\\\\` are the only escapes, blank lines are ignored, any other line is a format error,
reply lines may end in a stray blank (both Koha servers print one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

END_COMMAND = "SLNPEndCommand"
BEGIN = "SLNPBegin"
END = "SLNPEnd"
# Commands complete on their own line: a client saying goodbye may not send SLNPEndCommand, and
# waiting for one would hold the connection until it times out.
SELF_ENDING = frozenset({"SLNPQuit"})
# Groups nest; real orders use none or one level. A bound keeps a hostile command shallow.
MAX_DEPTH = 8

_NAME = re.compile(r"\w+")
_PARAM = re.compile(r"(\w+):(.*)", re.DOTALL)


class SlnpError(ValueError):
    """A command or response that is not SLNP; `kind` is the SLNP error type it is answered
    with (SLNP_REQ_FORMAT_ERROR ...), `parameter` the parameter it concerns, if any."""

    def __init__(self, kind: str, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.parameter = kind, detail, parameter


class FramingError(SlnpError):
    """The stream lost its command boundaries (a line or command over its bound): the
    connection cannot go on."""


# -- values --------------------------------------------------------------------------------


def unescape(value: str) -> str:
    """`\\n` is a newline, `\\\\` a backslash; any other backslash stands for itself."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] in "n\\":
            out.append("\n" if value[i + 1] == "n" else "\\")
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def escape(value: str) -> str:
    """A value as one line: backslashes doubled, newlines as `\\n`, CRs dropped (a CR would be
    stripped as a line end by the receiver anyway)."""
    return value.replace("\\", "\\\\").replace("\r\n", "\n").replace("\r", "").replace("\n", "\\n")


# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A `SLNPBegin` ... `SLNPEnd` group: a repeating block of parameters."""

    items: tuple[Item, ...] = ()


Param = tuple[str, str]
Item = Param | Group


@dataclass(frozen=True)
class Command:
    """One SLNP command as sent: its name and its parameters in order (values unescaped,
    kept exactly otherwise: leading blanks and empty values included)."""

    name: str
    items: tuple[Item, ...] = ()

    def params(self) -> Iterator[Param]:
        """The top-level parameters."""
        return (item for item in self.items if isinstance(item, tuple))

    def get(self, name: str) -> str | None:
        """The first top-level value of `name`, as sent, or None."""
        return next((value for key, value in self.params() if key == name), None)

    def value(self, name: str) -> str | None:
        """The first top-level value of `name` without surrounding blanks; None when it is
        missing or blank (a blank value says nothing)."""
        raw = self.get(name)
        return raw.strip() or None if raw is not None else None

    def groups(self) -> list[Group]:
        return [item for item in self.items if isinstance(item, Group)]


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) without line ends; the number counts every line, blank or not."""
    return [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), start=1)]


def parse_command(text: str) -> Command:
    """A command from its text (one frame: up to and including `SLNPEndCommand`).

    Raises `SlnpError` with the type Koha's SLNP servers use: SLNP_REQ_FORMAT_ERROR for a line
    that is neither a parameter nor a keyword (with its number and text, as those servers
    say it), SLNP_END_COMMAND_LACKING, SLNP_PARAM_GROUP_ERROR for unbalanced groups,
    SLNP_PARAM_LEVEL_WRONG for groups nested too deep."""
    name: str | None = None
    stack: list[list[Item]] = [[]]
    ended = False
    for number, line in _lines(text):
        if not line.strip():
            continue
        if ended:
            if name in SELF_ENDING and line.strip() == END_COMMAND:
                continue  # `SLNPQuit` may come with or without its end line
            raise SlnpError(
                "SLNP_REQ_FORMAT_ERROR",
                f'Error in request, line no.:{number} line:"{_shown(line)}" after {END_COMMAND}',
            )
        if name is None:
            word = line.strip()
            if not _NAME.fullmatch(word):
                raise SlnpError(
                    "SLNP_REQ_FORMAT_ERROR",
                    f'Error in request, line no.:{number} line:"{_shown(line)}"',
                )
            name = word
            if name in SELF_ENDING:
                ended = True
            continue
        keyword = line.strip()
        if keyword == END_COMMAND:
            ended = True
        elif keyword == BEGIN:
            if len(stack) > MAX_DEPTH:
                raise SlnpError(
                    "SLNP_PARAM_LEVEL_WRONG",
                    f"parameter groups nested deeper than {MAX_DEPTH} at line no.:{number}",
                )
            stack.append([])
        elif keyword == END:
            if len(stack) == 1:
                raise SlnpError(
                    "SLNP_PARAM_GROUP_ERROR", f"{END} without {BEGIN} at line no.:{number}"
                )
            group = Group(tuple(stack.pop()))
            stack[-1].append(group)
        else:
            match = _PARAM.fullmatch(line)
            if match is None:
                raise SlnpError(
                    "SLNP_REQ_FORMAT_ERROR",
                    f'Error in request, line no.:{number} line:"{_shown(line)}"',
                )
            stack[-1].append((match.group(1), unescape(match.group(2))))
    if name is None:
        raise SlnpError("SLNP_REQ_FORMAT_ERROR", "Error in request: no command")
    if not ended:
        raise SlnpError(
            "SLNP_END_COMMAND_LACKING", f"The command {name} lacks its {END_COMMAND} line."
        )
    if len(stack) > 1:
        raise SlnpError("SLNP_PARAM_GROUP_ERROR", f"{BEGIN} without {END}")
    return Command(name, tuple(stack[0]))


def _render_items(items: tuple[Item, ...], out: list[str]) -> None:
    for item in items:
        if isinstance(item, Group):
            out.append(BEGIN)
            _render_items(item.items, out)
            out.append(END)
        else:
            out.append(f"{item[0]}:{escape(item[1])}")


def render_command(command: Command, line_end: str = "\n") -> str:
    """A command as text; parse_command(render_command(c)) == c for every command."""
    out = [command.name]
    _render_items(command.items, out)
    if command.name not in SELF_ENDING:
        out.append(END_COMMAND)
    return line_end.join(out) + line_end


def _shown(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else f"{line[:limit]}..."


# -- responses -----------------------------------------------------------------------------

OK = 240
DATA = 600
PARAM = 601
GROUP_PARAM = 603
GROUP_BEGIN = 604
GROUP_END = 605
END_OF_DATA = 250
GREETING = 220
_ERROR = re.compile(r"5\d0")
_ERROR_TEXT = re.compile(r"(?P<cls>\w+):\s*(?P<type>[A-Z][A-Z0-9_]*)?\s*(?P<text>.*)", re.DOTALL)


@dataclass(frozen=True)
class Response:
    """A reply: `code` 600 (data: `command`, `items`), 240 (OK: `text`), 220 (greeting) or
    5x0 (error: `error_class`, `error_type`, `text`)."""

    code: int
    command: str = ""
    items: tuple[Item, ...] = ()
    text: str = ""
    error_class: str = ""
    error_type: str = ""

    @property
    def ok(self) -> bool:
        return self.code in (DATA, OK)

    @property
    def is_error(self) -> bool:
        return _ERROR.fullmatch(str(self.code)) is not None

    def get(self, name: str) -> str | None:
        return Command(self.command, self.items).get(name)


def data(command: str, *params: Param, groups: tuple[Group, ...] = ()) -> Response:
    return Response(DATA, command=command, items=(*params, *groups))


def ok(command: str) -> Response:
    return Response(OK, text=f"OK: {command} success")


def error(code: int, error_class: str, error_type: str, text: str) -> Response:
    return Response(code, error_class=error_class, error_type=error_type, text=text)


def render_response(response: Response, line_end: str = "\n") -> str:
    if response.code == DATA:
        out = [f"{DATA} {response.command}"]
        for item in response.items:
            if isinstance(item, Group):
                out.append(f"{GROUP_BEGIN} {BEGIN}")
                out.extend(
                    f"{GROUP_PARAM} {inner[0]}:{escape(inner[1])}"
                    for inner in item.items
                    if isinstance(inner, tuple)  # replies nest one level
                )
                out.append(f"{GROUP_END} {END}")
            else:
                out.append(f"{PARAM} {item[0]}:{escape(item[1])}")
        out.append(f"{END_OF_DATA} SLNPEndOfData")
    elif response.is_error and response.error_class:
        head = f"{response.code} {response.error_class}:"
        rest = " ".join(part for part in (response.error_type, response.text) if part)
        out = [f"{head} {escape(rest)}" if rest else head]
    else:
        out = [f"{response.code} {escape(response.text)}".rstrip()]
    return line_end.join(out) + line_end


def parse_response(text: str) -> Response:
    """A reply from its text (one frame); SlnpError when it is none."""
    lines = [line.rstrip() for _, line in _lines(text) if line.strip()]
    if not lines:
        raise SlnpError("SLNP_RESP_FORMAT_ERROR", "empty response")
    code_text, _, rest = lines[0].partition(" ")
    if not code_text.isdigit() or len(code_text) != 3:
        raise SlnpError("SLNP_RESP_FORMAT_ERROR", f"no reply code in {_shown(lines[0])!r}")
    code = int(code_text)
    if code != DATA:
        if len(lines) > 1:
            raise SlnpError("SLNP_RESP_FORMAT_ERROR", f"a {code} reply has more than one line")
        if _ERROR.fullmatch(code_text):
            match = _ERROR_TEXT.fullmatch(rest)
            if match:
                return Response(
                    code,
                    error_class=match["cls"],
                    error_type=match["type"] or "",
                    text=unescape(match["text"]),
                )
        return Response(code, text=unescape(rest))
    items: list[Item] = []
    group: list[Item] | None = None
    for line in lines[1:-1]:
        code_text, _, rest = line.partition(" ")
        if code_text == str(GROUP_BEGIN) and group is None:
            group = []
        elif code_text == str(GROUP_END) and group is not None:
            items.append(Group(tuple(group)))
            group = None
        elif code_text in (str(PARAM), str(GROUP_PARAM)) and (match := _PARAM.fullmatch(rest)):
            (items if group is None else group).append((match.group(1), unescape(match.group(2))))
        else:
            raise SlnpError("SLNP_RESP_FORMAT_ERROR", f"unexpected reply line {_shown(line)!r}")
    if group is not None or len(lines) < 2 or not lines[-1].startswith(f"{END_OF_DATA} "):
        raise SlnpError("SLNP_RESP_FORMAT_ERROR", "data reply without 250 SLNPEndOfData")
    return Response(DATA, command=rest_of(lines[0]), items=tuple(items))


def rest_of(line: str) -> str:
    return line.partition(" ")[2].strip()


# -- framing -------------------------------------------------------------------------------


@dataclass
class _Lines:
    """Splits bytes into lines (LF; CR before it stripped), holding at most `max_line` bytes
    of an unfinished line: work is linear in the bytes fed, however they are cut."""

    max_line: int
    partial: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        pieces = data.split(b"\n")
        self.partial += pieces[0]
        if len(pieces) == 1:
            if len(self.partial) > self.max_line:
                raise FramingError(
                    "SLNP_REQ_FORMAT_ERROR", f"a line is longer than {self.max_line} bytes"
                )
            return []
        lines = [bytes(self.partial), *pieces[1:-1]]
        self.partial = bytearray(pieces[-1])
        for line in lines:
            if len(line) > self.max_line + 1:  # +1: the CR of a CRLF
                raise FramingError(
                    "SLNP_REQ_FORMAT_ERROR", f"a line is longer than {self.max_line} bytes"
                )
        if len(self.partial) > self.max_line:
            raise FramingError(
                "SLNP_REQ_FORMAT_ERROR", f"a line is longer than {self.max_line} bytes"
            )
        return [line.removesuffix(b"\r") for line in lines]


class CommandFramer:
    """Cuts a client's byte stream into commands: each frame is the command's raw bytes, its
    lines LF-terminated, up to its `SLNPEndCommand` (or its one line, for `SLNPQuit`).

    Blank lines between commands are skipped. A line over `max_line` bytes or a command over
    `max_command` bytes or `max_lines` lines raises `FramingError`."""

    def __init__(self, max_line: int, max_command: int, max_lines: int = 2000) -> None:
        self._lines = _Lines(max_line)
        self.max_command, self.max_lines = max_command, max_lines
        self._current: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes of a command begun and not complete (0: between commands)."""
        return self._size + len(self._lines.partial)

    @property
    def begun(self) -> bool:
        return self.pending > 0

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for line in self._lines.feed(data):
            word = line.strip()
            if not self._current and not word:
                continue
            self._current.append(line)
            self._size += len(line) + 1
            if self._size > self.max_command:
                raise FramingError(
                    "SLNP_REQ_FORMAT_ERROR", f"a command is longer than {self.max_command} bytes"
                )
            if len(self._current) > self.max_lines:
                raise FramingError(
                    "SLNP_REQ_FORMAT_ERROR", f"a command has more than {self.max_lines} lines"
                )
            first = len(self._current) == 1
            if word == END_COMMAND.encode() or (first and word.decode("latin-1") in SELF_ENDING):
                frames.append(b"".join(part + b"\n" for part in self._current))
                self._current, self._size = [], 0
        return frames

    def unfinished(self) -> bytes:
        """The bytes of the command begun (for the dead letter when it never ends)."""
        return b"".join(part + b"\n" for part in self._current) + bytes(self._lines.partial)


class ResponseFramer:
    """Cuts a server's byte stream into replies: a data reply ends at its `250` line; a
    greeting, an OK and an error are one line each."""

    def __init__(self, max_line: int, max_response: int) -> None:
        self._lines = _Lines(max_line)
        self.max_response = max_response
        self._current: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for line in self._lines.feed(data):
            if not self._current and not line.strip():
                continue
            self._current.append(line)
            self._size += len(line) + 1
            if self._size > self.max_response:
                raise FramingError(
                    "SLNP_RESP_FORMAT_ERROR", f"a reply is longer than {self.max_response} bytes"
                )
            code = self._current[0][:3]
            done = code != str(DATA).encode() or line.startswith(str(END_OF_DATA).encode())
            if done:
                frames.append(b"".join(part + b"\n" for part in self._current))
                self._current, self._size = [], 0
        return frames
