"""Shared helpers for the ropelib tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Notebook kernels and the book build inherit this: one thread each, so that two pytest
# workers share a 2-core machine without oversubscribing it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import ropelib

ROOT = Path(__file__).resolve().parent.parent

# One head_dim every variant accepts: pairs (2), quadruples (4), triplets (3), 8x8 blocks.
HEAD_DIM = 48
RELATIVE = ("rope1d", "axial", "uniform", "mixed", "comrope-ap", "comrope-ld")

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def make_encoding(name: str, num_heads: int = 2, head_dim: int = HEAD_DIM, **options):
    return ropelib.build_encoding(name, head_dim=head_dim, num_heads=num_heads, **options)


def random_positions(enc, n: int, scale: float = 3.0, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Random real positions in [-scale, scale]^axes (the algebra does not care about grids)."""
    return (torch.rand(n, enc.axes, generator=generator, dtype=dtype) * 2 - 1) * scale


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@dataclass
class BookBuild:
    """One build of the whole book: ``jupyter-book build -W -n --keep-going`` into a temporary folder."""

    html: Path  # the site, ``_build/html``
    returncode: int
    log: str
    smoke: bool  # the notebooks ran in smoke mode


@pytest.fixture(scope="session")
def book_build(tmp_path_factory) -> BookBuild:
    """The book, built once per test run and shared by tests/test_book.py (warnings, what the pages
    hold) and tests/test_browser.py (the pages in a browser). With pytest-xdist the first worker to
    ask builds it while the others wait for it (a lock in the run's shared temporary folder)."""
    from filelock import FileLock  # a dependency of torch

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder above the workers' own ones
    out = shared / "book-build"
    env = {**os.environ, "ROPELIB_SMOKE": os.environ.get("ROPELIB_SMOKE", "1")}
    smoke = env["ROPELIB_SMOKE"].strip().lower() in {"1", "true", "yes", "on"}
    with FileLock(str(shared / "book-build.lock")):
        result = out / "result.json"
        if not result.exists():
            jupyter_book = Path(sys.executable).parent / "jupyter-book"
            executable = str(jupyter_book) if jupyter_book.exists() else shutil.which("jupyter-book")
            assert executable, "jupyter-book is not installed"
            out.mkdir(exist_ok=True)
            built = subprocess.run([executable, "build", str(ROOT), "--path-output", str(out), "-W", "-n",
                                    "--keep-going"], capture_output=True, text=True, env=env)
            (out / "build.log").write_text(built.stdout + built.stderr)
            result.write_text(json.dumps({"returncode": built.returncode}))
    return BookBuild(html=out / "_build" / "html", returncode=json.loads(result.read_text())["returncode"],
                     log=(out / "build.log").read_text(), smoke=smoke)
