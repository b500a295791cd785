"""Train a ViT with any position encoding; resumable, distributed, reproducible.

    python -m ropelib.train --recipe colab-cifar100 --encoding spherical --head-dim 60
    torchrun --nproc_per_node 8 -m ropelib.train --recipe ropevit-deit3-small --data-dir /data/imagenet
    python -m ropelib.train --list-recipes

Writes to ``<out_dir>/<run name>/``: ``checkpoint.pt`` (atomic, every ``checkpoint_minutes`` and
at each epoch end, resumed from automatically), ``metrics.jsonl`` (one line per epoch),
``model.pt`` (final weights and config) and ``results.json`` (accuracies, throughput and where
they came from). With ``ROPELIB_SMOKE=1`` every run is tiny: synthetic data, a tiny model, two
short epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import distributed, pipelines
from .data import _mix
from .provenance import provenance
from .recipes import TrainConfig, add_arguments, available_recipes, from_arguments, load_recipe
from .smoke import is_smoke
from .vit import PRESETS, ViTConfig, VisionTransformer, param_groups

# Fields that may change when a run is resumed without making it a different run.
RESUMABLE_CHANGES = {"epochs", "progress", "checkpoint_minutes", "num_workers", "max_steps", "log_every",
                     "eval_resolutions", "resume", "out_dir", "data_dir", "download", "compile"}


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def smoke_config(config: TrainConfig) -> TrainConfig:
    """The tiny version of any run: synthetic data, a tiny ViT, two short epochs, no downloads."""
    return dataclasses.replace(
        config, dataset="synthetic", synthetic_grid=4, synthetic_classes=4, synthetic_epoch_size=256,
        synthetic_test_size=256, download=False, data_on_device="no", num_workers=0,
        model="custom", img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, head_dim=24,
        head_dim_overrides={}, epochs=2, batch_size=32, warmup_epochs=0.5, lr=1e-2,
        crop="none", flip=False, randaugment=False, three_augment=False, color_jitter=0.0, mixup=0.0,
        cutmix=0.0, eval_resolutions=[24], progress=False, compile=False, device="cpu", precision="fp32",
    )


def model_config(config: TrainConfig, num_classes: int) -> ViTConfig:
    """The ViT a training run builds (checked without allocating it)."""
    if config.model != "custom" and config.model not in PRESETS:
        raise ValueError(f"unknown model {config.model!r}; choose one of {', '.join(PRESETS)} or custom")
    sizes = {k: getattr(config, k) for k in ("embed_dim", "depth", "num_heads") if getattr(config, k) is not None}
    return ViTConfig(**{**PRESETS.get(config.model, {}), **sizes}, img_size=config.img_size,
                     patch_size=config.patch_size, num_classes=num_classes, head_dim=config.effective_head_dim,
                     encoding=config.encoding, encoding_options=config.effective_encoding_options, ape=config.ape,
                     layer_scale=config.layer_scale, drop_path=config.drop_path, dropout=config.dropout,
                     position_jitter=config.position_jitter, global_pool=config.global_pool)


def build_model(config: TrainConfig, num_classes: int) -> VisionTransformer:
    return VisionTransformer(model_config(config, num_classes))


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    betas = tuple(config.betas)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=betas)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas)
    if config.optimizer == "lamb":
        from timm.optim import Lamb

        return Lamb(groups, lr=config.lr, betas=betas)
    raise ValueError(f"optimizer must be adamw, adam or lamb, got {config.optimizer!r}")


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to ``lr``, then a cosine decay to ``min_lr`` at the last step."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: float32)."""
    choice = config.precision
    if choice == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
    if choice not in table:
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {choice!r}")
    if choice == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a GPU; use bf16 or fp32 on the CPU")
    return table[choice]


def make_criterion(config: TrainConfig, num_classes: int):
    def criterion(logits, target):
        if target.ndim == 1:  # hard labels
            if config.loss == "bce":
                smooth = config.label_smoothing
                target = F.one_hot(target, num_classes).float() * (1 - smooth) + smooth / num_classes
            else:
                return F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
        if config.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()

    if config.loss not in ("ce", "bce"):
        raise ValueError(f"loss must be ce or bce, got {config.loss!r}")
    return criterion


def make_mixup(config: TrainConfig, num_classes: int):
    if config.mixup <= 0 and config.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                 num_classes=num_classes)


@torch.no_grad()
def evaluate(model, batches, ctx, autocast_dtype) -> dict:
    """Top-1 and top-5 accuracy (percent) over this rank's share, summed over ranks."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, device=ctx.device, dtype=torch.float64)  # correct@1, correct@5, total
    for x, y in batches:
        with torch.autocast(ctx.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(x)
        top = logits.float().topk(min(5, logits.shape[-1]), dim=-1).indices
        counts[0] += (top[:, 0] == y).sum()
        counts[1] += (top == y[:, None]).any(-1).sum()
        counts[2] += len(y)
    distributed.all_sum(counts, ctx)
    model.train(was_training)
    total = max(counts[2].item(), 1.0)
    return {"top1": round(100 * counts[0].item() / total, 3), "top5": round(100 * counts[1].item() / total, 3),
            "images": int(counts[2].item())}


def _unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


class Trainer:
    def __init__(self, config: TrainConfig, ctx: distributed.Context):
        self.config, self.ctx = config, ctx
        self.run_dir = Path(config.out_dir) / config.name
        torch.manual_seed(config.seed)  # the same initial model on every rank
        self.data = pipelines.build(config, ctx)
        self.model = build_model(config, self.data.num_classes).to(ctx.device)
        self.optimizer = build_optimizer(config, self.model)
        self.autocast = resolve_precision(config, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.autocast == torch.float16)
        self.criterion = make_criterion(config, self.data.num_classes)
        self.mixup = make_mixup(config, self.data.num_classes)
        self.step, self.epoch, self.batch = 0, 0, 0  # the next step / epoch / batch within the epoch
        self.history: list[dict] = []
        self.train_seconds, self.images_seen = 0.0, 0
        self.resumed_from = None
        if config.resume and (self.run_dir / "checkpoint.pt").is_file():
            self._resume()
        else:
            torch.manual_seed(_mix(config.seed, ctx.rank))  # dropout etc. differ per rank
        self.network = self.model
        if config.compile:
            self.network = torch.compile(self.network)
        if ctx.distributed:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.network, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    # -- checkpoints ---------------------------------------------------------------------------------

    def _state(self) -> dict:
        rng = distributed.gather_objects(ckpt.rng_state(self.ctx.device), self.ctx)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch, "batch": self.batch,
                "rng": rng, "world_size": self.ctx.world_size, "config": self.config.to_dict(),
                "history": self.history, "train_seconds": self.train_seconds, "images_seen": self.images_seen}

    def save_checkpoint(self) -> None:
        state = self._state()  # every rank takes part (RNG states are gathered)
        if self.ctx.is_main:
            ckpt.atomic_save(state, self.run_dir / "checkpoint.pt")
        self.last_checkpoint = time.time()

    def _resume(self) -> None:
        path = self.run_dir / "checkpoint.pt"
        state = ckpt.load(path, map_location=self.ctx.device)
        if state["world_size"] != self.ctx.world_size:
            raise RuntimeError(f"{path} was written by {state['world_size']} processes; resume it with the same "
                               f"number (now {self.ctx.world_size}), or set --no-resume to start over")
        changed = {k: (v, getattr(self.config, k)) for k, v in state["config"].items()
                   if getattr(self.config, k, v) != v and k not in RESUMABLE_CHANGES}
        if changed and self.ctx.is_main:
            print("resuming with changed settings (the run is no longer an exact continuation): " +
                  ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()), file=sys.stderr)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.history, self.train_seconds = state["history"], state["train_seconds"]
        self.images_seen = state["images_seen"]
        ckpt.set_rng_state(state["rng"][self.ctx.rank], self.ctx.device)
        self.resumed_from = {"step": self.step, "epoch": self.epoch, "changed": sorted(changed)}
        if self.ctx.is_main:
            print(f"resumed {path} at epoch {self.epoch}, step {self.step}", file=sys.stderr)

    # -- training ------------------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with (self.run_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")

    def _check_loss(self, losses: torch.Tensor, count: int) -> float:
        """Mean of the losses since the last check; stops the run if any was not finite."""
        total = distributed.all_sum(losses.clone(), self.ctx)  # [sum, non-finite count]
        if total[1].item() > 0:
            where = self.run_dir / "checkpoint.pt"
            kept = f"the last good checkpoint is kept at {where}" if where.exists() else "no checkpoint was written yet"
            raise NonFiniteLoss(
                f"the loss became NaN or infinite before step {self.step} (epoch {self.epoch}); training stops and "
                f"{kept}. Lower the learning rate (--lr) or clip gradients (--grad-clip 1.0), then run again "
                "(it resumes from that checkpoint)"
            )
        return total[0].item() / max(count * self.ctx.world_size, 1)

    def train_step(self, x, y) -> torch.Tensor:
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(c, self.step, self.data.batches_per_epoch)
        target = y
        if self.mixup is not None:
            np.random.seed(_mix(c.seed, self.step, self.ctx.rank) % 2**32)  # timm's Mixup draws from numpy
            x, target = self.mixup(x, y)
        with torch.autocast(self.ctx.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            loss = self.criterion(self.network(x), target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if c.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return loss.detach().float()

    def fit(self) -> dict:
        c, ctx = self.config, self.ctx
        start_wall = time.time()
        self.last_checkpoint = time.time()
        show = c.progress and ctx.is_main and not is_smoke()
        stop = False
        while self.epoch < c.epochs and not stop:
            epoch_start, steps_before, images_before = time.time(), self.step, self.images_seen
            losses = torch.zeros(2, device=ctx.device, dtype=torch.float64)  # loss sum, non-finite count
            since_check, epoch_loss, epoch_steps = 0, 0.0, 0
            bar = None
            if show:
                from tqdm.auto import tqdm

                bar = tqdm(total=self.data.batches_per_epoch, initial=self.batch, desc=f"epoch {self.epoch + 1}/{c.epochs}",
                           leave=False, dynamic_ncols=True)
            for x, y in self.data.epoch(self.epoch, self.batch):
                loss = self.train_step(x, y)
                losses[0] += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
                losses[1] += (~torch.isfinite(loss)).double()
                since_check += 1
                self.batch += 1
                self.images_seen += x.shape[0] * ctx.world_size
                if bar is not None:
                    bar.update(1)
                last = self.batch == self.data.batches_per_epoch
                stop = c.max_steps is not None and self.step >= c.max_steps
                if self.step % c.log_every == 0 or last or stop:
                    mean = self._check_loss(losses, since_check)
                    epoch_loss, epoch_steps = epoch_loss + mean * since_check, epoch_steps + since_check
                    losses.zero_()
                    since_check = 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean:.4f}")
                    due = time.time() - self.last_checkpoint > 60 * c.checkpoint_minutes
                    if not last and distributed.broadcast_flag(due, ctx):
                        self.train_seconds += time.time() - epoch_start
                        epoch_start = time.time()
                        self.save_checkpoint()
                if stop:
                    break
            if bar is not None:
                bar.close()
            self.train_seconds += time.time() - epoch_start
            epoch_seconds = time.time() - epoch_start
            finished = self.batch >= self.data.batches_per_epoch
            if finished:
                self.epoch, self.batch = self.epoch + 1, 0
            record = {"epoch": self.epoch, "step": self.step,
                      "lr": learning_rate(c, max(self.step - 1, 0), self.data.batches_per_epoch),
                      "train_loss": round(epoch_loss / max(epoch_steps, 1), 5),
                      "images_per_second": round((self.images_seen - images_before) / max(epoch_seconds, 1e-9), 1)}
            if finished and (self.epoch % c.eval_every == 0 or self.epoch == c.epochs):
                record["test"] = evaluate(self.network, self.data.test_batches(c.img_size), ctx, self.autocast)
            record["steps"] = self.step - steps_before
            self.history.append(record)
            self._log(record)
            if ctx.is_main and not is_smoke():
                print(f"epoch {self.epoch}/{c.epochs}  loss {record['train_loss']:.4f}"
                      + (f"  test top-1 {record['test']['top1']:.2f}%" if "test" in record else "")
                      + f"  {record['images_per_second']:.0f} img/s", flush=True)
            self.save_checkpoint()
        return self.finish(time.time() - start_wall)

    def finish(self, wall_seconds: float) -> dict:
        c, ctx = self.config, self.ctx
        resolutions = [c.img_size] + [r for r in c.eval_resolutions if r != c.img_size]
        accuracy = {str(r): evaluate(self.network, self.data.test_batches(r), ctx, self.autocast) for r in resolutions}
        sync = self._check_sync()
        model = self.model
        if ctx.is_main:
            torch.save({"vit_config": dataclasses.asdict(model.config), "state_dict": model.state_dict(),
                        "train_config": c.to_dict()}, self.run_dir / "model.pt")
        results = {
            "run": c.name, "recipe": c.recipe, "source": c.source, "encoding": c.encoding, "seed": c.seed,
            "accuracy": accuracy, "epochs_completed": self.epoch, "steps": self.step,
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "throughput_images_per_second": round(self.images_seen / max(self.train_seconds, 1e-9), 1),
            "train_seconds": round(self.train_seconds, 1), "wall_seconds_this_session": round(wall_seconds, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "position_parameters": sum(p.numel() for n, p in model.named_parameters()
                                       if n in model.no_weight_decay() and n != "cls_token"),
            "data": self.data.describe(), "model": dataclasses.asdict(model.config), "config": c.to_dict(),
            "distributed": {"world_size": ctx.world_size, **sync}, "resumed_from": self.resumed_from,
            "provenance": provenance(ctx.device, smoke=is_smoke(),
                                     precision=str(self.autocast).replace("torch.", "") if self.autocast else "float32"),
        }
        if ctx.is_main:
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results

    def _check_sync(self) -> dict:
        """Do all processes hold the same weights? (DDP should keep them identical.)"""
        flat = torch.cat([p.detach().float().reshape(-1) for p in self.model.parameters()])
        sums = distributed.gather_objects([float(flat.sum()), float(flat.abs().sum())], self.ctx)
        spread = max(abs(a[0] - sums[0][0]) + abs(a[1] - sums[0][1]) for a in sums)
        return {"parameter_checksums": sums, "in_sync": spread == 0.0}


def train(config: TrainConfig) -> dict:
    """Run (or resume) a training run; returns its results (on every rank)."""
    if is_smoke():
        config = smoke_config(config)
    ctx = distributed.setup(config.device)
    try:
        trainer = Trainer(config, ctx)
        if ctx.is_main:
            trainer.run_dir.mkdir(parents=True, exist_ok=True)
            print(f"run {config.name}: {config.encoding} on {config.dataset}, "
                  f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters, "
                  f"{trainer.data.batches_per_epoch} steps per epoch, device {ctx.device}"
                  + (f" x {ctx.world_size} processes" if ctx.distributed else "")
                  + (" (smoke mode)" if is_smoke() else ""), flush=True)
        return trainer.fit()
    finally:
        distributed.cleanup()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropelib.train", description=__doc__.split("\n\n")[0],
                                     epilog="Every field of ropelib.recipes.TrainConfig is an option; "
                                            "--recipe NAME loads a recipe first.")
    parser.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.list_recipes:
        for name in available_recipes():
            print(f"{name:24s} {load_recipe(name).source}")
        return 0
    try:
        config = from_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    results = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"run": results["run"], "accuracy": results["accuracy"],
                          "images_per_second": results["throughput_images_per_second"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
