"""ropelib.editions: the Jupyter/Colab and student editions of the chapters (editions/)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ropelib import course, editions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = course.notebooks(ROOT)
# What must never reach a notebook outside the site: MyST roles, directive fences, options.
MYST = re.compile(r"\{[a-z][\w:-]*\}`|^\s*(```|:::)\s*\{|^:label:|^:class:|\$\$\s*\([\w-]+\)", re.M)


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _cells(path):
    return json.loads(Path(path).read_text())["cells"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Both editions of the real chapters, generated afresh (a fraction of a second)."""
    out = tmp_path_factory.mktemp("editions")
    editions.generate(out, ROOT)
    return out


def _solutions(path):
    """From a source notebook: ``{label: [(cell type, text) of each part of its solution]}``, and
    the cells outside the solutions."""
    solutions, outside, label = {}, [], None
    for cell in _cells(path):
        text = _text(cell)
        if "{solution-start}" in text:
            label = re.search(r"\{solution-start\}\s*(\S+)", text).group(1)
            solutions[label] = [("markdown", text.split("```", 2)[-1].strip())]  # the prose after the fence
        elif "{solution-end}" in text:
            label = None
        elif label is not None:
            solutions[label].append((cell["cell_type"], text))
        else:
            outside.append(cell)
    return solutions, outside


def test_committed_editions_are_in_sync_with_the_chapters():
    assert editions.stale(ROOT) == [], "run `python -m ropelib.course editions`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_has_no_solution_anywhere(generated, path):
    student = (generated / "student" / path.name).read_text()
    readable = "\n".join(_text(c) for c in json.loads(student)["cells"])
    for marker in ["{solution", "solution-start", "solution-end", "<details", "Solution to Exercise"]:
        assert marker not in student, marker
    solutions, outside = _solutions(path)
    outside = "\n".join(_text(c) for c in outside)
    assert solutions
    for label, parts in solutions.items():
        for _, part in parts:
            # every line of a solution that the chapter does not also say elsewhere
            for line in part.splitlines():
                line = line.strip()
                if len(line) >= 20 and line not in outside:
                    assert line not in readable, f"{label}: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_has_an_answer_cell_under_every_exercise(generated, path):
    cells = _cells(generated / "student" / path.name)
    labels = re.findall(r":label:\s*(\S+)", "\n".join(_text(c) for c in _cells(path) if "{exercise}" in _text(c)))
    assert len(labels) >= 3
    for label in labels:
        at = next(i for i, c in enumerate(cells) if f'<a id="{label}"></a>**Exercise' in _text(c))
        answer, code = cells[at + 1], cells[at + 2]
        assert answer["cell_type"] == "markdown" and _text(answer).startswith("**Your answer to Exercise")
        assert code["cell_type"] == "code" and label in _text(code) and code["outputs"] == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_jupyter_edition_folds_each_solution_under_its_exercise(generated, path):
    cells = _cells(generated / "jupyter" / path.name)
    solutions, _ = _solutions(path)
    for label, parts in solutions.items():
        at = next(i for i, c in enumerate(cells) if f'<a id="{label}"></a>**Exercise' in _text(c))
        folded = _text(cells[at + 1])
        assert cells[at + 1]["cell_type"] == "markdown"
        assert folded.startswith("<details>\n<summary>") and folded.endswith("</details>")
        # the code of the solution is there, verbatim, as a fenced Python block, and so is its
        # prose where it has no MyST to convert
        for kind, part in parts:
            if kind == "code":
                assert f"```python\n{part.rstrip()}\n```" in folded, label
            elif not re.search(r"\{\w[\w:-]*\}`|```", part):
                assert part.strip() in folded, label


@pytest.mark.parametrize("edition", editions.EDITIONS)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_editions_have_no_myst_markup_and_badges_open_themselves(generated, edition, path):
    cells = _cells(generated / edition / path.name)
    for cell in cells:
        if cell["cell_type"] == "markdown":
            assert not MYST.search(_text(cell)), _text(cell)[:300]
    badge = _text(cells[0])
    assert course.colab_url(f"editions/{edition}/{path.name}", ROOT) in badge
    assert "colab-badge.svg" in badge
    # the chapter's code is all there, in order, solutions aside
    source_code = [_text(c) for c in _solutions(path)[1] if c["cell_type"] == "code"]
    edition_code = [_text(c) for c in cells if c["cell_type"] == "code" and not c["id"].endswith("-answer-code")]
    assert edition_code == source_code
    assert len({c["id"] for c in cells}) == len(cells)


def test_the_chapters_badges_open_the_jupyter_edition():
    badge, _ = course.expected_cells(NOTEBOOKS[0], ROOT)
    assert f"/blob/main/editions/jupyter/{NOTEBOOKS[0].name})" in badge["source"]


# --- The conversion, on a made-up chapter ------------------------------------------------------

BIB = """@article{doe2020, title = {A Title}, author = {Doe, Jane and Roe, Rick and Poe, Edgar},
  journal = {J}, year = {2020}}
@article{fox2021, title = {Another}, author = {Fox, Ann}, journal = {K}, year = {2021}}
"""


def _markdown(text, cell_id):
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


def _code(text, cell_id, metadata=None):
    return {"cell_type": "code", "id": cell_id, "metadata": metadata or {}, "execution_count": None,
            "outputs": [], "source": text}


def _book(root: Path, cells: list[dict]) -> Path:
    (root / "_config.yml").write_text(yaml.safe_dump({
        "title": "Tiny", "repository": {"url": "https://github.com/someone/tiny", "branch": "main"},
        "bibtex_bibfiles": ["refs.bib"]}))
    (root / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "notebooks/01_one"}))
    (root / "refs.bib").write_text(BIB)
    (root / "notebooks").mkdir()
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}}}
    path = root / "notebooks" / "01_one.ipynb"
    path.write_text(json.dumps(nb))
    course.sync(root)
    return path


CHAPTER = [
    _markdown("# One\n\nAs {cite:t}`doe2020` and {cite:p}`doe2020,fox2021` say, {math}`x^2` grows; "
              "see {ref}`ex-b`, {numref}`Fig. %s <fig-one>` and {eq}`eq-one`.\n\n"
              "$$\nx = 1\n$$ (eq-one)\n\n(sec-two)=\n## Two\n\n% a comment\nBack to {ref}`sec-two`.", "title"),
    _markdown("```{note}\nA note with {cite}`fox2021`.\n```\n\n```python\n{cite}`not-a-role`\n```", "note"),
    _code("plot()", "figure", {"mystnb": {"figure": {"caption": "A *plot* of $x$.", "name": "fig-one"}}}),
    _markdown("```{exercise}\n:label: ex-a\n\nDo A:\n$$\nx =\n  1\n$$\n```", "ex-a"),
    _markdown("```{solution-start} ex-a\n:class: dropdown\n```\n\nSECRET prose of A.", "sol-a"),
    _code("print('SECRET code of A')", "sol-a-code"),
    _markdown("More SECRET prose.", "sol-a-more"),
    _markdown("```{solution-end}\n```", "sol-a-end"),
    _markdown("````{exercise} A title\n:label: ex-b\n\nDo B:\n```python\nb = 1\n```\n````", "ex-b"),
    _markdown("```{solution} ex-b\n:class: dropdown\n\nSECRET one-cell solution of B.\n```", "sol-b"),
    _markdown("After the exercises.", "after"),
]


def test_conversion_of_a_made_up_chapter(tmp_path):
    _book(tmp_path, CHAPTER)
    editions.generate(tmp_path / "out", tmp_path)
    jupyter = _cells(tmp_path / "out" / "jupyter" / "01_one.ipynb")
    student = _cells(tmp_path / "out" / "student" / "01_one.ipynb")
    text = {c["id"]: _text(c) for c in jupyter}

    assert text["colab-badge"].startswith("[![Open in Colab]")
    assert "github/someone/tiny/blob/main/editions/jupyter/01_one.ipynb)" in text["colab-badge"]
    assert "https://someone.github.io/tiny/notebooks/01_one.html" in text["colab-badge"]
    title = text["title"]
    assert "As Doe et al. (2020) and (Doe et al., 2020; Fox, 2021) say, $x^2$ grows" in title
    assert "see [Exercise 1.2](#ex-b), [Fig. 1.1](#fig-one) and [(1.1)](#eq-one)" in title
    assert "$$\nx = 1 \\tag{1.1}\n$$" in title
    assert '<a id="sec-two"></a>\n\n## Two' in title and "Back to [Two](#sec-two)" in title
    assert "a comment" not in title
    assert text["note"].startswith("> **Note**\n>\n> A note with (Fox, 2021).")
    assert "```python\n{cite}`not-a-role`\n```" in text["note"]  # code is left alone
    assert text["figure-caption"] == '<a id="fig-one"></a>**Figure 1.1.** A *plot* of $x$.'
    # display maths on one line, so that the quote's "> " cannot end up inside it
    assert text["ex-a"] == '> <a id="ex-a"></a>**Exercise 1.1** (`ex-a`)\n>\n> Do A:\n> $$x = 1$$'
    assert text["ex-b"].startswith('> <a id="ex-b"></a>**Exercise 1.2** (A title) (`ex-b`)')
    assert "> ```python\n> b = 1\n> ```" in text["ex-b"]
    assert text["ex-a-solution"] == (
        "<details>\n<summary><b>Solution to Exercise 1.1</b> (click to open)</summary>\n\n"
        "SECRET prose of A.\n\n```python\nprint('SECRET code of A')\n```\n\nMore SECRET prose.\n\n</details>")
    assert "SECRET one-cell solution of B." in text["ex-b-solution"]
    assert text["references"].startswith("## References\n\n* **Doe et al., 2020.** Jane Doe, Rick Roe")
    order = [c["id"] for c in jupyter]
    assert order == ["colab-badge", "title", "colab-setup", "note", "figure", "figure-caption", "ex-a",
                     "ex-a-solution", "ex-b", "ex-b-solution", "after", "references"]

    assert [c["id"] for c in student] == [
        "colab-badge", "title", "colab-setup", "note", "figure", "figure-caption", "ex-a", "ex-a-answer",
        "ex-a-answer-code", "ex-b", "ex-b-answer", "ex-b-answer-code", "after", "references"]
    assert "SECRET" not in json.dumps(student)
    assert "editions/student/01_one.ipynb)" in _text(student[0])
    assert _text(student[8]) == "# Exercise 1.1 (ex-a): your code here"


def test_stale_editions_are_reported_and_rewritten(tmp_path):
    path = _book(tmp_path, CHAPTER)
    assert any("01_one.ipynb is missing" in p for p in editions.stale(tmp_path))
    assert len(editions.write(tmp_path)) == 2
    assert editions.stale(tmp_path) == [] and editions.write(tmp_path) == []
    nb = json.loads(path.read_text())
    nb["cells"][-1]["source"] = "Changed."
    path.write_text(json.dumps(nb))
    (tmp_path / "editions" / "student" / "99_gone.ipynb").write_text("{}")
    problems = editions.stale(tmp_path)
    assert "editions/jupyter/01_one.ipynb is out of date" in problems
    assert "editions/student/99_gone.ipynb has no chapter in notebooks/" in problems
    assert problems[-1] == "run `python -m ropelib.course editions` to regenerate them from notebooks/"
    editions.write(tmp_path)
    assert editions.stale(tmp_path) == [] and not (tmp_path / "editions" / "student" / "99_gone.ipynb").exists()


def test_a_fork_rewrites_every_badge_and_link(tmp_path):
    """Change repository.url, run sync: notebooks, README links and both editions follow."""
    for name in ["_config.yml", "_toc.yml", "README.md"]:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(ROOT / "book", tmp_path / "book")
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/someone/fork"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    assert any("README.md" in p for p in course.check(tmp_path))
    assert course.main(["sync", "--root", str(tmp_path)]) == 0
    assert course.check(tmp_path) == [] and editions.stale(tmp_path) == []
    readme = (tmp_path / "README.md").read_text()
    links = readme[readme.index(course.LINKS_START):readme.index(course.LINKS_END)]
    assert "rope-course" not in links
    assert "https://someone.github.io/fork/" in links and "github.com/someone/fork/releases/latest" in links
    for edition in editions.EDITIONS:
        text = (tmp_path / "editions" / edition / NOTEBOOKS[0].name).read_text()
        assert f"colab.research.google.com/github/someone/fork/blob/main/editions/{edition}/" in text
        assert "rope-course/" not in text
    assert course.main(["check", "--root", str(tmp_path)]) == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_references_cell_names_each_entry_by_its_own_first_author(generated, path):
    # "**Heo et al., 2024.** Byeongho Heo, ...": the label's surname is the entry's first author's
    # (a pybtex style given several entries sorts them its own way, which once shifted the labels)
    cells = _cells(generated / "jupyter" / path.name)
    references = [_text(c) for c in cells if _text(c).startswith("## References")]
    items = re.findall(r"^\* \*\*(.+?), \d{4}\w?\.\*\* (.+)$", references[0], re.M) if references else []
    for label, entry in items:
        surname = label.removesuffix(" et al.").split(" and ")[0]
        assert re.match(rf"[^,]*?\b{re.escape(surname)}\b", entry), (label, entry[:80])
