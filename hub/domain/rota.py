"""Rota selection: which lenders to ask for a request, in which order, and why.

Pure: it takes the rota profile, the holdings found, the load figures and the directory, and
returns every candidate with its figures and the reason for its place. The same inputs always
give the same order (ties are broken by the rota position, then the symbol).

Order, first to last:
1. members before lenders of last resort;
2. lenders not overloaded before overloaded ones (open requests from this borrower, or in
   total, at or past the lender's thresholds);
3. confirmed holdings before catalogues that failed or were not searched (unless the profile
   says to rank them together);
4. ordered rota: the librarian's order; unordered: on the shelf now before not said before all
   copies out, then the lowest load (open requests over the overload threshold).
Lenders whose catalogue says they lack the item, that do not lend or do not offer the service,
are skipped with the reason. A lender at its `max_open_incoming` is not skipped here: the
engine rejects on its behalf when its turn comes, so the rejection is recorded as an attempt.
"""

from __future__ import annotations

from pydantic import BaseModel

from connectors.core.directory import Directory, Rota
from connectors.core.holdings import Holding, HoldingsResult
from connectors.core.model import ServiceType
from hub.domain.load import LoadFigures, LoadView

SERVICE_NAME = {ServiceType.LOAN: "loan", ServiceType.COPY: "copy"}


class Candidate(BaseModel):
    lender: str
    position: int
    last_resort: bool = False
    holdings: Holding = Holding.UNCHECKED
    holdings_detail: str = ""
    available: bool | None = None
    load: LoadFigures = LoadFigures()
    overloaded: str | None = None
    skip: str | None = None
    rank: int | None = None

    @property
    def why(self) -> str:
        """One line for people: where it stands and why."""
        if self.skip:
            return f"skipped: {self.skip}"
        parts = [f"rank {self.rank}", f"holdings {self.holdings.value}"]
        if self.available is not None:
            parts.append("on shelf" if self.available else "all copies out")
        parts.append(f"open {self.load.total} ({self.load.from_borrower} from this borrower)")
        if self.overloaded:
            parts.append(f"overloaded: {self.overloaded}")
        if self.last_resort:
            parts.append("lender of last resort")
        return ", ".join(parts)


def overload(directory: Directory, lender: str, figures: LoadFigures) -> str | None:
    partner = directory.partner(lender)
    limits = partner.thresholds if partner else None
    if limits and limits.overload is not None and figures.total >= limits.overload:
        return f"{figures.total} open, threshold {limits.overload}"
    if (
        limits
        and limits.overload_from_borrower is not None
        and figures.from_borrower >= limits.overload_from_borrower
    ):
        return (
            f"{figures.from_borrower} open from this borrower, "
            f"threshold {limits.overload_from_borrower}"
        )
    return None


def at_limit(directory: Directory, lender: str, figures: LoadFigures) -> str | None:
    partner = directory.partner(lender)
    limit = partner.thresholds.max_open_incoming if partner else None
    if limit is not None and figures.total >= limit:
        return f"{figures.total} open incoming requests, limit {limit}"
    return None


def _skip_reason(
    directory: Directory, lender: str, service: ServiceType | None, found: HoldingsResult | None
) -> str | None:
    partner = directory.partner(lender)
    if partner is None or not partner.lends:
        return "does not lend"
    wanted = SERVICE_NAME.get(service) if service else None
    if wanted and wanted not in partner.services:
        return f"does not offer {wanted}"
    if found is not None and found.status is Holding.NOT_HELD:
        return f"catalogue: not held ({found.detail})"
    return None


def _load_ratio(directory: Directory, lender: str, figures: LoadFigures) -> float:
    partner = directory.partner(lender)
    threshold = partner.thresholds.overload if partner else None
    return figures.total / threshold if threshold else float(figures.total)


def rank(
    rota: Rota,
    members: list[str],
    borrower: str,
    service: ServiceType | None,
    holdings: dict[str, HoldingsResult],
    load: LoadView,
    directory: Directory,
) -> list[Candidate]:
    """Every member (never the borrower) with its rank, or the reason it is skipped; ranked
    candidates first, in the order to ask them."""
    last = set(rota.last_resort)
    candidates = []
    for position, lender in enumerate(m for m in dict.fromkeys(members) if m != borrower):
        found = holdings.get(lender)
        figures = load.figures(lender, borrower)
        candidates.append(
            Candidate(
                lender=lender,
                position=position,
                last_resort=lender in last,
                holdings=found.status if found else Holding.UNCHECKED,
                holdings_detail=found.detail if found else "",
                available=found.available if found else None,
                load=figures,
                overloaded=overload(directory, lender, figures),
                skip=_skip_reason(directory, lender, service, found),
            )
        )

    def key(c: Candidate) -> tuple[object, ...]:
        unconfirmed = c.holdings is not Holding.HELD and rota.unknown_holdings_last
        if rota.ordered:
            within: tuple[object, ...] = ()
        else:
            shelf = {True: 0, None: 1, False: 2}[c.available]
            within = (shelf, _load_ratio(directory, c.lender, c.load))
        return (c.last_resort, c.overloaded is not None, unconfirmed, *within, c.position, c.lender)

    ranked = sorted((c for c in candidates if not c.skip), key=key)
    for number, candidate in enumerate(ranked, start=1):
        candidate.rank = number
    return [*ranked, *(c for c in candidates if c.skip)]
