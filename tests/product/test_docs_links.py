"""The documents: every link to a file in the repository points at one that exists (`t2ue report` names its
plots after the tables, so a new table can rename a plot the report links to), and the README and the
report stay short enough to be read."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "eval/REPORT.md", "surrogates/README.md", "t2ue/assets/default/README.md",
        "t2ue/assets/robust/README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", path.read_text())
             if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]
    assert links, f"{doc} links to no file"
    missing = [link for link in links if not (path.parent / link.split("#")[0]).exists()]
    assert not missing, f"{doc} links to files that are not there: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert all(f"docs/{page.name}" in readme for page in (ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize(("doc", "limit"), [("README.md", 15_000), ("eval/REPORT.md", 40_000)])
def test_the_readme_and_the_report_stay_short(doc, limit):
    assert len((ROOT / doc).read_bytes()) <= limit
