"""Grade a student's notebook: run it in a fresh kernel, then every check of its chapter.

    python -m ropelib.grade alice.ipynb                       # chapter from the name (02_...) or content
    python -m ropelib.grade alice.ipynb --chapter 2 --json alice.json --timeout 600

Prints points per exercise with the feedback, and a total; ``--json`` writes the same as a report
a learning platform can import (see :func:`grade_notebook` for its fields). The exit status is 0
whatever the answers (wrong answers are a result, not an error); 2 for unusable input (a missing
file, not a notebook, a chapter that cannot be told), with a one-line message.

How it runs. The notebook's code cells run one by one in a new Python kernel, in the notebook's
folder, each with ``--cell-timeout`` seconds and all of them within ``--timeout``; a cell that
raises or overruns (it is interrupted) does not stop the ones after it, so later answers still
count. After every cell the kernel grades the exercises whose answers (the names in
:data:`ropelib.exercises.EXERCISES`) are new or rebound, each check with a time limit of its
own; at the end it grades them all once more, so an answer completed in a later cell counts. If
the kernel dies, or hangs so that an interrupt does not free it (it is then killed), what was
graded so far stands: a notebook gets its points for what ran. Cells left when the time is up
are not run. The student's code runs with the grader's permissions: grade untrusted notebooks
in a container or a throwaway account.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import __version__, exercises

SENTINEL = "@@ropelib-grade@@"
_SEEN: dict[str, tuple] = {}  # in the kernel: label -> ids of the answer objects last graded
_QUIET = logging.getLogger("ropelib.grade.nbclient")  # nbclient's timeout messages: the report has them
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class UnusableInput(Exception):
    """The file cannot be graded at all (missing, not a notebook, chapter unknown)."""


class _TimeUp(BaseException):  # not an Exception: a student's `except Exception` cannot swallow it
    pass


def _time_limit(seconds: float, fn):
    """``fn()`` stopped after ``seconds`` (by SIGALRM, where the platform has it)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn()

    def stop(signum, frame):
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def kernel_step(namespace: dict, chapter: int, final: bool = False, check_timeout: float = 60.0) -> dict:
    """Run in the student's kernel: grade the chapter's exercises whose answers changed since the
    last step (all of them if ``final``) and print them as one JSON line after :data:`SENTINEL`."""
    results = {}
    for exercise in exercises.for_chapter(chapter):
        if exercise.check is None:
            continue
        seen = tuple(id(namespace.get(n)) for n in exercise.answers)
        if not final and (_SEEN.get(exercise.label) == seen or not all(n in namespace for n in exercise.answers)):
            continue
        _SEEN[exercise.label] = seen
        try:
            results[exercise.label] = _time_limit(check_timeout, lambda: exercises.grade(exercise, namespace))
        except _TimeUp:
            results[exercise.label] = {"points": 0, "passed": False, "feedback": f"the check took longer than "
                                       f"{check_timeout:g} s with your answer (an endless loop?)"}
    print(SENTINEL + json.dumps(results))
    return results


# -- outside the kernel ------------------------------------------------------------------------------

def read_notebook(path: Path):
    import nbformat

    if not path.is_file():
        raise UnusableInput(f"no such file: {path}")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as error:
        detail = (str(error).splitlines() or ["unreadable"])[0]
        raise UnusableInput(f"{path} is not a Jupyter notebook ({type(error).__name__}: "
                            f"{detail[:60] + '...' if len(detail) > 60 else detail})") from None


def find_chapter(path: Path, nb) -> int:
    """The chapter from the file name (``02_rope_1d.ipynb``), else from the exercise labels in it."""
    match = re.match(r"(\d+)_", path.name)
    if match and exercises.for_chapter(int(match[1])):
        return int(match[1])
    text = "\n".join(cell.source for cell in nb.cells)
    found = collections.Counter(exercises.BY_LABEL[m].chapter for m in re.findall(r"ch\d+-[a-z0-9-]+", text)
                                if m in exercises.BY_LABEL)
    if not found:
        raise UnusableInput(f"cannot tell which chapter {path.name} is: pass --chapter N")
    return found.most_common(1)[0][0]


def _errors(cell) -> list[str]:
    return [o.get("ename", "") for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def grade_notebook(path, chapter: int | None = None, timeout: float = 600, cell_timeout: float = 120,
                   check_timeout: float = 60) -> dict:
    """Run the notebook at ``path`` and grade the exercises of ``chapter``; returns the report:

    ``notebook``, ``chapter``, ``exercises`` (per exercise, in order: ``label``, ``number``,
    ``points``, ``max``, ``passed``, ``feedback``, ``graded``: false for an exercise without a
    check, which has ``points`` null and ``max`` 0), ``total``, ``max_total``, ``cells`` (code
    cells: ``total``, ``run``, ``errors``, ``timed_out``, ``not_run``), ``notes`` (the kernel died,
    hung, the time ran out), ``time_s``, ``timeout_s``, ``ropelib_version``, ``graded_at``.
    Raises :class:`UnusableInput` for a file it cannot grade."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbformat.v4 import new_code_cell

    path = Path(path)
    nb = read_notebook(path)
    chapter = chapter or find_chapter(path, nb)
    chapter_exercises = exercises.for_chapter(chapter)
    if not chapter_exercises:
        raise UnusableInput(f"chapter {chapter} has no exercises (chapters 1 to 13)")
    graded = [e for e in chapter_exercises if e.check is not None]
    results: dict[str, dict] = {}
    notes: list[str] = []
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    cells = {"total": len(code), "run": 0, "errors": 0, "timed_out": 0, "not_run": 0}
    interrupted = {"ename": "CellTimeout", "evalue": "the cell ran too long and was interrupted", "traceback": []}
    client = NotebookClient(nb, kernel_name="python3", timeout=int(cell_timeout), allow_errors=True,
                            interrupt_on_timeout=True, error_on_timeout=interrupted, shutdown_kernel="immediate",
                            record_timing=False, resources={"metadata": {"path": str(path.parent.resolve())}},
                            log=_QUIET)
    start = time.monotonic()
    deadline = start + timeout

    def execute(source: str, seconds: float, index: int):
        cell = new_code_cell(source)
        client.timeout = max(1, int(seconds))
        client.execute_cell(cell, index, store_history=False)
        return cell

    def step(index: int, final: bool) -> bool:
        """Grade in the kernel; False if the kernel did not answer (it is stuck)."""
        source = (f"import ropelib.grade as _grade\n_grade.kernel_step(globals(), {chapter}, final={final}, "
                  f"check_timeout={check_timeout})\ndel _grade")
        cell = execute(source, check_timeout * max(1, len(graded)) + 30, index)
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        lines = [line for line in text.splitlines() if line.startswith(SENTINEL)]
        if not lines:
            return False
        results.update(json.loads(lines[-1][len(SENTINEL):]))
        return True

    n, index, healthy = 0, 0, True
    try:
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            for n, (index, cell) in enumerate(code):
                left = deadline - time.monotonic()
                if left < 1:
                    cells["not_run"] = len(code) - n
                    notes.append(f"the time limit ({timeout:g} s) ran out: {len(code) - n} code cells were not run")
                    break
                client.timeout = max(1, int(min(cell_timeout, left)))
                began = time.monotonic()
                cells["run"] += 1
                client.execute_cell(cell, index)
                cells["errors"] += bool(_errors(cell))
                if time.monotonic() - began >= client.timeout:  # it was interrupted
                    cells["timed_out"] += 1
                    if not _responds(execute, index):
                        notes.append(f"the kernel stopped responding in code cell {n + 1} (notebook cell {index}) "
                                     "and was stopped; later cells were not run")
                        cells["not_run"] = len(code) - n - 1
                        healthy = False
                        break
                if not step(index, final=False):
                    notes.append(f"grading after code cell {n + 1} got no answer from the kernel")
                    healthy = False
                    break
            if healthy and not step(index, final=True):
                notes.append("the final grading got no answer from the kernel")
    except (DeadKernelError, CellTimeoutError) as error:
        cells["not_run"] = len(code) - n - 1
        what = "died" if isinstance(error, DeadKernelError) else "stopped responding"
        notes.append(f"the kernel {what} in code cell {n + 1} (notebook cell {index}); what ran before counts")
    except NoSuchKernel:
        raise UnusableInput("no 'python3' Jupyter kernel here: pip install ipykernel") from None

    report = []
    for exercise in chapter_exercises:
        row = {"label": exercise.label, "number": exercises.number(exercise.label),
               "graded": exercise.check is not None}
        if exercise.check is None:
            row.update(points=None, max=0, passed=None, feedback=f"not graded automatically: {exercise.reason}")
        else:
            result = results.get(exercise.label) or {"points": 0, "passed": False,
                                                     "feedback": f"not answered: define {exercise.define}"}
            row.update(points=result["points"], max=exercise.points, passed=result["passed"],
                       feedback=result["feedback"])
        report.append(row)
    return {
        "notebook": str(path), "chapter": chapter, "exercises": report,
        "total": sum(r["points"] or 0 for r in report), "max_total": sum(r["max"] for r in report),
        "cells": cells, "notes": notes, "time_s": round(time.monotonic() - start, 1), "timeout_s": timeout,
        "ropelib_version": __version__,
        "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _responds(execute, index: int, seconds: float = 10) -> bool:
    """Whether the kernel runs a trivial cell after an interrupt (else it is stuck: ignoring SIGINT)."""
    cell = execute("print('alive')", seconds, index)
    return any("alive" in o.get("text", "") for o in cell.outputs)


def format_report(report: dict) -> str:
    lines = [f"{report['notebook']}: chapter {report['chapter']}"]
    width = max(len(r["label"]) for r in report["exercises"])
    for r in report["exercises"]:
        points = f"{r['points']}/{r['max']}" if r["graded"] else "  -"
        lines.append(f"  {r['number']:>5}  {r['label']:<{width}}  {points:>5}  {r['feedback']}")
    cells = report["cells"]
    lines.append(f"Total: {report['total']}/{report['max_total']} points")
    lines.append(f"Cells: {cells['run']} of {cells['total']} code cells run, {cells['errors']} with an error, "
                 f"{cells['timed_out']} timed out, {cells['not_run']} not run; {report['time_s']:g} s")
    lines += [f"Note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropelib.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path, help="the student's notebook (.ipynb)")
    parser.add_argument("--chapter", type=int, help="the chapter to grade (default: from the file name or content)")
    parser.add_argument("--json", type=Path, metavar="REPORT", help="also write the report as JSON here")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for all the notebook's cells (600)")
    parser.add_argument("--cell-timeout", type=float, default=120, help="seconds for one cell (120)")
    parser.add_argument("--check-timeout", type=float, default=60, help="seconds for one check (60)")
    args = parser.parse_args(argv)
    try:
        report = grade_notebook(args.notebook, args.chapter, args.timeout, args.cell_timeout, args.check_timeout)
    except UnusableInput as error:
        print(f"ropelib.grade: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
