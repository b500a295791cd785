"""Training configuration: one dataclass, recipes as YAML files, overrides from the command line.

    config = load_recipe("circular-cifar100", encoding="spherical", head_dim=60)

A recipe file (``ropelib/recipes/<name>.yaml``) sets any of :class:`TrainConfig`'s fields and
cites the paper it reproduces; an unknown field is an error, in a file as on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

RECIPE_DIR = Path(__file__).resolve().parent


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: a small run on the synthetic task."""

    # -- what is being reproduced
    recipe: str = "default"
    source: str = ""  # the paper and table the recipe follows

    # -- data
    dataset: str = "synthetic"  # synthetic | cifar10 | cifar100 | imagefolder | imagenet
    data_dir: str = "data"  # where data sets live (or are downloaded to)
    download: bool = False  # let torchvision download CIFAR if it is missing
    synthetic_grid: int = 6  # the synthetic task: patches per side ...
    synthetic_classes: int = 8  # ... direction classes ...
    synthetic_epoch_size: int = 16384  # ... and images per epoch (drawn afresh every epoch)
    synthetic_test_size: int = 2000
    data_on_device: str = "auto"  # hold in-memory data on the GPU and augment there: auto | yes | no
    num_workers: int = 8  # DataLoader workers for folder data sets

    # -- model (ropelib.vit)
    model: str = "small"  # tiny | small | base | large | custom
    img_size: int = 32  # training resolution
    patch_size: int = 4
    embed_dim: int | None = None  # None: the preset's
    depth: int | None = None
    num_heads: int | None = None
    head_dim: int | None = None  # None: embed_dim / num_heads
    head_dim_overrides: dict = field(default_factory=dict)  # per encoding, e.g. {spherical: 63}
    encoding: str = "mixed"
    encoding_options: dict = field(default_factory=dict)
    # per encoding, e.g. {axial: {theta: 10.0, convention: circular}}: how a recipe puts every
    # variant in one paper's setting; encoding_options (the command line's) win over these
    encoding_overrides: dict = field(default_factory=dict)
    ape: str | None = None  # an APE next to a rotary encoding
    layer_scale: float | None = None
    drop_path: float = 0.0
    dropout: float = 0.0
    position_jitter: float = 0.0
    global_pool: str = "token"

    # -- optimisation
    epochs: int = 100
    batch_size: int = 256  # global, over all processes
    optimizer: str = "adamw"  # adamw | adam | lamb (timm's)
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = None
    loss: str = "ce"  # ce | bce (DeiT-III's binary cross-entropy)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup alpha (timm's Mixup), 0: off
    cutmix: float = 0.0  # cutmix alpha, 0: off

    # -- augmentation of training images
    crop: str = "none"  # pad (pad 4 and crop, CIFAR) | rrc (random resized crop) | none
    rrc_scale: list = field(default_factory=lambda: [0.08, 1.0])
    flip: bool = False
    three_augment: bool = False
    color_jitter: float = 0.0
    randaugment: bool = False  # torchvision's RandAugment on DataLoader workers (data_on_device: no)

    # -- evaluation
    eval_resolutions: list = field(default_factory=list)  # extra test resolutions at the end
    eval_crop_pct: float = 1.0  # folder data: resize to size / crop_pct, then centre-crop
    eval_every: int = 1  # epochs

    # -- system
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "auto"  # auto (bf16 if the GPU has it, else fp16) | bf16 | fp16 | fp32
    compile: bool = False
    seed: int = 0
    out_dir: str = "runs"
    run_name: str | None = None  # default: <recipe>-<encoding>-seed<seed>
    checkpoint_minutes: float = 10.0
    resume: bool = True  # continue from the run folder's checkpoint if there is one
    log_every: int = 50  # steps between loss checks and time-based checkpoints
    progress: bool = True  # tqdm bars (always off in smoke mode)
    max_steps: int | None = None  # stop after this many optimiser steps (tests, benchmarks)

    @property
    def name(self) -> str:
        return self.run_name or f"{self.recipe}-{self.encoding}-seed{self.seed}"

    @property
    def effective_head_dim(self) -> int | None:
        return self.head_dim_overrides.get(self.encoding, self.head_dim)

    @property
    def effective_encoding_options(self) -> dict:
        return {**self.encoding_overrides.get(self.encoding, {}), **self.encoding_options}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


HINTS = typing.get_type_hints(TrainConfig)


def _check_fields(values: dict, where: str) -> dict:
    """Unknown fields are errors; values are converted to their field's type (YAML reads ``3e-3`` as
    text, for instance) or rejected with the field's name."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(FIELDS)}")
    return {name: _convert(name, value, where) for name, value in values.items()}


def _convert(name: str, value, where: str):
    kind = HINTS[name]
    optional = type(None) in typing.get_args(kind)
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind) if optional else kind
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ValueError(f"{where}: {name} cannot be empty")
    try:
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if base is int and (isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str)):
            return int(value)
        if base is str:
            return str(value)
        if base in (list, dict):
            if isinstance(value, str):
                import yaml

                value = yaml.safe_load(value)
            if not isinstance(value, base):
                raise TypeError
            return value
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{where}: {name} must be {getattr(base, '__name__', base)}, got {value!r}")


def load_recipe(name_or_path: str | None = None, **overrides) -> TrainConfig:
    """A recipe by name (``ropelib/recipes/<name>.yaml``) or path, with field overrides."""
    import yaml

    values: dict = {}
    if name_or_path not in (None, "default"):
        path = Path(name_or_path)
        if not path.suffix:
            path = RECIPE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown recipe {name_or_path!r}; available: {', '.join(available_recipes())} "
                             "(or the path of a .yaml file)")
        values = _check_fields(yaml.safe_load(path.read_text()) or {}, str(path))
        values.setdefault("recipe", path.stem)
    return TrainConfig(**{**values, **_check_fields(overrides, "overrides")})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field (``--head-dim 60``, ``--no-flip``,
    ``--encoding-options '{learnable: true}'``)."""
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        if HINTS[name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:  # converted (and checked) by load_recipe, by the field's type
            parser.add_argument(flag, default=None, metavar=name.upper())


def from_arguments(args: argparse.Namespace) -> TrainConfig:
    """``--recipe NAME`` picks the recipe file; every other option overrides one of its fields."""
    overrides = {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
    return load_recipe(overrides.pop("recipe", None), **overrides)
