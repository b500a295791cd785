"""One training run's configuration: a plain dataclass holding the model's own (``ViTConfig``).

    config = load_recipe("circular-cifar100", encoding="spherical", epochs=10)
    python -m ropelib.train --recipe circular-cifar100 --encoding spherical --epochs 10

A recipe (``ropelib/recipes/<name>.yaml``) sets training fields at its top level and model fields
under ``model:``; ``preset`` chooses the ViT's size first. Every field, of the run or of the model,
is also a command-line option of the same name. Values are checked when the config is made, by
the dataclasses themselves, before any data is read. A run records ``to_dict()`` whole, and
``TrainConfig.from_dict`` rebuilds it (evaluation rebuilds the model from it).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path

from .options import check_types, flag, option
from .vit import PRESETS, ViTConfig

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder", "imagenet")
OPTIMIZERS = ("adamw", "adam", "lamb")


def default_model(preset: str = "small") -> ViTConfig:
    """The model of a run that sets nothing: a ViT of ``preset``'s size on the synthetic task's
    24-pixel images of 4-pixel patches."""
    return ViTConfig(img_size=24, patch_size=4, **PRESETS.get(preset, {}))


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: a small run on the synthetic task."""

    # -- what is being reproduced
    recipe: str = option("default", "the recipe the run started from")
    source: str = option("", "the paper and table the recipe follows")

    # -- data
    dataset: str = option("synthetic", "synthetic | cifar10 | cifar100 | imagefolder | imagenet")
    data_dir: str = option("data", "where data sets live (or are downloaded to)")
    download: bool = option(False, "let torchvision download CIFAR if it is missing")
    synthetic_grid: int = option(6, "synthetic task: patches per side")
    synthetic_classes: int = option(8, "synthetic task: direction classes")
    synthetic_epoch_size: int = option(16384, "synthetic task: images per epoch, drawn afresh every epoch")
    synthetic_test_size: int = option(2000, "synthetic task: test images")
    data_on_device: str = option("auto", "hold in-memory data on the GPU and augment there: auto | yes | no")
    num_workers: int | None = option(None, "DataLoader workers for folder data sets (default: the CPUs, "
                                           "at most 8)")

    # -- the model: every ViTConfig field, set under model: in a recipe or by name
    model: ViTConfig = option(help="the ViT (ropelib.vit.ViTConfig)", factory=lambda: default_model())
    preset: str = option("small", "ViT size the model fields start from: tiny | small | base | large | custom")
    head_dim_overrides: dict = option(help="per encoding, e.g. {spherical: 63} (applied by the recipe loader)",
                                      factory=dict)
    encoding_overrides: dict = option(help="per encoding options, e.g. {axial: {theta: 10.0}} (applied by the "
                                           "recipe loader; encoding_options win)", factory=dict)

    # -- optimisation
    epochs: int = option(100, "training epochs (the cosine schedule spans them)")
    batch_size: int = option(256, "global batch, over all processes")
    optimizer: str = option("adamw", "adamw | adam | lamb (timm's)")
    lr: float = option(1e-3, "peak learning rate")
    min_lr: float = option(1e-6, "learning rate at the end of the cosine decay")
    warmup_epochs: float = option(5.0, "linear warm-up, in epochs")
    weight_decay: float = option(0.05, "on weight matrices only")
    betas: list = option(help="Adam betas", factory=lambda: [0.9, 0.999])
    grad_clip: float | None = option(None, "clip the gradient norm to this (none: no clipping)")
    loss: str = option("ce", "ce | bce (DeiT-III's binary cross-entropy)")
    label_smoothing: float = option(0.0, "label smoothing")
    mixup: float = option(0.0, "mixup alpha (timm's Mixup); 0: off")
    cutmix: float = option(0.0, "cutmix alpha; 0: off")

    # -- augmentation of training images
    crop: str = option("none", "pad (pad 4 and crop, CIFAR) | rrc (random resized crop) | none")
    rrc_scale: list = option(help="random resized crop area range", factory=lambda: [0.08, 1.0])
    flip: bool = option(False, "random horizontal flips")
    three_augment: bool = option(False, "DeiT-III's 3-Augment (grayscale, solarise, blur)")
    color_jitter: float = option(0.0, "colour jitter strength")
    randaugment: bool = option(False, "torchvision's RandAugment on DataLoader workers (data_on_device: no)")

    # -- evaluation
    eval_resolutions: list = option(help="extra test resolutions (pixels) at the end", factory=list)
    eval_crop_pct: float = option(1.0, "folder data: resize to size / crop_pct, then centre-crop")
    eval_every: int = option(1, "epochs between test evaluations")

    # -- system
    device: str = option("auto", "auto | cpu | cuda (torchrun gives each process its GPU)")
    precision: str = option("auto", "auto (bf16 if the GPU has it, else fp16; fp32 on the CPU) | bf16 | fp16 | fp32")
    compile: bool = option(False, "torch.compile the model")
    seed: int = option(0, "seed of the model, the data order and the augmentation")
    out_dir: str = option("runs", "folder of the run folders")
    run_name: str | None = option(None, "the run's folder name (default: <recipe>-<encoding>-seed<seed>)")
    checkpoint_minutes: float = option(10.0, "minutes between checkpoints within an epoch (0: at every loss "
                                             "check, see --log-every)")
    resume: bool = option(True, "continue from the run folder's checkpoint if there is one")
    log_every: int = option(50, "steps between loss checks and time-based checkpoints")
    progress: bool = option(True, "tqdm progress bars (always off in smoke mode)")
    max_steps: int | None = option(None, "stop after this many optimiser steps (tests, benchmarks)")

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ViTConfig(**self.model)
        problems = check_types(self) + self._problems()
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def name(self) -> str:
        return self.run_name or f"{self.recipe}-{self.model.encoding}-seed{self.seed}"

    @property
    def workers(self) -> int:
        return self.num_workers if self.num_workers is not None else min(8, os.cpu_count() or 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild a recorded config (``to_dict()``, as stored in checkpoints and results)."""
        values = dict(values)
        if not isinstance(values.get("model", {}), (dict, ViTConfig)):
            values = _nest_legacy(values)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} in a recorded config")
        return cls(**values)

    def _problems(self) -> list[str]:
        p = []

        def need(ok: bool, message: str):
            if not ok:
                p.append(message)

        need(self.dataset in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        need(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                           f"got {self.optimizer!r}")
        need(self.loss in ("ce", "bce"), f"--loss must be ce or bce, got {self.loss!r}")
        need(self.crop in ("pad", "rrc", "none"), f"--crop must be pad, rrc or none, got {self.crop!r}")
        need(self.data_on_device in ("auto", "yes", "no"),
             f"--data-on-device must be auto, yes or no, got {self.data_on_device!r}")
        need(self.precision in ("auto", "bf16", "fp16", "fp32"),
             f"--precision must be auto, bf16, fp16 or fp32, got {self.precision!r}")
        need(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}")
        need(self.preset in (*PRESETS, "custom"), f"--preset must be one of {', '.join(PRESETS)} or custom, "
                                                  f"got {self.preset!r}")
        for name in ("epochs", "batch_size", "eval_every", "log_every", "synthetic_grid", "synthetic_classes",
                     "synthetic_epoch_size", "synthetic_test_size"):
            value = getattr(self, name)
            need(value >= 1, f"{flag(name)} must be at least 1, got {value}")
        need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        need(self.lr <= 0 or 0 <= self.min_lr <= self.lr, f"--min-lr must lie in [0, lr = {self.lr}], "
                                                           f"got {self.min_lr}")
        need(self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        need(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(0 <= self.label_smoothing < 1, f"--label-smoothing must lie in [0, 1), got {self.label_smoothing}")
        need(self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must be >= 0")
        need(self.color_jitter >= 0, f"--color-jitter must be >= 0, got {self.color_jitter}")
        need(self.grad_clip is None or self.grad_clip > 0, f"--grad-clip must be positive (or none), "
                                                           f"got {self.grad_clip}")
        need(self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1, got {self.max_steps}")
        need(self.num_workers is None or self.num_workers >= 0, f"--num-workers must be >= 0, got {self.num_workers}")
        need(self.checkpoint_minutes >= 0, f"--checkpoint-minutes must be >= 0, got {self.checkpoint_minutes}")
        need(0 < self.eval_crop_pct <= 1, f"--eval-crop-pct must lie in (0, 1], got {self.eval_crop_pct}")
        need(len(self.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas),
             f"--betas must be two numbers in [0, 1), e.g. '[0.9, 0.999]', got {self.betas!r}")
        need(len(self.rrc_scale) == 2 and all(isinstance(s, (int, float)) and 0 < s <= 1 for s in self.rrc_scale),
             f"--rrc-scale must be two numbers in (0, 1], got {self.rrc_scale!r}")
        patch = self.model.patch_size
        for r in self.eval_resolutions:
            if not isinstance(r, int) or isinstance(r, bool) or r < 1 or r % patch:
                p.append(f"--eval-resolutions: {r!r} is not a positive multiple of the patch size {patch}; "
                         f"use e.g. {max(1, round(r / patch)) * patch if isinstance(r, (int, float)) else patch}")
        if self.dataset == "synthetic" and self.synthetic_grid * patch != self.model.img_size:
            p.append(f"the synthetic task draws {self.synthetic_grid} patches of {patch} pixels per side, "
                     f"{self.synthetic_grid * patch}-pixel images, but --img-size is {self.model.img_size}: "
                     f"set --img-size {self.synthetic_grid * patch} (or change --synthetic-grid)")
        if self.randaugment and self.data_on_device == "yes":
            p.append("--randaugment runs on DataLoader workers: set --data-on-device no (or auto)")
        return p


def _nest_legacy(values: dict) -> dict:
    """A config recorded before the model's fields were nested (ropelib before commit e890587):
    ``model`` was the preset's name, the model fields sat at the top level, and the protocol was
    a model setting (now an argument of the forward)."""
    values = dict(values)
    model_names = {f.name for f in dataclasses.fields(ViTConfig)}
    model = {k: values.pop(k) for k in list(values) if k in model_names and k != "model"}
    values["preset"] = values.pop("model")
    values.pop("position_protocol", None)
    base = dataclasses.asdict(default_model(values["preset"]))
    values["model"] = {**base, **{k: v for k, v in model.items() if v is not None or k == "head_dim"}}
    return values


# -- recipes ---------------------------------------------------------------------------------------------

RUN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
# num_classes comes from the data set
MODEL_FIELDS = {f.name for f in dataclasses.fields(ViTConfig)} - {"num_classes"}


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _unknown(names, where: str) -> None:
    valid = sorted(RUN_FIELDS | MODEL_FIELDS)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ValueError(f"{where}: unknown field(s) {', '.join(hints)}; valid fields: {', '.join(valid)}")


def read_recipe(name_or_path: str) -> tuple[dict, dict]:
    """``(run fields, model fields)`` of a recipe file, by name or path."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name_or_path!r}; available: {', '.join(available_recipes())} "
                         "(or the path of a .yaml file, or of a run's config.json or results.json)")
    if path.suffix == ".json":  # not YAML: YAML 1.1 reads JSON's 1e-06 as a string
        values = _recorded(json.loads(path.read_text()))
    else:
        values = yaml.safe_load(path.read_text()) or {}
    model = values.pop("model", {}) or {}
    if not isinstance(model, dict):
        raise ValueError(f"{path}: model: must be a mapping of ViT fields")
    _unknown(values, str(path))
    misplaced = sorted(set(values) & MODEL_FIELDS)
    if misplaced:
        raise ValueError(f"{path}: {', '.join(misplaced)} belong under model:")
    _unknown(model, f"{path} (model:)")
    values.setdefault("recipe", path.stem)
    return values, model


def _recorded(values: dict) -> dict:
    """The recipe that re-runs a recorded run: a run folder's ``config.json``, or the ``config``
    of its ``results.json`` (also those recorded before the model's fields were nested). The
    class count is left out: it follows from the data set."""
    if "provenance" in values and isinstance(values.get("config"), dict):
        values = values["config"]
    recorded = dataclasses.asdict(TrainConfig.from_dict(values))
    recorded["model"].pop("num_classes", None)
    return recorded


def load_recipe(name_or_path: str | None = None, **overrides) -> TrainConfig:
    """A recipe by name or path, then ``overrides`` of any run or model field by name.

    The model starts from ``preset``'s sizes, then the recipe's ``model:`` fields, then the recipe's
    per-encoding ``head_dim_overrides`` and ``encoding_overrides`` for the chosen encoding, then
    the overrides given here (the command line's)."""
    run, model = read_recipe(name_or_path) if name_or_path not in (None, "default") else ({}, {})
    _unknown(overrides, "overrides")
    run.update({k: v for k, v in overrides.items() if k in RUN_FIELDS})
    given = {k: v for k, v in overrides.items() if k in MODEL_FIELDS}
    preset = run.get("preset", "small")
    if preset != "custom" and preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)} or custom, got {preset!r}")
    encoding = given.get("encoding", model.get("encoding", ViTConfig.encoding))
    fields = {**dataclasses.asdict(default_model(preset)), **model}
    head_dims = run.get("head_dim_overrides", {}) or {}
    if encoding in head_dims:
        fields["head_dim"] = head_dims[encoding]
    per_encoding = (run.get("encoding_overrides", {}) or {}).get(encoding, {})
    options = {**fields.get("encoding_options", {}), **per_encoding, **given.pop("encoding_options", {})}
    fields.update(given)
    fields["encoding_options"] = options
    return TrainConfig(**run, model=ViTConfig(**fields))


# -- the command line ------------------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse without abbreviations (``--epoch`` is not ``--epochs``), which names the closest
    option when one is misspelt, and errors in one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments"):
            known = [s for a in self._actions for s in a.option_strings]
            hints = []
            for word in message.split(":", 1)[1].split():
                if word.startswith("--"):
                    close = difflib.get_close_matches(word.split("=")[0], known, n=1)
                    hints.append(f"{word}" + (f" (did you mean {close[0]}?)" if close else ""))
            if hints:
                message = "unknown option " + ", ".join(hints)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parse_yaml(kind):
    def parse(text: str):
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise argparse.ArgumentTypeError(f"not valid YAML ({error.problem})") from error
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, e.g. "
                                             + ("'{learnable: true}'" if kind is dict else "'[48, 64]'"))
        return value

    parse.__name__ = kind.__name__
    return parse


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_field(group, f, kind, default) -> None:
    name = flag(f.name)
    text = f.metadata.get("help", "")
    allowed = typing.get_args(kind) or (kind,)
    base = next(a for a in allowed if a is not type(None))
    base = typing.get_origin(base) or base
    help_text = f"{text} (default: {default!r})".replace("%", "%%")
    if base is bool:
        group.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif base in (list, dict):
        group.add_argument(name, type=_parse_yaml(base), default=None, metavar="YAML", help=help_text)
    else:
        convert = _parse_optional(base) if type(None) in allowed else base
        group.add_argument(name, type=convert, default=None, metavar=base.__name__.upper(), help=help_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--recipe`` and one option per field of the run and of its model (``--head-dim 60``,
    ``--no-flip``, ``--encoding-options '{learnable: true}'``)."""
    parser.add_argument("--recipe", default=None, help="a recipe name (--list-recipes), a .yaml path, or "
                        "a run's config.json or results.json (to re-run it); read first, every other "
                        "option overrides it")
    run = parser.add_argument_group("run (ropelib.config.TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("model", "recipe"):
            _add_field(run, f, hints[f.name], getattr(defaults, f.name))
    model = parser.add_argument_group("model (ropelib.vit.ViTConfig; recipes set these under model:)")
    hints = typing.get_type_hints(ViTConfig)
    for f in dataclasses.fields(ViTConfig):
        if f.name in MODEL_FIELDS:
            _add_field(model, f, hints[f.name], getattr(defaults.model, f.name))


def from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The recipe named by ``--recipe``, then every option given on the command line."""
    given = {name: getattr(args, name) for name in RUN_FIELDS | MODEL_FIELDS
             if name != "recipe" and getattr(args, name, None) is not None}
    return load_recipe(args.recipe, **given)
