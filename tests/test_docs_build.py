"""The documentation site builds strictly: a broken link or anchor, or a page left out of
the nav, fails the build (``mkdocs.yml``: ``strict: true`` and ``validation:``).

The README and CONTRIBUTING.md are read on GitHub, not in the site: their relative links
are checked here against the files and the built pages' heading ids.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    for module in ("mkdocs", "material"):
        assert importlib.util.find_spec(module), (
            f"{module} is missing: pip install -e '.[test]' (mkdocs-material builds the docs)"
        )
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from the repository's docs, strictly."""
    out = tmp_path_factory.mktemp("site")
    result = _build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_docs_build_strictly(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    assert "index.html" in pages and "napari/index.html" in pages
    assert not list(site.rglob("*.py")), "scripts in docs/ must not be published"


def test_broken_links_anchors_and_pages_left_out_fail_the_build(tmp_path):
    """Each planted mistake must be reported: each one alone fails a strict build."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    index = tmp_path / "docs" / "index.md"
    index.write_text(
        index.read_text()
        + "\n\nSee [a page that is not there](no-such-page.md),"
        + " [a heading that is not there](napari.md#no-such-heading)"
        + " and [a heading of this page that is not there](#no-such-anchor).\n"
    )
    (tmp_path / "docs" / "forgotten.md").write_text("# Forgotten\n\nNot in the nav.\n")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "'no-such-page.md', but the target is not found" in log
    assert "does not contain an anchor '#no-such-heading'" in log
    assert "'#no-such-anchor', but there is no such anchor on this page" in log
    assert "forgotten.md" in log


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", ["README.md", "CONTRIBUTING.md"])
def test_repository_documents_link_to_existing_pages_and_headings(site, document):
    text = (ROOT / document).read_text()
    local = [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert local, f"{document} links to no page"
    for target in local:
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), f"{document}: {target} does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), target
            page = site / path.removeprefix("docs/").removesuffix(".md") / "index.html"
            if page.parent == site / "index":
                page = site / "index.html"
            assert f'id="{anchor}"' in page.read_text(), f"{document}: no heading #{anchor}"
