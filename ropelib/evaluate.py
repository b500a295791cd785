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


from . import checkpoint as ckpt
from . import distributed, pipelines
from .positions import PROTOCOLS
from .provenance import provenance, write_json
from .recipes import TrainConfig
from .smoke import is_smoke
from .train import evaluate as accuracy
from .vit import ViTConfig, VisionTransformer, from_timm


def load_model(path: str | Path) -> tuple[VisionTransformer, dict]:
    """A ropelib model from ``model.pt`` (final weights) or ``checkpoint.pt`` (a training checkpoint)."""
    state = ckpt.load(path)
    if "vit_config" in state:
        model = VisionTransformer(ViTConfig(**state["vit_config"]))
        model.load_state_dict(state["state_dict"])
        return model, state["train_config"]
    if "model" in state and "config" in state:
        from .train import build_model

        model = build_model(TrainConfig(**state["config"]), state["model"]["head.weight"].shape[0])
        model.load_state_dict(state["model"])
        return model, state["config"]
    raise ValueError(f"{path} is neither a ropelib model.pt nor a training checkpoint.pt")


def evaluate_resolutions(model: VisionTransformer, tests, resolutions, protocols, ctx, autocast=None) -> dict:
    """``{protocol: {resolution: {"top1", "top5", "images"}}}``."""
    results = {}
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        model.config.position_protocol = protocol
        model._position_cache = {}
        results[protocol] = {str(r): accuracy(model, tests.test_batches(r), ctx, autocast) for r in resolutions}
        print(f"{protocol:12s} " + "  ".join(f"{r}px {v['top1']:.2f}%" for r, v in results[protocol].items()),
              flush=True)
    model.config.position_protocol = "native"
    model._position_cache = {}
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
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropelib.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a model.pt or checkpoint.pt written by ropelib.train")
    parser.add_argument("--timm", help="a timm RoPE-ViT name instead, converted with ropelib.vit.from_timm")
    parser.add_argument("--pretrained", action="store_true", help="with --timm: download its pretrained weights")
    parser.add_argument("--resolutions", type=int, nargs="+", required=True)
    parser.add_argument("--protocols", nargs="+", default=["native"], choices=PROTOCOLS)
    parser.add_argument("--dataset", help="override the data set the model was trained on")
    parser.add_argument("--data-dir", help="override where the data lives")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--eval-crop-pct", type=float, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="folder for evaluation.json/.png "
                        "(default: next to the model, or evaluations/<timm name>)")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.timm is None):
        parser.error("give either a model file or --timm NAME")

    ctx = distributed.setup(args.device)
    if args.timm:
        import timm

        model = from_timm(timm.create_model(args.timm, pretrained=args.pretrained))
        train_config = TrainConfig(dataset="imagenet", img_size=model.config.img_size,
                                   patch_size=model.config.patch_size, encoding=model.config.encoding).to_dict()
        source = {"timm": args.timm, "pretrained": args.pretrained}
        out = args.out or Path("evaluations") / args.timm.replace("/", "_")
    else:
        model, train_config = load_model(args.model)
        source = {"model": str(Path(args.model).resolve())}
        out = args.out or Path(args.model).parent
    overrides = {k: v for k, v in {"dataset": args.dataset, "data_dir": args.data_dir,
                                   "eval_crop_pct": args.eval_crop_pct}.items() if v is not None}
    if args.download:
        overrides["download"] = True
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in {**train_config, **overrides}.items() if k in fields})
    if is_smoke() and config.dataset != "synthetic":
        raise SystemExit("smoke mode evaluates synthetic-task models only (no downloads)")
    tests = pipelines.build_test(config, ctx)
    model = model.to(ctx.device).eval()
    results = evaluate_resolutions(model, tests, args.resolutions, args.protocols, ctx)
    record = {"source": source, "encoding": model.config.encoding, "train_resolution": model.config.img_size,
              "accuracy": results, "data": tests.describe(), "provenance": provenance(ctx.device, smoke=is_smoke())}
    write_json(record, out / "evaluation.json")
    plot(results, out / "evaluation.png", f"{source.get('timm') or Path(args.model).parent.name}")
    print(f"wrote {out / 'evaluation.png'}")
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
