"""From a :class:`TrainConfig` to batches: training streams and evaluation sets at any resolution.

Four kinds of data, one interface (:class:`Pipeline`):

* ``synthetic``: :class:`ropelib.data.RelativeDirectionTask`, generated per batch;
* in-memory images (CIFAR, small image folders), batched and augmented on the training device
  (:mod:`ropelib.augment`), the fast path on a GPU;
* in-memory images through ``DataLoader`` workers with torchvision transforms (for RandAugment);
* ``imagenet``: an ImageFolder on disk with DeiT-III's transforms on ``DataLoader`` workers.

Every batch is determined by ``(seed, epoch, batch, rank)``: a resumed run sees the same data.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from . import augment
from .data import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, EpochSampler, ImageData,
                   RelativeDirectionTask, TensorBatches, generator, image_folder, worker_loader,
                   load_cifar, load_image_folder)
from .distributed import Context
from .config import TrainConfig

GEOMETRIC = ("crop", "flip", "randaugment")


class Pipeline:
    """Training batches ``(x, y)`` on the device (``x`` normalised float), and test sets."""

    num_classes: int
    batches_per_epoch: int

    def epoch(self, epoch: int, start_batch: int = 0):
        raise NotImplementedError

    def test_batches(self, resolution: int):
        """Test batches ``(x, y)`` at ``resolution`` pixels (this rank's share)."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


def build(config: TrainConfig, ctx: Context) -> Pipeline:
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size={config.batch_size} is the global batch and must be divisible by the "
                         f"{ctx.world_size} processes")
    if config.dataset == "synthetic":
        return SyntheticPipeline(config, ctx)
    if config.dataset in ("cifar10", "cifar100"):
        train = load_cifar(config.dataset, config.data_dir, train=True, download=config.download and ctx.is_main)
        test = load_cifar(config.dataset, config.data_dir, train=False, download=False)
        return _memory_pipeline(config, ctx, train, test, CIFAR_MEAN, CIFAR_STD)
    if config.dataset == "imagefolder":
        train = load_image_folder(config.data_dir, "train", size=config.model.img_size)
        test = load_image_folder(config.data_dir, "test" if (Path(config.data_dir) / "test").is_dir() else "val",
                                 size=config.model.img_size)
        return _memory_pipeline(config, ctx, train, test, IMAGENET_MEAN, IMAGENET_STD)
    if config.dataset == "imagenet":
        return FolderPipeline(config, ctx)
    raise ValueError(f"unknown dataset {config.dataset!r}; choose synthetic, cifar10, cifar100, imagefolder "
                     "or imagenet")


def build_test(config: TrainConfig, ctx: Context):
    """Only the test sets (for ``python -m ropelib.evaluate``): no training split is read."""
    if config.dataset == "synthetic":
        return SyntheticPipeline(config, ctx)
    if config.dataset in ("cifar10", "cifar100"):
        test = load_cifar(config.dataset, config.data_dir, train=False, download=config.download and ctx.is_main)
        return MemoryTest(test, ctx, CIFAR_MEAN, CIFAR_STD)
    if config.dataset == "imagefolder":
        split = "test" if (Path(config.data_dir) / "test").is_dir() else "val"
        return MemoryTest(load_image_folder(config.data_dir, split, size=config.model.img_size), ctx, IMAGENET_MEAN,
                          IMAGENET_STD)
    if config.dataset == "imagenet":
        return FolderTest(config, ctx)
    raise ValueError(f"unknown dataset {config.dataset!r}; choose synthetic, cifar10, cifar100, imagefolder "
                     "or imagenet")


class MemoryTest:
    """An in-memory test set, resized (bicubic, antialiased) to any resolution."""

    def __init__(self, test: ImageData, ctx: Context, mean, std):
        self.test, self.ctx, self.mean, self.std = test, ctx, mean, std
        self.num_classes = test.num_classes

    def test_batches(self, resolution: int, batch: int = 500):
        images, labels = self.test.images[self.ctx.rank::self.ctx.world_size], \
            self.test.labels[self.ctx.rank::self.ctx.world_size]
        for i in range(0, len(labels), batch):
            x = augment.to_float(images[i:i + batch].to(self.ctx.device))
            if x.shape[-1] != resolution:
                x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True,
                                  align_corners=False).clamp(0, 1)
            yield augment.normalize(x, self.mean, self.std), labels[i:i + batch].to(self.ctx.device)

    def describe(self):
        return {"dataset": self.test.name, "source": self.test.source, "test_images": len(self.test)}


class FolderTest:
    """The ``val`` split of an ImageFolder: resize to ``resolution / eval_crop_pct``, centre-crop."""

    def __init__(self, config: TrainConfig, ctx: Context):
        self.config, self.ctx = config, ctx
        self.val = image_folder(config.data_dir, "val", "imagenet")
        self.num_classes = len(self.val.classes)

    def test_batches(self, resolution: int):
        from torchvision.transforms import v2

        resize = int(round(resolution / self.config.eval_crop_pct))
        transform = v2.Compose([v2.ToImage(), v2.Resize(resize, interpolation=v2.InterpolationMode.BICUBIC,
                                                        antialias=True),
                                v2.CenterCrop(resolution), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        sampler = EpochSampler(len(self.val), 0, self.ctx.rank, self.ctx.world_size, shuffle=False)
        loader, _ = worker_loader(self.val, transform, 250, sampler, self.config.workers, train=False)
        for x, y in loader:
            yield x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)

    def describe(self):
        return {"dataset": "imagenet", "source": str(Path(self.config.data_dir).resolve()),
                "test_images": len(self.val)}


def _memory_pipeline(config, ctx, train, test, mean, std) -> Pipeline:
    on_device = {"auto": ctx.device.type == "cuda" and not config.randaugment, "yes": True, "no": False}
    if config.data_on_device not in on_device:
        raise ValueError(f"data_on_device must be auto, yes or no, got {config.data_on_device!r}")
    if config.randaugment and on_device[config.data_on_device]:
        raise ValueError("randaugment runs on DataLoader workers; set data_on_device to 'no' (or auto)")
    if on_device[config.data_on_device]:
        return DevicePipeline(config, ctx, train, test, mean, std)
    return WorkerPipeline(config, ctx, train, test, mean, std)


class SyntheticPipeline(Pipeline):
    def __init__(self, config: TrainConfig, ctx: Context):
        used = [name for name in GEOMETRIC if getattr(config, name) not in ("none", False)]
        if used:
            raise ValueError(f"the synthetic task's labels are directions: {', '.join(used)} would change them; "
                             "turn them off (crop: none, flip: false, randaugment: false)")
        self.config, self.ctx = config, ctx
        self.task = RelativeDirectionTask(config.synthetic_grid, config.model.patch_size, config.synthetic_classes)
        if self.task.image_size != config.model.img_size:
            raise ValueError(f"synthetic task: {config.synthetic_grid} patches of {config.model.patch_size} pixels make "
                             f"{self.task.image_size}-pixel images, but img_size is {config.model.img_size}")
        self.num_classes = config.synthetic_classes
        self.per_rank = config.batch_size // ctx.world_size
        self.batches_per_epoch = max(1, config.synthetic_epoch_size // config.batch_size)

    def epoch(self, epoch, start_batch=0):
        for b in range(start_batch, self.batches_per_epoch):
            x, y = self.task.sample(self.per_rank, generator("cpu", self.config.seed, epoch, b, self.ctx.rank))
            yield x.to(self.ctx.device), y.to(self.ctx.device)

    def test_batches(self, resolution):
        if resolution % self.config.model.patch_size:
            raise ValueError(f"synthetic test resolution {resolution} is not a multiple of the patch size")
        task = RelativeDirectionTask(resolution // self.config.model.patch_size, self.config.model.patch_size,
                                     self.config.synthetic_classes)
        x, y = task.test_set(self.config.synthetic_test_size, seed=12345 + resolution)
        x, y = x[self.ctx.rank::self.ctx.world_size], y[self.ctx.rank::self.ctx.world_size]
        for i in range(0, len(y), 500):
            yield x[i:i + 500].to(self.ctx.device), y[i:i + 500].to(self.ctx.device)

    def describe(self):
        return {"dataset": "synthetic", "task": "relative direction of two marks", "grid": self.task.grid,
                "patch": self.task.patch, "classes": self.num_classes,
                "train_images_per_epoch": self.batches_per_epoch * self.config.batch_size,
                "test_images": self.config.synthetic_test_size}


class DevicePipeline(Pipeline):
    """The whole data set on the training device; augmentations on batches there."""

    def __init__(self, config, ctx, train: ImageData, test: ImageData, mean, std):
        self.config, self.ctx, self.mean, self.std = config, ctx, mean, std
        self.train, self.test = train.to(ctx.device), test
        self.num_classes = train.num_classes
        self.batches = TensorBatches(self.train, config.batch_size // ctx.world_size, config.seed, ctx.rank,
                                     ctx.world_size)
        self.batches_per_epoch = self.batches.batches_per_epoch()

    def augment(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        x = augment.to_float(images)
        if c.crop == "pad":
            x = augment.random_crop(x, g, padding=4)
        elif c.crop == "rrc":
            x = augment.random_resized_crop(x, g, c.model.img_size, scale=tuple(c.rrc_scale))
        elif c.crop != "none":
            raise ValueError(f"crop must be pad, rrc or none, got {c.crop!r}")
        if x.shape[-1] != c.model.img_size:
            x = F.interpolate(x, size=(c.model.img_size, c.model.img_size), mode="bilinear", antialias=True, align_corners=False)
        if c.flip:
            x = augment.hflip(x, g)
        if c.three_augment:
            x = augment.three_augment(x, g)
        if c.color_jitter:
            x = augment.color_jitter(x, g, c.color_jitter)
        return augment.normalize(x, self.mean, self.std)

    def epoch(self, epoch, start_batch=0):
        for images, labels, b in self.batches.epoch(epoch, start_batch):
            g = generator(self.ctx.device, self.config.seed, epoch, b, self.ctx.rank)
            yield self.augment(images, g), labels

    def test_batches(self, resolution):
        yield from MemoryTest(self.test, self.ctx, self.mean, self.std).test_batches(resolution)

    def describe(self):
        return _describe_memory(self.train, self.test, "on device")


class LoaderPipeline(Pipeline):
    """Training batches from DataLoader workers: a seeded sampler and per-sample seeded transforms."""

    def _start(self, config, ctx, dataset, transform) -> None:
        self.per_rank = config.batch_size // ctx.world_size
        self.sampler = EpochSampler(len(dataset), config.seed, ctx.rank, ctx.world_size)
        self.loader, self.dataset = worker_loader(dataset, transform, self.per_rank, self.sampler,
                                                  config.workers, seed=config.seed, train=True)
        self.batches_per_epoch = len(self.sampler) // self.per_rank

    def epoch(self, epoch, start_batch=0):
        self.sampler.set_epoch(epoch, start=start_batch * self.per_rank)
        self.dataset.set_epoch(epoch)
        for x, y in self.loader:
            yield x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)


class WorkerPipeline(LoaderPipeline):
    """In-memory images through DataLoader workers with torchvision transforms (RandAugment)."""

    def __init__(self, config, ctx, train: ImageData, test: ImageData, mean, std):
        self.config, self.ctx, self.train, self.test, self.mean, self.std = config, ctx, train, test, mean, std
        self.num_classes = train.num_classes
        self._start(config, ctx, _TensorDataset(train), worker_transforms(config, mean, std))

    def test_batches(self, resolution):
        yield from MemoryTest(self.test, self.ctx, self.mean, self.std).test_batches(resolution)

    def describe(self):
        return _describe_memory(self.train, self.test, "DataLoader workers")


def worker_transforms(config: TrainConfig, mean, std, images: bool = False):
    """torchvision's per-image training transforms, for DataLoader workers. ``images``: the input
    is a decoded image of any size (an ImageFolder), not a uint8 tensor of the training size."""
    from torchvision.transforms import v2

    bicubic = v2.InterpolationMode.BICUBIC
    steps = [v2.ToImage()] if images else []
    if config.crop == "rrc":
        steps.append(v2.RandomResizedCrop(config.model.img_size, scale=tuple(config.rrc_scale), antialias=True,
                                          interpolation=bicubic))
    elif config.crop in ("pad", "none"):
        if images:  # a fixed size first
            steps += [v2.Resize(config.model.img_size, interpolation=bicubic, antialias=True), v2.CenterCrop(config.model.img_size)]
        if config.crop == "pad":
            steps.append(v2.RandomCrop(config.model.img_size, padding=4))
    else:
        raise ValueError(f"crop must be pad, rrc or none, got {config.crop!r}")
    if config.flip:
        steps.append(v2.RandomHorizontalFlip())
    if config.randaugment:
        steps.append(v2.RandAugment())
    if config.three_augment:
        steps.append(v2.RandomChoice([v2.Grayscale(3), v2.RandomSolarize(128, p=1.0),
                                      v2.GaussianBlur(5, sigma=(0.1, 2.0))]))
    if config.color_jitter:
        steps.append(v2.ColorJitter(config.color_jitter, config.color_jitter, config.color_jitter))
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class _TensorDataset(torch.utils.data.Dataset):
    def __init__(self, data: ImageData):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data.images[i], int(self.data.labels[i])


def _describe_memory(train: ImageData, test: ImageData, where: str) -> dict:
    return {"dataset": train.name, "source": train.source, "train_images": len(train), "test_images": len(test),
            "image_size": list(train.images.shape[-2:]), "augmentation_on": where}


class FolderPipeline(LoaderPipeline):
    """ImageNet-1k (or any large ImageFolder): DeiT-III training transforms on workers; resize and
    centre-crop for evaluation at any resolution."""

    def __init__(self, config: TrainConfig, ctx: Context):
        self.config, self.ctx = config, ctx
        train = image_folder(config.data_dir, "train", "imagenet")  # scanned once: 1.28M files take a while
        self.num_classes = len(train.classes)
        self._start(config, ctx, train, worker_transforms(config, IMAGENET_MEAN, IMAGENET_STD, images=True))
        self._tests = None

    def test_batches(self, resolution):
        if self._tests is None:
            self._tests = FolderTest(self.config, self.ctx)
        yield from self._tests.test_batches(resolution)

    def describe(self):
        return {"dataset": "imagenet", "source": str(Path(self.config.data_dir).resolve()),
                "train_images": self.sampler.size, "classes": self.num_classes,
                "augmentation_on": "DataLoader workers"}
