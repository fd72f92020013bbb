"""Waits for the browser tests that selenium's expected conditions do not cover."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.remote.webelement import WebElement

# What Chromium answers about an element of a page it is leaving, before it answers "stale".
LEAVING = "does not belong to the document"


def gone(element: WebElement) -> Callable[[Any], bool]:
    """Until `element`'s page has been replaced (selenium's `staleness_of`, which takes
    Chromium's mid-navigation "Node ... does not belong to the document" for an error)."""

    def check(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if LEAVING in str(error.msg):
                return False  # on its way out: asked again at the next poll
            raise
        return False

    return check
