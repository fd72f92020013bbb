"""Real catalogue servers for the holdings tests: Debian's yaz-ztest and Zebra.

yaz-ztest (package yaz) answers Z39.50 and SRU on one port. A query term with leading digits
gives that many hits (so `0` gives none); it returns OPAC records with circulation data, and
the database option `search-delay` makes it slow. Zebra (package idzebra-2.0) indexes the
MARC records in tests/data/zebra, one database per library, and answers USMARC only.
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.core.connections import free_port

DATA = Path(__file__).parent / "data" / "zebra"
ZEBRA_CFG = """\
profilePath: .:/usr/share/idzebra-2.0/tab
modulePath: {modules}
attset: bib1.att
recordType: grs.marcxml.holdings
register: register:100M
shadow: shadow:20M
lockDir: lock
"""
# What the test catalogue indexes: identifiers, author, title.
HOLDINGS_ABS = """\
name holdings
attset bib1.att
esetname F @
esetname B @
marc usmarc.mar
xpath disable
all any
melm 001    Local-number
melm 020$a  ISBN
melm 022$a  ISSN
melm 100    Author
melm 245    Title
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling a port: there is no event to await
    raise RuntimeError(f"{what} did not listen on {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def _serving(command: list[str], port: int, cwd: Path) -> Iterator[str]:
    """Run a server until the block ends; yields host:port once it listens."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, command[0])
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@contextmanager
def ztest(workdir: Path) -> Iterator[str]:
    """yaz-ztest on a free port; yields host:port."""
    port = free_port()
    listener = f"tcp:127.0.0.1:{port}"
    with _serving(["yaz-ztest", "-l", "ztest.log", listener], port, workdir) as address:
        yield address


def _zebra_modules() -> str:
    found = sorted(Path("/usr/lib").glob("*/idzebra-2.0/modules")) + sorted(
        Path("/usr/lib").glob("idzebra-2.0/modules")
    )
    if not found:
        raise RuntimeError("Zebra's modules are not installed (Debian package idzebra-2.0)")
    return str(found[0])


@contextmanager
def zebra(workdir: Path, databases: dict[str, list[str]]) -> Iterator[str]:
    """zebrasrv on a free port with one database per name, holding the records whose 001 is
    listed; yields host:port."""
    from lxml import etree

    root = workdir / "zebra"
    for folder in ("register", "shadow", "lock"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "zebra.cfg").write_text(ZEBRA_CFG.format(modules=_zebra_modules()))
    (root / "holdings.abs").write_text(HOLDINGS_ABS)
    ns = {"m": "http://www.loc.gov/MARC21/slim"}
    collection = etree.parse(str(DATA / "records.xml"))

    def run(*args: str) -> None:
        subprocess.run(
            ["zebraidx", "-c", "zebra.cfg", *args], cwd=root, check=True, capture_output=True
        )

    run("init")
    for database, ids in databases.items():
        chosen = etree.Element("{http://www.loc.gov/MARC21/slim}collection", nsmap={None: ns["m"]})
        for record in collection.getroot().findall("m:record", ns):
            if record.findtext("m:controlfield[@tag='001']", namespaces=ns) in ids:
                chosen.append(copy.deepcopy(record))  # append would move it
        xml = root / f"{database}.xml"
        xml.write_bytes(etree.tostring(chosen, xml_declaration=True, encoding="UTF-8"))
        marc = subprocess.run(
            ["yaz-marcdump", "-i", "marcxml", "-o", "marc", str(xml)],
            check=True,
            capture_output=True,
        ).stdout
        (root / f"{database}.mrc").write_bytes(marc)
        run("-d", database, "update", f"{database}.mrc")
    run("commit")
    port = free_port()
    command = ["zebrasrv", "-c", "zebra.cfg", "-l", "zebrasrv.log", f"tcp:127.0.0.1:{port}"]
    with _serving(command, port, root) as address:
        yield address


def installed() -> bool:
    return all(shutil.which(tool) for tool in ("yaz-ztest", "zebrasrv", "zebraidx", "yaz-marcdump"))
