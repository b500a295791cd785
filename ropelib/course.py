"""Maintenance of the course repository: Colab cells and links, editions, student copies, site and PDF builds.

    python -m ropelib.course sync            # write every badge, link and setup cell from _config.yml
    python -m ropelib.course check           # report what sync or editions would change (CI runs this)
    python -m ropelib.course editions        # the Jupyter/Colab and student editions (editions/)
    python -m ropelib.course student OUT     # copies of the notebooks without the exercise solutions
    python -m ropelib.course build --offline # build the site with MathJax served locally (--student: no solutions)
    python -m ropelib.course build --pdf     # the book as one PDF (Debian's TeX)
    python -m ropelib.course time [--smoke]  # execute every notebook from scratch and time it
    python -m ropelib.course figures         # redraw the book's own figures (book/*.svg)

The module is also a Sphinx extension of the book (``sphinx.extra_extensions`` in ``_config.yml``):
author-year labels for the bibliography, and the execution mode of the build as the
substitution ``{{ execution_mode }}`` (see :func:`setup`).

Every command works on the book around the current folder (the nearest folder, going up, that
holds ``_config.yml`` and ``_toc.yml``), or on ``--root PATH``: never on where ropelib itself is
installed, which need not be a checkout of the course.

The repository URL lives in one place, ``repository.url`` in ``_config.yml``: the book's launch
buttons read it, and ``sync`` writes it into each notebook's Colab badge and install cell (a
notebook opened on Colab cannot read the book's configuration), into the links block of the
README and into the editions (:mod:`ropelib.editions`), whose notebooks the badges open.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

BOOK_FILES = ("_config.yml", "_toc.yml")
BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"

BADGE = "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})"
SETUP = '''\
# Setup. On Colab this installs ropelib from the course repository and keeps
# Colab's PyTorch; anywhere else it does nothing (ropelib is already installed
# there, see the README).
import sys

if "google.colab" in sys.modules:
    %pip install --quiet \\
        "{requirement} @ git+{url}@{branch}"

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"torch {{torch.__version__}}, device: {{device}}")'''
# The badges open a notebook of the editions (ropelib.editions), which read well on Colab: the
# chapters' own badges open the Jupyter edition.
EDITIONS_FOLDER = "editions"
DEFAULT_EDITION = "jupyter"
# The README's block of links, between these two lines, is written by `sync`.
LINKS_START = "<!-- course-links: written by `python -m ropelib.course sync` from _config.yml; do not edit -->"
LINKS_END = "<!-- /course-links -->"
# The setup cell's code is folded away and its output (versions, device) left out of the
# site's pages ("remove-output"); on Colab and Jupyter both stay visible.
SETUP_TAGS = [SETUP_TAG, "hide-input", "remove-output"]


class BookNotFound(LookupError):
    """No course book where one was looked for; the message says what to do."""


def is_book(folder: Path) -> bool:
    return all((Path(folder) / name).is_file() for name in BOOK_FILES)


def find_root(start: Path | None = None) -> Path:
    """The course book's folder: the nearest folder, from ``start`` (default: the current folder)
    up, that holds ``_config.yml`` and ``_toc.yml``."""
    start = (Path.cwd() if start is None else Path(start).expanduser()).resolve()
    for folder in [start, *start.parents]:
        if is_book(folder):
            return folder
    raise BookNotFound(f"no course book (a folder with {' and '.join(BOOK_FILES)}) in {start} or above it: "
                       "run this from the course repository or pass --root PATH")


def _root(root: Path | None) -> Path:
    """``root`` as given, or the book around the current folder."""
    return find_root() if root is None else Path(root)


def _yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError as error:  # pragma: no cover - PyYAML comes with jupyter-book
        raise SystemExit("ropelib.course needs PyYAML: pip install -r requirements.txt") from error
    return yaml.safe_load(path.read_text())


def repository(root: Path | None = None) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    root = _root(root)
    repo = _yaml(root / "_config.yml").get("repository", {})
    if "url" not in repo:
        raise SystemExit(f"{root / '_config.yml'} has no repository.url; set it to the course repository")
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def toc_files(root: Path | None = None) -> list[str]:
    """Every ``file:`` of ``_toc.yml`` (and the root), in reading order, without extension."""
    root = _root(root)
    toc = _yaml(root / "_toc.yml")
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def notebooks(root: Path | None = None) -> list[Path]:
    root = _root(root)
    return sorted((root / "notebooks").glob("*.ipynb"))


def _uses_training_extras(nb: dict) -> bool:
    return any("ropelib.train" in "".join(c["source"]) or "ropelib.data" in "".join(c["source"])
               or "ropelib.vit" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def colab_url(path_in_repository: str, root: Path | None = None, repo: tuple[str, str] | None = None) -> str:
    """The Colab address of a notebook of the repository (``editions/jupyter/01_x.ipynb``);
    ``repo``: ``(url, branch)`` if already read with :func:`repository`."""
    url, branch = repo or repository(root)
    github = url.replace("https://github.com/", "")
    return f"https://colab.research.google.com/github/{github}/blob/{branch}/{path_in_repository}"


def site_url(root: Path | None = None) -> str:
    """Where the website is published, ending in ``/``: ``html.baseurl`` of ``_config.yml`` if set,
    else the GitHub Pages address of the repository (``https://OWNER.github.io/REPO/``)."""
    root = _root(root)
    base = (_yaml(root / "_config.yml").get("html") or {}).get("baseurl")
    if base:
        return base.rstrip("/") + "/"
    owner, _, name = repository(root)[0].replace("https://github.com/", "").partition("/")
    if name.lower() == f"{owner.lower()}.github.io":
        return f"https://{name.lower()}/"
    return f"https://{owner.lower()}.github.io/{name}/"


def expected_cells(path: Path, root: Path | None = None) -> list[dict]:
    """The badge cell and the setup cell that ``path`` should start with; the badge opens the
    chapter's Jupyter edition (``editions/jupyter/``) on Colab."""
    root = _root(root)
    url, branch = repository(root)
    colab = colab_url(f"{EDITIONS_FOLDER}/{DEFAULT_EDITION}/{path.name}", root)
    nb = json.loads(path.read_text())
    requirement = "ropelib[train]" if _uses_training_extras(nb) else "ropelib"
    badge = {"cell_type": "markdown", "id": "colab-badge", "metadata": {"tags": [BADGE_TAG, "remove-cell"]},
             "source": BADGE.format(colab=colab)}
    setup = {"cell_type": "code", "execution_count": None, "id": "colab-setup",
             "metadata": {"tags": list(SETUP_TAGS)}, "outputs": [],
             "source": SETUP.format(requirement=requirement, url=url, branch=branch)}
    return [badge, setup]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _has_tag(cell: dict, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def sync(root: Path | None = None) -> list[Path]:
    """Put the badge first and the setup cell right after the title cell (so it is the first
    code cell) in every notebook; returns the notebooks that changed."""
    root = _root(root)
    changed = []
    for path in notebooks(root):
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if not (_has_tag(c, BADGE_TAG) or _has_tag(c, SETUP_TAG))]
        badge, setup = expected_cells(path, root)
        # keep whatever the setup cell printed last time
        old_setup = next((c for c in nb["cells"] if _has_tag(c, SETUP_TAG)), None)
        if (old_setup is not None and _source(old_setup) == setup["source"]
                and old_setup.get("metadata", {}).get("tags") == setup["metadata"]["tags"]):
            setup = old_setup
        title = 1 if cells and cells[0]["cell_type"] == "markdown" else 0
        new_cells = [badge] + cells[:title] + [setup] + cells[title:]
        if new_cells != nb["cells"]:
            nb["cells"] = new_cells
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def readme_links(root: Path | None = None) -> str:
    """The README's block of links (badges, website, archive, Colab), from ``_config.yml``."""
    root = _root(root)
    url, _ = repository(root)
    name = url.rsplit("/", 1)[-1]
    site = site_url(root)
    first = notebooks(root)[0].name if notebooks(root) else "01.ipynb"
    jupyter, student = (colab_url(f"{EDITIONS_FOLDER}/{e}/{first}", root) for e in ("jupyter", "student"))
    return "\n".join([
        LINKS_START,
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({jupyter})",
        f"[![Tests]({url}/actions/workflows/ci.yml/badge.svg)]({url}/actions/workflows/ci.yml)",
        f"[![Website]({url}/actions/workflows/pages.yml/badge.svg)]({site})",
        "",
        f"* **Website:** <{site}>",
        f"* **The latest release, to download**: the website as one archive, which works offline "
        f"([{name}-site.zip]({url}/releases/latest/download/{name}-site.zip)), and the book as a PDF "
        f"([{name}-book.pdf]({url}/releases/latest/download/{name}-book.pdf))",
        f"* **Notebooks on Colab**: [Jupyter edition]({jupyter}) (solutions folded), "
        f"[student edition]({student}) (no solutions)",
        f"* **Source:** <{url}>",
        LINKS_END,
    ])


def _readme_block(text: str) -> tuple[int, int] | None:
    start, end = text.find(LINKS_START), text.find(LINKS_END)
    return (start, end + len(LINKS_END)) if start >= 0 and end > start else None


def sync_readme(root: Path | None = None) -> bool:
    """Rewrite the links block of ``README.md`` (if it has one); True if it changed."""
    root = _root(root)
    readme = root / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    span = _readme_block(text)
    if span is None:
        return False
    new = text[:span[0]] + readme_links(root) + text[span[1]:]
    if new != text:
        readme.write_text(new)
    return new != text


def check(root: Path | None = None) -> list[str]:
    """Problems with the notebooks' Colab cells and the README's links (empty when all is in order)."""
    root = _root(root)
    problems = []
    readme = (root / "README.md").read_text() if (root / "README.md").is_file() else ""
    span = _readme_block(readme)
    if span and readme[span[0]:span[1]] != readme_links(root):
        problems.append(f"README.md: the links block does not match {repository(root)[0]}")
    for path in notebooks(root):
        nb = json.loads(path.read_text())
        badge, setup = expected_cells(path, root)
        cells = nb["cells"]
        if not cells or _source(cells[0]) != badge["source"] or not _has_tag(cells[0], BADGE_TAG):
            problems.append(f"{path.name}: first cell is not the Colab badge for {repository(root)[0]}")
        first_code = next((c for c in cells if c["cell_type"] == "code"), None)
        if first_code is None or _source(first_code) != setup["source"] or not _has_tag(first_code, SETUP_TAG):
            problems.append(f"{path.name}: the first code cell is not the Colab setup cell")
        elif not all(_has_tag(first_code, tag) for tag in SETUP_TAGS):
            problems.append(f"{path.name}: the setup cell lacks the tags {SETUP_TAGS}")
    if problems:
        problems.append("run `python -m ropelib.course sync` to rewrite them from _config.yml")
    return problems


def student_copies(out: Path, root: Path | None = None) -> list[Path]:
    """Copies of the notebooks with every exercise solution removed (outputs cleared).

    A solution is what lies between a ``{solution-start}`` cell and its ``{solution-end}`` cell,
    or a single ``{solution}`` cell (sphinx-exercise's two syntaxes).
    """
    root = _root(root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks(root):
        nb = json.loads(path.read_text())
        kept, inside = [], False
        for cell in nb["cells"]:
            text = _source(cell)
            if cell["cell_type"] == "markdown" and "{solution-start}" in text:
                inside = True
                continue
            if cell["cell_type"] == "markdown" and "{solution-end}" in text:
                inside = False
                continue
            if inside or (cell["cell_type"] == "markdown" and "{solution}" in text):
                continue
            cell = copy.deepcopy(cell)
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
            kept.append(cell)
        nb["cells"] = kept
        target = out / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def student_site(root: Path | None = None) -> Path:
    """Where ``build(student=True)`` puts the student website."""
    root = _root(root)
    return root / "_build" / "student" / "_build" / "html"


def student_source(out: Path, root: Path | None = None) -> Path:
    """A copy of the book's sources in ``out`` whose notebooks have no solutions.

    sphinx-exercise's ``hide_solutions`` handles the one-cell ``{solution}`` directive only; on
    the gated ``{solution-start}``/``{solution-end}`` form the chapters use it crashes ("unknown
    node type: solution_end_node"). So the student site is built from :func:`student_copies`.
    Copied: ``_config.yml``, ``_toc.yml`` and every top-level folder or file that the table of
    contents or ``bibtex_bibfiles`` names.
    """
    root = _root(root)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ["_config.yml", "_toc.yml"]:
        shutil.copy2(root / name, out / name)
    config = _yaml(root / "_config.yml")
    wanted = list(toc_files(root)) + list(config.get("bibtex_bibfiles", []))
    for entry in wanted:
        top = Path(entry).parts[0]
        if (root / top).is_dir():
            if not (out / top).exists():
                shutil.copytree(root / top, out / top, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        else:
            for path in root.glob(f"{top}*"):
                if path.is_file() and path.stem == Path(top).stem:
                    shutil.copy2(path, out / path.name)
    for path in (out / "notebooks").glob("*.ipynb"):
        path.unlink()
    student_copies(out / "notebooks", root)
    return out


# What the PDF needs beyond requirements.txt (see latex_variant): Debian's TeX, rsvg-convert and
# one Sphinx extension.
PDF_DEBIAN = ("texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended "
              "texlive-lang-english latexmk fonts-freefont-otf librsvg2-bin")
PDF_PYPI = "sphinxcontrib-svg2pdfconverter"


def latex_variant(config: dict) -> None:
    """Change ``config`` (a loaded ``_config.yml``) so that ``jupyter-book build --builder pdflatex``
    makes the book's PDF with Debian's TeX (:data:`PDF_DEBIAN`, about 300 MB to download):

    * XeLaTeX (the text has Unicode: ×, ±, ≈) with Sphinx's own LaTeX class: jupyter-book's
      class (``use_jupyterbook_latex``) needs ``bbm.sty``, which only the 1.4 GB
      ``texlive-fonts-extra`` has, and defines ``\\RR`` itself;
    * the MathJax macros of ``mathjax3_config`` as LaTeX ``\\newcommand``s;
    * SVG figures converted to PDF by ``rsvg-convert`` (``sphinxcontrib.rsvgconverter``).
    """
    sphinx = config.setdefault("sphinx", {})
    sphinx_config = sphinx.setdefault("config", {})
    latex = config.setdefault("latex", {})
    latex.update(latex_engine="xelatex", use_jupyterbook_latex=False)
    latex.setdefault("latex_documents", {}).setdefault("targetname", "book.tex")
    macros = sphinx_config.get("mathjax3_config", {}).get("tex", {}).get("macros", {})
    preamble = []
    for name, body in macros.items():
        body, arguments = (body[0], f"[{body[1]}]") if isinstance(body, list) else (body, "")
        preamble.append(f"\\newcommand{{\\{name}}}{arguments}{{{body}}}")
    elements = sphinx_config.setdefault("latex_elements", {})
    elements["preamble"] = "\n".join(filter(None, [elements.get("preamble", "")] + preamble))
    extensions = sphinx.setdefault("extra_extensions", [])
    if "sphinxcontrib.rsvgconverter" not in extensions:
        extensions.append("sphinxcontrib.rsvgconverter")


def pdf_path(root: Path | None = None) -> Path:
    """Where ``build(pdf=True)`` writes the book's PDF."""
    return _root(root) / "_build" / "latex" / "book.pdf"


def _check_pdf_tools() -> None:
    import importlib.util

    missing = [tool for tool in ("xelatex", "latexmk", "rsvg-convert") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"the PDF needs {', '.join(missing)}: apt-get install {PDF_DEBIAN}")
    if importlib.util.find_spec("sphinxcontrib.rsvgconverter") is None:
        raise SystemExit(f"the PDF needs the SVG converter: pip install {PDF_PYPI}")


def build(root: Path | None = None, offline: bool = False, student: bool = False, mathjax_dir: Path | None = None,
          extra: list[str] | None = None, pdf: bool = False) -> int:
    """Build the site with variations of ``_config.yml``, written to ``_build/_config_variant.yml``.

    * ``offline``: MathJax 3 served from the site's own ``_static`` folder, so that maths renders
      without a network. MathJax comes from ``npm install mathjax@3`` (``node_modules/mathjax/es5``)
      or from ``mathjax_dir`` (any folder holding ``tex-mml-chtml.js``).
    * ``student``: exercise solutions left out: the site is built from a copy of the sources
      whose notebooks have no solutions (:func:`student_source`, in ``_build/student/source``),
      into ``_build/student/_build/html`` (:func:`student_site`).
    * ``pdf``: the book as one PDF (:func:`latex_variant`), in ``_build/latex/book.pdf``
      (:func:`pdf_path`; under ``_build/student`` with ``student``).
    """
    import yaml

    root = _root(root)
    config = _yaml(root / "_config.yml")
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    if offline:
        if mathjax_dir is None:
            mathjax_dir = root / "node_modules" / "mathjax" / "es5"
        if not (Path(mathjax_dir) / "tex-mml-chtml.js").exists():
            raise SystemExit(
                f"no MathJax 3 in {mathjax_dir}: run `npm install mathjax@3` in {root} "
                "(or pass --mathjax DIR, a folder with tex-mml-chtml.js)"
            )
        static = root / "_build" / "offline_static"
        if static.exists():
            shutil.rmtree(static)
        shutil.copytree(mathjax_dir, static / "mathjax")
        sphinx_config["html_static_path"] = [str(static)]
        sphinx_config["mathjax_path"] = "mathjax/tex-mml-chtml.js"
    source = root
    extra = list(extra or [])
    if pdf:
        _check_pdf_tools()
        latex_variant(config)
        extra = ["--builder", "pdflatex", *extra]
    if student:
        # also hides any one-cell {solution} left in a page that is not a notebook
        sphinx_config["hide_solutions"] = True
        if "ropelib.course" in config["sphinx"].get("extra_extensions", []):
            sphinx_config["course_colab_edition"] = "student"  # the Colab button opens the student edition
        source = student_source(root / "_build" / "student" / "source", root)
        own_output = "--path-output" not in extra
        if own_output:
            extra += ["--path-output", str(root / "_build" / "student")]
    variant = root / "_build" / "_config_variant.yml"
    variant.parent.mkdir(parents=True, exist_ok=True)
    variant.write_text(yaml.safe_dump(config, sort_keys=False))
    executable = Path(sys.executable).parent / "jupyter-book"
    if not executable.exists():
        executable = shutil.which("jupyter-book")
    if executable is None:
        raise SystemExit("jupyter-book is not installed: pip install -r requirements.txt")
    command = [str(executable), "build", str(source), "--config", str(variant), *extra]
    print("+", " ".join(command))
    code = subprocess.call(command)
    if student and code == 0 and own_output:
        print(f"student {'PDF' if pdf else 'site'} (no solutions): "
              f"{root / '_build' / 'student' / '_build' / 'latex' / 'book.pdf' if pdf else student_site(root)}")
    elif pdf and code == 0 and "--path-output" not in extra:
        print(f"PDF: {pdf_path(root)}")
    return code


def time_notebooks(paths: list[Path], smoke: bool, out: Path | None = None, timeout: int = 1800) -> dict:
    """Execute each notebook from scratch (in its own folder, smoke mode on or off) and time it."""
    import os
    import time

    import nbformat
    from nbclient import NotebookClient

    from .provenance import provenance

    previous = os.environ.get("ROPELIB_SMOKE")
    os.environ["ROPELIB_SMOKE"] = "1" if smoke else "0"
    seconds = {}
    try:
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            seconds[path.stem] = round(time.perf_counter() - start, 1)
            print(f"{path.stem:40s} {seconds[path.stem]:7.1f} s", flush=True)
    finally:
        if previous is None:
            os.environ.pop("ROPELIB_SMOKE")
        else:
            os.environ["ROPELIB_SMOKE"] = previous
    record = {"smoke": smoke, "seconds": seconds, "provenance": provenance()}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
    return record


# --- The book's own figures --------------------------------------------------------------------

# How the chapters depend on each other (drawn on the introduction page): (number, title) boxes
# at (column, row) of a narrow grid that fits a phone, and the arrows between them.
CHAPTERS = {1: "Attention and position", 2: "RoPE in 1D", 3: "Axial RoPE", 4: "Mixed and Uniform RoPE",
            5: "Spherical RoPE", 6: "ComRoPE", 7: "LieRE", 8: "Equivariance lab", 9: "Training a ViT",
            10: "Resolution", 11: "CIFAR comparison", 12: "ImageNet weights", 13: "What they learn"}
DEPENDENCIES = [(1, 2), (2, 3), (3, 4), (4, 5), (4, 6), (6, 7), (4, 8), (5, 8), (7, 8),
                (8, 9), (9, 10), (9, 11), (10, 12), (11, 12), (11, 13)]
_LAYOUT = {1: (0, 0), 2: (0, 1), 3: (0, 2), 4: (0, 3), 5: (-1, 4.5), 6: (1, 4), 7: (1, 5), 8: (0, 6.3),
           9: (0, 7.5), 10: (-1, 8.7), 11: (1, 8.7), 12: (-1, 9.9), 13: (1, 9.9)}


def dependency_graph(out: Path) -> Path:
    """Draw the chapter dependency graph to ``out`` (SVG or PNG), 4.2 inches wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    core, branch, training = "#dbe9f6", "#fbe5cf", "#e3f1dc"
    width, height, dx, dy = 3.7, 0.62, 1.38, 1.0
    with plt.rc_context({"svg.hashsalt": "rope-course", "svg.fonttype": "path", "font.size": 10}):
        fig, ax = plt.subplots(figsize=(4.2, 8.6))
        ax.set_xlim(-2.7, 2.7), ax.set_ylim(9.9 * dy + 0.5, -0.4)
        ax.axis("off")
        centres = {n: (c * dx, r * dy) for n, (c, r) in _LAYOUT.items()}
        boxes = {}
        for n, (x, y) in centres.items():
            w = width if _LAYOUT[n][0] == 0 else 2.5
            box = FancyBboxPatch((x - w / 2, y - height / 2), w, height, boxstyle="round,pad=0.02,rounding_size=0.12",
                                 fc=core if n <= 4 else branch if n <= 8 else training, ec="#333333", lw=1.0)
            ax.add_patch(box)
            boxes[n] = box
            ax.text(x, y, f"{n}  {CHAPTERS[n]}", ha="center", va="center", fontsize=9.5)
        for a, b in DEPENDENCIES:
            ax.add_patch(FancyArrowPatch(centres[a], centres[b], patchA=boxes[a], patchB=boxes[b],
                                         arrowstyle="-|>", mutation_scale=12, lw=1.1, color="#333333",
                                         shrinkA=1, shrinkB=1))
        handles = [FancyBboxPatch((0, 0), 1, 1, fc=core, ec="#333333", label="core: read in order"),
                   FancyBboxPatch((0, 0), 1, 1, fc=branch, ec="#333333", label="branches and the lab"),
                   FancyBboxPatch((0, 0), 1, 1, fc=training, ec="#333333", label="training and analysis")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2, fontsize=8.5,
                  frameon=False, handlelength=1.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight", metadata={"Date": None} if out.suffix == ".svg" else None)
        plt.close(fig)
    return out


# --- Sphinx extension ---------------------------------------------------------------------------
# Listed in _config.yml (sphinx.extra_extensions); jupyter-book imports it when it builds the book.

BIBLIOGRAPHY_STYLE = "course-author-year"


def execution_mode() -> str:
    """One sentence, in Markdown, on how this build executes the notebooks (``ROPELIB_SMOKE``)."""
    from .smoke import is_smoke

    if is_smoke():
        return ("in **smoke mode** (`ROPELIB_SMOKE=1`): every notebook ran tiny (small problems, few "
                "steps, synthetic data), so the times below are those of the smoke runs, not of the "
                "real sizes")
    return ("at **full size** (`ROPELIB_SMOKE` unset or 0): every notebook ran at the sizes a "
            "reader gets, so the times below are those of the real chapters")


@functools.lru_cache(maxsize=1)
def _text_backend():
    """pybtex's plain-text backend, looked up once (``render_as`` looks it up on every call)."""
    from pybtex.plugin import find_plugin

    return find_plugin("pybtex.backends", "text")()


def _author_year_label(entry) -> str:
    """``Su et al., 2024``: the label sphinxcontrib-bibtex's author-year citations show."""
    from pybtex.richtext import Text

    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [Text(" ").join(p.rich_prelast_names + p.rich_last_names).render(_text_backend()) for p in people]
    if len(names) > 2:
        authors = f"{names[0]} et al."
    else:
        authors = " and ".join(names) or entry.fields.get("title", entry.key)
    return f"{authors}, {entry.fields.get('year', 'n.d.')}"


def _register_bibliography_style() -> None:
    """A pybtex style whose labels are author-year (``[Su et al., 2024]``), so that the
    bibliography page shows what the author-year citations in the text show, sorted by author."""
    from pybtex.plugin import PluginNotFound, find_plugin, register_plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = [_author_year_label(entry) for entry in sorted_entries]
            repeated, seen = Counter(labels), Counter()
            for label in labels:
                if repeated[label] > 1:  # Su et al., 2024a and Su et al., 2024b
                    seen[label] += 1
                    label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
                yield label

    class AuthorYearStyle(PlainStyle):
        default_label_style = AuthorYearLabels

    try:
        find_plugin("pybtex.style.formatting", BIBLIOGRAPHY_STYLE)
    except PluginNotFound:
        register_plugin("pybtex.style.formatting", BIBLIOGRAPHY_STYLE, AuthorYearStyle)


def _launch_edition(app, pagename, templatename, context, doctree):
    """Point the theme's Colab launch button of a chapter at its notebook in ``editions/`` (the
    edition ``course_colab_edition``), which reads well on Colab, instead of the MyST source."""
    edition = app.config.course_colab_edition
    if not edition or not pagename.startswith("notebooks/"):
        return
    source = f"/{pagename}.ipynb"
    target = f"/{EDITIONS_FOLDER}/{edition}/{pagename.split('/', 1)[1]}.ipynb"

    def rewrite(buttons):
        for button in buttons or []:
            url = button.get("url", "")
            if url.startswith("https://colab.research.google.com/") and url.endswith(source):
                button["url"] = url[: -len(source)] + target
            rewrite(button.get("buttons"))

    rewrite(context.get("header_buttons"))


def setup(app):
    """Sphinx entry point: the bibliography style ``course-author-year`` (set as
    ``bibtex_default_style``), the MyST substitution ``{{ execution_mode }}``, which tells the
    reader whether this build ran the notebooks in smoke mode (read at build time, through
    :func:`ropelib.smoke.is_smoke`, from the environment the notebooks inherit), the course's
    stylesheet (``ropelib/static/course.css``), and the Colab
    launch button of each chapter opening its edition (config ``course_colab_edition``: ``jupyter``,
    ``student``, or empty for the source notebook)."""
    _register_bibliography_style()

    def add_substitution(app, config):
        config.myst_substitutions = {**(config.myst_substitutions or {}), "execution_mode": execution_mode()}

    def add_static(app, config):  # after the book's own settings (an offline build sets its own path)
        config.html_static_path = [*config.html_static_path, str(Path(__file__).parent / "static")]

    app.connect("config-inited", add_substitution)
    app.connect("config-inited", add_static)
    app.add_css_file("course.css")
    app.add_config_value("course_colab_edition", DEFAULT_EDITION, "html")
    app.connect("html-page-context", _launch_edition, priority=600)  # after the theme's buttons (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None) -> int:
    # --root is accepted before the command and after it (python -m ropelib.course check --root PATH)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="the course book (the folder with _config.yml and _toc.yml); default: the one "
                             "around the current folder")
    parser = argparse.ArgumentParser(prog="python -m ropelib.course", description=__doc__.split("\n\n")[0],
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync", parents=[common],
                   help="write every badge, link and setup cell from _config.yml (notebooks, README, editions)")
    sub.add_parser("check", parents=[common], help="report notebooks, README links or editions that are out of date")
    editions_parser = sub.add_parser("editions", parents=[common],
                                     help="write the Jupyter/Colab and student editions of the notebooks (editions/)")
    editions_parser.add_argument("--check", action="store_true",
                                 help="write nothing; exit 1 if editions/ is out of date")
    student = sub.add_parser("student", parents=[common], help="copies of the notebooks without exercise solutions")
    student.add_argument("out", type=Path)
    builder = sub.add_parser("build", parents=[common],
                             help="build the site: --offline (local MathJax), --student (no solutions), --pdf "
                                  "(the book as one PDF); other arguments go to jupyter-book build")
    builder.add_argument("--offline", action="store_true", help="serve MathJax from the site itself")
    builder.add_argument("--student", action="store_true", help="leave the exercise solutions out")
    builder.add_argument("--mathjax", type=Path, default=None, help="folder holding MathJax 3's tex-mml-chtml.js")
    builder.add_argument("--pdf", action="store_true",
                         help="the book as one PDF, _build/latex/book.pdf (needs Debian's TeX, see the README)")
    sub.add_parser("figures", parents=[common], help="redraw the book's own figures (book/chapter-dependencies.svg)")
    timer = sub.add_parser("time", parents=[common], help="execute every notebook from scratch and time it")
    timer.add_argument("--smoke", action="store_true", help="with ROPELIB_SMOKE=1")
    timer.add_argument("--json", type=Path, default=None, help="write the timings and their provenance here")
    timer.add_argument("notebooks", nargs="*", type=Path, help="default: all of the book's notebooks/")
    args, extra = parser.parse_known_args(argv)
    if args.command == "time" and args.notebooks:  # notebooks named: no book needed
        time_notebooks(args.notebooks, args.smoke, args.json)
        return 0
    try:
        if not hasattr(args, "root"):
            root = find_root()
        elif is_book(args.root.expanduser()):
            root = args.root.expanduser().resolve()
        else:
            raise BookNotFound(f"--root {args.root} is not a course book (it has no {' and '.join(BOOK_FILES)}): "
                               "pass the folder of the course repository")
    except BookNotFound as error:
        print(f"python -m ropelib.course: error: {error}", file=sys.stderr)
        return 2
    if args.command == "time":
        time_notebooks(notebooks(root), args.smoke, args.json)
        return 0
    if args.command == "figures":
        print("wrote", dependency_graph(root / "book" / "chapter-dependencies.svg").relative_to(root))
        return 0
    from . import editions

    if args.command == "sync":
        changed = sync(root) + ([root / "README.md"] if sync_readme(root) else []) + editions.write(root)
        for path in changed:
            print("updated", path.relative_to(root))
        return 0
    if args.command == "check":
        problems = check(root) + editions.stale(root)
        print("\n".join(problems) or "all notebooks are in sync with _config.yml")
        return 1 if problems else 0
    if args.command == "editions":
        if args.check:
            problems = editions.stale(root)
            print("\n".join(problems) or f"{EDITIONS_FOLDER}/ is in sync with notebooks/")
            return 1 if problems else 0
        for path in editions.write(root):
            print("updated", path.relative_to(root))
        return 0
    if args.command == "student":
        for path in student_copies(args.out, root):
            print("wrote", path)
        return 0
    return build(root, offline=args.offline, student=args.student, mathjax_dir=args.mathjax, extra=extra,
                 pdf=args.pdf)


if __name__ == "__main__":
    sys.exit(main())
