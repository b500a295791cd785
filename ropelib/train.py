"""Train a ViT with any position encoding; resumable, distributed, reproducible.

    python -m ropelib.train --recipe colab-cifar100 --encoding spherical
    python -m ropelib.train --recipe circular-cifar100 --encoding axial --dry-run
    torchrun --nproc_per_node 8 -m ropelib.train --recipe ropevit-deit3-small --data-dir /data/imagenet
    python -m ropelib.train --list-recipes

A run lives in ``<out_dir>/<run name>/`` (:mod:`ropelib.runs`): rerunning the same command resumes
it, a different configuration is refused, Ctrl-C or SIGTERM saves a checkpoint first. With
``ROPELIB_SMOKE=1`` every run is tiny: synthetic data, a tiny model, two short epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import distributed, pipelines
from .config import ArgumentParser, TrainConfig, add_arguments, available_recipes, from_arguments, load_recipe
from .data import DataError, _mix
from .evaluate import accuracy
from .provenance import provenance
from .runs import RunFolder, RunFolderError
from .smoke import is_smoke
from .vit import VisionTransformer, param_groups


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was saved and the run stopped."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


def smoke_config(config: TrainConfig) -> TrainConfig:
    """The tiny version of any run: synthetic data, a tiny ViT, two short epochs, no downloads."""
    model = dataclasses.replace(config.model, img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                head_dim=24)
    return dataclasses.replace(
        config, model=model, dataset="synthetic", synthetic_grid=4, synthetic_classes=4, synthetic_epoch_size=256,
        synthetic_test_size=256, download=False, data_on_device="no", num_workers=0, epochs=2, batch_size=32,
        warmup_epochs=0.5, lr=1e-2, min_lr=1e-6, crop="none", flip=False, randaugment=False, three_augment=False,
        color_jitter=0.0, mixup=0.0, cutmix=0.0, eval_resolutions=[24], progress=False, compile=False,
        device="cpu", precision="fp32",
    )


def build_model(config: TrainConfig, num_classes: int) -> VisionTransformer:
    return VisionTransformer(dataclasses.replace(config.model, num_classes=num_classes))


def expected_classes(config: TrainConfig) -> int | None:
    """The class count a data set will have, known without reading it (None: unknown)."""
    return {"synthetic": config.synthetic_classes, "cifar10": 10, "cifar100": 100, "imagenet": 1000}.get(
        config.dataset)


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    betas = tuple(config.betas)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=betas)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas)
    from timm.optim import Lamb

    return Lamb(groups, lr=config.lr, betas=betas)


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to ``lr``, then a cosine decay to ``min_lr`` at the last step."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: float32)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


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

    return criterion


def make_mixup(config: TrainConfig, num_classes: int):
    if config.mixup <= 0 and config.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                 num_classes=num_classes)


@dataclasses.dataclass
class EpochProgress:
    """What the current epoch has done so far; saved in checkpoints, so that an epoch resumed in
    its middle still reports its whole loss and speed."""

    loss_sum: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0  # training time only: checkpoints and evaluations are not counted


class Trainer:
    def __init__(self, config: TrainConfig, ctx: distributed.Context, folder: RunFolder):
        self.ctx, self.folder = ctx, folder
        # the folder first: a run it cannot hold is refused before any data is read
        state = self._checkpoint_state() if config.resume else None
        if ctx.is_main:
            folder.claim(config.to_dict(), config.resume, recorded=state["config"] if state else None)
        torch.manual_seed(config.seed)  # the same initial model on every rank
        self.data = pipelines.build(config, ctx)
        # the run's config, with the class count of its data: what checkpoints and results record
        self.config = c = dataclasses.replace(config, model=dataclasses.replace(
            config.model, num_classes=self.data.num_classes))
        if ctx.is_main:
            folder.write_config(c.to_dict())
        self.model = VisionTransformer(c.model).to(ctx.device)
        self.optimizer = build_optimizer(c, self.model)
        self.autocast = resolve_precision(c.precision, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.autocast == torch.float16)
        self.criterion = make_criterion(c, self.data.num_classes)
        self.mixup = make_mixup(c, self.data.num_classes)
        self.step, self.epoch, self.batch = 0, 0, 0  # the next step / epoch / batch within the epoch
        self.progress = EpochProgress()
        self.history: list[dict] = []
        self.train_seconds, self.images_seen, self.best = 0.0, 0, None
        self.resumed_from = None
        self.stop_signal = None  # set by the SIGINT/SIGTERM handler
        if state:
            self._resume(state)
        else:
            torch.manual_seed(_mix(c.seed, ctx.rank))  # dropout etc. differ per rank
        self.network = torch.compile(self.model) if c.compile else self.model
        if ctx.distributed:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.network, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    # -- checkpoints ---------------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict | None:
        path = self.folder.file("checkpoint.pt")
        return ckpt.load(path, map_location=self.ctx.device) if path.is_file() else None

    def _state(self) -> dict:
        rng = distributed.gather_objects(ckpt.rng_state(self.ctx.device), self.ctx)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch, "batch": self.batch,
                "progress": dataclasses.asdict(self.progress), "rng": rng, "world_size": self.ctx.world_size,
                "config": self.config.to_dict(), "history": self.history, "best": self.best,
                "train_seconds": self.train_seconds, "images_seen": self.images_seen}

    def save_checkpoint(self) -> None:
        state = self._state()  # every rank takes part (RNG states are gathered)
        if self.ctx.is_main:
            ckpt.atomic_save(state, self.folder.file("checkpoint.pt"))
        self.last_checkpoint = time.time()

    def _save_weights(self, name: str, **extra) -> None:
        if self.ctx.is_main:
            ckpt.atomic_save({"vit_config": dataclasses.asdict(self.model.config), "state_dict": self.model.state_dict(),
                              "train_config": self.config.to_dict(), **extra}, self.folder.file(name))

    def _resume(self, state: dict) -> None:
        path = self.folder.file("checkpoint.pt")
        if state["world_size"] != self.ctx.world_size:
            raise RunFolderError(f"{path} was written by {state['world_size']} processes; resume it with the same "
                                 f"number (now {self.ctx.world_size}), or choose another --run-name")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.progress = EpochProgress(**state["progress"])
        self.history, self.best = state["history"], state["best"]
        self.train_seconds, self.images_seen = state["train_seconds"], state["images_seen"]
        ckpt.set_rng_state(state["rng"][self.ctx.rank], self.ctx.device)
        self.resumed_from = {"step": self.step, "epoch": self.epoch}
        if self.ctx.is_main:
            self.folder.rewrite_metrics(self.history)
            print(f"resumed {path} at epoch {self.epoch}, step {self.step}", file=sys.stderr)

    # -- training ------------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the last epoch (or ``max_steps``), then evaluate and write the results."""
        start = time.time()
        recorded = self.folder.finished_results() if self.finished else None
        if recorded is not None:
            self._say(f"{self.folder.path} is finished; its results are in {self.folder.file('results.json')} "
                      f"(other test resolutions: python -m ropelib.evaluate {self.folder.file('model.pt')} "
                      "--resolutions ...)")
            return recorded
        self.last_checkpoint = time.time()
        with self._stop_on_signals():
            while not self.finished and not self._max_steps_reached():
                self.train_epoch()
                if self.batch == 0:  # the epoch is complete
                    self.end_epoch()
        return self.finish(time.time() - start)

    def train_epoch(self) -> None:
        """The batches left in this epoch (all of them, unless resumed in its middle)."""
        c, ctx = self.config, self.ctx
        losses = torch.zeros(2, device=ctx.device, dtype=torch.float64)  # loss sum, non-finite count
        since_check, interval_start = 0, time.time()
        bar = self._progress_bar()
        for x, y in self.data.epoch(self.epoch, self.batch):
            loss = self.train_step(x, y)
            losses[0] += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
            losses[1] += (~torch.isfinite(loss)).double()
            since_check += 1
            self.batch += 1
            self.progress.images += x.shape[0] * ctx.world_size
            if bar is not None:
                bar.update(1)
            last, limit = self.batch == self.data.batches_per_epoch, self._max_steps_reached()
            if self.step % c.log_every == 0 or last or limit:
                mean = self._check_loss(losses, since_check)  # waits for the device: the clock is fair
                self.progress.loss_sum += mean * since_check
                self.progress.steps += since_check
                self.progress.seconds += time.time() - interval_start
                losses.zero_()
                since_check = 0
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
                if distributed.broadcast_flag(self.stop_signal is not None, ctx):
                    self._stop_for_signal(bar)
                due = time.time() - self.last_checkpoint > 60 * c.checkpoint_minutes
                if not last and not limit and distributed.broadcast_flag(due, ctx):
                    self.save_checkpoint()
                interval_start = time.time()
            if limit:
                break
        if bar is not None:
            bar.close()
        if self.batch >= self.data.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0

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

    def end_epoch(self) -> None:
        """Log the finished epoch, test it, keep the best weights, save a checkpoint."""
        c, p = self.config, self.progress
        record = {"epoch": self.epoch, "step": self.step,
                  "lr": learning_rate(c, max(self.step - 1, 0), self.data.batches_per_epoch),
                  "train_loss": round(p.loss_sum / max(p.steps, 1), 5), "steps": p.steps,
                  "images_per_second": round(p.images / max(p.seconds, 1e-9), 1), "train_seconds": round(p.seconds, 4)}
        self.train_seconds += p.seconds
        self.images_seen += p.images
        self.progress = EpochProgress()
        if self.epoch % c.eval_every == 0 or self.finished:
            record["test"] = accuracy(self.network, self.data.test_batches(c.model.img_size), self.ctx, self.autocast)
            if self.best is None or record["test"]["top1"] > self.best["top1"]:
                self.best = {"epoch": self.epoch, **record["test"]}
                self._save_weights("best.pt", best=self.best)
        self.history.append(record)
        if self.ctx.is_main:
            self.folder.log(record)
        self._say(f"epoch {self.epoch}/{c.epochs}  loss {record['train_loss']:.4f}"
                  + (f"  test top-1 {record['test']['top1']:.2f}%" if "test" in record else "")
                  + f"  {record['images_per_second']:.0f} img/s")
        self.save_checkpoint()

    def finish(self, wall_seconds: float) -> dict:
        """The test accuracy at every resolution, the final weights and ``results.json``."""
        c, ctx = self.config, self.ctx
        if not self.finished:  # stopped by max_steps inside an epoch
            self.save_checkpoint()
        resolutions = [c.model.img_size] + [r for r in c.eval_resolutions if r != c.model.img_size]
        results_accuracy = {}
        for r in resolutions:
            results_accuracy[str(r)] = accuracy(self.network, self.data.test_batches(r), ctx, self.autocast)
            self._say(f"test at {r} px: top-1 {results_accuracy[str(r)]['top1']:.2f}%")
        sync = self._check_sync()
        model = self.model
        self._save_weights("model.pt")
        train_seconds = self.train_seconds + self.progress.seconds
        results = {
            "run": c.name, "recipe": c.recipe, "source": c.source, "encoding": c.model.encoding, "seed": c.seed,
            "accuracy": results_accuracy, "best": self.best, "epochs_completed": self.epoch, "steps": self.step,
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "throughput_images_per_second": round((self.images_seen + self.progress.images) / max(train_seconds, 1e-9),
                                                  1),
            "train_seconds": round(train_seconds, 1), "wall_seconds_this_session": round(wall_seconds, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "position_parameters": sum(p.numel() for n, p in model.named_parameters()
                                       if n in model.no_weight_decay() and n != "cls_token"),
            "data": self.data.describe(), "config": c.to_dict(),
            "distributed": {"world_size": ctx.world_size, **sync}, "resumed_from": self.resumed_from,
            "provenance": provenance(ctx.device, smoke=is_smoke(),
                                     precision=str(self.autocast).replace("torch.", "") if self.autocast else "float32"),
        }
        if ctx.is_main:
            self.folder.file("results.json").write_text(json.dumps(results, indent=2) + "\n")
            self._say(f"wrote {self.folder.file('results.json')}")
        return results

    # -- helpers -------------------------------------------------------------------------------------

    def _max_steps_reached(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _check_loss(self, losses: torch.Tensor, count: int) -> float:
        """Mean of the losses since the last check; stops the run if any was not finite."""
        total = distributed.all_sum(losses.clone(), self.ctx)  # [sum, non-finite count]
        if total[1].item() > 0:
            where = self.folder.file("checkpoint.pt")
            kept = f"the last good checkpoint is kept at {where}" if where.exists() else "no checkpoint was written yet"
            raise NonFiniteLoss(
                f"the loss became NaN or infinite before step {self.step} (epoch {self.epoch}); training stops and "
                f"{kept}. Lower the learning rate (--lr) or clip gradients (--grad-clip 1.0), then run again "
                "(it resumes from that checkpoint)"
            )
        return total[0].item() / max(count * self.ctx.world_size, 1)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """Ctrl-C and SIGTERM (a cluster's time limit) set a flag; the loop saves a checkpoint at the
        next step and stops, so that rerunning the command continues exactly."""
        def handler(signum, frame):
            self.stop_signal = signum
            signal.signal(signum, previous[signum])  # a second Ctrl-C stops at once

        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _stop_for_signal(self, bar) -> None:
        if bar is not None:
            bar.close()
        self.save_checkpoint()
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
        raise Interrupted(f"stopped by {name} at epoch {self.epoch + 1}, step {self.step}; checkpoint saved in "
                          f"{self.folder.path}: run the same command again to continue", self.stop_signal)

    def _progress_bar(self):
        if not (self.config.progress and self.ctx.is_main and not is_smoke()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.data.batches_per_epoch, initial=self.batch, leave=False, dynamic_ncols=True,
                    desc=f"epoch {self.epoch + 1}/{self.config.epochs}")

    def _say(self, message: str) -> None:
        if self.ctx.is_main and not is_smoke():
            print(message, flush=True)

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
    folder = RunFolder(f"{config.out_dir}/{config.name}")
    try:
        trainer = Trainer(config, ctx, folder)
        if ctx.is_main:
            print(f"run {config.name} -> {folder.path}: {config.model.encoding} on {config.dataset}, "
                  f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters, "
                  f"{trainer.data.batches_per_epoch} steps per epoch, device {ctx.device}"
                  + (f" x {ctx.world_size} processes" if ctx.distributed else "")
                  + (" (smoke mode)" if is_smoke() else ""), flush=True)
        return trainer.fit()
    finally:
        folder.release()
        distributed.cleanup()


def describe(config: TrainConfig) -> str:
    """The resolved configuration and the model's parameter counts, without reading any data."""
    classes = expected_classes(config)
    model = build_model(config, classes or 10)
    total = sum(p.numel() for p in model.parameters())
    position = sum(p.numel() for n, p in model.named_parameters() if n in model.no_weight_decay() and n != "cls_token")
    lines = [json.dumps(config.to_dict(), indent=1),
             f"run folder: {config.out_dir}/{config.name}",
             f"parameters: {total:,} (position encoding: {position:,})"
             + ("" if classes else "; the head assumes 10 classes: the data decide")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m ropelib.train", description=__doc__.split("\n\n")[0],
                            epilog="Every field of ropelib.config.TrainConfig and ropelib.vit.ViTConfig is an "
                                   "option; --recipe NAME loads a recipe first.")
    parser.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter counts, "
                                                               "then exit without reading data")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.list_recipes:
        for name in available_recipes():
            print(f"{name:24s} {load_recipe(name).source}")
        return 0
    try:
        config = from_arguments(args)
        if args.dry_run:
            print(describe(smoke_config(config) if is_smoke() else config))
            return 0
        results = train(config)
    except (ValueError, RunFolderError) as error:  # configuration mistakes, caught before any data is read
        return _fail(parser, error, 2)
    except (DataError, NonFiniteLoss) as error:
        return _fail(parser, error, 1)
    except Interrupted as error:
        return _fail(parser, error, error.exit_code)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"run": results["run"], "accuracy": results["accuracy"],
                          "images_per_second": results["throughput_images_per_second"]}))
    return 0


def _fail(parser, error: Exception, code: int) -> int:
    print(f"{parser.prog}: error: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
