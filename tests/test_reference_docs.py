"""docs/directory.md and docs/settings.md are generated from the models the hub validates
with (hub.cli.reference): a key or setting added, renamed or re-described without the pages
being rewritten fails here, and so does a model field without a description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from hub.cli import reference

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", [reference.DIRECTORY_DOC, reference.SETTINGS_DOC])
def test_the_checked_in_reference_is_what_the_models_say(page: Path) -> None:
    assert page.read_text() == reference.rendered(page), (
        f"{page.relative_to(ROOT)} is stale: run `python -m hub.cli.reference`"
    )


def test_a_key_without_a_description_cannot_be_documented() -> None:
    class Options(BaseModel):
        documented: int = Field(1, description="says what it is")
        silent: int = 2

    with pytest.raises(ValueError, match=r"Options\.silent has no description"):
        reference.table(Options)


def test_every_key_of_the_directory_models_is_in_the_reference() -> None:
    text = reference.DIRECTORY_DOC.read_text()
    for model in (reference.Directory, reference.Partner, reference.Credential, reference.Rota):
        for name in model.model_fields:
            if name not in reference.NOT_IN_THE_FILE:
                assert f"| `{name}` |" in text, (model.__name__, name)


def test_every_variable_the_code_reads_is_documented() -> None:
    """Variables named in the source (RSHUB_...), beside the models' own, are in
    docs/settings.md or docs/directory.md (default secret variable names)."""
    documented = reference.SETTINGS_DOC.read_text() + reference.DIRECTORY_DOC.read_text()
    named = set()
    for package in ("hub", "connectors"):
        for path in (ROOT / package).rglob("*.py"):
            named |= set(re.findall(r"\"(RSHUB_[A-Z0-9_]*[A-Z0-9])\"", path.read_text()))
    missing = sorted(name for name in named if name not in documented)
    assert not missing, missing
