"""Accuracy of a trained model at several test resolutions, under each position protocol.

    python -m ropelib.evaluate runs/colab-cifar100-mixed-seed0/model.pt --resolutions 32 48 64 \\
        --protocols native extrapolate interpolate
    python -m ropelib.evaluate --timm vit_small_patch16_rope_mixed_224.naver_in1k --pretrained \\
        --dataset imagenet --data-dir data/imagenet --resolutions 224 320 384 512
    python -m ropelib.evaluate --timm vit_small_patch16_rope_224.naver_in1k \\
        vit_small_patch16_rope_mixed_224.naver_in1k --pretrained --dataset imagenette --download \\
        --resolutions 128 224 384 512 --protocols extrapolate interpolate --subset 1000

The protocols decide where the patches of a larger (or smaller) image sit (``ropelib.positions``):
``extrapolate`` keeps the training spacing and reaches positions never seen in training;
``interpolate`` maps the new grid onto the training image; ``native`` is each encoding's own
convention (rope-vit and LieRE extrapolate, ComRoPE interpolates). Learned APE tables are
always resized by interpolation, as in every paper. Writes ``evaluation.json`` (with
provenance) and ``evaluation.png`` (accuracy against resolution).

``--timm`` takes one or more of timm's RoPE-ViTs (the rope-vit ports), evaluated together on
each resolution's batches, with the preprocessing their weights were published with (timm's
``pretrained_cfg``: mean, std, crop_pct, interpolation; ``--eval-crop-pct`` overrides the crop),
recorded in the JSON. ``--dataset imagenette`` reads Imagenette's val folder (ten ImageNet
classes; ``--download`` fetches it, ``--imagenette-size`` picks the archive), and a model with
1000 outputs is scored on those ten classes' logits only (argmax among them), as on any folder
whose class folders are ImageNet WordNet ids. ``--subset N`` evaluates a class-balanced subset
of N test images, the same every time. In smoke mode (``ROPELIB_SMOKE=1``) nothing is
downloaded: ``--download`` and ``--pretrained`` are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import distributed, pipelines
from .config import ArgumentParser, TrainConfig
from .data import DataError, IMAGENETTE_FOLDERS, imagenet_indices, is_wnid
from .pipelines import TEST_DATASETS, Preprocessing
from .positions import PROTOCOLS
from .provenance import provenance, write_json
from .remedies import REMEDIES
from .smoke import is_smoke
from .vit import ViTConfig, VisionTransformer, from_timm

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # --precision


@torch.no_grad()
def accuracy(model, batches, ctx, autocast_dtype=None, protocol: str = "native", remedy: str = "none",
             logit_indices=None) -> dict:
    """Top-1 and top-5 accuracy (percent) over this rank's share of ``batches``, summed over ranks.
    ``protocol`` places the patches of test images whose grid is not the training grid; ``remedy``
    rescales the rotary frequencies instead (:mod:`ropelib.remedies`). ``logit_indices``: score on
    these logits only, label ``k`` being logit ``logit_indices[k]`` (:func:`class_scoring`)."""
    return accuracies([(model, protocol, remedy)], batches, ctx, autocast_dtype, logit_indices)[0]


@torch.no_grad()
def accuracies(settings, batches, ctx, autocast_dtype=None, logit_indices=None) -> list[dict]:
    """:func:`accuracy` of several ``(model, protocol, remedy)`` settings over one pass of
    ``batches``: each batch is read (decoded, resized) once for all of them."""
    models = list({id(m): m for m, _, _ in settings}.values())
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    counts = torch.zeros(len(settings), 3, device=ctx.device, dtype=torch.float64)  # correct@1, correct@5, total
    index = None if logit_indices is None else torch.as_tensor(logit_indices, dtype=torch.long, device=ctx.device)
    for x, y in batches:
        for i, (model, protocol, remedy) in enumerate(settings):
            with torch.autocast(ctx.device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                logits = model(x, protocol=protocol) if remedy == "none" else model(x, remedy=remedy)
            logits = logits.float() if index is None else logits.float()[:, index]
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            counts[i, 0] += (top[:, 0] == y).sum()
            counts[i, 1] += (top == y[:, None]).any(-1).sum()
            counts[i, 2] += len(y)
    distributed.all_sum(counts, ctx)
    for m, mode in zip(models, was_training):
        m.train(mode)
    results = []
    for correct1, correct5, seen in counts.tolist():
        total = max(seen, 1.0)
        results.append({"top1": round(100 * correct1 / total, 3), "top5": round(100 * correct5 / total, 3),
                        "images": int(seen)})
    return results


def class_scoring(classes, num_classes: int) -> tuple[list[int] | None, dict]:
    """Which logits a model with ``num_classes`` outputs is scored on, for a test set whose class
    folders are ``classes`` (``None``: in-memory data, labels are logit indices). A 1000-way model
    on a folder of fewer ImageNet classes (WordNet ids, e.g. Imagenette's ten) is scored on those
    classes' logits only: ``(logit_indices, record)``, ``logit_indices[k]`` the ImageNet-1k index of
    class ``k``; otherwise ``(None, record)``: every logit, label ``k`` is logit ``k``."""
    if classes is None or len(classes) == num_classes:
        return None, {"rule": f"argmax over all {num_classes} logits"}
    if num_classes == 1000 and all(is_wnid(c) for c in classes):
        indices = imagenet_indices(classes)
        return indices, {"rule": f"argmax over the logits of the data's {len(classes)} classes only (of the "
                                 f"model's {num_classes}); top-5 is among those {len(classes)}",
                         "classes": list(classes), "logit_indices": indices}
    if len(classes) > num_classes:
        raise ValueError(f"the test data has {len(classes)} classes but the model has {num_classes} outputs")
    return None, {"rule": f"argmax over all {num_classes} logits (the data's {len(classes)} classes are the "
                          f"first {len(classes)})"}


def load_model(path: str | Path) -> tuple[VisionTransformer, TrainConfig]:
    """A ropelib model and the config of its run, from ``model.pt``/``best.pt`` (weights) or
    ``checkpoint.pt`` (a training checkpoint); both record the run's config whole."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; give the model.pt (or checkpoint.pt) of a run folder")
    try:
        state = ckpt.load(path)
    except RuntimeError as error:
        raise ValueError(f"{path} is not a ropelib model.pt or checkpoint.pt (it cannot be loaded with "
                         "weights_only=True); give the model.pt of a run folder") from None
    if not isinstance(state, dict) or not ({"vit_config", "state_dict", "train_config"} <= set(state)
                                           or {"model", "config"} <= set(state)):
        raise ValueError(f"{path} is a PyTorch file but not a ropelib model.pt or checkpoint.pt; give the "
                         "model.pt of a run folder")
    if "vit_config" in state:
        # the model as it was built (older files record the class count only here)
        known = {f.name for f in dataclasses.fields(ViTConfig)}
        built = ViTConfig(**{k: v for k, v in state["vit_config"].items() if k in known})
        config = dataclasses.replace(TrainConfig.from_dict(state["train_config"]), model=built)
        weights = state["state_dict"]
    else:
        config, weights = TrainConfig.from_dict(state["config"]), state["model"]
    model = VisionTransformer(config.model)
    model.load_state_dict(weights)
    return model, config


def evaluate_resolutions(model: VisionTransformer, tests, resolutions, protocols, ctx, autocast=None,
                         remedies=(), logit_indices=None) -> dict:
    """``{protocol or remedy: {resolution: {"top1", "top5", "images"}}}``, printing each as it comes.
    Remedies are keyed ``remedy-<name>`` (``remedy-ntk``)."""
    return evaluate_models({"": model}, tests, resolutions, protocols, ctx, autocast, remedies,
                           {"": logit_indices})[""]


def evaluate_models(models: dict, tests, resolutions, protocols, ctx, autocast=None, remedies=(),
                    logit_indices: dict | None = None) -> dict:
    """:func:`evaluate_resolutions` of several models (``{name: model}``) on one pass over each
    resolution's test batches: ``{name: {protocol or remedy: {resolution: accuracy}}}``.
    ``logit_indices``: ``{name: indices or None}`` (:func:`class_scoring`); models that need
    different ones are evaluated in separate passes."""
    keys = [(p, p, "none") for p in protocols] + [(f"remedy-{r}", "native", r) for r in remedies if r != "none"]
    logit_indices = logit_indices or {}
    groups = {}  # one pass over the data per distinct scoring
    for name in models:
        index = logit_indices.get(name)
        groups.setdefault(None if index is None else tuple(index), []).append(name)
    results = {name: {key: {} for key, _, _ in keys} for name in models}
    for r in resolutions:
        for index, names in groups.items():
            settings = [(name, key, protocol, remedy) for name in names for key, protocol, remedy in keys]
            found = accuracies([(models[n], p, m) for n, _, p, m in settings], tests.test_batches(r), ctx, autocast,
                               None if index is None else list(index))
            for (name, key, _, _), result in zip(settings, found):
                results[name][key][str(r)] = result
        for name in models:
            for key, _, _ in keys:
                label = f"{name}  " if len(models) > 1 else ""
                print(f"{label}{key:12s} {r:4d} px  top-1 {results[name][key][str(r)]['top1']:.2f}%", flush=True)
    return results


def plot(results: dict, path: Path, title: str) -> None:
    # a bare Figure, not pyplot: no backend is chosen, so a notebook that evaluates in-process
    # keeps its own (matplotlib.use("Agg") here once silenced the notebook's later figures)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for protocol, by_resolution in results.items():
        res = [int(r) for r in by_resolution]
        ax.plot(res, [v["top1"] for v in by_resolution.values()], "o-", label=protocol)
    ax.set_xlabel("test resolution (pixels)"), ax.set_ylabel("top-1 accuracy (%)"), ax.set_title(title, fontsize=9)
    ax.legend(title="position protocol")
    fig.savefig(path, dpi=120)


def check_remedies(model: VisionTransformer, remedies) -> None:
    """Raise ``ValueError`` for a remedy that ``model``'s encoding cannot take, before any data is
    read (otherwise the error would come at the first test resolution, after the data loaded): the
    model's own remedy path (:meth:`VisionTransformer.remedy_tables`) on twice the training grid."""
    h, w = (2 * n for n in model.config.grid)
    for remedy in remedies:
        if remedy != "none":
            try:
                with torch.no_grad():
                    model.remedy_tables(h, w, remedy)
            except ValueError as error:
                raise ValueError(f"--remedies {remedy}: {error}") from None


def free_name(folder: Path, stem: str = "evaluation") -> str:
    """``evaluation`` if no ``evaluation.json`` is there yet, else ``evaluation-2``, ``-3``...: an
    evaluation never overwrites an earlier one."""
    name, n = stem, 1
    while (folder / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def timm_model(name: str, pretrained: bool = False, **kwargs) -> tuple[VisionTransformer, Preprocessing]:
    """One of timm's RoPE-ViTs (``vit_small_patch16_rope_mixed_224.naver_in1k``; ``kwargs`` go to
    ``timm.create_model``) converted with :func:`ropelib.vit.from_timm`, and the preprocessing its
    weights were published with (timm's ``pretrained_cfg``). Raises ``ValueError`` with the reason
    for a name timm does not know, weights that cannot be downloaded, or a model that is not a
    RoPE-ViT."""
    try:
        import timm
        from timm.data import resolve_model_data_config
    except ImportError:  # pragma: no cover
        raise ValueError("--timm needs timm: pip install 'ropelib[train]'") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models("*rope*"), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else \
            " (rope-vit's: vit_{small,base,large}_patch16_rope{,_mixed}{,_ape}_224)"
        raise ValueError(f"--timm {name}: timm {timm.__version__} has no such model{hint}")
    try:
        network = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if pretrained:
            raise ValueError(f"--timm {name} --pretrained: the weights could not be loaded ({reason}); they come "
                             "from the Hugging Face Hub, which needs a network connection") from None
        raise ValueError(f"--timm {name}: timm could not build it ({reason})") from None
    config = resolve_model_data_config(network)
    try:
        model = from_timm(network)
    except ValueError as error:
        raise ValueError(f"--timm {name}: {error}") from None
    preprocessing = Preprocessing(mean=tuple(config["mean"]), std=tuple(config["std"]),
                                  crop_pct=float(config["crop_pct"]), interpolation=config["interpolation"],
                                  source="timm's pretrained_cfg of the model")
    return model, preprocessing


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m ropelib.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a model.pt, best.pt or checkpoint.pt written by ropelib.train")
    parser.add_argument("--timm", nargs="+", metavar="NAME",
                        help="timm RoPE-ViT name(s) instead, converted with ropelib.vit.from_timm and evaluated "
                             "together (one output folder each)")
    parser.add_argument("--pretrained", action="store_true", help="with --timm: download its pretrained weights")
    parser.add_argument("--resolutions", type=int, nargs="+", required=True, help="test resolutions (pixels)")
    parser.add_argument("--protocols", nargs="+", default=["native"], choices=PROTOCOLS,
                        help="where the patches of a larger or smaller image sit (default: native)")
    parser.add_argument("--remedies", nargs="+", default=[], choices=REMEDIES,
                        help="also test with these inference-time remedies (ropelib.remedies: position "
                             "interpolation, NTK-aware scaling, YaRN)")
    parser.add_argument("--dataset", choices=TEST_DATASETS,
                        help="override the data set the model was trained on (--timm: imagenet by default); "
                             "imagenette: Imagenette's val folder, ten ImageNet classes")
    parser.add_argument("--data-dir", help="override where the data lives")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR or Imagenette")
    parser.add_argument("--imagenette-size", default="full", choices=tuple(IMAGENETTE_FOLDERS),
                        help="which Imagenette archive: full (the original ImageNet JPEGs, about 1.5 GB), 320px or "
                             "160px (shorter side shrunk to 320 or 160 pixels: smaller downloads, upsampled above "
                             "that size) (default: full)")
    parser.add_argument("--subset", type=int, default=None, metavar="N",
                        help="evaluate on a class-balanced subset of N test images (evenly spaced through each "
                             "class, the same every time)")
    parser.add_argument("--eval-crop-pct", type=float, default=None, help="folder data: resize, then centre-crop "
                        "(default: the run's, or a timm model's pretrained crop_pct)")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers for folder data "
                        "(default: the run's, or the CPUs up to 8)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=tuple(AUTOCAST),
                        help="fp32, or the forward under autocast to bf16 or fp16: faster on a GPU, numbers "
                             "a little different (default: fp32)")
    parser.add_argument("--out", type=Path, default=None, help="folder for evaluation.json/.png "
                        "(default: next to the model, or evaluations/<timm name>; with several --timm names, "
                        "one subfolder each); earlier ones are kept")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.timm is None):
        parser.error("give either a model file or --timm NAME")
    try:
        return _evaluate(args)
    except (ValueError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


def _evaluate(args) -> int:
    if args.subset is not None and args.subset < 1:
        raise ValueError(f"--subset {args.subset}: give a number of test images, at least 1")
    if is_smoke() and (args.download or args.pretrained):
        raise ValueError("smoke mode (ROPELIB_SMOKE=1) downloads nothing: drop --download and --pretrained")
    entries = []  # (name, model, config, source, out folder, preprocessing)
    if args.timm:
        for name in args.timm:
            model, preprocessing = timm_model(name, pretrained=args.pretrained)
            config = TrainConfig(dataset="imagenet", model=dataclasses.replace(model.config))
            out = (args.out or Path("evaluations")) / name.replace("/", "_")
            if args.out is not None and len(args.timm) == 1:
                out = args.out
            entries.append((name, model, config, {"timm": name, "pretrained": args.pretrained}, out, preprocessing))
    else:
        model, config = load_model(args.model)
        entries.append((str(args.model), model, config, {"model": str(Path(args.model).resolve())},
                        args.out or Path(args.model).parent, None))
    for _, model, *_ in entries:
        patch = model.config.patch_size
        bad = [r for r in args.resolutions if r < 1 or r % patch]
        if bad:
            raise ValueError(f"--resolutions {' '.join(map(str, bad))}: each must be a positive multiple of the "
                             f"model's patch size {patch} (e.g. {' '.join(str(patch * k) for k in (2, 3, 4))})")
        check_remedies(model, args.remedies)
    overrides = {k: v for k, v in {"data_dir": args.data_dir, "eval_crop_pct": args.eval_crop_pct,
                                   "num_workers": args.num_workers}.items() if v is not None}
    if args.dataset not in (None, "imagenette"):
        overrides["dataset"] = args.dataset
    if args.download:
        overrides["download"] = True
    ctx = distributed.setup(args.device)
    try:
        # models that read the data alike share one pass over it
        groups = {}
        for entry in entries:
            name, model, config, source, out, preprocessing = entry
            config = dataclasses.replace(config, **overrides)
            if preprocessing is not None and args.eval_crop_pct is not None:
                preprocessing = dataclasses.replace(preprocessing, crop_pct=args.eval_crop_pct,
                                                    source=preprocessing.source + ", crop_pct from --eval-crop-pct")
            key = (preprocessing, config.dataset, config.data_dir)
            groups.setdefault(key, []).append((name, model.to(ctx.device).eval(), config, source, out))
        for (preprocessing, _, _), members in groups.items():
            config = members[0][2]
            tests = pipelines.build_test(config, ctx, subset=args.subset, dataset=args.dataset,
                                         preprocessing=preprocessing, imagenette_size=args.imagenette_size)
            scoring = {name: class_scoring(getattr(tests, "classes", None), model.config.num_classes)
                       for name, model, *_ in members}
            results = evaluate_models({name: model for name, model, *_ in members}, tests, args.resolutions,
                                      args.protocols, ctx, autocast=AUTOCAST[args.precision], remedies=args.remedies,
                                      logit_indices={name: s[0] for name, s in scoring.items()})
            data = tests.describe()
            for name, model, config, source, out in members:
                record = {"source": source, "encoding": model.config.encoding, "ape": model.config.ape,
                          "train_resolution": model.config.img_size, "resolutions": args.resolutions,
                          "protocols": args.protocols, "remedies": args.remedies, "precision": args.precision,
                          "accuracy": results[name],
                          "scoring": scoring[name][1], "data": data,
                          "preprocessing": data.get("preprocessing"), "subset": data.get("subset"),
                          "model": dataclasses.asdict(model.config),
                          "provenance": provenance(ctx.device, smoke=is_smoke())}
                if ctx.is_main:
                    stem = free_name(out)
                    write_json(record, out / f"{stem}.json")
                    plot(results[name], out / f"{stem}.png", source.get("timm") or Path(name).parent.name)
                    print(f"wrote {out / stem}.png", flush=True)
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
