"""Every relative link in README.md and docs/*.md leads somewhere: a file of the repository,
and, with a #fragment, a heading of that file. Pages move between the README and docs/; a
link left pointing at the old place is what a reader finds first."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) outside code spans; images too. Inline code is removed before matching.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Pages another branch of issue 30 writes (docs/peer.md: `rshub peer`). Missing is tolerated
# only while missing: once the file exists its links and anchors are checked like any other.
WRITTEN_ELSEWHERE: set[Path] = set()  # pages another branch writes, until merged


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


def links(page: Path) -> list[str]:
    found, fenced = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            continue
        found += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return found


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                if file not in WRITTEN_ELSEWHERE:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
                continue
            if fragment and file.suffix == ".md" and fragment not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_stays_a_door() -> None:
    """At most about 150 lines, and it opens with the two set-up commands."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    first_section = text.split("\n## ", 2)[1]
    assert first_section.startswith("Set-up: two commands")
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e . && "
        ".venv/bin/rshub serve --directory examples/consortium.yaml" in first_section
    )
    assert "bash .ci/run" in first_section
