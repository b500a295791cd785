"""ropelib.course: the site-build variants and the repository URL in one place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    # the student site is built from a copy of the sources whose notebooks have no solutions
    source = book_copy / "_build" / "student" / "source"
    assert command[1:3] == ["build", str(source)] and "-W" in command
    assert command[command.index("--path-output") + 1] == str(book_copy / "_build" / "student")
    assert "{solution" not in (source / "notebooks" / "03_axial_rope.ipynb").read_text()
    assert "{solution" in (book_copy / "notebooks" / "03_axial_rope.ipynb").read_text()
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


def _tiny_book(root: Path) -> None:
    """A one-chapter book with an exercise and a gated solution, nothing to execute."""
    (root / "_config.yml").write_text(yaml.safe_dump({
        "title": "Tiny", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "sphinx": {"extra_extensions": ["sphinx_exercise"]},
    }))
    (root / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "intro",
                                                   "chapters": [{"file": "notebooks/one"}]}))
    (root / "intro.md").write_text("# Tiny\n\nA book with one chapter.\n")

    def markdown(text):
        return {"cell_type": "markdown", "metadata": {}, "source": text}

    cells = [
        markdown("# One\n\nThe chapter."),
        markdown("```{exercise}\n:label: tiny-ex\n\nAdd one and one.\n```"),
        markdown("```{solution-start} tiny-ex\n:class: dropdown\n```\n\nSECRET-PROSE"),
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": "print('SECRET-CODE', 1 + 1)"},
        markdown("```{solution-end}\n```"),
        markdown("After the exercise."),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    (root / "notebooks").mkdir()
    (root / "notebooks" / "one.ipynb").write_text(json.dumps(nb, indent=1))


def test_student_build_leaves_gated_solutions_out(tmp_path):
    """A real build, of a tiny book without execution (a few seconds; sphinx-exercise's
    ``hide_solutions`` alone crashes on the gated form)."""
    _tiny_book(tmp_path)
    assert course.build(tmp_path, student=True, extra=["-W", "-n", "--keep-going"]) == 0
    html = (course.student_site(tmp_path) / "notebooks" / "one.html").read_text()
    assert "Add one and one" in html and "After the exercise" in html
    assert "SECRET" not in html
    assert (tmp_path / "notebooks" / "one.ipynb").read_text().count("SECRET") == 2  # sources untouched


def _run_course(*args, cwd):
    """``python -m ropelib.course ARGS`` in ``cwd``, with ropelib importable from this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "ropelib.course", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _tiny_book_with_repository(root: Path) -> None:
    root.mkdir(parents=True)
    _tiny_book(root)
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["repository"] = {"url": "https://github.com/someone/tiny", "branch": "main"}
    (root / "_config.yml").write_text(yaml.safe_dump(config))


def test_cli_finds_the_book_from_the_current_folder_or_root(tmp_path):
    """The book around the current folder (from a subfolder too), or --root; never the checkout
    ropelib is imported from, which is a book too."""
    book = tmp_path / "book"
    _tiny_book_with_repository(book)
    synced = _run_course("sync", cwd=book / "notebooks")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.split() == ["updated", str(Path("notebooks") / "one.ipynb")]
    assert "github.com/someone/tiny" in (book / "notebooks" / "one.ipynb").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["--root", str(book), "check"], ["check", "--root", "../book"]):
        checked = _run_course(*args, cwd=elsewhere)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.strip() == "all notebooks are in sync with _config.yml"


def test_cli_without_a_book_is_one_line_and_exit_code_2(tmp_path):
    missing = _run_course("check", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == (f"python -m ropelib.course: error: no course book (a folder with _config.yml and "
                              f"_toc.yml) in {tmp_path.resolve()} or above it: run this from the course repository "
                              "or pass --root PATH\n")
    wrong = _run_course("sync", "--root", str(tmp_path), cwd=ROOT)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr == (f"python -m ropelib.course: error: --root {tmp_path} is not a course book (it has no "
                            "_config.yml and _toc.yml): pass the folder of the course repository\n")


def test_library_functions_default_to_the_book_around_the_current_folder(book_copy, monkeypatch, tmp_path):
    monkeypatch.chdir(book_copy / "notebooks")
    assert course.find_root() == book_copy.resolve()
    assert course.notebooks() == course.notebooks(book_copy.resolve())
    assert course.find_root(book_copy / "notebooks") == book_copy.resolve()
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(course.BookNotFound, match="run this from the course repository or pass --root PATH"):
        course.find_root()
