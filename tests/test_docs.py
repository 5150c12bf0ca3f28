"""README.md and docs/: links resolve, the README stays a front page, no doc points where users cannot go."""

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MAX_LINES = 150
# Phrases that send a reader somewhere only the project's own workspace had, or that speak of a
# machine without saying which one (write "the development machine, a 2-core x86-64 CPU").
FORBIDDEN = ("shared/METHOD.md", "project workspace", "this machine", "this CPU")

doc_ids = pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``doc``: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)  # a shell comment is no heading
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(doc: Path) -> list[str]:
    """The relative link targets in ``doc`` that name no existing file, or a heading that a
    Markdown file does not have."""
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        name, _, anchor = target.partition("#")
        path = (doc.parent / name).resolve()
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    return broken


def forbidden_phrases(text: str) -> list[str]:
    """The phrases of FORBIDDEN that ``text`` contains, case-insensitively."""
    return [phrase for phrase in FORBIDDEN if phrase.lower() in text.lower()]


def test_the_docs_are_found():
    names = {p.name for p in DOCS}
    assert {"README.md", "method.md", "results.md"} <= names


@doc_ids
def test_relative_links_resolve(doc):
    broken = broken_links(doc)
    assert not broken, f"{doc.name}: links to a missing file or heading: {broken}"


def test_broken_link_is_caught(tmp_path):
    doc = tmp_path / "doc.md"
    (tmp_path / "there.md").write_text(
        "# Title\n\n## The demo (2026-11-25, commit `3d8a942`)\n\n```bash\n# results\n```\n"
    )
    doc.write_text(
        "[ok](there.md) [web](https://example.org) [anchor](#x) [gone](missing.md#y) "
        "[heading](there.md#the-demo-2026-11-25-commit-3d8a942) [no heading](there.md#results)"
    )
    assert broken_links(doc) == ["missing.md#y", "there.md#results"]


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move details into docs/"
    )


@doc_ids
def test_no_pointer_a_reader_cannot_follow(doc):
    found = forbidden_phrases(doc.read_text())
    assert not found, f"{doc.name} mentions {found}"


def test_forbidden_phrases_are_caught():
    assert forbidden_phrases("see METHOD.md in the Project Workspace") == ["project workspace"]
    assert forbidden_phrases("read ../shared/METHOD.md") == ["shared/METHOD.md"]
    assert forbidden_phrases("measured on this machine") == ["this machine"]
    assert forbidden_phrases("the method lives in docs/method.md") == []


def test_readme_does_not_point_into_the_shared_folder():
    assert "../shared" not in README.read_text(), "README.md: users have no ../shared; link docs/ instead"
