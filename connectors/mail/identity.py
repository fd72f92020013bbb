"""Whether a mail in a partner's mailbox is the partner's (sans-IO).

A From header is only a claim. The hub's defence is layered, each layer optional in the
directory but the first always on:
1. a mailbox per partner: its address is given to that partner only, so a mail found there
   is addressed to the partner's channel (the listener knows the partner by the mailbox);
2. the From address must be one the partner writes from (`from_addresses`);
3. where the hub's MTA verifies DKIM/SPF/DMARC, its Authentication-Results header (RFC 8601),
   trusted only under the MTA's own authserv-id, must say dkim=pass or dmarc=pass for one of
   the partner's domains. The MTA does the cryptography with its well-kept implementation
   (OpenDKIM, rspamd); headers claiming another authserv-id are ignored.
"""

from __future__ import annotations

import re

from connectors.mail.mime import ParsedMail
from connectors.mail.options import MailPartnerOptions

_RESULT = re.compile(r"\b(dkim|dmarc)=(\w+)[^;]*?\bheader\.(?:d|from)=([\w.-]+)", re.IGNORECASE)


def _accepted(address: str, allowed: list[str]) -> bool:
    domain = address.rsplit("@", 1)[-1]
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith("@") and domain == entry[1:]:
            return True
        if address == entry:
            return True
    return False


def problem(mail: ParsedMail, options: MailPartnerOptions) -> str | None:
    """Why this mail is not the partner's (None: it is)."""
    allowed = options.from_addresses or ([options.address] if options.address else [])
    if allowed:
        if len(mail.senders) != 1:
            return f"expected one From address, found {len(mail.senders)}"
        if not _accepted(mail.senders[0], allowed):
            return f"From {mail.senders[0]} is not one of the partner's addresses"
    if options.authserv_id:
        domains = {d.lower() for d in options.dkim_domains}
        for name, value in mail.headers:
            if name.lower() != "authentication-results":
                continue
            authserv, _, results = value.partition(";")
            if authserv.strip().split()[0:1] != [options.authserv_id]:
                continue  # someone else's claim, perhaps the sender's own
            for _method, verdict, domain in _RESULT.findall(results):
                if verdict.lower() == "pass" and (not domains or domain.lower() in domains):
                    return None
        return f"no dkim=pass or dmarc=pass from {options.authserv_id} for the partner's domains"
    return None
