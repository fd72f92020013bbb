"""The OpenURL request form in a real browser: Debian's headless Chromium driven by selenium
against the real hub (a process on the embedded broker) with an NCIP lender. A patron opens
a link that lacks the title, fills the form, sends it, reads the confirmation and follows the
status link; the lender ships and the status page says so. Screenshots are kept (tmp_path,
and $RSHUB_TEST_ARTEFACTS when set)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.core.model import Event, Message
from tests.openurl_helpers import NORTH_TOKEN, OpenUrlHub, openurl_hub, signed_patron

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
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from tests.page_waits import gone  # noqa: E402

T = TypeVar("T")
DUE = datetime(2027, 1, 15, tzinfo=UTC)
WAIT_S = 60  # the longest a page may take to show what is awaited (a deadline, not a pace)


@pytest.fixture
async def ou(bootstrap: str, tmp_path: Path) -> AsyncIterator[OpenUrlHub]:
    async with openurl_hub(bootstrap, tmp_path) as running:
        yield running


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
        "--window-size=1000,1400",
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
        assert driver.save_screenshot(str(place / f"openurl-{name}.png"))


async def off_loop(call: Callable[[], T]) -> T:
    """Selenium blocks; the simulated lender answers the hub on this event loop."""
    return await asyncio.to_thread(call)


async def test_patron_fills_the_form_and_follows_the_status_link(
    ou: OpenUrlHub, driver: WebDriver, tmp_path: Path
) -> None:
    wait = WebDriverWait(driver, WAIT_S)
    # A Google Scholar-like link: the author, no title, no patron.
    link = f"{ou.url}/openurl/NORTH?sid=google&genre=book&aulast=Kutz&rshub_token={NORTH_TOKEN}"
    await off_loop(lambda: driver.get(link))
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "f-title"))))
    assert driver.title == "Request an item from another library"
    assert driver.find_element(By.ID, "f-author").get_attribute("value") == "Kutz"
    # Every field the patron can fill has its label (screen readers read it out).
    for field in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        field_id = field.get_attribute("id")
        assert driver.find_elements(By.CSS_SELECTOR, f'label[for="{field_id}"]'), field_id
    assert driver.find_element(By.ID, "f-service-loan").is_selected()
    keep(driver, tmp_path, "1-form")

    def fill() -> None:
        driver.find_element(By.ID, "f-title").send_keys("Dynamic mode decomposition")
        driver.find_element(By.ID, "f-isbn").send_keys("978-1-611974-49-2")
        driver.find_element(By.ID, "f-patron_id").send_keys("card-123")
        driver.find_element(By.ID, "f-patron_email").send_keys("card@north.edu")
        Select(driver.find_element(By.ID, "f-pickup")).select_by_visible_text("Law library")
        driver.find_element(By.ID, "f-note").send_keys("Chapter 3 first, please")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    await off_loop(fill)
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "request-number"))))
    assert driver.title == "Your request has been sent"
    number = driver.find_element(By.ID, "request-number").text
    assert number.startswith("OU-")
    keep(driver, tmp_path, "2-confirmation")

    asked = await ou.lenders["SOUTH"].next()
    assert asked.event is Event.REQUEST
    assert asked.bibliographic is not None
    assert asked.bibliographic.title == "Dynamic mode decomposition"
    assert asked.bibliographic.isbn == "9781611974492" and asked.bibliographic.author == "Kutz"
    assert (asked.patron_id, asked.note) == ("card-123", "Chapter 3 first, please")

    await off_loop(lambda: driver.find_element(By.ID, "status-link").click())
    await off_loop(lambda: wait.until(seen.title_is("Status of your request")))
    assert driver.find_element(By.ID, "request-number").text == number

    status, answer = await ou.lenders["SOUTH"].send(
        Message(event=Event.LOANED, request_id=asked.request_id, item_id="SOUTH-1", due_date=DUE)
    )
    assert status == 200 and answer.ok

    def shows_the_loan(browser: Any) -> bool:
        # The page reads the hub's view when it is loaded: load it again until it shows it.
        browser.refresh()
        state = browser.find_elements(By.ID, "request-state")
        return bool(state) and state[0].text == "It is on its way to your library."

    await off_loop(lambda: WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(shows_the_loan))
    keep(driver, tmp_path, "3-status")


async def test_a_doi_only_link_asks_the_patron_for_the_title_the_lenders_need(
    ou: OpenUrlHub, driver: WebDriver, tmp_path: Path
) -> None:
    """NORTH's books go to NCIP lenders, which cannot take a request without a title: a link
    with a DOI only (and a signed patron) was confirmed and then went Unfilled. Now the
    patron is asked for the title, also when sending the form with the title left empty."""
    wait = WebDriverWait(driver, WAIT_S)
    link = (
        f"{ou.url}/openurl/NORTH?genre=book&id=doi:10.1137/1.9781611974508"
        f"&rshub_token={NORTH_TOKEN}{signed_patron()}"
    )
    await off_loop(lambda: driver.get(link))
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "errors"))))
    assert driver.title == "Request an item from another library"  # the form, no promise
    errors = driver.find_element(By.ID, "errors").text
    assert "Give the title of the journal or book" in errors
    assert driver.find_element(By.ID, "f-doi").get_attribute("value") == "10.1137/1.9781611974508"
    keep(driver, tmp_path, "4-asks-for-title")

    def send() -> None:
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    before = driver.find_element(By.ID, "errors")
    await off_loop(send)  # the title still empty
    # The answer is a new page with the same element: wait for the old one to go first.
    await off_loop(lambda: wait.until(gone(before)))
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "errors"))))
    assert "Give the title of the journal or book" in driver.find_element(By.ID, "errors").text
    assert ou.lenders["SOUTH"].received.empty()

    def fill() -> None:
        driver.find_element(By.ID, "f-title").send_keys("Dynamic mode decomposition")
        send()

    await off_loop(fill)
    await off_loop(lambda: wait.until(seen.presence_of_element_located((By.ID, "request-number"))))
    asked = await ou.lenders["SOUTH"].next()
    assert asked.bibliographic is not None
    assert asked.bibliographic.title == "Dynamic mode decomposition"  # NCIP has no DOI field
