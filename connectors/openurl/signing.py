"""HMACs of the OpenURL intake: a borrower's signed patron, the form's CSRF token, the
status link. Keys come from the environment (a borrower's patron key, named in its
options) or are derived from the deployment's id secret (`connectors.core.model.id_key`),
so every hub worker computes the same tokens without another secret to configure."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from connectors.core.model import id_key

_FORM_LABEL = b"rshub openurl form v1"
_STATUS_LABEL = b"rshub openurl status v1"
# Request numbers patrons read out on the phone: no 0/O, 1/I/L.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _derived(label: bytes) -> bytes:
    return hmac.new(id_key(), label, hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    # NUL cannot occur in a field value (the model refuses it), so the join is unambiguous.
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def patron_signature(secret: str, req_id: str, email: str, expires: str) -> str:
    """What a borrower puts in `req_sig`: hex HMAC-SHA256, keyed with its patron secret, of
    `req_id=<id>\\nreq.email=<email>\\nreq_exp=<unix seconds>` (UTF-8; absent ones empty)."""
    text = f"req_id={req_id}\nreq.email={email}\nreq_exp={expires}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def patron_ok(secret: str, req_id: str, email: str, expires: str, signature: str) -> bool:
    expected = patron_signature(secret, req_id, email, expires)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def new_session() -> str:
    return secrets.token_urlsafe(24)


def form_token(
    session: str, borrower: str, request_id: str, patron: str, expires: str, kev: str
) -> str:
    """The CSRF token: binds the form to the browser's session cookie, the borrower, the
    request number, the patron the link proved (if any), the expiry and the original link."""
    digest = hashlib.sha256(kev.encode()).hexdigest()
    return _mac(_derived(_FORM_LABEL), session, borrower, request_id, patron, expires, digest)


def form_ok(
    token: str, session: str, borrower: str, request_id: str, patron: str, expires: str, kev: str
) -> bool:
    expected = form_token(session, borrower, request_id, patron, expires, kev)
    return hmac.compare_digest(expected.encode(), token.encode())


def status_key(borrower: str, request_id: str) -> str:
    """The key in a request's status link: only who was given the link can read the status."""
    return _mac(_derived(_STATUS_LABEL), borrower, request_id)[:32]


def status_ok(borrower: str, request_id: str, key: str) -> bool:
    return hmac.compare_digest(status_key(borrower, request_id).encode(), key.encode())


def new_request_number() -> str:
    """`OU-XXXX-XXXX`: 8 characters of a 31-letter alphabet (about 40 bits)."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"OU-{chars[:4]}-{chars[4:]}"


def request_number_for(*parts: str) -> str:
    """A request number that is the same for the same link and patron (a double click makes
    one request, not two), unguessable without the deployment's secret."""
    digest = hmac.new(_derived(_FORM_LABEL), "\x00".join(parts).encode(), hashlib.sha256).digest()
    chars = "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:8])
    return f"OU-{chars[:4]}-{chars[4:]}"
