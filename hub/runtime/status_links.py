"""The key in a patron's status link of a request placed through the API: an HMAC of the
borrower and its request id, keyed from the deployment's id secret (as the OpenURL form's
status link is: every worker computes the same key, no other secret to configure), so only
who was given the link can read the page, and no list of keys is kept anywhere. The API
checks it; the patron notices put it in their mails."""

from __future__ import annotations

import hashlib
import hmac

from connectors.core.model import id_key

_LABEL = b"rshub api status v1"


def status_key(borrower: str, request_id: str) -> str:
    key = hmac.new(id_key(), _LABEL, hashlib.sha256).digest()
    # NUL cannot occur in a symbol or a request id (both are patterned), so the join is exact.
    text = f"{borrower}\x00{request_id}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def status_ok(borrower: str, request_id: str, key: str) -> bool:
    return hmac.compare_digest(status_key(borrower, request_id).encode(), key.encode())


def status_path(borrower: str, request_id: str) -> str:
    """The link, relative to the hub's public address."""
    return f"/api/v1/status/{borrower}/{request_id}?key={status_key(borrower, request_id)}"
