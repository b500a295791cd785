"""Dataclass fields that carry their own help, and the type check every config runs on itself.

The configs (``ropelib.vit.ViTConfig``, ``ropelib.config.TrainConfig``) are plain dataclasses; the
command line is generated from their fields, with each field's ``help`` and default.
"""

from __future__ import annotations

import dataclasses
import typing


def option(default=None, help: str = "", factory=None):
    """A dataclass field with its command-line help."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    """The command-line option of a field: ``head_dim`` -> ``--head-dim``."""
    return "--" + name.replace("_", "-")


def check_types(instance) -> list[str]:
    """Problems with the types of a dataclass's fields, each naming its option. Whole numbers
    given for float fields are converted in place (YAML reads ``5`` as an int)."""
    problems = []
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value, kind = getattr(instance, f.name), hints[f.name]
        allowed = typing.get_args(kind) or (kind,)
        if value is None and type(None) in allowed:
            continue
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            setattr(instance, f.name, float(value))
            continue
        plain = tuple(typing.get_origin(a) or a for a in allowed if a is not type(None))
        ok = isinstance(value, plain) and (bool in plain or not isinstance(value, bool))
        if not ok:
            names = " or ".join(getattr(a, "__name__", str(a)) for a in plain)
            problems.append(f"{flag(f.name)} must be {names}, got {value!r}")
    return problems
