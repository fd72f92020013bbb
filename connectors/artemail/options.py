"""The British Library in the directory (`options:`) and its correlation data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.core.model import Correlation
from connectors.core.secret import Secret
from connectors.mail.options import MailPartnerOptions

# Service keywords (FORMAT.md): S = BL only, SL = BL and locations, BACKUP = BL and backup
# libraries, SW = BL, locations and worldwide, WWS = worldwide search.
Service = Literal["S", "SL", "BACKUP", "SW", "WWS"]
DEFAULT_REFERENCE = r"\bTX\s?(?P<ref>t[0-9a-f]{16}\.\d+)\b|\b(?P<bare>t[0-9a-f]{16}\.\d+)\b"


class ArtemailOptions(MailPartnerOptions):
    customer_code_env: Secret = Field(
        Secret(env="RSHUB_BL_CUSTOMER_CODE"),
        description="environment variable (or {env, file}) holding the customer code",
    )
    password_env: Secret = Field(
        Secret(env="RSHUB_BL_ART_PASSWORD"),
        description="environment variable (or {env, file}) holding the ART password",
    )
    service: Service = Field("S", description="service keyword of every order")
    copy_keyword: str = Field("SED99", description="delivery keyword of digital copies")
    copy_print_keyword: str = Field("PHOTO", description="delivery keyword of printed copies")
    loan_keyword: str = Field("LOAN", description="delivery keyword of loans")
    copyright_fee_paid: bool = Field(False, description="add COPYRT to copy orders")
    no_waiting_list: bool = Field(False, description="add WLX (do not place on waiting list)")
    copy_email: str | None = Field(
        None, description="deliver copies to this address when the request names none"
    )
    postal_address: list[str] = Field(
        default_factory=list,
        max_length=6,
        description="up to six lines loans are delivered to (empty: the BL's account address)",
    )
    batch_max: int = Field(1, ge=1, le=100, description="orders per mail (1: no batching)")
    batch_window_s: float = Field(
        0.0, ge=0, le=3600, description="how long an order waits for others to share its mail"
    )
    reference_pattern: str = Field(
        DEFAULT_REFERENCE,
        description="regular expression finding our reference in a reply (group ref or bare)",
    )


class ArtemailCorrelation(Correlation):
    """The reference the BL quotes back (TX line, FILEREFNO) and its own order number."""

    protocol: str = "artemail"
    bl_order: str | None = None
