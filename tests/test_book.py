"""The site builds with warnings as errors and has what a reader needs (runs every notebook)."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every chapter's figures carry numbered captions and alt text (cell metadata, see
# tests/test_notebooks.py).
CAPTIONED = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
FIGURE = re.compile(r"<figure\b.*?</figure>", re.S)
ALT = re.compile(r'<img\b[^>]*\balt="([^"]*)"')


def check_site(html: Path, smoke: bool) -> None:
    """What a reader needs, checked on a built site (``_build/html`` of any build)."""
    chapter = (html / "notebooks" / "03_axial_rope.html").read_text()
    assert "colab.research.google.com/github/" in chapter  # the launch button
    assert "solution" in chapter and "dropdown" in chapter  # exercises with hidden solutions
    theory = (html / "book" / "theory.html").read_text()
    assert "prf:theorem" in theory or "theorem" in theory
    # the setup cell's printout (versions, device) stays out of the pages
    for name in CAPTIONED:
        assert "device: cpu" not in (html / "notebooks" / f"{name}.html").read_text(), name
    # every figure of the captioned chapters is numbered, captioned and described
    for name in CAPTIONED:
        page = (html / "notebooks" / f"{name}.html").read_text()
        figures = FIGURE.findall(page)
        assert figures, name
        outputs = re.findall(r'<img\b[^>]*src="\.\./_images/', page)  # the cells' images
        assert len(outputs) == len(figures), f"{name}: an image outside a figure"
        for figure in figures:
            assert re.search(r'class="caption-number">Fig\. \d+\.\d+', figure), figure[:300]
            alt = html_lib.unescape(ALT.search(figure).group(1))
            assert len(alt) > 40 and not re.search(r"[0-9a-f]{32}", alt), f"{name}: alt {alt!r}"
    intro = (html / "book" / "intro.html").read_text()
    graph = next(f for f in FIGURE.findall(intro) if "chapter-dependencies.svg" in f)
    assert 'class="caption-number"' in graph and "flow chart" in ALT.search(graph).group(1)
    # the execution statistics say in which mode the notebooks ran
    execution = (html / "book" / "execution.html").read_text()
    assert ("every notebook ran tiny" in execution) == smoke
    assert ("every notebook ran at the sizes a reader gets" in execution) == (not smoke)
    # bibliography labels are the author-year form of the citations in the text
    bibliography = (html / "book" / "bibliography.html").read_text()
    assert "Su et al., 2024" in bibliography and "van de Geijn et al., 2025" in bibliography
    assert "van de Geijn" in (html / "notebooks" / "04_mixed_rope.html").read_text()
    # tables are tables, not raw markdown pipes (chapter 8's results once shipped that way)
    lab = (html / "notebooks" / "08_equivariance_lab.html").read_text()
    assert lab.count("<table") >= 2
    assert not re.search(r"<p>[^<]*\|\s*-{3}", lab), "a markdown table printed as text"


@pytest.mark.book
def test_book_builds_without_warnings(book_build):
    """The build is conftest's ``book_build`` (once per run, shared with tests/test_browser.py)."""
    assert book_build.returncode == 0, book_build.log[-6000:]
    check_site(book_build.html, book_build.smoke)
