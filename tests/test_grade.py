"""The grader on tiny generated notebooks of chapter 2: right, wrong, crashing, looping, hanging,
dying, and files that are not notebooks. Each test starts one small kernel."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ropelib import grade

SETUP = "import torch"
SCORE = """\
def score(q, k, p, p_prime, theta=0.7):
    def R(a):
        return torch.stack((torch.stack((a.cos(), -a.sin())), torch.stack((a.sin(), a.cos()))))
    return (R(p[0] * theta) @ q[:2]) @ (R(p_prime[0] * theta) @ k[:2])"""
HALF = """\
def rope_half(x, positions, base=10000.0):
    omega = base ** (-torch.arange(0, x.shape[-1], 2, dtype=torch.float64) / x.shape[-1])
    angles = (positions.double()[:, None] * omega).to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()), dim=-1)"""
ADJACENT = HALF.replace("x1, x2 = x.chunk(2, dim=-1)", "x1, x2 = x[..., 0::2], x[..., 1::2]").replace(
    "return torch.cat((", "return torch.stack((").replace("), dim=-1)", "), -1).flatten(-2)")
FAR = """\
import ropelib
rope = ropelib.build_encoding("rope1d", head_dim=64, num_heads=1)
q_far = torch.randn(64)
k_far = rope.rotate(q_far.view(1, 1, 1, 64), torch.tensor([[-200.0]])).flatten()"""


def notebook(tmp_path, *cells, name="02_student.ipynb"):
    nb = new_notebook(cells=[new_markdown_cell("# Chapter 2, my answers")]
                      + [new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def points(report):
    return {e["label"]: e["points"] for e in report["exercises"] if e["graded"]}


def test_a_correct_notebook_gets_full_points_and_a_json_report(tmp_path):
    path = notebook(tmp_path, SETUP, SCORE, HALF, FAR)
    out = tmp_path / "report.json"
    assert grade.main([str(path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["chapter"] == 2 and points(report) == {"ch2-by-hand": 1, "ch2-half": 2, "ch2-far": 1}
    assert report["total"] == report["max_total"] == 4
    assert [e["number"] for e in report["exercises"]] == ["2.1", "2.2", "2.3", "2.4"]
    base = next(e for e in report["exercises"] if e["label"] == "ch2-base")
    assert base["graded"] is False and base["points"] is None and "not graded automatically" in base["feedback"]
    assert report["cells"] == {"total": 4, "run": 4, "errors": 0, "timed_out": 0, "not_run": 0}
    assert report["ropelib_version"] and report["notebook"] == str(path) and not report["notes"]


def test_a_wrong_notebook_gets_feedback_per_exercise(tmp_path, capsys):
    path = notebook(tmp_path, SETUP, ADJACENT, "q_far = k_far = torch.ones(64)")
    assert grade.main([str(path)]) == 0  # wrong answers are a result, not an error
    printed = capsys.readouterr().out
    assert "Total: 0/4 points" in printed
    assert "it pairs adjacent channels (x0, x1), (x2, x3), ...; this exercise pairs channel i with" in printed
    assert "not answered: define `score`" in printed
    assert "q_far, k_far: the logit with the key 200 positions after the query" in printed


def test_a_cell_that_raises_costs_only_what_it_should_have_defined(tmp_path):
    path = notebook(tmp_path, SETUP, SCORE, "raise RuntimeError('oops')\n" + FAR, HALF)
    report = grade.grade_notebook(path)
    assert points(report) == {"ch2-by-hand": 1, "ch2-half": 2, "ch2-far": 0}  # the cell after the error ran
    assert report["cells"]["errors"] == 1 and report["cells"]["run"] == 4


def test_an_endless_loop_is_interrupted_and_the_rest_still_counts(tmp_path):
    loop = "import time\nwhile True:\n    time.sleep(0.05)"
    looping_answer = "def rope_half(x, positions, base):\n" + "\n".join("    " + line for line in loop.splitlines())
    path = notebook(tmp_path, SETUP, SCORE, loop, looping_answer, FAR)
    began = time.monotonic()
    report = grade.grade_notebook(path, cell_timeout=3, check_timeout=2)
    assert time.monotonic() - began < 60
    assert points(report) == {"ch2-by-hand": 1, "ch2-half": 0, "ch2-far": 1}
    assert report["cells"]["timed_out"] == 1
    half = next(e for e in report["exercises"] if e["label"] == "ch2-half")
    assert half["feedback"] == "the check took longer than 2 s with your answer (an endless loop?)"


def test_a_kernel_that_ignores_interrupts_is_stopped_and_what_ran_counts(tmp_path):
    hang = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)"
    path = notebook(tmp_path, SETUP, SCORE, hang, HALF)
    began = time.monotonic()
    report = grade.grade_notebook(path, cell_timeout=3)
    assert time.monotonic() - began < 90
    assert points(report) == {"ch2-by-hand": 1, "ch2-half": 0, "ch2-far": 0}
    assert "stopped responding" in report["notes"][0] and report["cells"]["not_run"] == 1


def test_a_dying_kernel_and_the_total_time_limit(tmp_path):
    path = notebook(tmp_path, SETUP, SCORE, "import os\nos._exit(1)", HALF)
    report = grade.grade_notebook(path)
    assert points(report)["ch2-by-hand"] == 1 and points(report)["ch2-half"] == 0
    assert "the kernel died in code cell 3" in report["notes"][0] and report["cells"]["not_run"] == 1

    path = notebook(tmp_path, SETUP, SCORE, "import time\ntime.sleep(30)", HALF, name="slow.ipynb")
    report = grade.grade_notebook(path, chapter=2, timeout=8)
    assert points(report) == {"ch2-by-hand": 1, "ch2-half": 0, "ch2-far": 0}
    assert report["cells"]["not_run"] == 1 and "time limit" in report["notes"][0]


def test_the_chapter_comes_from_the_name_or_the_labels(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("**Your answer to Exercise 3.2** (`ch3-implement`).")])
    assert grade.find_chapter(tmp_path / "alice.ipynb", nb) == 3
    assert grade.find_chapter(tmp_path / "05_spherical_rope.ipynb", new_notebook()) == 5
    with pytest.raises(grade.UnusableInput, match="pass --chapter N"):
        grade.find_chapter(tmp_path / "alice.ipynb", new_notebook())


@pytest.mark.parametrize("content", [None, "just some text", '{"cells": 3}'])
def test_unusable_input_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "homework.ipynb"
    if content is not None:
        path.write_text(content)
    run = subprocess.run([sys.executable, "-m", "ropelib.grade", str(path), "--chapter", "2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("ropelib.grade: ") and len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr
