"""The docs a newcomer reads: the README stays one page, every relative link and
anchor leads somewhere, and no path from a developer's machine is shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..helpers import REPO

pytestmark = pytest.mark.unit

README_MAX_LINES = 300
DOCS = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$")
# Home directories, a version manager's interpreters, this project's work tree.
DEV_PATH = re.compile(r"/root/|/home/\w|\.pyenv|/work/")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def anchors(path: Path) -> set[str]:
    """The heading anchors a Markdown renderer makes (GitHub's rule: lower case,
    punctuation dropped, spaces to hyphens, -1, -2, ... for repeats)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def test_the_slug_rule() -> None:
    doc = REPO / "bench" / "README.md"
    assert "capacity-per-node-issue-21" in anchors(doc)
    assert "many-sandboxes-as-containers-both-engines-at-n--10" in anchors(doc)
    assert "browser_stack_start-under-k--n-contention" in anchors(doc)


def test_the_readme_is_one_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; move detail into docs/"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_somewhere(doc: Path) -> None:
    broken = []
    for line in prose(doc.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            name, _, anchor = target.partition("#")
            path = (doc.parent / name).resolve() if name else doc
            if not path.exists():
                broken.append(f"{target}: no {name}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: no heading #{anchor} in {name or doc.name}")
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_path_from_a_developers_machine(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = [line for line in text.splitlines() if DEV_PATH.search(line)]
    assert found == []
