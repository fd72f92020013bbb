"""The operators' console in a real browser: Debian's headless Chromium driven by selenium
against the real hub (a process on the embedded broker) with NCIP libraries. An operator
logs in, finds a request by title words, opens its timeline, sees the message the hub
refused (and its raw bytes), sees the request progress live (server-sent events), and finds
the refusal among the dead letters. Screenshots are kept (tmp_path, and
$RSHUB_TEST_ARTEFACTS when set)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.core.model import Bibliographic, Event, Message, RequestFormat, transaction_id
from connectors.simulator import Library
from hub.cli.process import HubProcess
from hub.ops.console import users
from tests.test_e2e_ncip import DUE, say

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (installed by .ci/run)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from tests.page_waits import gone  # noqa: E402

T = TypeVar("T")
WAIT_S = 60  # the longest a page may take to show what is awaited (a deadline, not a pace)
PASSWORD = "a long operator password"
ATLAS = Bibliographic(title="Atlas of Remote Islands", author="Schalansky, Judith")


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1400",
        "--lang=en-GB",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield browser
    finally:
        browser.quit()


def keep(driver: WebDriver, tmp_path: Path, name: str) -> None:
    """A screenshot as a test artefact."""
    places = [tmp_path]
    if os.environ.get("RSHUB_TEST_ARTEFACTS"):
        places.append(Path(os.environ["RSHUB_TEST_ARTEFACTS"]))
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(place / f"console-{name}.png"))


async def off_loop(call: Callable[[], T]) -> T:
    """Selenium blocks; the simulated libraries answer the hub on this event loop."""
    return await asyncio.to_thread(call)


async def test_operator_finds_a_request_and_sees_its_refused_message(
    hub: HubProcess, libraries: dict[str, Library], driver: WebDriver, tmp_path: Path
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    # The hub's data folder is tmp_path: the users file is where RSHUB_CONSOLE_USERS_FILE
    # points by default, and the console reads it when it changes.
    users.add(tmp_path / "console-users", "olive", "operator", PASSWORD)
    await say(
        north,
        Event.REQUEST,
        "CON-1",
        patron_id="patron-3",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=ATLAS,
    )
    lender_id = (await south.next()).request_id
    # A step the loan does not allow yet: refused, and dead-lettered.
    status, answer = await south.send(
        Message(event=Event.LOAN_COMPLETED, request_id=lender_id, item_id="BC-C1")
    )
    assert status == 200 and answer.errors
    txn = transaction_id("NORTH", "CON-1")
    console = f"http://127.0.0.1:{hub.console_port}"
    wait = WebDriverWait(driver, WAIT_S)

    # Log in (any page sends to the login first, and back after).
    await off_loop(lambda: driver.get(f"{console}/deadletters"))
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "password"))))
    assert driver.title == "Log in · rshub console"

    def log_in() -> None:
        driver.find_element(By.ID, "name").send_keys("olive")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        keep(driver, tmp_path, "1-login")
        driver.find_element(By.ID, "login").click()

    await off_loop(log_in)
    await off_loop(lambda: wait.until(seen.title_is("Dead letters · rshub console")))
    assert "olive (operator)" in driver.find_element(By.CSS_SELECTOR, "header").text
    assert "in memory only" not in driver.page_source  # this hub runs on a given broker
    await off_loop(lambda: driver.find_element(By.LINK_TEXT, "Requests").click())
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "q-title"))))

    def search() -> None:
        field = driver.find_element(By.ID, "q-title")
        field.clear()
        field.send_keys("remote atlas")
        button = driver.find_element(By.ID, "find")
        button.click()
        # The answer is a new page with the same elements: wait for the old one to go
        # before reading, or a row of the previous answer is what is found.
        wait.until(gone(button))

    def found(browser: Any) -> bool:
        # The page reads the index the hub keeps from the topics when it is loaded: search
        # again until the index has taken the request in.
        search()
        return bool(browser.find_elements(By.CSS_SELECTOR, f'tr[data-txn="{txn}"]'))

    await off_loop(lambda: WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(found))
    listed = driver.find_element(By.CSS_SELECTOR, f'tr[data-txn="{txn}"]')
    assert "Atlas of Remote Islands" in listed.text and "NORTH" in listed.text
    assert "CON-1" in listed.text
    keep(driver, tmp_path, "2-search")

    # Its timeline: the request in with its raw NCIP, the routing, the refused step.
    await off_loop(lambda: driver.find_element(By.LINK_TEXT, txn).click())
    await off_loop(lambda: wait.until(seen.title_is(f"Request {txn} · rshub console")))

    def shows_the_refusal(browser: Any) -> bool:
        browser.refresh()
        return bool(browser.find_elements(By.CSS_SELECTOR, "#timeline tr.kind-refused"))

    await off_loop(
        lambda: WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(shows_the_refusal)
    )
    refused = driver.find_element(By.CSS_SELECTOR, "#timeline tr.kind-refused")
    assert "refused LoanCompleted from SOUTH in Requested" in refused.text
    assert "-> SOUTH" in driver.find_element(By.ID, "routing").text
    request_in = driver.find_element(By.CSS_SELECTOR, "#timeline tr.kind-in")
    assert "Request from NORTH (ncip), request id CON-1" in request_in.text
    await off_loop(lambda: request_in.find_element(By.CSS_SELECTOR, "details summary").click())
    raw = request_in.find_element(By.CSS_SELECTOR, "pre.raw")
    assert "RequestItem" in raw.text and "\n  <" in raw.text  # indented XML
    assert "patron-3" in raw.text
    await off_loop(
        lambda: wait.until(seen.text_to_be_present_in_element((By.ID, "live-status"), "connected"))
    )
    keep(driver, tmp_path, "3-timeline")

    # The lender ships: the open page shows it as it happens (server-sent events).
    await say(south, Event.LOANED, lender_id, item_id="BC-C1", due_date=DUE)
    assert (await north.next()).event is Event.LOANED
    await off_loop(
        lambda: wait.until(seen.text_to_be_present_in_element((By.ID, "state"), "Loaned"))
    )
    live = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.live")
    assert any("Requested -> Loaned" in row.text for row in live)
    keep(driver, tmp_path, "4-live")

    # The refusal among the dead letters, with its reason.
    await off_loop(lambda: driver.find_element(By.LINK_TEXT, "Dead letters").click())
    await off_loop(lambda: wait.until(seen.title_is("Dead letters · rshub console")))
    letters = driver.find_element(By.ID, "deadletters")
    assert txn in letters.text and "SOUTH" in letters.text
    keep(driver, tmp_path, "5-deadletters")

    # Replayed while the loan still cannot take it: shown as refused, not as done.
    def click(label: str) -> None:
        row = driver.find_element(By.XPATH, f"//table[@id='deadletters']//tr[td//a[.='{txn}']]")
        if label == "Acknowledge":
            row.find_element(By.NAME, "note").send_keys("returned outside the system")
        row.find_element(By.XPATH, f".//button[.='{label}']").click()
        wait.until(gone(row))  # the answer is a new page

    await off_loop(lambda: click("Replay"))
    await off_loop(
        lambda: wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "p.flash.refused")))
    )
    assert "refused again" in driver.find_element(By.CSS_SELECTOR, "p.flash.refused").text
    keep(driver, tmp_path, "5a-refused-again")
    # Acknowledged with a note: kept, marked with the operator's name.
    await off_loop(lambda: click("Acknowledge"))

    def marked(browser: Any) -> bool:
        browser.refresh()  # the mark reaches the index through ill.deadletter
        return "acknowledged by console:olive" in browser.find_element(By.ID, "deadletters").text

    await off_loop(lambda: WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(marked))
    assert "returned outside the system" in driver.find_element(By.ID, "deadletters").text

    await off_loop(lambda: driver.find_element(By.LINK_TEXT, "Partners").click())
    await off_loop(lambda: wait.until(seen.title_is("Partners · rshub console")))
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-partner="SOUTH"]')
    assert "1 as lender" in row.text and "ok" in row.text
    keep(driver, tmp_path, "6-partners")
