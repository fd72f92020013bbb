"""Structured logging set-up: structlog for rshub's own lines, and the same renderer for the
standard-library loggers of faust, mode and aiokafka, so a JSON log is JSON throughout.

A broker that has gone away makes the Kafka clients log the same failure many times a
second; `Repeats` lets the first through and then one line per window with the count, so the
log says what is happening without growing by kilobytes a second.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

# What a client can cause on its own: an unreadable request, a connection it dropped.
CLIENT_FAULTS = (HttpProcessingError, ConnectionError, TimeoutError)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The Kafka clients, silenced below ERROR for the commands whose output is for people.
KAFKA_CLIENTS = ("aiokafka", "kafka", "faust", "mode")
REPEAT_WINDOW_S = 30.0


class Repeats(logging.Filter):
    """Passes a record, then drops the same message from the same logger for a window and
    reports how many were dropped on the first one after it."""

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self.seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        since, dropped = self.seen.get(key, (-self.window_s - 1, 0))
        if now - since < self.window_s:
            self.seen[key] = (since, dropped + 1)
            return False
        self.seen[key] = (now, 0)
        if dropped:
            record.repeated = dropped  # shown by the renderer
        return True


class ClientFaults(logging.Filter):
    """aiohttp logs a client's fault (a malformed request, a line too long, a client gone
    mid-answer) at error level with a traceback, one per request: a probe of the port filled
    the log (issue 22.8). Such a record becomes one warning line naming the fault; a defect
    of rshub's own keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiohttp") or not record.exc_info:
            return True
        error = record.exc_info[1]
        if not isinstance(error, CLIENT_FAULTS):
            return True
        record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"[:500]
        record.args = None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(
    level: str = "INFO",
    fmt: str = "json",
    quiet_libraries: bool = False,
    stream: TextIO | None = None,
    library_level: str = "WARNING",
) -> None:
    """`quiet_libraries`: only errors from the Kafka clients (for `tail` and `route`, whose
    output is for people and must not be interleaved with client chatter). `stream`: where
    to (stderr)."""
    level = level.upper()
    stream = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=_terminal(stream))
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _extras],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(ClientFaults())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in KAFKA_CLIENTS:
        logging.getLogger(name).setLevel("ERROR" if quiet_libraries else library_level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def _terminal(stream: TextIO) -> bool:
    """Colour codes only where a person reads them: a file or a log shipper gets none."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _extras(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    record = event.get("_record")
    if record is not None and getattr(record, "repeated", None):
        event["repeated_since_last"] = record.repeated
    return event
