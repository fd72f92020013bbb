"""The patron's status page of a request placed through the API: the words and page are the
API connector's; the key in the link is `hub.runtime.status_links`'."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Pages(Protocol):
    """The patron's words and page, the API connector's (`codec.patron_pages`): a connector
    says things to people, the hub decides who may see them."""

    def language(self, accept_language: str) -> str: ...

    def state_text(self, state: str | None, language: str) -> str: ...

    def page(
        self,
        language: str,
        request_id: str,
        state: str | None,
        title: str | None,
        due_date: datetime | None,
        need_before: datetime | None,
    ) -> bytes: ...
