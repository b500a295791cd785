"""Accuracy of a trained model at several test resolutions, under each position protocol.

    python -m ropelib.evaluate runs/colab-cifar100-mixed-seed0/model.pt --resolutions 32 48 64 \\
        --protocols native extrapolate interpolate
    python -m ropelib.evaluate --timm vit_small_patch16_rope_mixed_224.naver_in1k --pretrained \\
        --dataset imagenet --data-dir data/imagenet --resolutions 224 320 384 512

The protocols decide where the patches of a larger (or smaller) image sit (``ropelib.positions``):
``extrapolate`` keeps the training spacing and reaches positions never seen in training;
``interpolate`` maps the new grid onto the training image; ``native`` is each encoding's own
convention (rope-vit and LieRE extrapolate, ComRoPE interpolates). Learned APE tables are
always resized by interpolation, as in every paper. Writes ``evaluation.json`` (with
provenance) and ``evaluation.png`` (accuracy against resolution).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import distributed, pipelines
from .config import ArgumentParser, TrainConfig
from .data import DataError
from .positions import PROTOCOLS
from .provenance import provenance, write_json
from .remedies import REMEDIES
from .smoke import is_smoke
from .vit import ViTConfig, VisionTransformer, from_timm


@torch.no_grad()
def accuracy(model, batches, ctx, autocast_dtype=None, protocol: str = "native", remedy: str = "none") -> dict:
    """Top-1 and top-5 accuracy (percent) over this rank's share of ``batches``, summed over ranks.
    ``protocol`` places the patches of test images whose grid is not the training grid; ``remedy``
    rescales the rotary frequencies instead (:mod:`ropelib.remedies`)."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, device=ctx.device, dtype=torch.float64)  # correct@1, correct@5, total
    for x, y in batches:
        with torch.autocast(ctx.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(x, protocol=protocol) if remedy == "none" else model(x, remedy=remedy)
        top = logits.float().topk(min(5, logits.shape[-1]), dim=-1).indices
        counts[0] += (top[:, 0] == y).sum()
        counts[1] += (top == y[:, None]).any(-1).sum()
        counts[2] += len(y)
    distributed.all_sum(counts, ctx)
    model.train(was_training)
    total = max(counts[2].item(), 1.0)
    return {"top1": round(100 * counts[0].item() / total, 3), "top5": round(100 * counts[1].item() / total, 3),
            "images": int(counts[2].item())}


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
                         remedies=()) -> dict:
    """``{protocol or remedy: {resolution: {"top1", "top5", "images"}}}``, printing each as it comes.
    Remedies are keyed ``remedy-<name>`` (``remedy-ntk``)."""
    results = {}
    settings = [(p, p, "none") for p in protocols] + [(f"remedy-{r}", "native", r) for r in remedies if r != "none"]
    for key, protocol, remedy in settings:
        results[key] = {}
        for r in resolutions:
            results[key][str(r)] = accuracy(model, tests.test_batches(r), ctx, autocast, protocol, remedy)
            print(f"{key:12s} {r:4d} px  top-1 {results[key][str(r)]['top1']:.2f}%", flush=True)
    return results


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
    for protocol, by_resolution in results.items():
        res = [int(r) for r in by_resolution]
        ax.plot(res, [v["top1"] for v in by_resolution.values()], "o-", label=protocol)
    ax.set_xlabel("test resolution (pixels)"), ax.set_ylabel("top-1 accuracy (%)"), ax.set_title(title, fontsize=9)
    ax.legend(title="position protocol")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def free_name(folder: Path, stem: str = "evaluation") -> str:
    """``evaluation`` if no ``evaluation.json`` is there yet, else ``evaluation-2``, ``-3``...: an
    evaluation never overwrites an earlier one."""
    name, n = stem, 1
    while (folder / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m ropelib.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a model.pt, best.pt or checkpoint.pt written by ropelib.train")
    parser.add_argument("--timm", help="a timm RoPE-ViT name instead, converted with ropelib.vit.from_timm")
    parser.add_argument("--pretrained", action="store_true", help="with --timm: download its pretrained weights")
    parser.add_argument("--resolutions", type=int, nargs="+", required=True, help="test resolutions (pixels)")
    parser.add_argument("--protocols", nargs="+", default=["native"], choices=PROTOCOLS,
                        help="where the patches of a larger or smaller image sit (default: native)")
    parser.add_argument("--remedies", nargs="+", default=[], choices=REMEDIES,
                        help="also test with these inference-time remedies (ropelib.remedies: position "
                             "interpolation, NTK-aware scaling, YaRN)")
    parser.add_argument("--dataset", help="override the data set the model was trained on")
    parser.add_argument("--data-dir", help="override where the data lives")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR")
    parser.add_argument("--eval-crop-pct", type=float, default=None, help="folder data: resize, then centre-crop")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=None, help="folder for evaluation.json/.png "
                        "(default: next to the model, or evaluations/<timm name>); earlier ones are kept")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.timm is None):
        parser.error("give either a model file or --timm NAME")
    try:
        return _evaluate(args)
    except (ValueError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


def _evaluate(args) -> int:
    if args.timm:
        import timm

        model = from_timm(timm.create_model(args.timm, pretrained=args.pretrained))
        config = TrainConfig(dataset="imagenet", model=dataclasses.replace(model.config))
        source = {"timm": args.timm, "pretrained": args.pretrained}
        out = args.out or Path("evaluations") / args.timm.replace("/", "_")
    else:
        model, config = load_model(args.model)
        source = {"model": str(Path(args.model).resolve())}
        out = args.out or Path(args.model).parent
    patch = model.config.patch_size
    bad = [r for r in args.resolutions if r < 1 or r % patch]
    if bad:
        raise ValueError(f"--resolutions {' '.join(map(str, bad))}: each must be a positive multiple of the "
                         f"model's patch size {patch} (e.g. {' '.join(str(patch * k) for k in (2, 3, 4))})")
    overrides = {k: v for k, v in {"dataset": args.dataset, "data_dir": args.data_dir,
                                   "eval_crop_pct": args.eval_crop_pct}.items() if v is not None}
    if args.download:
        overrides["download"] = True
    config = dataclasses.replace(config, **overrides)
    if is_smoke() and config.dataset != "synthetic":
        raise ValueError("smoke mode evaluates synthetic-task models only (no downloads)")
    ctx = distributed.setup(args.device)
    try:
        tests = pipelines.build_test(config, ctx)
        model = model.to(ctx.device).eval()
        results = evaluate_resolutions(model, tests, args.resolutions, args.protocols, ctx, remedies=args.remedies)
        record = {"source": source, "encoding": model.config.encoding, "train_resolution": model.config.img_size,
                  "resolutions": args.resolutions, "protocols": args.protocols, "remedies": args.remedies,
                  "accuracy": results,
                  "data": tests.describe(), "model": dataclasses.asdict(model.config),
                  "provenance": provenance(ctx.device, smoke=is_smoke())}
        name = free_name(out)
        write_json(record, out / f"{name}.json")
        plot(results, out / f"{name}.png", f"{source.get('timm') or Path(args.model).parent.name}")
        print(f"wrote {out / name}.png")
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
