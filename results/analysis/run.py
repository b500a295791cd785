"""Chapter 13's attention distances: what needs a trained model's full weights.

For every trained model found, the mean attention distance of each layer and head (in patches;
``ropelib.analysis.attention_distance``) on a fixed set of test images, for the trained model
and for the model it started from (rebuilt from its seed), written to
``results/analysis/attention-distance/<run>.json`` with provenance.

    OMP_NUM_THREADS=1 python results/analysis/run.py             # every model found, new ones only
    OMP_NUM_THREADS=1 python results/analysis/run.py --refresh   # recompute all

Models: ``runs/remedies-models/*/model.pt`` (the 27 rotary models of the synthetic sweep, see
``results/synthetic-sweep/remedies.sh``) and ``runs/cifar10-cpu/*/model.pt`` (chapter 11's CIFAR-10
runs, ``results/cifar10-cpu/run.sh``); ``--models`` names others. A run whose JSON exists is
skipped if its model file is unchanged (same SHA-256), recomputed otherwise.

Test images: the first 500 of the synthetic task's fixed test set; for CIFAR-10 every 20th image
of the test split in its stored order (50 per class, 500 in all). Nothing is drawn at random.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from ropelib import analysis, distributed, pipelines
from ropelib.evaluate import load_model
from ropelib.provenance import provenance, write_json

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "analysis" / "attention-distance"
DEFAULT_MODELS = ("runs/remedies-models/*/model.pt", "runs/cifar10-cpu/*/model.pt")
IMAGES = 500


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_images(config, cache: dict) -> tuple[torch.Tensor, dict]:
    """The fixed test images of a run's data set, ``(IMAGES, C, H, W)``, and how they were chosen."""
    key = (config.dataset, config.data_dir, config.model.img_size, config.synthetic_grid)
    if key not in cache:
        ctx = distributed.Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
        tests = pipelines.build_test(config, ctx)
        batches = [x for x, _ in tests.test_batches(config.model.img_size)]
        images = torch.cat(batches)
        if config.dataset == "synthetic":
            chosen, how = images[:IMAGES], f"the first {IMAGES} of the task's fixed test set"
        else:
            stride = len(images) // IMAGES
            chosen, how = images[::stride][:IMAGES], f"every {stride}th test image in stored order"
        cache[key] = chosen, {**tests.describe(), "images_used": len(chosen), "selection": how}
    return cache[key]


def layer_records(model, images) -> list[dict]:
    """Per block: mean attention distance and CLS share, per head (rounded to 4 decimals)."""
    grid = tuple(s // model.config.patch_size for s in images.shape[-2:])
    out = []
    for probs in analysis.attention_probabilities(model, images):
        result = analysis.attention_distance(probs, grid, model.num_prefix_tokens)
        out.append({k: [round(v, 4) for v in t.tolist()] for k, t in result.items()})
    return out


def analyse(path: Path, cache: dict, command: str) -> dict:
    start = time.perf_counter()
    model, config = load_model(path)
    images, described = test_images(config, cache)
    record_for_init = {"config": config.to_dict(), "seed": config.seed,
                       "model": {"num_classes": model.config.num_classes}}
    initial = analysis.initial_model(record_for_init)
    grid = [s // model.config.patch_size for s in images.shape[-2:]]
    return {
        "run": path.parent.name,
        "encoding": model.config.encoding,
        "encoding_options": model.config.encoding_options,
        "seed": config.seed,
        "source": {"model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                   "sha256": sha256(path)},
        "images": described,
        "grid": grid,
        "units": "patches (distance between patch centres); multiply by the patch size for pixels",
        "uniform_attention_distance": round(analysis.uniform_attention_distance(*grid), 4),
        "trained": layer_records(model, images),
        "initial": layer_records(initial, images),
        "provenance": provenance(command=command, wall_seconds=round(time.perf_counter() - start, 2)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="model.pt files or glob patterns relative to the repository root")
    parser.add_argument("--refresh", action="store_true", help="recompute runs whose JSON exists")
    args = parser.parse_args(argv)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    paths = sorted({p for pattern in args.models for p in ROOT.glob(pattern)})
    if not paths:
        print("no model files found:", " ".join(args.models))
        return 0
    cache: dict = {}
    for path in paths:
        out = OUT / f"{path.parent.name}.json"
        if out.exists() and not args.refresh:
            if json.loads(out.read_text())["source"]["sha256"] == sha256(path):
                print(f"skip {path.parent.name} (unchanged; --refresh recomputes it)")
                continue
        write_json(analyse(path, cache, command), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
