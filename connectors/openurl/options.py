"""What the directory and the environment say about OpenURL: per-partner options (a borrower
whose patrons arrive by OpenURL links; a lender whose request intake is an OpenURL), the
connector's settings, and the correlation a borrower's request carries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.model import Correlation
from connectors.core.secret import Secret

# Partner systems whose request intake is an OpenURL (seed 000): the keys they read and how
# a request reaches them. Options given in the directory override the preset's values.
# - ILLiad: `illiad.dll?Action=10&Form=<n>` opens a request form: 30 the loan form (what
#   Primo writes for a book), 22 the article form, 23 the book chapter form (`forms`, by the
#   link's genre); ILLiad reads 0.1 keys and makes the patron log in, so a person has to
#   submit it.
# - Relais ILL/D2D: answers a 1.0 OpenURL with its request form.
# - GTBib-SOD and Clio II: 1.0 OpenURLs.
PRESETS: dict[str, dict[str, object]] = {
    "generic": {"version": "1.0", "extra": {}, "login_required": False},
    "illiad": {
        "version": "0.1",
        "extra": {"Action": "10", "Form": "30"},
        "forms": {"article": {"Form": "22"}, "bookitem": {"Form": "23"}},
        "login_required": True,
    },
    "relais": {"version": "1.0", "extra": {}, "login_required": False},
    "gtbib": {"version": "1.0", "extra": {}, "login_required": False},
    "clio": {"version": "1.0", "extra": {}, "login_required": False},
}


class OpenUrlOptions(BaseModel):
    """A partner's `options:` for protocol `openurl` (directory)."""

    model_config = ConfigDict(extra="forbid")

    # --- as a borrower: links from its discovery system ---
    referrers: list[str] = Field(
        default_factory=list,
        description="rfr_id (or 0.1 sid) values, or prefixes of them, that the consortium-wide "
        "/openurl address maps to this borrower",
    )
    link_token_env: Secret | None = Field(
        None,
        description="environment variable holding the token the borrower's links carry as "
        "rshub_token (the Authorization header of its inbound_auth works too)",
    )
    patron_secret_env: Secret | None = Field(
        None,
        description="environment variable holding the HMAC-SHA256 key with which the borrower "
        "signs req_id/req.email (req_sig); unset: patrons come from the form only",
    )
    patron_from_form: bool = Field(
        True, description="whether a patron may identify themselves in the request form"
    )
    always_confirm: bool = Field(
        False, description="show the prefilled form even when the link has all it needs"
    )
    language: str = Field("en", description="language of the form and pages (en, de)")
    pickup_locations: list[str] = Field(
        default_factory=list, description="pickup locations offered in the form (empty: free text)"
    )

    # --- as a lender: requests sent to it as OpenURLs ---
    preset: Literal["generic", "illiad", "relais", "gtbib", "clio"] = Field(
        "generic", description="the partner's system; sets the defaults of the options below"
    )
    base_url: str | None = Field(
        None, description="OpenURL base address (default: the partner's endpoint)"
    )
    version: Literal["0.1", "1.0"] | None = Field(None, description="keys written (preset's)")
    method: Literal["GET", "POST"] = Field("GET", description="how the link is sent")
    extra: dict[str, str] | None = Field(
        None, description="fixed keys added to every link (preset's: ILLiad Action=10&Form=30)"
    )
    login_required: bool | None = Field(
        None,
        description="the partner makes a person log in to submit (ILLiad): the link is "
        "recorded for staff instead of being sent",
    )
    rfr_id: str = Field("info:sid/rshub", description="referrer id written into links")

    def resolved_version(self) -> str:
        return self.version or str(PRESETS[self.preset]["version"])

    def resolved_extra(self, genre: str = "") -> dict[str, str]:
        """The fixed keys of a link for an item of `genre`: the directory's `extra` as it
        is, else the preset's with its form for the genre."""
        if self.extra is not None:
            return dict(self.extra)
        preset, forms = PRESETS[self.preset]["extra"], PRESETS[self.preset].get("forms", {})
        assert isinstance(preset, dict) and isinstance(forms, dict)
        return {**preset, **forms.get(genre, {})}

    def resolved_login_required(self) -> bool:
        if self.login_required is not None:
            return self.login_required
        return bool(PRESETS[self.preset]["login_required"])


class OpenUrlSettings(BaseModel):
    """`RSHUB_OPENURL_<FIELD>` environment variables."""

    model_config = ConfigDict(extra="forbid")
    max_query_bytes: int = Field(
        16_384,
        ge=1_024,
        description="longest OpenURL query or form body accepted (real links are under 4 KB)",
    )
    max_pairs: int = Field(500, ge=16, description="most key/value pairs in one OpenURL")
    form_ttl_s: int = Field(
        4 * 3600, ge=60, description="seconds a request form may take to be submitted"
    )
    signature_max_age_s: int = Field(
        86_400, ge=60, description="longest validity a signed patron link may claim (req_exp - now)"
    )
    cookie_secure: bool = Field(
        False, description="mark the form's session cookie Secure (set when served over HTTPS)"
    )
    public_url: str = Field(
        "", description="the hub's public base address for links in pages (empty: relative)"
    )
    answer_bytes: int = Field(
        4_096, ge=0, description="bytes of a lender's answer to an OpenURL kept with the delivery"
    )


class OpenUrlCorrelation(Correlation):
    """What identifies a request that came by OpenURL: the hub-made request number (shown
    to the patron) and the link's referrer (discovery system)."""

    protocol: str = "openurl"
    referrer: str = ""
