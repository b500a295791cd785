"""Data for the training chapters: CIFAR, ImageNet-style folders, and a synthetic position task.

Small data sets (CIFAR, the synthetic task, a folder of small images) are held whole in memory
as uint8 tensors and batched by :class:`TensorBatches`, on the GPU when there is one, with the
augmentations of :mod:`ropelib.augment` running there too: on Colab the CPU data loader, not
the GPU, is what limits CIFAR training. Large folders (ImageNet) go through a standard
``DataLoader`` with torchvision transforms on worker processes (:func:`worker_loader`).

Every random choice (epoch order, augmentations, synthetic samples) is drawn from generators
seeded by ``(seed, epoch, batch)``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import gzip
import http.client
import math
import shutil
import tarfile
import tempfile
import urllib.error
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DataError(RuntimeError):
    """Data that is missing, corrupt or unusable; the message says where and what to do."""


@dataclass
class ImageData:
    """A whole data set in memory: ``images`` ``(N, 3, H, W)`` uint8, ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    source: str  # where it came from, recorded with every result

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> ImageData:
        return ImageData(self.images.to(device), self.labels.to(device), self.num_classes, self.name, self.source)


# -- CIFAR ----------------------------------------------------------------------------------------

def load_cifar(name: str, root: str | Path, train: bool, download: bool = False) -> ImageData:
    """CIFAR-10 or CIFAR-100 in the official "python version" format, read by torchvision's
    ``CIFAR10``/``CIFAR100`` (which check every file against the official MD5 before unpickling it).

    Looks in ``root`` for the extracted folder (``cifar-100-python/``), then for the official
    archive (``cifar-100-python.tar.gz``), which it extracts there, and with ``download=True``
    fetches that archive from the authors' site first (torchvision's ``download_url``, MD5-checked).
    """
    cifar = _cifar_class(name)
    root = Path(root).expanduser()
    folder, archive = root / cifar.base_folder, root / cifar.filename
    if not folder.is_dir():
        if not archive.is_file():
            if not download:
                raise DataError(
                    f"{name}: no data in {root} (looked for {folder.name}/ and {archive.name}). Download it with "
                    f"download=True (command line: --download), which fetches the official archive from "
                    f"https://www.cs.toronto.edu/~kriz/cifar.html, or put that archive in {root}"
                )
            _download(cifar, root, name)
        _extract(cifar, archive, root, name)
    try:
        dataset = cifar(str(root), train=train)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted": say which file
        file, problem = _damage(cifar, folder) or ("", "unreadable")
        raise DataError(f"{name}: {folder / file} is {problem}; delete {folder} and extract or download the "
                        "archive again") from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # torchvision holds (N, H, W, C)
    return ImageData(images, torch.tensor(dataset.targets, dtype=torch.int64), len(dataset.classes), name,
                     str(folder))


def _cifar_class(name: str):
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"unknown CIFAR data set {name!r}; choose cifar10 or cifar100")
    try:
        from torchvision import datasets
    except ImportError:  # pragma: no cover
        raise DataError("reading CIFAR needs torchvision: pip install 'ropelib[train]'") from None
    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _damage(cifar, folder: Path) -> tuple[str, str] | None:
    """The first file of ``folder`` that is missing or not the official one, and what is wrong with it."""
    from torchvision.datasets.utils import check_md5

    for file, md5 in [*cifar.train_list, *cifar.test_list, (cifar.meta["filename"], cifar.meta["md5"])]:
        if not (folder / file).is_file():
            return file, "missing"
        if not check_md5(folder / file, md5):
            return file, "corrupt (its MD5 is not the official file's)"
    return None


def _staging(root: Path, name: str) -> Path:
    """A new temporary folder next to the data, so that moving out of it is a rename."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))


def _extract(cifar, archive: Path, root: Path, name: str) -> None:
    """Extract ``archive`` into a temporary folder and move the data folder into ``root`` only once
    every file is the official one: a truncated or corrupt archive leaves nothing behind."""
    staging = _staging(root, cifar.base_folder)
    try:
        try:
            # tarfile rather than torchvision's extract_archive, which has no "data" filter (it
            # would follow absolute paths and links out of the folder)
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise DataError(f"{name}: the archive {archive} is corrupt or incomplete ({error}); delete it and "
                            "download it again") from None
        except OSError as error:
            raise DataError(f"{name}: extracting {archive} into {root} failed ({error})") from None
        damage = _damage(cifar, staging / cifar.base_folder)
        if damage:
            raise DataError(f"{name}: the archive {archive} is corrupt or incomplete ({damage[0]} is "
                            f"{damage[1]}); delete it and download it again")
        try:
            (staging / cifar.base_folder).rename(root / cifar.base_folder)
        except OSError:
            if not (root / cifar.base_folder).is_dir():  # else another process moved its copy first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(cifar, root: Path, name: str) -> None:
    """Fetch the official archive into ``root`` (via a temporary folder: no partial file is left)."""
    from torchvision.datasets.utils import download_url

    staging = _staging(root, cifar.filename)
    try:
        try:
            download_url(cifar.url, str(staging), cifar.filename, cifar.tgz_md5)
        except (OSError, http.client.HTTPException, RuntimeError) as error:  # URLError is an OSError
            if isinstance(error, RuntimeError):  # torchvision's "File not found or corrupted."
                reason = "the file's MD5 is not the official archive's"
            elif isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
                reason = error.reason
            else:
                reason = error
            raise DataError(
                f"{name}: downloading {cifar.url} failed ({reason}). Check the network connection, or download "
                f"that file by hand and put it at {root / cifar.filename} (or point --data-dir at the folder "
                "that holds it)"
            ) from None
        (staging / cifar.filename).replace(root / cifar.filename)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- folders of images ----------------------------------------------------------------------------

def _check_split_folder(root: Path, split: str, name: str) -> Path:
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise DataError(
            f"{name}: {folder} does not exist. Expected the ImageFolder layout {Path(root) / split}/<class>/<image> "
            "(for ImageNet-1k: train/ and val/ with one folder per class; see data/README.md)"
        )
    if not any(p.is_dir() for p in folder.iterdir()):
        raise DataError(f"{name}: {folder} has no class folders; expected {folder}/<class>/<image>")
    return folder


def load_image_folder(root: str | Path, split: str, name: str = "imagefolder", size: int | None = None) -> ImageData:
    """A folder of small images (``root/split/<class>/*``) decoded whole into memory, e.g. the
    JPEG copy of CIFAR-10. ``size`` resizes every image to ``size x size`` if given."""
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.v2 import functional as TF

    folder = _check_split_folder(Path(root), split, name)
    dataset = ImageFolder(str(folder))
    images, labels = [], []
    for path, label in dataset.samples:
        try:
            with Image.open(path) as img:
                tensor = TF.pil_to_tensor(img.convert("RGB"))
        except OSError as error:
            raise DataError(f"{name}: cannot read {path} ({error}); remove or replace the file") from error
        if size is not None and tensor.shape[-2:] != (size, size):
            tensor = TF.resize(tensor, [size, size], antialias=True)
        images.append(tensor)
        labels.append(label)
    if len({t.shape for t in images}) != 1:
        raise DataError(f"{name}: images in {folder} differ in size; pass a size to resize them")
    return ImageData(torch.stack(images), torch.tensor(labels), len(dataset.classes), name, str(folder))


def image_folder(root: str | Path, split: str, name: str = "imagenet"):
    """torchvision's ImageFolder over ``root/split`` (checked first, with a clear error)."""
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(_check_split_folder(Path(root), split, name)))


def worker_loader(dataset, transform, batch_size: int, sampler, num_workers: int, seed: int = 0,
                  train: bool = True):
    """A ``DataLoader`` over ``dataset`` (an ImageFolder, or images in memory) with per-sample seeded
    transforms on its workers."""
    seeded = SeededTransform(dataset, transform, seed)
    loader = torch.utils.data.DataLoader(seeded, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                         pin_memory=torch.cuda.is_available(), drop_last=train,
                                         persistent_workers=num_workers > 0 and train)
    return loader, seeded


class SeededTransform(torch.utils.data.Dataset):
    """Applies ``transform`` with torch's RNG seeded by ``(seed, epoch, index)``, so that the
    augmentation of a sample does not depend on which worker loads it, or on a resume."""

    def __init__(self, dataset, transform, seed: int = 0):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0
        self.classes = getattr(dataset, "classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.transform(image), label


def _mix(*numbers: int) -> int:
    """A deterministic 63-bit seed from a few integers."""
    value = 0x9E3779B97F4A7C15
    for n in numbers:
        value = (value ^ (int(n) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & 0x7FFFFFFFFFFFFFFF
    return value


def generator(device, *numbers: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(_mix(*numbers))
    return g


class EpochSampler(torch.utils.data.Sampler):
    """The indices of one rank for one epoch: a permutation seeded by ``(seed, epoch)``, split
    across ranks, starting at ``start`` (to resume in the middle of an epoch)."""

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.size, generator=generator("cpu", self.seed, self.epoch))
        else:
            order = torch.arange(self.size)
        return order[self.rank::self.world_size][self.start:]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return len(range(self.rank, self.size, self.world_size)) - self.start


class TensorBatches:
    """Batches of an in-memory :class:`ImageData`, on its device, shuffled per epoch.

    ``batch_size`` is per rank. Yields ``(images uint8, labels, batch_index)``; the training loop
    augments the uint8 batch with :mod:`ropelib.augment` on the same device.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True):
        self.data, self.batch_size, self.drop_last = data, batch_size, drop_last
        self.sampler = EpochSampler(len(data), seed, rank, world_size, shuffle)

    def batches_per_epoch(self) -> int:
        n = len(range(self.sampler.rank, self.sampler.size, self.sampler.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0):
        self.sampler.set_epoch(epoch)
        order = self.sampler.indices().to(self.data.labels.device)
        for b in range(start_batch, self.batches_per_epoch()):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.data.images[idx], self.data.labels[idx], b


# -- a synthetic task that needs positions ---------------------------------------------------------

class RelativeDirectionTask:
    """Two marks on a grid of patches; the label is the direction of mark B seen from mark A.

    Mark A fills one patch of channel 0, mark B one patch of channel 1, over Gaussian noise.
    The label, the direction of the offset ``B - A`` quantised into ``classes`` sectors (offsets
    on a sector boundary are never drawn), is translation-invariant: a model must compare the two marks' *positions*, which attention alone
    cannot do (chapter 1). Classes are drawn uniformly, so chance is exactly ``1 / classes``.

    Images are generated on the fly from ``(seed, index)``: an infinite training stream, a fixed
    test set, and at ``grid`` larger than in training a test of extrapolation (longer offsets,
    more positions).
    """

    def __init__(self, grid: int = 6, patch: int = 4, classes: int = 8, noise: float = 0.3):
        if classes < 2:
            raise ValueError(f"RelativeDirectionTask: classes must be at least 2, got {classes}")
        self.grid, self.patch, self.classes, self.noise = grid, patch, classes, noise
        d = torch.arange(-(grid - 1), grid)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        offsets = torch.stack((dx.reshape(-1), dy.reshape(-1)), -1)
        offsets = offsets[(offsets != 0).any(-1)]
        angle = torch.atan2(offsets[:, 1].double(), offsets[:, 0].double())  # y points down the image
        sector = angle / (2 * math.pi / classes)
        # Offsets on a boundary between two sectors (the diagonals when classes = 4) have no
        # well-defined label: leave them out.
        clear = ((sector - sector.floor()) - 0.5).abs() > 1e-6
        self.offsets = offsets[clear]
        self.offset_class = torch.round(sector[clear]).long() % classes
        missing = set(range(classes)) - set(self.offset_class.tolist())
        if missing:
            raise ValueError(f"RelativeDirectionTask: a {grid}x{grid} grid has no offsets for classes {sorted(missing)}")

    @property
    def image_size(self) -> int:
        return self.grid * self.patch

    def sample(self, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` images ``(size, 3, S, S)`` float and their labels, drawn with generator ``g`` (CPU)."""
        labels = torch.randint(self.classes, (size,), generator=g)
        choice = (self.offset_class.unsqueeze(0) == labels.unsqueeze(1)).float()  # (size, K)
        offset = self.offsets[torch.multinomial(choice, 1, generator=g).squeeze(1)]  # (size, 2)
        low = (-offset).clamp(min=0)
        span = self.grid - offset.abs()  # valid starts per axis: low .. low + span - 1
        a = low + (torch.rand(size, 2, generator=g) * span).long()
        b = a + offset
        images = torch.randn(size, 3, self.grid, self.grid, generator=g) * self.noise
        rows = torch.arange(size)
        images[rows, 0, a[:, 1], a[:, 0]] += 1.0
        images[rows, 1, b[:, 1], b[:, 0]] += 1.0
        images = images.repeat_interleave(self.patch, -1).repeat_interleave(self.patch, -2)
        return images, labels

    def batch(self, size: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(size, generator("cpu", seed, step))

    def test_set(self, size: int, seed: int = 12345) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(size, generator("cpu", seed, -1))


# -- Imagenette and ImageNet class indices ---------------------------------------------------------

# Imagenette (fastai; torchvision.datasets.Imagenette): ten easily told apart ImageNet-1k classes,
# 3,925 val images. Its authors do not say which ImageNet split its images come from, so an
# ImageNet-trained model may have seen some of them in training.
# WordNet id -> index among ImageNet-1k's 1000 classes (the sorted synsets, the order every
# ImageNet-1k classifier's logits follow); tests/test_imagenet_eval.py checks these against
# timm.data.ImageNetInfo.
IMAGENETTE_CLASSES = {
    "n01440764": (0, "tench"),
    "n02102040": (217, "English springer"),
    "n02979186": (482, "cassette player"),
    "n03000684": (491, "chain saw"),
    "n03028079": (497, "church"),
    "n03394916": (566, "French horn"),
    "n03417042": (569, "garbage truck"),
    "n03425413": (571, "gas pump"),
    "n03445777": (574, "golf ball"),
    "n03888257": (701, "parachute"),
}
# The three downloads of torchvision.datasets.Imagenette (size -> the folder its archive holds).
# "full": the original ImageNet JPEGs (the largest download, about 1.5 GB), so that every test
# resolution resamples what an ImageNet evaluation would; "320px" and "160px": shortest side
# shrunk to 320 or 160 pixels (several times smaller downloads), which evaluations above that
# size upsample (softer images than ImageNet's).
IMAGENETTE_FOLDERS = {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}


def imagenet_indices(wnids) -> list[int]:
    """The ImageNet-1k logit index of each WordNet id in ``wnids`` (``"n01440764"`` -> 0): the
    Imagenette ten from :data:`IMAGENETTE_CLASSES`, any other class from timm's ImageNet-1k
    class list (``timm.data.ImageNetInfo``). Raises ``DataError`` for a name that is not one."""
    wnids = list(wnids)
    known = {wnid: index for wnid, (index, _) in IMAGENETTE_CLASSES.items()}
    if any(w not in known for w in wnids):
        try:
            from timm.data import ImageNetInfo
        except ImportError:  # pragma: no cover
            raise DataError("mapping ImageNet classes other than Imagenette's to logits needs timm "
                            "(pip install 'ropelib[train]')") from None
        names = ImageNetInfo().label_names()
        known = {wnid: index for index, wnid in enumerate(names)}
    unknown = [w for w in wnids if w not in known]
    if unknown:
        raise DataError(f"class folder(s) {', '.join(unknown[:5])} are not ImageNet-1k WordNet ids (n########); "
                        "the classes of an ImageNet or Imagenette folder must be named by their WordNet ids")
    return [known[w] for w in wnids]


def is_wnid(name: str) -> bool:
    """``True`` for a WordNet noun id such as ``n01440764`` (ImageNet's class folder names)."""
    return len(name) == 9 and name[0] == "n" and name[1:].isdigit()


def imagenette_folder(root: str | Path, size: str = "full", download: bool = False) -> Path:
    """The val folder of Imagenette under ``root``: ``root/<archive folder>/val`` as
    torchvision.datasets.Imagenette extracts it (:data:`IMAGENETTE_FOLDERS`), else ``root/val``
    with one folder per WordNet id (the same layout, e.g. an extracted archive pointed at
    directly, or a small folder written by hand or by a test). With ``download=True`` a missing
    archive is fetched and extracted by torchvision.datasets.Imagenette."""
    if size not in IMAGENETTE_FOLDERS:
        raise ValueError(f"Imagenette size {size!r}: choose {', '.join(IMAGENETTE_FOLDERS)}")
    root = Path(root).expanduser()
    extracted, plain = root / IMAGENETTE_FOLDERS[size] / "val", root / "val"
    if not extracted.is_dir() and not plain.is_dir():
        if not download:
            raise DataError(f"imagenette: no data in {root} (looked for {IMAGENETTE_FOLDERS[size]}/val/ and val/). "
                            "Add --download to let torchvision fetch it (--imagenette-size full: about 1.5 GB; "
                            "320px: smaller), or point --data-dir at the folder that holds it")
        try:
            from torchvision.datasets import Imagenette
        except ImportError:  # pragma: no cover
            raise DataError("reading Imagenette needs torchvision: pip install 'ropelib[train]'") from None
        try:
            Imagenette(str(root), split="val", size=size, download=True)
        except (OSError, RuntimeError, http.client.HTTPException) as error:
            raise DataError(f"imagenette: downloading the {size} archive into {root} failed ({error}); check "
                            "the network connection, or download it by hand from "
                            "https://github.com/fastai/imagenette and extract it there") from None
    folder = extracted if extracted.is_dir() else plain
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"imagenette: {folder} has no class folders; expected {folder}/<WordNet id>/<image>")
    strangers = [c for c in classes if c not in IMAGENETTE_CLASSES]
    if strangers:
        raise DataError(f"imagenette: {folder} holds folder(s) {', '.join(strangers[:3])} that are not Imagenette's "
                        f"WordNet ids ({', '.join(IMAGENETTE_CLASSES)})")
    return folder


def balanced_subset(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of a class-balanced subset of ``n`` test images, in test-set order, the same every
    time. The classes present share ``n`` equally (the first ``n mod C`` classes, by label, take one
    more); a class with fewer images than its share gives all it has and the others share the rest.
    Each class's picks are evenly spaced through its own images in test-set order (every k-th, k =
    its count / its share). Raises ``ValueError`` unless ``1 <= n <= len(labels)``."""
    labels = torch.as_tensor(labels).cpu()
    if not 1 <= n <= len(labels):
        raise ValueError(f"--subset {n}: choose between 1 and the {len(labels)} test images")
    members = {c: torch.nonzero(labels == c).flatten() for c in torch.unique(labels).tolist()}
    take, active, left = {}, sorted(members), n
    while active:  # classes too small for an equal share give all they have
        small = [c for c in active if len(members[c]) <= left // len(active)]
        if not small:
            break
        for c in small:
            take[c], left = len(members[c]), left - len(members[c])
            active.remove(c)
    if active:
        share, extra = divmod(left, len(active))
        take.update({c: share + (i < extra) for i, c in enumerate(active)})
    picked = [members[c][(torch.arange(take[c]) * len(members[c])) // take[c]] for c in members if take[c]]
    return torch.cat(picked).sort().values
