"""The documents' links to files in the repository (plots, plans, results) point at files that exist:
`t2ue report` names its plots after the tables, so a new table can rename a plot the report links to."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "eval/REPORT.md", "surrogates/README.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", path.read_text())
             if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]
    assert links, f"{doc} links to no file"
    missing = [link for link in links if not (path.parent / link.split("#")[0]).exists()]
    assert not missing, f"{doc} links to files that are not there: {missing}"
