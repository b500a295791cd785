"""ropelib.course: the site-build variants and the repository URL in one place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ropelib import course

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def book_copy(tmp_path):
    """A copy of the repository's book files, to run the tools on without touching the real ones."""
    for name in ["_config.yml", "_toc.yml"]:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    return tmp_path


def test_offline_and_student_variants(book_copy, monkeypatch):
    mathjax = book_copy / "mathjax-es5"
    mathjax.mkdir()
    (mathjax / "tex-mml-chtml.js").write_text("// stand-in for MathJax")
    calls = []
    monkeypatch.setattr(course.subprocess, "call", lambda command: calls.append(command) or 0)
    assert course.build(book_copy, offline=True, student=True, mathjax_dir=mathjax, extra=["-W"]) == 0
    command = calls[0]
    assert command[1:3] == ["build", str(book_copy)] and command[-1] == "-W"
    variant = yaml.safe_load(Path(command[command.index("--config") + 1]).read_text())
    config = variant["sphinx"]["config"]
    assert config["mathjax_path"] == "mathjax/tex-mml-chtml.js"
    assert (Path(config["html_static_path"][0]) / "mathjax" / "tex-mml-chtml.js").exists()
    assert config["hide_solutions"] is True
    assert variant["repository"] == yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]


def test_offline_build_without_mathjax_says_how_to_get_it(book_copy):
    with pytest.raises(SystemExit, match="npm install mathjax@3"):
        course.build(book_copy, offline=True, mathjax_dir=book_copy / "nowhere")


def test_changing_the_repository_url_in_one_place(book_copy):
    config = yaml.safe_load((book_copy / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/someone/fork"
    (book_copy / "_config.yml").write_text(yaml.safe_dump(config))
    assert course.check(book_copy)  # the notebooks still point at the old URL
    assert len(course.sync(book_copy)) == len(course.notebooks(book_copy))
    assert course.check(book_copy) == []
    text = (book_copy / "notebooks" / "01_attention_and_position.ipynb").read_text()
    assert "github.com/someone/fork" in text and "colab.research.google.com/github/someone/fork/blob/main" in text
    assert course.sync(book_copy) == []  # idempotent
