"""ropelib.course: the site-build variants and the repository URL in one place."""

from __future__ import annotations

import json
import os
import re
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
    assert synced.stdout.splitlines() == [f"updated {Path(folder) / 'one.ipynb'}" for folder in
                                          ["notebooks", "editions/jupyter", "editions/student"]]
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


# --- Publishing: the PDF variant, the Colab button, the workflows ------------------------------

def test_pdf_variant(book_copy, monkeypatch):
    monkeypatch.setattr(course, "_check_pdf_tools", lambda: None)
    calls = []
    monkeypatch.setattr(course.subprocess, "call", lambda command: calls.append(command) or 0)
    assert course.build(book_copy, pdf=True, extra=["-n"]) == 0
    command = calls[0]
    assert command[command.index("--builder") + 1] == "pdflatex" and "-n" in command
    variant = yaml.safe_load(Path(command[command.index("--config") + 1]).read_text())
    assert variant["latex"]["latex_engine"] == "xelatex" and variant["latex"]["use_jupyterbook_latex"] is False
    assert "sphinxcontrib.rsvgconverter" in variant["sphinx"]["extra_extensions"]
    # the MathJax macros, for LaTeX
    assert "\\newcommand{\\RR}{\\mathbb{R}}" in variant["sphinx"]["config"]["latex_elements"]["preamble"]


def test_pdf_without_tex_says_what_to_install(book_copy, monkeypatch):
    monkeypatch.setattr(course.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit, match="apt-get install texlive-xetex"):
        course.build(book_copy, pdf=True)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("xelatex", "latexmk", "rsvg-convert")),
                    reason="Debian's TeX is not installed (see the README, Publishing)")
def test_pdf_of_a_tiny_book(tmp_path):
    pytest.importorskip("sphinxcontrib.rsvgconverter")
    _tiny_book(tmp_path)
    assert course.build(tmp_path, pdf=True, extra=["-n", "--keep-going"]) == 0
    assert course.pdf_path(tmp_path).read_bytes().startswith(b"%PDF")


def test_offline_site_and_colab_button_open_the_editions(tmp_path):
    """A real build of a tiny book: MathJax comes from the site, and the Colab launch button of a
    chapter opens its Jupyter edition (the student site: its student edition)."""
    _tiny_book_with_repository(tmp_path / "book")
    book = tmp_path / "book"
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["launch_buttons"] = {"colab_url": "https://colab.research.google.com"}
    config["sphinx"]["extra_extensions"].append("ropelib.course")
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    (book / "intro.md").write_text("# Tiny\n\nA book with one chapter and $x^2$.\n")
    mathjax = tmp_path / "es5"
    mathjax.mkdir()
    (mathjax / "tex-mml-chtml.js").write_text("// stand-in for MathJax")
    assert course.build(book, offline=True, mathjax_dir=mathjax, extra=["-W", "-n", "--keep-going"]) == 0
    site = book / "_build" / "html"
    page = (site / "notebooks" / "one.html").read_text()
    assert "https://colab.research.google.com/github/someone/tiny/blob/main/editions/jupyter/one.ipynb" in page
    assert "blob/main/notebooks/one.ipynb" not in page.replace("github.com/someone/tiny/blob", "")
    intro = (site / "intro.html").read_text()
    assert re.search(r'<script [^>]*src="_static/mathjax/tex-mml-chtml\.js', intro)
    assert "cdn.jsdelivr.net" not in intro and (site / "_static" / "mathjax" / "tex-mml-chtml.js").exists()
    assert course.build(book, student=True, extra=["-W", "-n", "--keep-going"]) == 0
    page = (course.student_site(book) / "notebooks" / "one.html").read_text()
    assert "colab.research.google.com/github/someone/tiny/blob/main/editions/student/one.ipynb" in page


WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name):
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on:` as True
    return workflow


def _runs(workflow):
    return "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])


def test_ci_workflow_runs_ci_run_on_pull_requests():
    workflow = _workflow("ci.yml")
    assert "pull_request" in workflow["on"] and workflow["on"]["push"]["branches"] == ["main"]
    (job,) = workflow["jobs"].values()
    assert job["timeout-minutes"] == 90 and job["runs-on"].startswith("ubuntu")
    assert "bash .ci/run" in _runs(workflow) and (ROOT / ".ci" / "run").exists()
    assert re.search(r"apt-get install .*\bchromium\b", _runs(workflow))


def test_pages_workflow_builds_offline_deploys_and_archives():
    workflow = _workflow("pages.yml")
    assert workflow["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    runs = _runs(workflow)
    assert "npm install --no-save --no-package-lock mathjax@3" in runs  # where build --offline looks
    uses = [step.get("uses", "").split("@")[0] for job in workflow["jobs"].values() for step in job["steps"]]
    for action in ["actions/upload-pages-artifact", "actions/deploy-pages", "actions/upload-artifact"]:
        assert action in uses
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert "refs/tags/v" in workflow["jobs"]["release"]["if"]
    # the archive's and the PDF's names are those the README's links point at
    links = course.readme_links(ROOT)
    name = course.repository(ROOT)[0].rsplit("/", 1)[1]
    assert f"releases/latest/download/{name}-site.zip" in links and f"{name}-book.pdf" in links
    assert "${{ github.event.repository.name }}-site" in (WORKFLOWS / "pages.yml").read_text()
    assert "${{ github.event.repository.name }}-book.pdf" in (WORKFLOWS / "pages.yml").read_text()
    # the TeX packages are those that build --pdf asks for
    assert " ".join(course.PDF_DEBIAN.split()) in " ".join(runs.replace("\\\n", " ").split())


@pytest.mark.parametrize("name", ["ci.yml", "pages.yml"])
def test_workflows_name_only_commands_that_exist(name):
    """Every `python -m ropelib.course COMMAND --option` of a workflow is one the CLI accepts."""
    runs = _runs(_workflow(name))
    for command in re.findall(r"python -m ropelib\.course ([^\n]+)", runs):
        words = command.split()
        help_text = subprocess.run([sys.executable, "-m", "ropelib.course", words[0], "--help"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
        assert help_text.returncode == 0, command
        for option in [w for w in words[1:] if w.startswith("--") and w != "--keep-going"]:
            assert option in help_text.stdout, f"{command}: {option}"
