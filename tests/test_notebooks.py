"""Notebook hygiene: what every chapter must have for the site, for Colab and for nbval."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ropelib import course

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = course.notebooks(ROOT)
LABEL = re.compile(r":label:\s*(\S+)")
SOLUTION = re.compile(r"\{solution(?:-start)?\}\s*(\S+)")


def _load(path):
    return json.loads(path.read_text())


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec_is_python3(path):
    assert _load(path)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_errors_and_consistent_execution_counts(path):
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not any(o.get("output_type") == "error" for o in cell["outputs"]), f"cell {i} stores an error"
        if cell["outputs"]:  # nbval fails on unrun cells that keep outputs
            assert cell["execution_count"] is not None, f"cell {i} has outputs but no execution count"


def test_colab_cells_are_in_sync_with_the_repository_url():
    assert course.check(ROOT) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_installs_only_on_colab_and_keeps_torch(path):
    setup = next(c for c in _load(path)["cells"] if c["cell_type"] == "code")
    text = _text(setup)
    assert 'if "google.colab" in sys.modules:' in text
    install = next(line for line in text.splitlines() if "pip install" in line)
    assert "torch" not in install.replace("ropelib", "")  # never reinstalls Colab's PyTorch
    assert install.startswith("    ")  # inside the Colab branch


def test_every_notebook_is_in_the_table_of_contents():
    in_toc = set(course.toc_files(ROOT))
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.stem}" not in in_toc]
    assert not missing, f"not in _toc.yml: {missing}"
    for entry in in_toc:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), f"{entry} in _toc.yml does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_has_goals_exercises_and_solutions(path):
    cells = _load(path)["cells"]
    markdown = [_text(c) for c in cells if c["cell_type"] == "markdown"]
    assert "Learning goals" in markdown[1], "the title cell states the learning goals"
    exercises = [LABEL.search(m).group(1) for m in markdown if "{exercise}" in m]
    solutions = [SOLUTION.search(m).group(1) for m in markdown if "{solution" in m and "{solution-end}" not in m]
    assert len(exercises) >= 3, "at least three exercises"
    assert sorted(exercises) == sorted(solutions), "every exercise has exactly one solution"
    assert len(set(exercises)) == len(exercises)


def test_labels_are_unique_across_the_book():
    labels = []
    for path in NOTEBOOKS:
        labels += [LABEL.search(_text(c)).group(1) for c in _load(path)["cells"]
                   if c["cell_type"] == "markdown" and LABEL.search(_text(c))]
    assert len(labels) == len(set(labels))


def test_student_copies_have_no_solutions(tmp_path):
    written = course.student_copies(tmp_path, ROOT)
    assert len(written) == len(NOTEBOOKS)
    for path in written:
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join(_text(c) for c in cells)
        assert "{solution" not in text
        assert "{exercise}" in text
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
        # the solution cells are gone, not just their markers
        original = json.loads((ROOT / "notebooks" / path.name).read_text())["cells"]
        assert len(cells) < len(original)


MAX_LINE = 88  # what fits the site's code cells and a phone held sideways without scrolling


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_that_print_markdown_tables_render_them_as_tables(path):
    # myst-nb renders a text/markdown output as CommonMark, which has no tables: a cell that
    # displays one needs `mystnb: {markdown_format: gfm}`, or the site shows the raw pipes
    missing = []
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and "Markdown(" in source and "|---" in source:
            if cell["metadata"].get("mystnb", {}).get("markdown_format") != "gfm":
                missing.append(f"cell {i} ({cell.get('id')})")
    assert not missing, f"tables without markdown_format gfm: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_in_88_characters(path):
    long = [f"cell {i} ({cell.get('id')}), {len(line)} characters: {line.strip()[:50]}..."
            for i, cell in enumerate(_load(path)["cells"]) if cell["cell_type"] == "code"
            for line in _text(cell).splitlines() if len(line) > MAX_LINE]
    assert not long, f"code lines over {MAX_LINE} characters:\n" + "\n".join(long)


# Every figure of every chapter has a numbered caption and alt text (cell metadata
# mystnb.figure.caption/name and mystnb.image.alt, read by MyST-NB).
CAPTIONED = NOTEBOOKS
DRAWS = re.compile(r"plt\.show\(\)")


@pytest.mark.parametrize("path", CAPTIONED, ids=lambda p: p.stem)
def test_figures_have_captions_names_and_alt_text(path):
    figures = [c for c in _load(path)["cells"]
               if c["cell_type"] == "code" and DRAWS.search(_text(c))]
    assert figures
    for cell in figures:
        meta = cell["metadata"].get("mystnb", {})
        figure, image = meta.get("figure", {}), meta.get("image", {})
        assert figure.get("caption") and figure.get("name", "").startswith("fig-"), cell["id"]
        assert len(image.get("alt", "")) > 40, f"{cell['id']}: alt text describes the figure"
        # one figure per cell: MyST-NB gives every image output of the cell the same name
        assert _text(cell).count("plt.show()") <= 1, cell["id"]


def test_figure_names_are_unique_across_the_book():
    figures = [c.get("metadata", {}).get("mystnb", {}).get("figure", {})
               for path in NOTEBOOKS for c in _load(path)["cells"]]
    names = [figure["name"] for figure in figures if "name" in figure]
    assert len(names) == len(set(names))
