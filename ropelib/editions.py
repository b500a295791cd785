"""The Jupyter/Colab editions of the chapters, generated from the book's notebooks.

The chapters in ``notebooks/`` are written for the website: their exercises and solutions are
MyST directives (``{exercise}``, ``{solution-start}`` ... ``{solution-end}``), their citations
and cross-references are roles (``{cite:p}`key```, ``{ref}`label```), their figure captions live
in cell metadata. Opened in plain Jupyter or on Colab, all of that shows as raw markup. This
module writes two editions that read well there, in ``editions/`` (committed; never edit them,
edit the chapter and regenerate):

``editions/jupyter/NN_name.ipynb``
    For self-study. Each exercise is a quoted block headed **Exercise N.k**; its solution
    follows folded in one ``<details>`` block ("Solution to Exercise N.k"), prose and code
    together, the code as a fenced Python block. (A folded code *cell* is not portable: Colab
    folds ``#@title`` form cells, Jupyter folds ``source_hidden`` cells, GitHub neither, and
    "Run all" would run the answers.)
``editions/student/NN_name.ipynb``
    For assignments: no solution anywhere, and under each exercise a Markdown "Your answer"
    cell and an empty code cell that name the exercise.

In both, citations become author-year text with a References cell at the end of the
chapter, references to exercises, figures and equations become their numbers ("Exercise 10.2",
"Figure 3.1", "(2.1)"), figure captions become a caption cell under the figure's code cell,
admonitions and theorem-like directives become quoted blocks, and the first cell is an
"Open in Colab" badge for that edition's own notebook, with its URL built from
``repository.url`` in ``_config.yml`` (the one place the repository URL lives).

    python -m ropelib.course editions          # (re)write editions/ from notebooks/
    python -m ropelib.course editions --check  # exit 1 if editions/ is out of date

:func:`stale` generates into a temporary folder and compares, which is how the tests keep the
committed editions in sync with the chapters.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import course

FOLDER = course.EDITIONS_FOLDER
JUPYTER = "jupyter"  # with solutions, folded
STUDENT = "student"  # without solutions, with answer cells
EDITIONS = (JUPYTER, STUDENT)

SOLUTION_SUMMARY = "Solution to Exercise {number}"
ANSWER_MARKDOWN = "**Your answer to Exercise {number}** (`{label}`). *Double-click to write here.*"
ANSWER_CODE = "# Exercise {number} ({label}): your code here"
NOTE = {
    JUPYTER: ("*Jupyter and Colab edition of [chapter {chapter}]({page}) of the course, generated from "
              "`notebooks/{name}`. The solutions are folded under the exercises.*"),
    STUDENT: ("*Student edition of [chapter {chapter}]({page}) of the course, generated from "
              "`notebooks/{name}`: no solutions; write your answers in the cells under each exercise.*"),
}

ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error",
               "seealso", "admonition", "margin", "sidebar", "topic", "dropdown"}
PROOF_LIKE = re.compile(r"^prf:(\w+)$")  # sphinx-proof: prf:theorem, prf:definition, prf:proof, ...


# --- Parsing MyST Markdown ---------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
ROLE = re.compile(r"\{(?P<role>[a-zA-Z][\w:+-]*)\}`(?P<content>[^`]+)`")
TARGET = re.compile(r"^\((?P<name>[\w:.-]+)\)=\s*$")
EQUATION = re.compile(r"\$\$(?P<body>.+?)\$\$[ \t]*\((?P<label>[\w:.-]+)\)", re.S)
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


@dataclass
class Directive:
    name: str
    arg: str
    options: dict
    body: str


def blocks(text: str) -> list:
    """``text`` cut into plain Markdown (``str``), fenced code kept verbatim (``("code", str)``)
    and MyST directives (:class:`Directive`; the body unparsed)."""
    lines = text.split("\n")
    out, plain, i = [], [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            plain.append(lines[i])
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        inner = lines[i + 1:end]
        directive = DIRECTIVE.match(info)
        if plain:
            out.append("\n".join(plain))
            plain = []
        if directive:
            options = {}
            while inner and OPTION.match(inner[0]):
                option = OPTION.match(inner.pop(0))
                options[option["key"]] = option["value"].strip()
            out.append(Directive(directive["name"], directive["arg"].strip(), options,
                                 "\n".join(inner).strip("\n")))
        else:
            out.append(("code", "\n".join(lines[i:end + 1])))
        i = end + 1
    if plain:
        out.append("\n".join(plain))
    return out


# --- What the labels of the book refer to ------------------------------------------------------

@dataclass
class Target:
    notebook: str   # file name of the chapter that defines it
    text: str       # how a reference to it reads: "Exercise 10.2", "Figure 3.1", "(2.1)", a title
    anchor: str     # the HTML id in the edition


@dataclass
class Book:
    """What every chapter's conversion needs to know about the whole book."""

    root: Path
    url: str
    branch: str
    site: str = ""                                    # the website's address, ending in /
    targets: dict = field(default_factory=dict)       # label -> Target
    bibliography: dict = field(default_factory=dict)  # key -> pybtex entry
    chapters: dict = field(default_factory=dict)      # file name -> chapter number

    def colab(self, path_in_repository: str) -> str:
        return course.colab_url(path_in_repository, repo=(self.url, self.branch))

    @functools.cached_property
    def style(self):
        """pybtex's plain style: how the References cells format an entry."""
        from pybtex.plugin import find_plugin

        return find_plugin("pybtex.style.formatting", "plain")()


def chapter_number(path: Path, index: int) -> int:
    """The number the book gives the chapter: its file name's prefix (``10_resolution`` -> 10)."""
    prefix = re.match(r"(\d+)", path.stem)
    return int(prefix.group(1)) if prefix else index + 1


def _collect_targets(path: Path, chapter: int, targets: dict) -> None:
    nb = json.loads(path.read_text())
    exercises = figures = equations = 0
    for cell in nb["cells"]:
        text = course._source(cell)
        if cell["cell_type"] == "code":
            name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
            if name:
                figures += 1
                targets[name] = Target(path.name, f"Figure {chapter}.{figures}", name)
            continue
        if cell["cell_type"] != "markdown":
            continue
        lines = text.split("\n")
        for i, line in enumerate(lines):  # (label)= above a heading
            target = TARGET.match(line)
            heading = HEADING.match(lines[i + 1]) if target and i + 1 < len(lines) else None
            if target:
                targets[target["name"]] = Target(path.name, heading["title"] if heading else target["name"],
                                                 target["name"])
        for equation in EQUATION.finditer(text):
            equations += 1
            targets[equation["label"]] = Target(path.name, f"({chapter}.{equations})", equation["label"])
        for block in blocks(text):
            if isinstance(block, Directive) and block.name in ("exercise", "exercise-start"):
                exercises += 1
                label = block.options.get("label")
                if label:
                    targets[label] = Target(path.name, f"Exercise {chapter}.{exercises}", label)
            elif isinstance(block, Directive) and block.name == "figure" and "name" in block.options:
                figures += 1
                targets[block.options["name"]] = Target(path.name, f"Figure {chapter}.{figures}",
                                                        block.options["name"])


def load_book(root: Path | None = None) -> Book:
    root = course._root(root)
    url, branch = course.repository(root)
    book = Book(root, url, branch, course.site_url(root))
    for index, path in enumerate(course.notebooks(root)):
        book.chapters[path.name] = chapter_number(path, index)
        _collect_targets(path, book.chapters[path.name], book.targets)
    bibfiles = course._yaml(root / "_config.yml").get("bibtex_bibfiles", [])
    if bibfiles:
        from pybtex.database import parse_file

        for name in bibfiles:
            book.bibliography.update(parse_file(str(root / name)).entries)
    return book


# --- Converting one chapter --------------------------------------------------------------------

def _author_year(entry) -> tuple[str, str]:
    authors, _, year = course._author_year_label(entry).rpartition(", ")
    return authors, year


class Chapter:
    """Converts the Markdown of one chapter; remembers what it cited (for its References cell)."""

    def __init__(self, book: Book, path: Path):
        self.book, self.path = book, path
        self.number = book.chapters[path.name]
        self.cited: list[str] = []

    # inline: roles, targets, labelled equations
    def _cite(self, role: str, content: str) -> str:
        keys = [key.strip() for key in content.split(",") if key.strip()]
        parts = []
        for key in keys:
            entry = self.book.bibliography.get(key)
            if entry is None:
                parts.append((key, ""))
                continue
            if key not in self.cited:
                self.cited.append(key)
            parts.append(_author_year(entry))
        if role in ("cite:t", "cite:ts"):
            return ", ".join(f"{a} ({y})" if y else a for a, y in parts)
        if role == "cite:author":
            return ", ".join(a for a, _ in parts)
        if role == "cite:year":
            return ", ".join(y for _, y in parts)
        inner = "; ".join(f"{a}, {y}" if y else a for a, y in parts)
        return inner if role in ("cite:alp", "cite:alps") else f"({inner})"

    def _link(self, label: str, text: str | None = None) -> str:
        target = self.book.targets.get(label)
        if target is None:
            return text or label
        href = f"#{target.anchor}" if target.notebook == self.path.name else f"{target.notebook}#{target.anchor}"
        return f"[{text or target.text}]({href})"

    def _role(self, match: re.Match) -> str:
        role, content = match["role"], match["content"]
        explicit = re.match(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", content, re.S)
        text, target = (explicit["text"], explicit["target"]) if explicit else (None, content)
        if role.startswith("cite"):
            return self._cite(role, content)
        if role in ("ref", "numref", "prf:ref", "eq"):
            if role == "numref" and text and "%s" in text and target in self.book.targets:
                number = self.book.targets[target].text.split()[-1]
                return self._link(target, text.replace("%s", number))
            return self._link(target, text)
        if role == "math":
            return f"${content}$"
        if role in ("sub", "sup", "kbd"):
            return f"<{role}>{content}</{role}>"
        if role == "abbr":
            return re.sub(r"\s*\(.*\)$", "", content)
        if role in ("doc", "download", "term", "dfn"):
            return text or target
        return f"`{content}`"

    def inline(self, text: str) -> str:
        def equation(match):
            target = self.book.targets.get(match["label"])
            tag = target.text.strip("()") if target else match["label"]
            return f"$${match['body'].rstrip()} \\tag{{{tag}}}\n$$"

        text = EQUATION.sub(equation, text)
        lines = []
        for line in text.split("\n"):
            target = TARGET.match(line)
            if target:  # an anchor on its own line, then a blank line (else it swallows the heading)
                lines += [f'<a id="{target["name"]}"></a>', ""]
            elif not line.startswith("% "):  # MyST comments
                lines.append(ROLE.sub(self._role, line))
        return "\n".join(lines)

    # blocks: directives
    def markdown(self, text: str) -> str:
        """Plain Markdown for ``text``; exercise and solution directives are handled by the caller."""
        out = []
        for block in blocks(text):
            if isinstance(block, str):
                out.append(self.inline(block))
            elif isinstance(block, tuple):
                out.append(block[1])
            else:
                out.append(self.directive(block))
        return "\n".join(out).strip("\n")

    def exercise(self, block: Directive) -> str:
        label = block.options.get("label", "")
        target = self.book.targets.get(label)
        heading = f"**{target.text if target else 'Exercise'}**"
        if block.arg:
            heading += f" ({self.inline(block.arg)})"
        if label:
            heading = f'<a id="{label}"></a>{heading} (`{label}`)'
        return _quote(heading + "\n\n" + self.markdown(block.body))

    def directive(self, block: Directive) -> str:
        name = block.name
        if name in ("exercise", "exercise-start"):
            return self.exercise(block)
        if name in ADMONITIONS or PROOF_LIKE.match(name):
            kind = PROOF_LIKE.match(name)[1] if PROOF_LIKE.match(name) else name
            title = {"seealso": "See also", "admonition": ""}.get(kind, kind.capitalize())
            if block.arg:
                title = f"{title} ({self.inline(block.arg)})" if title else self.inline(block.arg)
            label = block.options.get("label") or block.options.get("name")
            heading = (f'<a id="{label}"></a>' if label else "") + f"**{title}**"
            body = self.markdown(block.body)
            if kind == "proof":
                body += " $\\square$"
            return _quote(heading + "\n\n" + body)
        if name in ("math", "math-block"):
            return f"$$\n{block.body}\n$$"
        if name in ("figure", "image"):
            alt = block.options.get("alt", "")
            image = f"![{alt}]({_relink(block.arg)})"
            if name == "image" or not block.body:
                return image
            figure = self.book.targets.get(block.options.get("name", ""))
            return image + "\n\n" + self.caption(block.body, figure)
        if name in ("code-cell", "code-block", "code", "sourcecode"):
            return f"```{block.arg or 'python'}\n{block.body}\n```"
        # anything else (a table directive, a glossary...): its content, as Markdown
        return self.markdown(block.body)

    def caption(self, text: str, figure: Target | None) -> str:
        number = f"**{figure.text}.** " if figure else ""
        anchor = f'<a id="{figure.anchor}"></a>' if figure else ""
        return f"{anchor}{number}{self.inline(text).strip()}"

    def references(self) -> str | None:
        """A References cell listing the works this chapter cited, in the book's style."""
        if not self.cited:
            return None
        entries = sorted((self.book.bibliography[key] for key in self.cited), key=lambda e: _author_year(e))
        lines = ["## References", ""]
        for entry in entries:
            # one at a time: a pybtex style sorts the entries it is given in its own order
            formatted = next(iter(self.book.style.format_entries([entry])))
            authors, year = _author_year(entry)
            lines.append(f"* **{authors}, {year}.** {formatted.text.render(course._text_backend())}")
        return "\n".join(lines)


DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)


def _quote(text: str) -> str:
    """``text`` as a Markdown block quote (how exercises and admonitions stand out). Display
    maths goes on one line first: Jupyter and Colab take the maths out before they read the
    Markdown, so the ``> `` of a quote's later lines would end up inside the formula."""
    text = DISPLAY_MATH.sub(lambda m: "$$" + " ".join(m[1].split()) + "$$", text)
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _relink(target: str) -> str:
    """A link relative to ``notebooks/`` made relative to ``editions/<edition>/``."""
    if re.match(r"^([a-z][\w+.-]*:|#|/)", target) or target.endswith(".ipynb") and "/" not in target:
        return target
    return "../../notebooks/" + target


def _split_solution_start(text: str) -> tuple[str, str]:
    """A ``{solution-start}`` cell's label and the prose after its fence."""
    parts = blocks(text)
    start = next(b for b in parts if isinstance(b, Directive) and b.name == "solution-start")
    rest = "\n".join(b if isinstance(b, str) else b[1] if isinstance(b, tuple) else "" for b in parts
                     if b is not start)
    return start.arg.split()[0] if start.arg else "", rest


def _kind(cell: dict) -> str | None:
    """Which exercise/solution marker a Markdown cell is, if any."""
    if cell["cell_type"] != "markdown":
        return None
    for block in blocks(course._source(cell)):
        if isinstance(block, Directive) and block.name in ("exercise", "exercise-start", "exercise-end",
                                                            "solution", "solution-start", "solution-end"):
            return block.name
    return None


def _cell(kind: str, source: str, cell_id: str, metadata: dict | None = None) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": metadata or {}, "source": _lines(source)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _lines(source: str) -> list[str]:
    return source.splitlines(keepends=True)


def _details(number: str, parts: list[str]) -> str:
    body = "\n\n".join(p.strip("\n") for p in parts if p.strip())
    return (f"<details>\n<summary><b>{SOLUTION_SUMMARY.format(number=number)}</b> (click to open)</summary>\n\n"
            f"{body}\n\n</details>")


def site_page(book: Book, path: Path) -> str:
    return f"{book.site}notebooks/{path.stem}.html"


def edition(path: Path, name: str, book: Book) -> dict:
    """The notebook of edition ``name`` (``"jupyter"`` or ``"student"``) for the chapter ``path``."""
    nb = json.loads(path.read_text())
    chapter = Chapter(book, path)
    cells: list[dict] = []
    solution: tuple[str, list[str]] | None = None  # (label, parts) while inside a gated solution
    exercise_open: str | None = None  # label of a gated exercise (exercise-start) not yet ended

    def answer(label: str) -> None:
        if name != STUDENT:
            return
        target = book.targets.get(label)
        number = target.text.split()[-1] if target else "?"
        cells.append(_cell("markdown", ANSWER_MARKDOWN.format(number=number, label=label), f"{label}-answer"))
        cells.append(_cell("code", ANSWER_CODE.format(number=number, label=label), f"{label}-answer-code"))

    def number_of(label: str) -> str:
        target = book.targets.get(label)
        return target.text.split()[-1] if target else label

    for cell in nb["cells"]:
        # the badge: this edition's own notebook on Colab, and where the chapter comes from
        if course._has_tag(cell, course.BADGE_TAG):
            badge = course.BADGE.format(colab=book.colab(f"{FOLDER}/{name}/{path.name}"))
            note = NOTE[name].format(chapter=chapter.number, page=site_page(book, path), name=path.name)
            cells.append(_cell("markdown", badge + "\n\n" + note, "colab-badge", {"tags": [course.BADGE_TAG]}))
            continue
        kind = _kind(cell)
        text = course._source(cell)
        # a gated solution: collected until its end, then folded (jupyter) or dropped (student)
        if solution is not None:
            if kind == "solution-end":
                label, parts = solution
                if name == JUPYTER:
                    cells.append(_cell("markdown", _details(number_of(label), parts), f"{label}-solution"))
                solution = None
            elif cell["cell_type"] == "code":
                solution[1].append(f"```python\n{text.rstrip()}\n```")
            else:
                solution[1].append(chapter.markdown(text))
            continue
        if kind == "solution-start":
            label, prose = _split_solution_start(text)
            solution = (label, [chapter.markdown(prose)] if prose.strip() else [])
            continue
        if kind == "solution":  # the one-cell form
            for block in blocks(text):
                if isinstance(block, Directive) and block.name == "solution" and name == JUPYTER:
                    label = block.arg.split()[0] if block.arg else ""
                    cells.append(_cell("markdown", _details(number_of(label), [chapter.markdown(block.body)]),
                                       f"{label}-solution"))
            continue
        if kind == "exercise-end":
            if exercise_open:
                answer(exercise_open)
            exercise_open = None
            continue
        # any other cell: Markdown converted, code kept; a figure's caption under it; an
        # exercise followed by the student's answer cells
        new = copy.deepcopy(cell)
        if cell["cell_type"] == "markdown":
            new["source"] = _lines(chapter.markdown(text))
        elif cell["cell_type"] == "code" and name == STUDENT:
            new["outputs"], new["execution_count"] = [], None
        cells.append(new)
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if cell["cell_type"] == "code" and figure.get("caption"):
            target = book.targets.get(figure.get("name", ""))
            cells.append(_cell("markdown", chapter.caption(figure["caption"], target),
                               f"{cell.get('id', figure.get('name'))}-caption"))
        if kind in ("exercise", "exercise-start"):
            label = next((b.options.get("label", "") for b in blocks(text)
                          if isinstance(b, Directive) and b.name == kind), "")
            if kind == "exercise":
                answer(label)
            else:
                exercise_open = label
    references = chapter.references()
    if references:
        cells.append(_cell("markdown", references, "references"))
    nb = copy.deepcopy(nb)
    nb["cells"] = cells
    return nb


# --- Writing and checking the editions ---------------------------------------------------------

def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def generate(out: Path, root: Path | None = None) -> list[Path]:
    """Write both editions of every chapter under ``out`` (``out/jupyter``, ``out/student``);
    removes notebooks there that no chapter produces any more. Returns the files that changed."""
    root = course._root(root)
    book = load_book(root)
    changed = []
    for name in EDITIONS:
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        wanted = set()
        for path in course.notebooks(root):
            target = folder / path.name
            wanted.add(target.name)
            text = _dump(edition(path, name, book))
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
                changed.append(target)
        for old in folder.glob("*.ipynb"):
            if old.name not in wanted:
                old.unlink()
                changed.append(old)
    return changed


def write(root: Path | None = None) -> list[Path]:
    """(Re)write ``editions/`` of the book; returns the files that changed."""
    root = course._root(root)
    return generate(root / FOLDER, root)


def stale(root: Path | None = None) -> list[str]:
    """How the committed ``editions/`` differ from freshly generated ones (empty: in sync)."""
    root = course._root(root)
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, root)
        for name in EDITIONS:
            have = {p.name: p for p in (root / FOLDER / name).glob("*.ipynb")}
            want = {p.name: p for p in (fresh / name).glob("*.ipynb")}
            for missing in sorted(want.keys() - have.keys()):
                problems.append(f"{FOLDER}/{name}/{missing} is missing")
            for extra in sorted(have.keys() - want.keys()):
                problems.append(f"{FOLDER}/{name}/{extra} has no chapter in notebooks/")
            for same in sorted(want.keys() & have.keys()):
                if have[same].read_text() != want[same].read_text():
                    problems.append(f"{FOLDER}/{name}/{same} is out of date")
    if problems:
        problems.append("run `python -m ropelib.course editions` to regenerate them from notebooks/")
    return problems
