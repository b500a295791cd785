"""The site builds with warnings as errors and has what a reader needs (runs every notebook)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.book
def test_book_builds_without_warnings(tmp_path):
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    executable = str(jupyter_book) if jupyter_book.exists() else shutil.which("jupyter-book")
    assert executable, "jupyter-book is not installed"
    env = {**os.environ, "ROPELIB_SMOKE": os.environ.get("ROPELIB_SMOKE", "1")}
    result = subprocess.run([executable, "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n",
                             "--keep-going"], capture_output=True, text=True, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    html = tmp_path / "_build" / "html"
    chapter = (html / "notebooks" / "03_axial_rope.html").read_text()
    assert "colab.research.google.com/github/" in chapter  # the launch button
    assert "solution" in chapter and "dropdown" in chapter  # exercises with hidden solutions
    assert "prf:theorem" in (html / "book" / "theory.html").read_text() or \
        "theorem" in (html / "book" / "theory.html").read_text()
    assert "Su" in (html / "book" / "bibliography.html").read_text()
    for name in ["01_attention_and_position", "08_equivariance_lab"]:
        assert (html / "notebooks" / f"{name}.html").exists()
