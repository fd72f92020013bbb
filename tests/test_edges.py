"""The hub's edges, without a broker: who an ISO 10161 connection may be, reading whole
bodies, time-outs and connection caps, the broker going away, start-up checks, the commands'
behaviour on bad input, and the framing cost."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import yaml

from connectors.core.directory import Directory, DirectoryError, load
from connectors.core.model import Event, Message
from connectors.iso10161 import codec
from connectors.simulator import TcpLibrary
from hub.cli.running import BrokerNote
from hub.cli.serve import start_up_problems
from hub.kafka import topics
from hub.runtime import app as assembly
from hub.runtime import logs
from hub.runtime.settings import Settings
from tests.edge_helpers import Certificates, gateway, port
from tests.test_e2e_ncip import BOOK

ROOT = Path(__file__).resolve().parent.parent


def partner(symbol: str, **fields: object) -> dict[str, object]:
    return {
        "symbol": symbol,
        "name": symbol,
        "protocol": "iso10161",
        "endpoint": "tcp://127.0.0.1:9",
        "agency_ids": [f"{symbol}-LIB"],
        **fields,
    }


NORTH = {
    "symbol": "NORTH",
    "name": "North",
    "protocol": "ncip",
    "endpoint": "http://127.0.0.1:9/ncip",
    "agency_ids": ["01NORTH_INST||MAIN"],
    "inbound_auth": {"scheme": "bearer", "secret_env": "EDGE_SECRET_NORTH"},
}


def consortium(*partners: dict[str, object]) -> Directory:
    return Directory.model_validate({"consortium": "Edges", "partners": [NORTH, *partners]})


def rshub(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


# --- item 2: ISO 10161 identity --------------------------------------------------------


def test_iso10161_partner_without_addresses_or_certificate_is_refused_by_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"consortium": "X", "partners": [partner("VDX")]}))
    with pytest.raises(DirectoryError, match=r"partners\[0\] \(VDX\): an ISO 10161 partner needs"):
        load(path)
    done = rshub("serve", "--directory", str(path))
    assert done.returncode == 2 and "(VDX): an ISO 10161 partner needs" in done.stderr
    assert "Traceback" not in done.stderr


async def claim(library: TcpLibrary, system_id: str) -> tuple[bool, str]:
    """Send an ILL-Request claiming `system_id` as the requester; (accepted, error)."""
    claimant = TcpLibrary(library.symbol, system_id, hub_tcp=library.hub_tcp, tls=library.tls)
    _status, answer = await claimant.send(
        Message(event=Event.REQUEST, request_id=f"R-{system_id}", bibliographic=BOOK)
    )
    return answer.ok, " ".join(answer.errors)


async def test_impersonation_from_loopback_is_refused_without_a_matching_address() -> None:
    directory = consortium(
        partner("VDX", addresses=["127.0.0.1/32"]), partner("FAR", addresses=["10.9.0.0/16"])
    )
    async with gateway(directory) as (running, kafka):
        me = TcpLibrary("VDX", "VDX-LIB", hub_tcp=("127.0.0.1", port(running, "iso10161")))
        accepted, error = await claim(me, "FAR-LIB")  # FAR connects from 10.9/16 only
        assert not accepted and "security-problem" in error
        assert kafka.dead[-1].stage == "authenticate" and "System-Id" in kafka.dead[-1].error
        assert kafka.inbound == []
        accepted, error = await claim(me, "VDX-LIB")  # loopback is VDX's network
        assert accepted, error
        assert len(kafka.inbound) == 1 and json.loads(kafka.inbound[0])["sender"] == "VDX"


async def test_pinned_certificate_identifies_exactly(tmp_path: Path) -> None:
    certs = Certificates(tmp_path)
    pin_cert, _ = certs.issue("PIN")
    directory = consortium(
        partner("VDX", addresses=["127.0.0.1/32"]),
        partner("PIN", tls_client_cert_sha256=certs.fingerprint(pin_cert)),
    )
    tls = {
        "iso10161_tls_cert_file": certs.server,
        "iso10161_tls_key_file": certs.server_key,
        "iso10161_tls_client_ca_file": certs.ca,
    }
    environ = {f"RSHUB_{k.upper()}": str(v) for k, v in tls.items()}
    assert start_up_problems(directory, Settings(), environ) == []
    async with gateway(directory, **tls) as (running, kafka):
        hub_tcp = ("127.0.0.1", port(running, "iso10161"))
        anonymous = TcpLibrary("X", "X", hub_tcp=hub_tcp, tls=certs.client(None))
        pinned = TcpLibrary("PIN", "PIN-LIB", hub_tcp=hub_tcp, tls=certs.client("PIN"))
        other = TcpLibrary("X", "X", hub_tcp=hub_tcp, tls=certs.client("OTHER"))
        # From loopback, without PIN's certificate, claiming PIN: refused.
        assert not (await claim(anonymous, "PIN-LIB"))[0]
        assert not (await claim(other, "PIN-LIB"))[0]
        # With PIN's certificate, claiming another partner allowed from loopback: refused.
        assert not (await claim(pinned, "VDX-LIB"))[0]
        assert kafka.inbound == []
        accepted, error = await claim(pinned, "PIN-LIB")
        assert accepted, error
        # Address-only partners still connect over the TLS port without a certificate.
        assert (await claim(anonymous, "VDX-LIB"))[0]
        assert [json.loads(m)["sender"] for m in kafka.inbound] == ["PIN", "VDX"]


def test_pinned_partner_without_tls_settings_stops_start_up() -> None:
    directory = consortium(partner("PIN", tls_client_cert_sha256="ab" * 32))
    problems = " ".join(start_up_problems(directory, Settings(), {}))
    assert "partners PIN are identified by a client certificate" in problems
    assert "RSHUB_ISO10161_TLS_CERT_FILE" in problems


# --- item 3: whole bodies ------------------------------------------------------------------


async def raw_http(port_number: int, head: bytes, *parts: bytes, pause: float = 0.3) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_number)
    writer.write(head)
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(pause)  # the input under test: a body arriving in two segments
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


def ncip_request() -> bytes:
    from connectors.simulator import Library

    north = Library("NORTH", "01NORTH_INST||MAIN", "s")
    return north.encode(Message(event=Event.REQUEST, request_id="N-1", bibliographic=BOOK))


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_in_two_segments_is_read_whole(monkeypatch, chunked: bool) -> None:
    monkeypatch.setenv("EDGE_SECRET_NORTH", "north-secret")
    body = ncip_request()
    half = len(body) // 2
    async with gateway(consortium()) as (running, kafka):
        head = (
            b"POST /ncip/NORTH HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer north-secret\r\n"
            b"Content-Type: application/xml\r\nConnection: close\r\n"
        )
        if chunked:
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            parts = [
                b"%x\r\n%s\r\n" % (half, body[:half]),
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]),
            ]
        else:
            head += b"Content-Length: %d\r\n\r\n" % len(body)
            parts = [body[:half], body[half:]]
        answer = await raw_http(port(running, "http"), head, *parts)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"Problem" not in answer
    assert kafka.audited == [body]  # the audit keeps the whole message


async def test_body_that_never_completes_is_refused_after_the_read_timeout(monkeypatch) -> None:
    monkeypatch.setenv("EDGE_SECRET_NORTH", "north-secret")
    async with gateway(consortium(), read_timeout_s=0.5) as (running, kafka):
        head = (
            b"POST /ncip/NORTH HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer north-secret\r\n"
            b"Content-Length: 1000\r\n\r\n<NCIPMessage"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port(running, "http"))
        writer.write(head)
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"not complete after 0.5 s" in answer
    assert kafka.audited == []


# --- item 7: time-outs and caps ------------------------------------------------------------


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    return await asyncio.wait_for(reader.read(), within) == b""


async def test_idle_and_slow_connections_are_dropped() -> None:
    async with gateway(consortium(), idle_timeout_s=0.3, read_timeout_s=0.6) as (running, _k):
        # HTTP: a request head that never completes.
        reader, writer = await asyncio.open_connection("127.0.0.1", port(running, "http"))
        writer.write(b"POST /ncip/NORTH HTTP/1.1\r\nHost: x\r\n")
        assert await closed_by_peer(reader, 5)
        writer.close()  # our side too (left open, its transport is only collected, with a warning)
        # ISO 10161: a connection that sends nothing ...
        reader, writer = await asyncio.open_connection("127.0.0.1", port(running, "iso10161"))
        assert await closed_by_peer(reader, 5)
        writer.close()
        # ... and one that sends part of an APDU, a byte at a time, inside the idle limit.
        apdu = TcpLibrary("VDX", "VDX-LIB").encode(Message(event=Event.REQUEST, request_id="R"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port(running, "iso10161"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for byte in apdu[:20]:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)  # the input under test: a trickle
        assert await closed_by_peer(reader, 5)
        writer.close()
        assert loop.time() - started < 3


async def test_connections_per_source_are_capped() -> None:
    async with gateway(consortium(), max_connections_per_source=3) as (running, _k):
        for name in ("http", "iso10161"):
            held = [
                await asyncio.open_connection("127.0.0.1", port(running, name)) for _ in range(3)
            ]
            reader, _writer = await asyncio.open_connection("127.0.0.1", port(running, name))
            assert await closed_by_peer(reader, 5), name  # the fourth is refused at once
            held[0][1].close()
            await held[0][1].wait_closed()
            assert await closed_by_peer(held[0][0], 5)
            for _reader, writer in held[1:]:
                writer.close()


def test_framing_reads_each_byte_a_bounded_number_of_times() -> None:
    from bench.framing import indefinite_apdu

    data = indefinite_apdu(200 * 1024)

    class Counting(codec.Splitter):
        headers = 0

        def _header(self, at: int, start: int):  # type: ignore[no-untyped-def]
            Counting.headers += 1
            return super()._header(at, start)

    def headers_read(piece: int) -> int:
        Counting.headers = 0
        splitter = Counting(max_apdu=len(data))
        found = [
            a for at in range(0, len(data), piece) for a in splitter.feed(data[at : at + piece])
        ]
        assert found == [data]
        return Counting.headers

    whole = headers_read(len(data))
    # In 1 KB pieces only a header cut by a piece boundary is read again (once per piece).
    assert headers_read(1024) <= whole + len(data) // 1024 + 1


# --- item 14: broker gone ------------------------------------------------------------------


async def test_broker_gone_gives_temporary_failure_at_once_and_recovers(monkeypatch) -> None:
    import aiohttp

    from connectors.simulator import Library

    monkeypatch.setenv("EDGE_SECRET_NORTH", "north-secret")
    async with gateway(consortium(partner("VDX", addresses=["127.0.0.1/32"]))) as (running, kafka):
        url = f"http://127.0.0.1:{port(running, 'http')}"
        north = Library("NORTH", "01NORTH_INST||MAIN", "north-secret", hub_url=url)
        vdx = TcpLibrary("VDX", "VDX-LIB", hub_tcp=("127.0.0.1", port(running, "iso10161")))
        async with aiohttp.ClientSession() as session:

            async def health() -> tuple[int, dict[str, object]]:
                async with session.get(f"{url}/health") as reply:
                    return reply.status, await reply.json()

            assert (await health())[0] == 200
            kafka.up = False
            while running.broker_up:  # the watcher's next check (every 0.05 s here)
                await asyncio.sleep(0.05)
            status, body = await health()
            assert status == 503 and str(body["broker"]).startswith("unreachable")
            started = asyncio.get_running_loop().time()
            status, answer = await north.send(
                Message(event=Event.REQUEST, request_id="N-9", bibliographic=BOOK)
            )
            assert asyncio.get_running_loop().time() - started < 2
            assert status == 503 and answer.errors[0].startswith("Temporary Processing Failure")
            _status, answer = await vdx.send(
                Message(event=Event.REQUEST, request_id="V-9", bibliographic=BOOK)
            )
            assert not answer.ok and "resource-limitation" in answer.errors[0]
            kafka.up = True
            while not running.broker_up:
                await asyncio.sleep(0.05)
            assert (await health())[0] == 200
            status, answer = await north.send(
                Message(event=Event.REQUEST, request_id="N-9", bibliographic=BOOK)
            )
            assert status == 200 and answer.ok


# --- item 9: decode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"\x8f\x13\xffrandom bytes\x00", b"0x6103020102", b"61030", None],
    ids=["empty", "random", "0x-hex-truncated", "odd-hex", "truncated-ber"],
)
def test_decode_iso10161_refusals_print_the_report_and_exit_2(
    tmp_path: Path, content: bytes | None
) -> None:
    if content is None:
        whole = TcpLibrary("VDX", "VDX-LIB").encode(Message(event=Event.REQUEST, request_id="R"))
        content = whole[: len(whole) // 2]
    path = tmp_path / "apdu"
    path.write_bytes(content)
    done = rshub("decode", "iso10161", str(path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)["Status-Or-Error-Report"]
    assert report["error-report"]["report-source"] == "provider"


def test_decode_iso10161_hex_with_0x_prefix(tmp_path: Path) -> None:
    apdu = TcpLibrary("VDX", "VDX-LIB").encode(Message(event=Event.REQUEST, request_id="R-7"))
    path = tmp_path / "apdu.hex"
    path.write_text("0x" + apdu.hex().upper() + "\n")
    done = rshub("decode", "iso10161", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["request_id"] == "R-7"


# --- item 13: the broker note ----------------------------------------------------------------


def test_broker_note_is_replaced_whole_and_removed_only_by_its_writer(tmp_path: Path) -> None:
    first, second = BrokerNote(tmp_path), BrokerNote(tmp_path)
    first.write("127.0.0.1:1111")
    second.write("127.0.0.1:2222")  # a later serve
    first.remove()  # the earlier one exits: the later one's note stays
    assert (tmp_path / "broker-address").read_text() == "127.0.0.1:2222"
    second.remove()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_tail_and_route_refuse_a_dead_noted_broker(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refuses
        (tmp_path / "broker-address").write_text(dead)
        env = {"RSHUB_DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": ""}
        for args in (["tail"], ["route", "show", "t0"]):
            done = rshub(*args, env=env, timeout=30)
            assert done.returncode == 2, args
            assert f"no broker answers at {dead}" in done.stderr and "Traceback" not in done.stderr


# --- item 15: start-up checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,protocol",
    [("htp://x/ncip", "ncip"), ("127.0.0.1:1611", "iso10161"), ("http://x:port", "ncip")],
)
def test_bad_endpoints_are_refused(endpoint: str, protocol: str) -> None:
    entry = {**NORTH, "endpoint": endpoint, "protocol": protocol, "addresses": ["10.0.0.0/8"]}
    directory = Directory.model_validate({"consortium": "X", "partners": [entry]})
    assert "endpoint" in " ".join(start_up_problems(directory, Settings(), {}))


@pytest.mark.parametrize(
    "variable,value",
    [("RSHUB_HTTP_PORT", "abc"), ("RSHUB_LOG_LEVEL", "LOUD"), ("RSHUB_LOG_FORMAT", "xml")],
)
def test_bad_setting_is_one_line_and_exit_2(variable: str, value: str) -> None:
    done = rshub("serve", env={variable: value})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith(f"rshub: {variable}=")


def test_iso10161_port_in_use_stops_before_anything_starts_and_unset_secrets_are_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]
        done = rshub(
            "serve",
            "--iso10161-port",
            str(taken),
            env={"RSHUB_LOG_FORMAT": "json", "RSHUB_SECRET_NORTH": "x"},
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{taken} for ISO 10161" in done.stderr
    assert "broker.started" not in done.stderr and "Traceback" not in done.stderr
    warned = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    unset = {w["partner"] for w in warned if w["event"] == "partner.secret_unset"}
    assert unset == {"SOUTH", "EAST"}  # NORTH's is set


# --- item 16: topics shipped with the package ----------------------------------------------


def test_installed_topic_declarations_are_the_repository_ones() -> None:
    assert topics.DEFAULT.read_bytes() == (ROOT / "topics.yaml").read_bytes()
    assert {spec.name for spec in topics.load()} >= {"ill.inbound", "ill.audit"}
    assert '"topics.yaml"' in (ROOT / "pyproject.toml").read_text()  # package data


# --- item 17: the embedded broker dies with its parent ---------------------------------------


def test_embedded_broker_dies_when_its_hub_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from hub.kafka.embedded import EmbeddedBroker; b = EmbeddedBroker(); b.start();"
            " print('PID', b.process.pid, flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert parent.stdout is not None
    line = b""
    while not line.startswith(b"PID "):
        line = parent.stdout.readline()
    broker_pid = int(line.split()[1])
    broker = os.pidfd_open(broker_pid)
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # The pidfd becomes readable when the broker exits: an event, not a poll.
        readable, _, _ = select.select([broker], [], [], 10)
        assert readable, f"broker {broker_pid} outlived its parent"
    finally:
        os.close(broker)
        if not readable:
            os.kill(broker_pid, signal.SIGKILL)


# --- item 19: settings, logs ---------------------------------------------------------------


def test_settings_shows_values_in_effect_and_whether_secrets_are_set() -> None:
    done = rshub(
        "settings", env={"RSHUB_HTTP_PORT": "9999", "RSHUB_SECRET_NORTH": "very-secret-value"}
    )
    assert done.returncode == 0, done.stderr
    port_line = next(
        line for line in done.stdout.splitlines() if line.startswith("RSHUB_HTTP_PORT")
    )
    assert port_line.split()[1:3] == ["9999", "8000"]  # in effect, default
    assert "RSHUB_IDLE_TIMEOUT_S" in done.stdout and "RSHUB_READ_TIMEOUT_S" in done.stdout
    listed = done.stdout.split("partner secrets")[1].splitlines()[1:]
    secrets = {line.split()[0]: line.rstrip().endswith("NOT SET") for line in listed}
    assert secrets == {"NORTH": False, "SOUTH": True, "EAST": True}
    assert "very-secret-value" not in done.stdout


@pytest.fixture
def log_output():  # type: ignore[no-untyped-def]
    """A stream the logging set-up writes to; the process's logging is restored after."""
    import io

    import structlog

    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logs.KAFKA_CLIENTS}
    output = io.StringIO()
    yield output
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def test_library_log_lines_are_json_and_repeats_are_counted(log_output) -> None:
    logs.configure("INFO", "json", stream=log_output, library_level="INFO")
    for _ in range(5):
        logging.getLogger("aiokafka.conn").warning("Unable connect to %s", "node 1")
    logging.getLogger("faust.worker").info("Worker ready")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["Unable connect to node 1", "Worker ready"]
    assert lines[0]["logger"] == "aiokafka.conn" and lines[0]["level"] == "warning"


def test_tail_and_route_hide_kafka_client_chatter(log_output) -> None:
    logs.configure("INFO", "json", quiet_libraries=True, stream=log_output)
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed")
    logging.getLogger("aiokafka.consumer").error("Fetch failed")
    lines = log_output.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["Fetch failed"]


def test_repeats_filter_reports_the_count_after_the_window() -> None:
    now = [0.0]
    repeats = logs.Repeats(window_s=30, clock=lambda: now[0])
    record = logging.LogRecord("aiokafka", logging.WARNING, "", 0, "down %s", ("x",), None)
    assert repeats.filter(record)
    assert not any(repeats.filter(record) for _ in range(100))
    now[0] = 31
    assert repeats.filter(record) and record.repeated == 100  # type: ignore[attr-defined]


def test_empty_variables_are_unset() -> None:
    environ = {"RSHUB_ISO10161_TLS_CERT_FILE": "", "RSHUB_HTTP_PORT": ""}
    settings = Settings.from_env(environ)
    iso10161 = assembly.connector_settings(assembly.connectors(settings), environ)["iso10161"]
    assert iso10161.tls_cert_file is None and settings.http_port == 8000


async def test_a_clients_malformed_request_is_one_warning_without_traceback(log_output) -> None:
    """Issue 22.8: aiohttp logged a traceback at error level for each malformed request."""
    import asyncio

    from aiohttp import web

    logs.configure("INFO", "json", stream=log_output)
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for garbage in (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"GET /\x00 HTTP/9\r\n\r\n",
        ):
            for _ in range(2):  # the second request makes aiohttp log (the first is debug)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + garbage)
                await writer.drain()
                await reader.read()  # the server answers 400 and closes
                writer.close()
    finally:
        await runner.cleanup()
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    faults = [line for line in lines if line.get("logger") == "aiohttp.server"]
    assert faults and all(line["level"] == "warning" for line in faults)
    assert "Traceback" not in log_output.getvalue()
    assert "BadHttpMessage" in faults[0]["event"] or "InvalidHeader" in faults[0]["event"]


def test_library_chatter_below_warning_is_left_out_unless_asked(log_output) -> None:
    logs.configure("INFO", "json", stream=log_output)
    logging.getLogger("faust.tables.recovery").info("+ Table Recovery +  (ASCII art)")
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed")
    structlog.get_logger("hub.test").info("hub.own_line")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["Heartbeat failed", "hub.own_line"]


def test_console_format_writes_no_colour_codes_into_a_file(log_output) -> None:
    logs.configure("INFO", "console", stream=log_output)
    structlog.get_logger("hub.test").warning("delivery.failed", partner="SOUTH")
    text = log_output.getvalue()
    assert "delivery.failed" in text and "partner" in text and "\x1b[" not in text
