"""Links between the documentation files resolve: the file (or folder) exists and, for a
`#anchor`, the target markdown file has a heading with that GitHub anchor."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import REPO
from tests.docs.markdown import heading_anchors, links, markdown_files

FILES = markdown_files()


def broken_links(path: Path) -> list[str]:
    broken = []
    for line, target in links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(REPO)}:{line}: {target}"
        if not destination.exists():
            broken.append(f"{where} (no such file)")
        elif REPO not in destination.parents and destination != REPO:
            broken.append(f"{where} (outside the repository)")
        elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
            broken.append(f"{where} (no heading with anchor #{anchor})")
    return broken


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """No orphan page: each docs/ page is linked from README.md or from a page it links to."""
    seen, queue = set(), [REPO / "README.md"]
    while queue:
        page = queue.pop()
        if page in seen or page.suffix != ".md" or not page.is_file():
            continue
        seen.add(page)
        for _, target in links(page):
            file_part = target.partition("#")[0]
            if file_part:
                queue.append((page.parent / unquote(file_part)).resolve())
    orphans = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")
                     if p.resolve() not in seen)
    assert orphans == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = REPO / "docs" / "README.md"
    anchors = heading_anchors(page)
    assert {"how-to", "reference", "results", "status"} <= anchors
    assert "on-the-gpu-the-fast-recipe-against-the-bare-yardstick-issue-17" in \
        heading_anchors(REPO / "docs" / "results" / "gpu.md")
    fake = REPO / "docs" / "_link_check_probe.md"
    try:
        fake.write_text("[a](README.md#no-such-heading) [b](nowhere.md) [c](README.md#status)\n")
        assert len(broken_links(fake)) == 2
    finally:
        fake.unlink()
