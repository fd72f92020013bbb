"""SLNP reply codes and error types, as tables.

From the format notes: data replies are 600 ... 250, a reply without data is `240 OK`, errors
are one line `5x0 <Class>: <TYPE> <text>`; Koha's SLNP servers use these classes and types,
and SISIS answers some errors with a bare class (`510 OpsBenutzerPinFalsch`). Clients treat any
5x0 as an error. The types marked "rshub" are ours, for what those servers never say (who is
speaking, a hub that cannot take a command now); they follow the same shape.
"""

from __future__ import annotations

from connectors.core.contract import Fault

GREETING = 220
OK = 240
END_OF_DATA = 250
DATA = 600

# error type -> (code, class). Koha's SLNP servers (FORMAT.md) and rshub's own.
ERRORS: dict[str, tuple[int, str]] = {
    "SLNP_REQ_ANALYZING_ERROR": (520, "SlnpInternalError"),
    "SLNP_REQ_FORMAT_ERROR": (520, "SlnpRequestError"),
    "SLNP_END_COMMAND_LACKING": (520, "SlnpRequestError"),
    "SLNP_PARAM_VALUE_NOT_VALID": (520, "SlnpRequestError"),
    "SLNP_PARAM_LEVEL_WRONG": (520, "SlnpRequestError"),
    "SLNP_PARAM_GROUP_ERROR": (520, "SlnpRequestError"),
    "SLNP_PARAM_UNSPECIFIED": (520, "SlnpRequestError"),
    "SLNP_MAND_PARAM_LACKING": (520, "SlnpRequestError"),
    "SLNP_CMD_NOT_IMPLEMENTED": (520, "SlnpLookupError"),
    "SLNP_CMD_EXECUTION_ERROR": (520, "SlnpExecutionError"),
    "INTERNAL_SERVER_ERROR": (520, "SlnpExecutionError"),
    "PATRON_NOT_FOUND": (510, "SlnpExecutionError"),
    "RECORD_NOT_FOUND": (510, "SlnpExecutionError"),
    "NO_AVAILABLE_ITEMS": (510, "SlnpExecutionError"),
    # rshub: the connection or login does not prove a partner; the hub cannot take it now.
    "SLNP_ACCESS_DENIED": (510, "SlnpAccessError"),
    "SLNP_LOGIN_THROTTLED": (510, "SlnpAccessError"),  # too many failed logins: try later
    "SLNP_SERVICE_UNAVAILABLE": (520, "SlnpExecutionError"),
}

# How each failure the hub reports is said in SLNP.
FAULTS: dict[Fault, str] = {
    Fault.SYNTAX: "SLNP_REQ_FORMAT_ERROR",
    Fault.TOO_LARGE: "SLNP_PARAM_VALUE_NOT_VALID",
    Fault.UNKNOWN_PARTNER: "SLNP_ACCESS_DENIED",
    Fault.UNAUTHENTICATED: "SLNP_ACCESS_DENIED",
    Fault.UNKNOWN_REQUEST: "RECORD_NOT_FOUND",
    Fault.STATE: "SLNP_CMD_EXECUTION_ERROR",
    Fault.UNAVAILABLE: "SLNP_SERVICE_UNAVAILABLE",
}

# A partner's error that another try may cure (its server is busy or broken for a while);
# every other error is its judgement of the command and is not retried as it was.
RETRYABLE: frozenset[str] = frozenset(
    {
        "SLNP_REQ_ANALYZING_ERROR",
        "INTERNAL_SERVER_ERROR",
        "SLNP_SERVICE_UNAVAILABLE",
        "SLNP_LOGIN_THROTTLED",
    }
)


def error_of(kind: str) -> tuple[int, str]:
    """(code, class) of an error type; unknown types are execution errors."""
    return ERRORS.get(kind, (520, "SlnpExecutionError"))
