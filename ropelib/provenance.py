"""Where a number came from: code commit, date, hardware and software, stored beside every result."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True,
                          timeout=10).stdout


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the repository holding ``path`` (default: ropelib's), ``+dirty`` if tracked
    files have uncommitted changes; ``None`` outside a git checkout (e.g. a pip install).

    ``ROPELIB_COMMIT``, when set, wins and is recorded as ``<value>+declared``: a copy of the tree
    sent to another machine (a lent GPU) may carry no ``.git`` or a stale one, whose HEAD would
    name the wrong code.
    """
    declared = os.environ.get("ROPELIB_COMMIT")
    if declared:
        return f"{declared}+declared"
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        return _git(where, "rev-parse", "HEAD").strip() + ("+dirty" if uncommitted(where) else "")
    except (OSError, subprocess.SubprocessError):
        return None


def uncommitted(path: str | os.PathLike | None = None) -> list[str]:
    """Tracked files that differ from the commit (what ``+dirty`` refers to)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        lines = _git(where, "status", "--porcelain", "--untracked-files=no").splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in lines if line.strip()]  # porcelain lines: "XY path"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str | None = None) -> dict:
    """Hardware and software versions; the accelerator's name when ``device`` is a GPU."""
    from . import __version__

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ropelib": __version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def provenance(device=None, **extra) -> dict:
    """A record to store next to a result: date (UTC), commit, environment, plus ``extra``."""
    record = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "environment": environment(device),
        **extra,
    }
    if record["commit"] and record["commit"].endswith("+dirty"):
        record["uncommitted_files"] = uncommitted()
    return record


def write_json(record: dict, path: str | os.PathLike) -> None:
    """Write a result record (folders created as needed) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
