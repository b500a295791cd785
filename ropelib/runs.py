"""A run folder holds one run: its configuration, its checkpoints, its log and its results.

    runs/<run name>/
        config.json      the resolved configuration, written when the run starts
        checkpoint.pt    the last checkpoint (atomic), resumed from automatically
        best.pt          the weights with the best test accuracy so far
        metrics.jsonl    one line per epoch, rewritten from the checkpoint on resume
        model.pt         the final weights and config;  results.json: what the run measured

A folder is never silently reused for a different configuration, and two processes never write
into one folder: :meth:`RunFolder.claim` refuses both, saying what to do instead.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

# Settings that may change when a run is resumed without making it a different run: where and
# how it runs, what is logged and how often, and which extra resolutions the end evaluates.
RESUMABLE = {"progress", "checkpoint_minutes", "num_workers", "max_steps", "log_every", "eval_resolutions",
             "eval_every", "resume", "out_dir", "data_dir", "download", "compile", "device"}


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message says what to do instead."""


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``name: old -> new`` for every setting that differs, model fields as ``model.name``."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key == "model":
            changed += differences(a, b, "model.")
        elif a != b and key not in RESUMABLE and f"{prefix}{key}" != "model.num_classes":  # the data's
            changed.append(f"{prefix}{key} {a!r} -> {b!r}")
    return changed


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = None

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(self, config: dict, resume: bool, recorded: dict | None = None) -> None:
        """Take the folder for a run with ``config`` (a ``TrainConfig.to_dict()``), or refuse.

        ``recorded``: the configuration the folder's checkpoint was written with, if any (older
        folders have no config.json)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        started = any(self.file(n).exists() for n in ("checkpoint.pt", "metrics.jsonl", "results.json"))
        if started and self.file("config.json").is_file():
            recorded = json.loads(self.file("config.json").read_text())
        if started and not resume:
            self.release()
            raise RunFolderError(f"{self.path} already holds a run; --no-resume does not overwrite it: choose "
                                 "another --run-name (or --out-dir), or delete the folder to start over")
        if started and recorded is not None:
            changed = differences(recorded, config)
            if changed:
                self.release()
                raise RunFolderError(
                    f"{self.path} holds a run with other settings ({'; '.join(changed)}); a run folder holds one "
                    "run: choose another --run-name (or --out-dir) for the new settings, or delete the folder")
        self.write_config(config)

    def write_config(self, config: dict) -> None:
        self.file("config.json").write_text(json.dumps(config, indent=1) + "\n")

    def _take_lock(self) -> None:
        handle = open(self.file(".lock"), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise RunFolderError(f"another process (pid {owner}) is writing to {self.path}; wait for it to "
                                 "finish, or choose another --run-name") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle  # held until release() or the process ends (the OS drops it then)

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def rewrite_metrics(self, history: list[dict]) -> None:
        """The log as the checkpoint knows it: an epoch logged after the last checkpoint, by a run
        killed before it could save, is dropped (it will be logged again, once)."""
        self.file("metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))

    def log(self, record: dict) -> None:
        with self.file("metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def finished_results(self) -> dict | None:
        path = self.file("results.json")
        return json.loads(path.read_text()) if path.is_file() else None
