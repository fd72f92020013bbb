"""Staff actions in the operators' console, in a real browser (Debian's headless Chromium,
selenium) against the real hub on the embedded broker with NCIP libraries: an operator
reroutes a request every way (the next lender, a named one, the catalogues again, never a
given one), cancels it, sends a waiting step again and hears what came of the try, notes
something on a loan and closes it; each lender hears exactly what the action means in its
protocol, and the operator's name and reason are in the timeline and on ill.events. A reader
sees no action and is refused every one (403)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from connectors.core.model import Event, RequestFormat, transaction_id
from connectors.simulator import Library
from hub.cli.process import HubProcess
from hub.ops.console import users
from tests.kafka_reader import wait_for_record
from tests.page_waits import gone
from tests.test_console_browser import (
    ATLAS,
    PASSWORD,
    WAIT_S,
    WebDriver,
    driver,  # noqa: F401  (the fixture)
    keep,
    off_loop,
    pytestmark,  # noqa: F401  (kafka, and skipped without chromium)
)
from tests.test_e2e_ncip import DUE, say

ACTIONS = ("route", "cancel", "close", "note", "message", "redeliver")


class Console:
    """The console as a person uses it: log in, open a request, fill a form, read the
    answer shown after it."""

    def __init__(self, browser: WebDriver, port: int, tmp_path: Path) -> None:
        self.driver, self.tmp_path = browser, tmp_path
        self.base = f"http://127.0.0.1:{port}"
        self.wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.5)

    def log_in(self, name: str) -> None:
        self.driver.get(f"{self.base}/login")
        self.wait.until(seen.presence_of_element_located((By.ID, "password")))
        self.driver.find_element(By.ID, "name").send_keys(name)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        button = self.driver.find_element(By.ID, "login")
        button.click()
        self.wait.until(gone(button))

    def log_out(self) -> None:
        button = self.driver.find_element(By.ID, "logout")
        button.click()
        self.wait.until(gone(button))

    def request(self, txn: str, state: str, shown: Callable[[Any], bool] | None = None) -> None:
        """Open the request's page once the index shows it in `state` (and `shown` holds):
        the console reads the index the hub keeps from the topics, a round behind them."""

        def there(browser: Any) -> bool:
            browser.get(f"{self.base}/requests/{txn}")
            found = browser.find_elements(By.ID, "state")
            return bool(found) and found[0].text == state and (shown is None or shown(browser))

        self.wait.until(there)

    def submit(self, button_id: str, fill: Callable[[], None] | None = None) -> tuple[str, bool]:
        """Press an action's button (after filling its form); the answer shown on the page
        that follows: (what it says, whether it was done)."""
        if fill is not None:
            fill()
        button = self.driver.find_element(By.ID, button_id)
        button.click()
        self.wait.until(gone(button))  # the answer is a new page
        flash = self.wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "p.flash")))
        return flash.text, "refused" not in (flash.get_attribute("class") or "")

    def submit_in(self, element: Any, label: str) -> tuple[str, bool]:
        """Press the button labelled `label` inside `element` (a table row); the answer."""
        button = element.find_element(By.XPATH, f".//button[.='{label}']")
        button.click()
        self.wait.until(gone(button))
        flash = self.wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "p.flash")))
        return flash.text, "refused" not in (flash.get_attribute("class") or "")

    def type(self, element_id: str, text: str) -> None:
        self.driver.find_element(By.ID, element_id).send_keys(text)

    def choose(self, element_id: str, value: str) -> None:
        Select(self.driver.find_element(By.ID, element_id)).select_by_value(value)

    def timeline(self) -> str:
        return str(self.driver.find_element(By.ID, "timeline").text)


def timeline_has(text: str) -> Callable[[Any], bool]:
    return lambda browser: text in browser.find_element(By.ID, "timeline").text


async def staff_line(bootstrap: str, txn: str, event: str) -> dict[str, Any]:
    return await wait_for_record(
        bootstrap,
        "ill.events",
        lambda r: r["transaction_id"] == txn and r["event"] == event,
    )


async def test_operator_reroutes_and_cancels_a_request(
    hub: HubProcess,
    libraries: dict[str, Library],
    driver: WebDriver,  # noqa: F811
    tmp_path: Path,
    bootstrap: str,
) -> None:
    north, south, east = libraries["NORTH"], libraries["SOUTH"], libraries["EAST"]
    users.add(tmp_path / "console-users", "olive", "operator", PASSWORD)
    await say(
        north,
        Event.REQUEST,
        "ACT-1",
        patron_id="patron-1",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=ATLAS,
    )
    first = await south.next()  # the rota: SOUTH, then EAST
    assert first.event is Event.REQUEST
    txn = transaction_id("NORTH", "ACT-1")
    console = Console(driver, hub.console_port, tmp_path)
    await off_loop(lambda: console.log_in("olive"))
    await off_loop(lambda: console.request(txn, "Requested"))
    keep(driver, tmp_path, "actions-1-request")

    # The next lender: SOUTH had the request, so it gets one Cancel; EAST is asked.
    said, done = await off_loop(lambda: console.submit("route-next"))
    assert done and f"{txn} is now Requested" in said, said
    withdrawn = await south.next()
    assert withdrawn.event is Event.CANCEL and withdrawn.request_id == first.request_id
    assert (await east.next()).event is Event.REQUEST
    line = await staff_line(bootstrap, txn, "route next")
    assert line["sender"] == "console:olive"

    # A lender named: SOUTH again; EAST, which had it, gets one Cancel.
    await off_loop(lambda: console.request(txn, "Requested", timeline_has("route next")))
    said, done = await off_loop(
        lambda: console.submit("route-lender", lambda: console.choose("route-lender-to", "SOUTH"))
    )
    assert done, said
    asked = await south.next()
    assert asked.event is Event.REQUEST and asked.request_id.endswith(".3")
    assert (await east.next()).event is Event.CANCEL

    # The catalogues again: a new round, the rota from the start (SOUTH withdrawn, asked anew).
    await off_loop(lambda: console.request(txn, "Requested", timeline_has("route lender")))
    said, done = await off_loop(lambda: console.submit("route-restart"))
    assert done, said
    assert (await south.next()).event is Event.CANCEL
    again = await south.next()
    assert again.event is Event.REQUEST and again.request_id.endswith(".4")

    # Never SOUTH: it is taken back from SOUTH, EAST is asked.
    await off_loop(lambda: console.request(txn, "Requested", timeline_has("route restart")))
    said, done = await off_loop(
        lambda: console.submit("route-skip", lambda: console.choose("route-skip-who", "SOUTH"))
    )
    assert done, said
    assert (await south.next()).event is Event.CANCEL
    assert (await east.next()).event is Event.REQUEST

    # Cancelled, with the reason: EAST gets one Cancel, NORTH hears it is cancelled.
    await off_loop(lambda: console.request(txn, "Requested", timeline_has("route skip")))
    said, done = await off_loop(
        lambda: console.submit("cancel", lambda: console.type("cancel-reason", "patron left"))
    )
    assert done and "is now Cancelled" in said, said
    assert (await east.next()).event is Event.CANCEL
    told = await north.next()
    assert told.event is Event.CANCEL_REPLY and told.request_id == "ACT-1"
    line = await staff_line(bootstrap, txn, "staff cancel")
    assert line["to_state"] == "Cancelled" and line["sender"] == "console:olive"
    assert "patron left" in line["detail"]
    await off_loop(lambda: console.request(txn, "Cancelled", timeline_has("patron left")))
    assert "console:olive" in console.timeline()
    # Nothing is offered that the state does not allow, but a note.
    offered = {
        b.get_attribute("id")
        for b in driver.find_elements(By.CSS_SELECTOR, "#staff-actions button")
    }
    assert offered == {"note"}
    keep(driver, tmp_path, "actions-2-cancelled")

    # Asked anyway (a stale page), the state machine refuses, and the page says why.
    response = await off_loop(lambda: post(driver, f"/requests/{txn}/route", how="next"))
    assert response == 303
    await off_loop(lambda: driver.get(f"{console.base}/requests/{txn}"))
    refused = driver.find_element(By.CSS_SELECTOR, "p.flash.refused").text
    assert "refused: not possible in state Cancelled" in refused
    # No partner heard anything more.
    assert south.received.empty() and east.received.empty() and north.received.empty()


async def test_operator_redelivers_notes_and_closes_a_loan(
    hub: HubProcess,
    libraries: dict[str, Library],
    driver: WebDriver,  # noqa: F811
    tmp_path: Path,
    bootstrap: str,
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    users.add(tmp_path / "console-users", "olive", "operator", PASSWORD)
    users.add(tmp_path / "console-users", "rita", "reader", PASSWORD)
    await say(
        north,
        Event.REQUEST,
        "ACT-2",
        patron_id="patron-2",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=ATLAS,
    )
    lender_id = (await south.next()).request_id
    txn = transaction_id("NORTH", "ACT-2")
    # NORTH is down when SOUTH ships: the Loaned for it waits for a retry.
    await north.stop()
    await say(south, Event.LOANED, lender_id, item_id="BC-A2", due_date=DUE)
    await wait_for_record(
        bootstrap,
        "ill.delivery",
        lambda r: r["transaction_id"] == txn and r["outcome"] == "failed",
    )
    console = Console(driver, hub.console_port, tmp_path)
    await off_loop(lambda: console.log_in("olive"))
    await off_loop(lambda: console.request(txn, "Loaned"))

    # Sent again while NORTH is still down: the answer comes after the try, and says it
    # failed (not "done" before anything was tried).
    said, done = await off_loop(lambda: console.submit("redeliver"))
    assert not done and "Loaned to NORTH: failed" in said, said
    # The same from the Partners page, for all that waits for NORTH; beside it, who to ask
    # (the directory names nobody here).
    await off_loop(lambda: driver.get(f"{console.base}/partners"))
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-partner="NORTH"]')
    assert "contact: no contact in the directory" in row.text
    said, done = await off_loop(lambda: console.submit_in(row, "Redeliver"))
    assert not done and "Loaned to NORTH: failed" in said, said
    keep(driver, tmp_path, "actions-3-partner-failing")
    # NORTH is back: sent again, and this time taken.
    await north.start()
    await off_loop(lambda: console.request(txn, "Loaned"))
    said, done = await off_loop(lambda: console.submit("redeliver"))
    assert done and said == "Loaned to NORTH: sent", said
    assert (await north.next()).event is Event.LOANED
    keep(driver, tmp_path, "actions-3-redelivered")

    # A note: on the timeline with the operator's name; no partner hears of it.
    said, done = await off_loop(
        lambda: console.submit("note", lambda: console.type("note-text", "phoned SOUTH"))
    )
    assert done, said
    line = await staff_line(bootstrap, txn, "staff note")
    assert line["sender"] == "console:olive" and "phoned SOUTH" in line["detail"]
    # NCIP has no message for staff: the console offers none.
    assert not driver.find_elements(By.ID, "message")

    # Closed: the book came back by courier, outside the system.
    await off_loop(lambda: console.request(txn, "Loaned", timeline_has("phoned SOUTH")))
    said, done = await off_loop(
        lambda: console.submit(
            "close", lambda: console.type("close-reason", "returned outside the system")
        )
    )
    assert done and "is now LoanCompleted" in said, said
    line = await staff_line(bootstrap, txn, "staff close")
    assert line["to_state"] == "LoanCompleted" and line["sender"] == "console:olive"
    assert "returned outside the system" in line["detail"]
    await off_loop(
        lambda: console.request(txn, "LoanCompleted", timeline_has("returned outside the system"))
    )
    assert north.received.empty() and south.received.empty()  # nobody was told
    keep(driver, tmp_path, "actions-4-closed")

    # A reader sees the request, no action, and is refused each one.
    await off_loop(console.log_out)
    await off_loop(lambda: console.log_in("rita"))
    await off_loop(lambda: console.request(txn, "LoanCompleted"))
    assert not driver.find_elements(By.ID, "staff-actions")
    assert not driver.find_elements(By.ID, "redeliver")
    for name in ACTIONS:
        status = await off_loop(
            lambda name=name: post(driver, f"/requests/{txn}/{name}", how="next", text="x")
        )
        assert status == 403, name
    keep(driver, tmp_path, "actions-5-reader")


def post(browser: WebDriver, path: str, **fields: str) -> int:
    """POST a form from the page as the browser would (with the session's cookie and CSRF
    token, taken from the page's logout form), without following a redirect; its status."""
    script = """
const [path, fields, done] = arguments;
const body = new URLSearchParams(fields);
body.set('csrf', document.querySelector('input[name=csrf]').value);
fetch(path, {method: 'POST', body, redirect: 'manual'})
  .then(r => done(r.type === 'opaqueredirect' ? 303 : r.status), () => done(0));
"""
    return int(browser.execute_async_script(script, path, fields))
