"""Whether a mail in a partner's mailbox is the partner's (sans-IO).

A From header is only a claim. The hub's defence is layered, each layer optional in the
directory but the first always on:
1. a mailbox per partner: its address is given to that partner only, so a mail found there
   is addressed to the partner's channel (the listener knows the partner by the mailbox);
2. the From address must be one the partner writes from (`from_addresses`);
3. where the hub's MTA verifies DKIM/DMARC, its Authentication-Results header (RFC 8601)
   must say dkim=pass (or dmarc=pass) for the partner's own domain. The MTA does the
   cryptography with its well-kept implementation (OpenDKIM, rspamd); the hub only reads
   its verdict, and must read the MTA's verdict only: see `trusted_results`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.mail.mime import ParsedMail
from connectors.mail.options import MailPartnerOptions

# RFC 8601 2.2: a result is `method[/version]=result` followed by `ptype.property=value`s.
_METHOD = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:/\s*\d+\s*)?=\s*([A-Za-z0-9_-]+)")
_PROPERTY = re.compile(r"\b([A-Za-z]+)\.([A-Za-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")


@dataclass(frozen=True)
class Result:
    """One `method=result` of an Authentication-Results field, with its properties."""

    method: str  # lower case: dkim, dmarc, spf ...
    result: str  # lower case: pass, fail, none ...
    properties: dict[str, str]  # "header.d" -> "bl.uk" (values lower case, unquoted)


def _uncommented(value: str) -> str:
    """The field without its CFWS comments (which may nest, and may contain anything,
    `header.d=` too, so they must not be read as properties)."""
    while True:
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            return stripped
        value = stripped


def parse_results(value: str) -> tuple[str, list[Result]]:
    """An Authentication-Results field's authserv-id and its results (RFC 8601 2.2)."""
    authserv, _, rest = _uncommented(value).partition(";")
    words = authserv.split()
    results = []
    for part in rest.split(";"):
        method = _METHOD.match(part)
        if method is None:
            continue  # `none`, or a result this reading does not need
        properties = {
            f"{ptype.lower()}.{name.lower()}": found.strip('"').lower()
            for ptype, name, found in _PROPERTY.findall(part[method.end() :])
        }
        results.append(Result(method.group(1).lower(), method.group(2).lower(), properties))
    return (words[0] if words else ""), results


def trusted_results(
    headers: Iterable[tuple[str, str]], authserv_id: str, local_received: int
) -> list[Result] | None:
    """The results the hub's own MTA wrote into this mail (None: it wrote none it can find).

    The rule (RFC 8601 section 5 and 7.2): an MTA prepends its Authentication-Results above
    the Received field it adds when it takes the mail in; the hub's own delivery after it
    (Dovecot's LMTP, say) prepends `local_received` more Received fields above that. So the
    fields above Received number `local_received + 1`, counted from the top, are written by
    the hub's own servers; that Received field and everything below it came from outside,
    whatever it claims. Only Authentication-Results fields above that line, and only those
    with the MTA's `authserv_id`, are read. A mail with fewer Received fields did not pass
    through the MTA: no verdict at all. An Authentication-Results field under the MTA's own
    authserv-id further down is a forgery (or a stale copy): ignored, however it reads.
    """
    found: list[Result] = []
    received = 0
    for name, value in headers:
        lowered = name.lower()
        if lowered == "received":
            received += 1
            if received > local_received:
                return found or None  # the MTA's own Received: the line is reached
        elif lowered == "authentication-results":
            authserv, results = parse_results(value)
            if authserv.lower() == authserv_id.lower():
                found.extend(results)
    return None  # the MTA's Received was never reached: its fields cannot be told apart


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower().lstrip("@")


# A `from_addresses` entry: an address, `@domain` (that domain only) or `@*.domain` (any
# subdomain of it, not the domain itself: list both for both). A rule names exactly what it
# accepts, as the DKIM rule below does: `@bl.uk` does not let `x@mail.bl.uk` in.
SUBDOMAINS = "@*."
_ENTRY = re.compile(r"(?:[^@\s<>()]+@|@(?:\*\.)?)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def allowed_senders(options: MailPartnerOptions) -> list[str]:
    """Who may write into the partner's mailbox: `from_addresses`, else the partner's
    address (the listener is given options whose `address` is the endpoint's when the
    directory names none). Empty: nobody, every mail is refused."""
    return options.from_addresses or ([options.address] if options.address else [])


def entry_problem(entry: str) -> str | None:
    """Why a `from_addresses` entry matches nothing as meant (None: it is well formed)."""
    if _ENTRY.fullmatch(entry.strip()):
        return None
    return (
        f"from_addresses entry {entry!r} is neither name@domain, @domain nor @*.domain (subdomains)"
    )


def signing_domains(options: MailPartnerOptions) -> set[str]:
    """The domains whose signature proves the partner: `dkim_domains`, else the domains it
    writes from (`from_addresses`, else its address). Compared for equality: a parent or a
    sibling domain is another signer; a subdomain rule (`@*.bl.uk`) names no signer (which
    subdomain would sign is not known), so such partners list `dkim_domains`."""
    if options.dkim_domains:
        return {d.lower().strip().rstrip(".") for d in options.dkim_domains}
    return {
        _domain(entry)
        for entry in allowed_senders(options)
        if _domain(entry) and not entry.startswith(SUBDOMAINS)
    }


def _passes(results: Iterable[Result], domains: set[str]) -> bool:
    for result in results:
        if result.result != "pass":
            continue
        if result.method == "dkim" and result.properties.get("header.d") in domains:
            return True
        if result.method == "dmarc" and result.properties.get("header.from") in domains:
            return True
    return False


def _accepted(address: str, allowed: list[str]) -> bool:
    address = address.lower()
    domain = address.rsplit("@", 1)[-1]
    for entry in allowed:
        entry = entry.lower().strip()
        if entry.startswith(SUBDOMAINS):
            if domain.endswith("." + entry[len(SUBDOMAINS) :]):
                return True
        elif entry.startswith("@"):
            if domain == entry[1:]:
                return True
        elif address == entry:
            return True
    return False


def problem(mail: ParsedMail, options: MailPartnerOptions) -> str | None:
    """Why this mail is not the partner's (None: it is). Fails closed: a partner with no
    sender to compare with, or with no verdict to read and no `accept_unverified`, has every
    mail refused (start-up refuses such a directory first; see `config_problems`)."""
    allowed = allowed_senders(options)
    if not allowed:
        return "the partner has no address and no from_addresses: no sender can be accepted"
    if len(mail.senders) != 1:
        return f"expected one From address, found {len(mail.senders)}"
    if not _accepted(mail.senders[0], allowed):
        return f"From {mail.senders[0]} is not one of the partner's addresses"
    if not options.authserv_id and not options.accept_unverified:
        return "no authserv_id to read a DKIM/DMARC verdict from, and accept_unverified is off"
    if options.authserv_id:
        domains = signing_domains(options)
        results = trusted_results(mail.headers, options.authserv_id, options.local_received)
        if results is None:
            return (
                f"no Authentication-Results from {options.authserv_id} above its Received "
                f"field (Received number {options.local_received + 1} from the top)"
            )
        if not domains or not _passes(results, domains):
            return (
                f"{options.authserv_id} reports no dkim=pass or dmarc=pass for "
                f"{', '.join(sorted(domains)) or 'the partner (no domain known)'}"
            )
    return None


def config_problems(options: MailPartnerOptions) -> list[str]:
    """What makes a mailbox's identity check refuse everything or accept a bare claim: no
    sender to compare with, a malformed rule, no verdict without the operator saying so."""
    problems = [p for p in map(entry_problem, options.from_addresses) if p]
    if not allowed_senders(options):
        problems.append("no sender to accept (from_addresses, options.address or mailto:)")
    if not options.authserv_id and not options.accept_unverified:
        problems.append(
            "a From header is only a claim: set authserv_id (the MTA whose DKIM/DMARC "
            "verdict is read) or, knowingly, accept_unverified: true"
        )
    return problems
