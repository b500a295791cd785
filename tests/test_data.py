"""ropelib.data and ropelib.augment: CIFAR in its official format, folders, the synthetic task, batching."""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from torchvision.datasets import CIFAR10, CIFAR100

from ropelib import augment
from ropelib.data import (DataError, EpochSampler, RelativeDirectionTask, TensorBatches, generator, load_cifar,
                          load_image_folder)


def write_cifar(root, name="cifar10", train=20, test=10, archive=False, monkeypatch=None):
    """A small data set in the official "python version" layout (and optionally its .tar.gz).

    torchvision accepts only the official files (it checks their MD5s): with ``monkeypatch``, these
    files' MD5s replace the official ones for the rest of the test.
    """
    g = torch.Generator().manual_seed(0)
    cifar = CIFAR10 if name == "cifar10" else CIFAR100
    classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    parts = ({f"data_batch_{i}": train // 5 for i in range(1, 6)} | {"test_batch": test}) if name == "cifar10" \
        else {"train": train, "test": test}
    files = {}
    for part, n in parts.items():
        # the official pickles come from Python 2, whose str keys torchvision reads as str
        batch = {"data": torch.randint(0, 256, (n, 3072), generator=g, dtype=torch.uint8).numpy(),
                 label_key: torch.randint(0, classes, (n,), generator=g).tolist(), "batch_label": part}
        files[f"{cifar.base_folder}/{part}"] = pickle.dumps(batch)
    files[f"{cifar.base_folder}/{cifar.meta['filename']}"] = pickle.dumps(
        {cifar.meta["key"]: [f"class{c}" for c in range(classes)]})
    if archive:
        with tarfile.open(root / cifar.filename, "w:gz") as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for path, data in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
    if monkeypatch is not None:
        md5 = {path.split("/")[1]: hashlib.md5(data).hexdigest() for path, data in files.items()}
        monkeypatch.setattr(cifar, "train_list", [[f, m] for f, m in md5.items() if f.startswith(("data_", "train"))])
        monkeypatch.setattr(cifar, "test_list", [[f, m] for f, m in md5.items() if f.startswith("test")])
        monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5[cifar.meta["filename"]]})
        if archive:
            monkeypatch.setattr(cifar, "tgz_md5", hashlib.md5((root / cifar.filename).read_bytes()).hexdigest())
    return files


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar_official_format(tmp_path, monkeypatch, name, archive):
    files = write_cifar(tmp_path, name, archive=archive, monkeypatch=monkeypatch)
    train = load_cifar(name, tmp_path, train=True)
    test = load_cifar(name, tmp_path, train=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous() and train.labels.dtype == torch.int64
    assert test.images.shape == (10, 3, 32, 32) and len(test.labels) == 10
    assert train.num_classes == (10 if name == "cifar10" else 100)
    first = pickle.loads(next(iter(files.values())))
    torch.testing.assert_close(train.images[0].reshape(-1), torch.as_tensor(first["data"][0]))  # channel-major rows
    assert train.labels[:len(first["data"])].tolist() == first["labels" if name == "cifar10" else "fine_labels"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no temporary folder left behind
        [CIFAR10.base_folder if name == "cifar10" else CIFAR100.base_folder]
        + ([CIFAR10.filename if name == "cifar10" else CIFAR100.filename] if archive else []))


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"cifar100: no data in .* \(looked for cifar-100-python/ and "
                                        r"cifar-100-python.tar.gz\)\. Download it with download=True"):
        load_cifar("cifar100", tmp_path, train=True)


def _only_the_archive_is_left(root, archive):
    assert [p.name for p in root.iterdir()] == [archive]  # no folder, whole or half, no temporary folder


@pytest.mark.parametrize("keep", [200, 0.6])
def test_truncated_cifar_archive_leaves_nothing_extracted(tmp_path, monkeypatch, keep):
    write_cifar(tmp_path, "cifar10", train=500, archive=True, monkeypatch=monkeypatch)
    path = tmp_path / "cifar-10-python.tar.gz"
    data = path.read_bytes()
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])  # truncated download
    with pytest.raises(DataError, match=r"^cifar10: the archive .*cifar-10-python.tar.gz is corrupt or incomplete "
                                        r"\(.+\); delete it and download it again$"):
        load_cifar("cifar10", tmp_path, train=True)
    _only_the_archive_is_left(tmp_path, "cifar-10-python.tar.gz")


def test_cifar_archive_with_a_wrong_file_leaves_nothing_extracted(tmp_path, monkeypatch):
    files = write_cifar(tmp_path, "cifar100", monkeypatch=monkeypatch)  # the checksums of these files
    files["cifar-100-python/test"] = pickle.dumps({"data": None})
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    shutil.rmtree(tmp_path / "cifar-100-python")
    with pytest.raises(DataError, match=r"archive .* is corrupt or incomplete \(test is corrupt \(its MD5 is not the "
                                        r"official file's\)\); delete it and download it again"):
        load_cifar("cifar100", tmp_path, train=True)
    _only_the_archive_is_left(tmp_path, "cifar-100-python.tar.gz")


def test_corrupt_or_incomplete_cifar_folder(tmp_path, monkeypatch):
    write_cifar(tmp_path, "cifar10", monkeypatch=monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt \(its MD5 is not the official file's\); delete "
                                        r".*cifar-10-batches-py and extract or download the archive again"):
        load_cifar("cifar10", tmp_path, train=True)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_cifar("cifar10", tmp_path, train=False)  # every file is checked, whichever split is read
    write_cifar(tmp_path, "cifar10")  # back in order
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DataError, match="batches.meta is missing"):
        load_cifar("cifar10", tmp_path, train=True)


def test_offline_download_is_one_clear_error(tmp_path, monkeypatch):
    """No network: torchvision's download (and its retry over http) fails with a URLError."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", root, train=True, download=True)
    message = str(error.value)
    assert message == (
        "cifar10: downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz failed ([Errno -3] Temporary "
        "failure in name resolution). Check the network connection, or download that file by hand and put it at "
        f"{root / 'cifar-10-python.tar.gz'} (or point --data-dir at the folder that holds it)")
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no URLError traceback
    assert list(root.iterdir()) == []  # no partial download, no temporary folder


def test_download_with_a_wrong_checksum(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "_urlretrieve", lambda url, path: Path(path).write_bytes(b"<html>a login page"))
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops: url)
    with pytest.raises(DataError, match=r"failed \(the file's MD5 is not the official archive's\)\. Check"):
        load_cifar("cifar100", tmp_path, train=True, download=True)
    assert list(tmp_path.iterdir()) == []


def test_download_then_load(tmp_path, monkeypatch):
    """The downloaded archive stays in the data folder, next to the folder extracted from it."""
    import torchvision.datasets.utils as tv_utils

    source = tmp_path / "server"
    source.mkdir()
    write_cifar(source, "cifar100", archive=True, monkeypatch=monkeypatch)
    monkeypatch.setattr(tv_utils, "_urlretrieve",
                        lambda url, path: shutil.copy(source / "cifar-100-python.tar.gz", path))
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops: url)
    root = tmp_path / "data"
    data = load_cifar("cifar100", root, train=False, download=True)
    assert data.images.shape == (10, 3, 32, 32) and data.source == str(root / "cifar-100-python")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-100-python", "cifar-100-python.tar.gz"]


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
            (tmp_path / split / f"class{c}").mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (12, 10), colour).save(tmp_path / split / f"class{c}" / f"{i}.png")
    data = load_image_folder(tmp_path, "train", size=16)
    assert data.images.shape == (6, 3, 16, 16) and data.num_classes == 2
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images[0, 0].float().mean() > 250 and data.images[-1, 2].float().mean() > 250
    with pytest.raises(DataError, match=r"test does not exist. Expected the ImageFolder layout"):
        load_image_folder(tmp_path, "test")


def _find_marks(images, patch):
    """Recover the two marks' cells from rendered images (channel 0: A, channel 1: B)."""
    cells = images[:, :2, ::patch, ::patch]  # one pixel per patch (patches are uniform)
    flat = cells.flatten(2).argmax(-1)  # (B, 2)
    grid = cells.shape[-1]
    return torch.stack((flat % grid, flat // grid), -1)  # (B, 2 marks, (x, y))


@pytest.mark.parametrize("grid, classes", [(3, 4), (6, 8)])
def test_synthetic_labels_are_the_direction_between_the_marks(grid, classes):
    task = RelativeDirectionTask(grid=grid, patch=4, classes=classes, noise=0.05)
    images, labels = task.sample(2000, generator("cpu", 0))
    assert images.shape == (2000, 3, grid * 4, grid * 4)
    marks = _find_marks(images, 4)
    offset = (marks[:, 1] - marks[:, 0]).float()
    assert (offset.abs().sum(-1) > 0).all()
    angle = torch.atan2(offset[:, 1], offset[:, 0])
    expected = torch.round(angle / (2 * math.pi / classes)).long() % classes
    assert torch.equal(labels, expected)
    counts = torch.bincount(labels, minlength=classes).float()
    assert counts.min() > 0.8 * counts.mean()  # balanced: chance is 1/classes


def test_synthetic_task_is_reproducible_and_extends_to_larger_grids():
    task = RelativeDirectionTask(grid=4, patch=4, classes=4)
    a, b = task.batch(8, seed=1, step=5), task.batch(8, seed=1, step=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(task.batch(8, seed=1, step=6)[0], a[0])
    big = RelativeDirectionTask(grid=9, patch=4, classes=4)
    assert big.test_set(10)[0].shape == (10, 3, 36, 36)
    with pytest.raises(ValueError, match="classes must be at least 2"):
        RelativeDirectionTask(classes=1)


def test_samplers_split_an_epoch_across_ranks():
    size, world = 50, 3
    shards = [EpochSampler(size, seed=7, rank=r, world_size=world).indices() for r in range(world)]
    everything = torch.cat(shards).sort().values
    assert torch.equal(everything, torch.arange(size))
    sampler = EpochSampler(size, seed=7)
    sampler.set_epoch(2)
    order = sampler.indices()
    sampler.set_epoch(2, start=10)
    assert torch.equal(sampler.indices(), order[10:])  # resume mid-epoch
    sampler.set_epoch(3)
    assert not torch.equal(sampler.indices(), order)


def test_tensor_batches_resume_in_the_middle_of_an_epoch():
    from ropelib.data import ImageData

    data = ImageData(torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).clone(),
                     torch.arange(40), 40, "toy", "test")
    batches = TensorBatches(data, batch_size=8, seed=3)
    full = [labels for _, labels, _ in batches.epoch(1)]
    tail = [labels for _, labels, _ in batches.epoch(1, start_batch=2)]
    assert len(full) == 5 and all(torch.equal(a, b) for a, b in zip(full[2:], tail))


def test_augmentations():
    g = lambda: generator("cpu", 0)  # noqa: E731
    x = torch.rand(6, 3, 8, 8)
    cropped = augment.random_crop(x, g(), padding=2)
    assert cropped.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):  # every crop is a window of the padded image
        windows = padded[i].unfold(1, 8, 1).unfold(2, 8, 1)  # (3, 5, 5, 8, 8)
        assert any(torch.equal(windows[:, a, b], cropped[i]) for a in range(5) for b in range(5))
    flipped = augment.hflip(x, g(), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(augment.hflip(x, g(), p=0.0), x)
    assert augment.random_resized_crop(x, g(), size=12).shape == (6, 3, 12, 12)
    full = augment.random_resized_crop(x, g(), size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(full, x, atol=1e-5, rtol=0)  # the whole image, unresized
    out = augment.three_augment(x, g())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    jittered = augment.color_jitter(x, g(), 0.3)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.equal(jittered, x)
    assert torch.equal(augment.three_augment(x, g()), out)  # the generator decides everything
    normalised = augment.normalize(torch.full((1, 3, 2, 2), 0.5), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert normalised.abs().max() == 0
