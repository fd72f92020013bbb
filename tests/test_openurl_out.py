"""OpenURL out to simulated Relais and ILLiad servers (real HTTP servers on loopback)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.core.contract import FOR_STAFF, Limits, Outgoing
from connectors.core.directory import Partner
from connectors.core.model import Bibliographic, Event, Message, ServiceType
from connectors.openurl import CONNECTOR
from connectors.openurl.codec import CODEC, parse, to_message
from connectors.openurl.options import OpenUrlSettings
from connectors.openurl.sender import STAFF_LINK


def request() -> Message:
    return Message(
        event=Event.REQUEST,
        request_id="t0123456789abcdef.1",
        service_type=ServiceType.LOAN,
        bibliographic=Bibliographic(
            title="Dynamic mode decomposition", author="Kutz, J.", isbn="9781611974492"
        ),
    )


def partner(url: str, **options: object) -> Partner:
    return Partner.model_validate(
        {"symbol": "LEND", "name": "L", "protocol": "ncip", "endpoint": url, "options": options}
    )


async def relais(
    status: int = 200, page: str = "<html><form>Relais request form</form></html>"
) -> tuple[TestServer, list[tuple[str, dict[str, str]]]]:
    seen: list[tuple[str, dict[str, str]]] = []

    async def intake(request: web.Request) -> web.Response:
        body = await request.text()
        seen.append((request.method, dict(request.query) or dict(parse_qsl(body))))
        return web.Response(
            text=page,
            status=status,
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_route("*", "/user/login.html", intake)
    server = TestServer(app)
    await server.start_server()
    return server, seen


async def send(partner_: Partner):
    sender = CONNECTOR.sender(Limits(outbound_timeout_s=5), OpenUrlSettings(answer_bytes=20), CODEC)
    await sender.start()
    try:
        body = CODEC.render(Outgoing(request(), "NORTH", partner_))
        return await sender.send(partner_, body)
    finally:
        await sender.stop()


async def test_get_to_relais_records_the_answer() -> None:
    server, seen = await relais(page="<html><p>Request 123 received</p></html>")
    try:
        attempt = await send(
            partner(
                str(server.make_url("/user/login.html")), preset="relais", extra={"LS": "NORTH"}
            )
        )
    finally:
        await server.close()
    assert attempt.ok and "HTTP 200" in attempt.detail
    assert attempt.answer == b"<html><p>Request 123"  # clipped to answer_bytes
    ((method, keys),) = seen
    assert (
        method == "GET"
        and keys["rft.btitle"] == "Dynamic mode decomposition"
        and keys["LS"] == "NORTH"
    )


async def test_a_200_with_the_partners_request_form_is_a_link_for_staff() -> None:
    """Relais answers a link it cannot take on its own with its request form, prefilled:
    that was counted as delivered; nobody had submitted anything."""
    head = "<!DOCTYPE html><html><head>" + "<meta name=x>" * 1000 + "</head>"
    server, seen = await relais(page=head + "<body><form action=submit>...</form></html>")
    try:
        url = str(server.make_url("/user/login.html"))
        attempt = await send(partner(url, preset="relais"))
    finally:
        await server.close()
    assert attempt.ok and not attempt.retryable and seen
    assert attempt.detail.startswith(FOR_STAFF) and "request form" in attempt.detail
    assert url in attempt.detail and "rft.btitle=" in attempt.detail
    assert attempt.answer is not None and len(attempt.answer) == 20  # kept: answer_bytes


async def test_post_and_a_failing_partner() -> None:
    server, seen = await relais(status=503)
    try:
        attempt = await send(
            partner(str(server.make_url("/user/login.html")), preset="gtbib", method="POST")
        )
    finally:
        await server.close()
    assert not attempt.ok and attempt.retryable and "HTTP 503" in attempt.detail
    assert seen[0][0] == "POST" and seen[0][1]["rft.isbn"] == "9781611974492"


async def test_unreachable_partner_is_retryable() -> None:
    server, _ = await relais()
    url = str(server.make_url("/user/login.html"))
    await server.close()
    attempt = await send(partner(url, preset="clio"))
    assert not attempt.ok and attempt.retryable


async def test_illiad_link_is_recorded_for_staff_not_sent() -> None:
    server, seen = await relais()
    try:
        attempt = await send(partner(str(server.make_url("/illiad.dll/OpenURL")), preset="illiad"))
    finally:
        await server.close()
    assert attempt.ok and not seen
    assert attempt.detail.startswith(STAFF_LINK) and "Action=10&Form=30" in attempt.detail
    assert attempt.answer is not None and b"isbn=9781611974492" in attempt.answer


def test_every_citation_field_an_openurl_carries_reaches_the_lender_and_reads_back() -> None:
    bib = Bibliographic(
        title="Acta Poloniae Historica",
        title_of_component="Żółć i miód",
        author_of_component="Kowalska, Anna",
        volume="84",
        issue="3",
        part="2",
        pages_requested="301-329",
        series_title_number="Studia 4",
        issn="0001-6829",
        eissn="2450-8462",
        doi="10.12775/APH.2019.84.3",
        pmid="123456",
        lccn="n79021164",
    )
    message = Message(
        event=Event.REQUEST, request_id="t1.1", service_type=ServiceType.COPY, bibliographic=bib
    )
    lender = Partner(symbol="L", name="L", protocol="openurl", endpoint="https://l.example/ou")
    url = CODEC.render(Outgoing(message, "HUB", lender))
    back = to_message(parse(url.split(b"?", 1)[1]), "L").bibliographic
    assert back is not None
    for field in ("volume", "issue", "pages_requested", "issn", "eissn", "doi", "pmid", "lccn"):
        assert getattr(back, field) == getattr(bib, field), field
    assert back.title_of_component == "Żółć i miód"
