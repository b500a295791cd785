"""From a :class:`TrainConfig` to batches: training streams and evaluation sets at any resolution.

Four kinds of data, one interface (:class:`Pipeline`):

* ``synthetic``: :class:`ropelib.data.RelativeDirectionTask`, generated per batch;
* in-memory images (CIFAR, small image folders), batched and augmented on the training device
  (:mod:`ropelib.augment`), the fast path on a GPU;
* in-memory images through ``DataLoader`` workers with torchvision transforms (for RandAugment);
* ``imagenet``: an ImageFolder on disk with DeiT-III's transforms on ``DataLoader`` workers.

Every batch is determined by ``(seed, epoch, batch, rank)``: a resumed run sees the same data.

For evaluation only (:func:`build_test`), also ``imagenette``: Imagenette's val folder
(``torchvision.datasets.Imagenette``), read like ImageNet's; any test set can be cut to a
class-balanced subset (:func:`ropelib.data.balanced_subset`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import augment
from .data import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, DataError, EpochSampler, ImageData,
                   RelativeDirectionTask, TensorBatches, balanced_subset, generator, image_folder,
                   imagenette_folder, worker_loader, load_cifar, load_image_folder)
from .distributed import Context
from .config import TrainConfig

GEOMETRIC = ("crop", "flip", "randaugment")
TEST_DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder", "imagenet", "imagenette")


@dataclass(frozen=True)
class Preprocessing:
    """How a folder's test image becomes a model input of ``resolution`` pixels: resize its shorter
    side to ``resolution / crop_pct`` (``interpolation``, antialiased), centre-crop ``resolution``
    square, scale to [0, 1] and normalise with ``mean`` and ``std``. ``source`` says where the
    values came from (a timm model's ``pretrained_cfg``, the run's config, the command line)."""

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    source: str = "ropelib's defaults"

    def __post_init__(self):
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"interpolation must be bicubic, bilinear or nearest, got {self.interpolation!r}")

    def transform(self, resolution: int):
        from torchvision.transforms import v2

        mode = getattr(v2.InterpolationMode, self.interpolation.upper())
        resize = int(round(resolution / self.crop_pct))
        return v2.Compose([v2.ToImage(), v2.Resize(resize, interpolation=mode, antialias=True),
                           v2.CenterCrop(resolution), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(list(self.mean), list(self.std))])

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std),
                "steps": "resize the shorter side to resolution / crop_pct, centre-crop resolution, normalise"}


def _subset_record(n: int, total: int) -> dict:
    return {"images": n, "of": total, "rule": "class-balanced: the classes share the images equally (the first "
            "classes one more when they do not divide; a class with too few images gives all it has), evenly "
            "spaced through each class's images in test-set order (ropelib.data.balanced_subset)"}


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


def build_test(config: TrainConfig, ctx: Context, subset: int | None = None, dataset: str | None = None,
               preprocessing: Preprocessing | None = None, imagenette_size: str = "full"):
    """Only the test sets (for ``python -m ropelib.evaluate``): no training split is read.

    ``subset``: evaluate on a class-balanced subset of that many test images
    (:func:`ropelib.data.balanced_subset`). ``dataset`` replaces ``config.dataset``, and may also be
    ``imagenette`` (Imagenette's val folder under ``config.data_dir``, downloaded by torchvision with
    ``config.download``; ``imagenette_size``: full, 320px or 160px, see
    :data:`ropelib.data.IMAGENETTE_FOLDERS`). ``preprocessing``: resize, crop and normalisation of
    folder data sets (imagenet, imagenette; default: ImageNet's mean and std, ``config.eval_crop_pct``).
    The test set's ``classes`` are its class folders' names (``None`` for in-memory data)."""
    dataset = dataset or config.dataset
    if dataset == "synthetic":
        tests = SyntheticPipeline(config, ctx)
        if subset is not None:
            balanced_subset(torch.zeros(config.synthetic_test_size), subset)  # refuses a subset too large now
        tests.subset = subset
        return tests
    if dataset in ("cifar10", "cifar100"):
        test = load_cifar(dataset, config.data_dir, train=False, download=config.download and ctx.is_main)
        return MemoryTest(test, ctx, CIFAR_MEAN, CIFAR_STD, subset=subset)
    if dataset == "imagefolder":
        split = "test" if (Path(config.data_dir) / "test").is_dir() else "val"
        return MemoryTest(load_image_folder(config.data_dir, split, size=config.model.img_size), ctx, IMAGENET_MEAN,
                          IMAGENET_STD, subset=subset)
    if dataset == "imagenet":
        return FolderTest(config, ctx, preprocessing=preprocessing, subset=subset)
    if dataset == "imagenette":
        folder = imagenette_folder(config.data_dir, imagenette_size, download=config.download and ctx.is_main)
        return FolderTest(config, ctx, folder=folder, name="imagenette", preprocessing=preprocessing, subset=subset,
                          details={"imagenette_size": imagenette_size})
    raise ValueError(f"unknown dataset {dataset!r}; choose {', '.join(TEST_DATASETS)}")


class MemoryTest:
    """An in-memory test set, resized (bicubic, antialiased) to any resolution; ``subset``: a
    class-balanced subset of that many images (:func:`ropelib.data.balanced_subset`)."""

    classes = None  # in-memory data sets keep labels, not class names

    def __init__(self, test: ImageData, ctx: Context, mean, std, subset: int | None = None):
        self.total = len(test)
        if subset is not None:
            keep = balanced_subset(test.labels, subset)
            test = ImageData(test.images[keep.to(test.images.device)], test.labels[keep.to(test.labels.device)],
                             test.num_classes, test.name, test.source)
        self.test, self.ctx, self.mean, self.std, self.subset = test, ctx, mean, std, subset
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
        record = {"dataset": self.test.name, "source": self.test.source, "test_images": len(self.test),
                  "preprocessing": {"steps": "resize the whole image to resolution (bicubic, antialiased), "
                                    "normalise", "mean": list(self.mean), "std": list(self.std)}}
        if self.subset is not None:
            record["subset"] = _subset_record(len(self.test), self.total)
        return record


class FolderTest:
    """The ``val`` split of an ImageFolder (``folder``, default ``data_dir/val``), each image resized
    and centre-cropped by ``preprocessing`` (default: ImageNet's mean and std, ``eval_crop_pct``,
    bicubic); ``subset``: a class-balanced subset of that many images."""

    def __init__(self, config: TrainConfig, ctx: Context, folder: str | Path | None = None, name: str = "imagenet",
                 preprocessing: Preprocessing | None = None, subset: int | None = None, details: dict | None = None):
        from torchvision.datasets import ImageFolder

        self.config, self.ctx, self.name, self.details = config, ctx, name, details or {}
        try:
            self.val = image_folder(config.data_dir, "val", name) if folder is None else ImageFolder(str(folder))
        except FileNotFoundError as error:  # class folders without images
            raise DataError(f"{name}: {error}") from None
        self.folder = Path(self.val.root).resolve()
        self.source = str(Path(config.data_dir).resolve()) if folder is None else str(self.folder)
        self.classes = list(self.val.classes)
        self.num_classes = len(self.classes)
        self.preprocessing = preprocessing or Preprocessing(
            crop_pct=config.eval_crop_pct, source="ImageNet's mean and std, the config's eval_crop_pct")
        self.subset, self.indices = subset, None
        if subset is not None:
            self.indices = balanced_subset(torch.tensor(self.val.targets), subset).tolist()

    def __len__(self) -> int:
        return len(self.val) if self.indices is None else len(self.indices)

    def test_batches(self, resolution: int):
        data = self.val if self.indices is None else torch.utils.data.Subset(self.val, self.indices)
        sampler = EpochSampler(len(data), 0, self.ctx.rank, self.ctx.world_size, shuffle=False)
        loader, _ = worker_loader(data, self.preprocessing.transform(resolution), 250, sampler, self.config.workers,
                                  train=False)
        for x, y in loader:
            yield x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)

    def describe(self):
        record = {"dataset": self.name, "source": self.source, "test_images": len(self), **self.details,
                  "classes": self.num_classes, "preprocessing": self.preprocessing.to_dict()}
        if self.subset is not None:
            record["subset"] = _subset_record(len(self), len(self.val))
        return record


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
    subset: int | None = None  # evaluation: a class-balanced subset of the test set (build_test)
    classes = None

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
        if self.subset is not None:
            keep = balanced_subset(y, self.subset)
            x, y = x[keep], y[keep]
        x, y = x[self.ctx.rank::self.ctx.world_size], y[self.ctx.rank::self.ctx.world_size]
        for i in range(0, len(y), 500):
            yield x[i:i + 500].to(self.ctx.device), y[i:i + 500].to(self.ctx.device)

    def describe(self):
        record = {"dataset": "synthetic", "task": "relative direction of two marks", "grid": self.task.grid,
                  "patch": self.task.patch, "classes": self.num_classes,
                  "train_images_per_epoch": self.batches_per_epoch * self.config.batch_size,
                  "test_images": self.config.synthetic_test_size}
        if self.subset is not None:  # drawn afresh per resolution, like the test set itself
            record["test_images"] = self.subset
            record["subset"] = _subset_record(self.subset, self.config.synthetic_test_size)
        return record


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
