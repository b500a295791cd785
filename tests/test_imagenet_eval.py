"""Evaluating ImageNet classifiers at many resolutions (chapter 12): Imagenette's ten classes
scored on their ImageNet-1k logits, class-balanced subsets, timm's RoPE-ViTs through
``python -m ropelib.evaluate --timm``, and clear refusals. Nothing is downloaded: the timm models
are randomly initialised and the images are a small folder written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ropelib import evaluate
from ropelib.config import TrainConfig
from ropelib.data import (IMAGENETTE_CLASSES, DataError, ImageData, balanced_subset, imagenet_indices,
                          imagenette_folder)
from ropelib.distributed import Context
from ropelib.pipelines import FolderTest, MemoryTest, Preprocessing, build_test

ROOT = Path(__file__).resolve().parent.parent
ROPE_VIT = ["vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224", "vit_small_patch16_rope_ape_224",
            "vit_small_patch16_rope_mixed_ape_224"]
WNIDS = sorted(IMAGENETTE_CLASSES)
CPU = Context(0, 1, 0, torch.device("cpu"))
PER_CLASS = 2


def write_folder(split_folder: Path, classes, per_class: int = PER_CLASS, size=(72, 56)) -> None:
    """``per_class`` JPEGs per class folder; class k is a flat red of 20 k + 10 (so a model can read
    the class off the image), the i-th image a little greener than the one before."""
    from PIL import Image

    for k, name in enumerate(classes):
        folder = split_folder / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", size, (20 * k + 10, 40 + 10 * i, 90)).save(folder / f"{name}_{i}.JPEG", quality=95)


@pytest.fixture(scope="module")
def imagenette(tmp_path_factory):
    """A tiny Imagenette in torchvision's layout (the 160px archive's folder), 2 images per class."""
    root = tmp_path_factory.mktemp("imagenette")
    write_folder(root / "imagenette2-160" / "val", WNIDS)
    return root


# -- which logits ---------------------------------------------------------------------------------

def test_imagenette_indices_are_timms_imagenet_classes():
    info = pytest.importorskip("timm.data").ImageNetInfo()
    names = info.label_names()
    assert len(names) == 1000 and names == sorted(names)  # ImageNet-1k's order is the sorted synsets
    for wnid, (index, label) in IMAGENETTE_CLASSES.items():
        assert names[index] == wnid
        assert info.index_to_description(index).startswith(label), (wnid, info.index_to_description(index))
    assert imagenet_indices(WNIDS) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def test_other_imagenet_classes_map_through_timm_and_strangers_are_refused():
    pytest.importorskip("timm.data")
    assert imagenet_indices(["n15075141", "n01443537"]) == [999, 1]  # toilet tissue, goldfish
    with pytest.raises(DataError, match="not ImageNet-1k WordNet ids"):
        imagenet_indices(["n01440764", "n99999999"])


def test_class_scoring_rules():
    indices, record = evaluate.class_scoring(WNIDS, 1000)
    assert indices == imagenet_indices(WNIDS) and record["logit_indices"] == indices
    assert "10 classes only" in record["rule"]
    assert evaluate.class_scoring(None, 10)[0] is None  # in-memory data: labels are logits
    assert evaluate.class_scoring([f"c{i}" for i in range(10)], 10)[0] is None
    with pytest.raises(ValueError, match="12 classes but the model has 10 outputs"):
        evaluate.class_scoring([f"c{i}" for i in range(12)], 10)


class Echo(nn.Module):
    """Its logits are its input."""

    def forward(self, x, protocol="native"):
        return x


def test_ten_way_scoring_picks_the_right_class_among_the_ten():
    """Each image's largest logit is a class outside Imagenette (999), its largest among the ten is
    the right one, the second largest among the ten another: 100% top-1 on the ten logits, 0% on all
    1000."""
    index = imagenet_indices(WNIDS)
    labels = torch.arange(10).repeat(3)
    logits = torch.zeros(len(labels), 1000)
    logits[:, 999] = 10.0
    logits[torch.arange(len(labels)), torch.tensor(index)[labels]] = 5.0
    logits[torch.arange(len(labels)), torch.tensor(index)[(labels + 1) % 10]] = 4.0
    batches = [(logits[:16], labels[:16]), (logits[16:], labels[16:])]
    on_ten = evaluate.accuracy(Echo(), batches, CPU, logit_indices=index)
    assert on_ten == {"top1": 100.0, "top5": 100.0, "images": 30}
    assert evaluate.accuracy(Echo(), batches, CPU)["top1"] == 0.0


class ReadsTheRed(nn.Module):
    """A 1000-way classifier of the generated images: class k (red 20 k + 10) gets logit 5 at its
    ImageNet index, its neighbour class 4, and class 999 (not in Imagenette) 10."""

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        self.p, self.index = preprocessing, torch.tensor(imagenet_indices(WNIDS))

    def forward(self, x, protocol="native"):
        red = x[:, 0].mean((-1, -2)) * self.p.std[0] + self.p.mean[0]
        k = ((red * 255 - 10) / 20).round().long().clamp(0, 9)
        logits = torch.zeros(len(x), 1000)
        logits[:, 999] = 10.0
        logits[torch.arange(len(x)), self.index[k]] = 5.0
        logits[torch.arange(len(x)), self.index[(k + 1) % 10]] = 4.0
        return logits


def test_a_folder_of_imagenette_classes_is_scored_on_their_logits(imagenette):
    config = TrainConfig(data_dir=str(imagenette), num_workers=0)
    preprocessing = Preprocessing(crop_pct=0.875)
    tests = build_test(config, CPU, dataset="imagenette", preprocessing=preprocessing, imagenette_size="160px")
    assert tests.classes == WNIDS and len(tests) == 10 * PER_CLASS
    indices, _ = evaluate.class_scoring(tests.classes, 1000)
    model = ReadsTheRed(preprocessing)
    results = evaluate.evaluate_models({"red": model}, tests, [32, 64], ["native", "interpolate"], CPU,
                                       logit_indices={"red": indices})
    assert all(v["top1"] == 100.0 and v["images"] == 20 for by in results["red"].values() for v in by.values())
    wrong = evaluate.evaluate_models({"red": model}, tests, [32], ["native"], CPU)  # on all 1000 logits
    assert wrong["red"]["native"]["32"]["top1"] == 0.0


# -- where the data is -----------------------------------------------------------------------------

def test_imagenette_is_found_in_torchvisions_layout_or_a_plain_val_folder(imagenette, tmp_path):
    from torchvision.datasets import Imagenette

    assert imagenette_folder(imagenette, "160px") == imagenette / "imagenette2-160" / "val"
    assert len(Imagenette(str(imagenette), split="val", size="160px")) == 10 * PER_CLASS  # torchvision reads it
    write_folder(tmp_path / "plain" / "val", WNIDS[:3])
    assert imagenette_folder(tmp_path / "plain") == tmp_path / "plain" / "val"
    with pytest.raises(DataError, match=r"no data in .*imagenette2/val/ and val/.*--download"):
        imagenette_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not Imagenette's WordNet ids"):
        write_folder(tmp_path / "other" / "val", ["cats"])
        imagenette_folder(tmp_path / "other")
    with pytest.raises(ValueError, match="choose full, 320px, 160px"):
        imagenette_folder(imagenette, "200px")


# -- subsets ---------------------------------------------------------------------------------------

def test_balanced_subset_takes_every_kth_image_of_each_class():
    labels = torch.tensor([0] * 6 + [1] * 4 + [2] * 10)
    picked = balanced_subset(labels, 6)
    assert picked.tolist() == [0, 3, 6, 8, 10, 15]  # two per class, evenly spaced within each
    assert torch.equal(balanced_subset(labels, 6), picked)  # the same every time
    assert torch.bincount(labels[balanced_subset(labels, 7)]).tolist() == [3, 2, 2]  # remainder to the first
    assert balanced_subset(labels, 20).tolist() == list(range(20))
    shuffled = labels[torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    assert torch.bincount(shuffled[balanced_subset(shuffled, 9)]).tolist() == [3, 3, 3]
    # a class with fewer images than its share gives them all; the others share the rest
    assert torch.bincount(labels[balanced_subset(labels, 15)]).tolist() == [6, 4, 5]
    assert torch.bincount(labels[balanced_subset(labels, 13)]).tolist() == [5, 4, 4]
    with pytest.raises(ValueError, match="between 1 and the 20 test images"):
        balanced_subset(labels, 21)
    with pytest.raises(ValueError, match="--subset 0"):
        balanced_subset(labels, 0)


def test_subsets_of_in_memory_and_synthetic_test_sets():
    labels = torch.arange(10).repeat_interleave(5)
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 8, 8).contiguous()
    data = ImageData(images, labels, 10, "cifar10", "memory")
    tests = MemoryTest(data, CPU, (0.5,) * 3, (0.25,) * 3, subset=20)
    batches = list(tests.test_batches(8))
    seen = torch.cat([y for _, y in batches])
    assert torch.bincount(seen).tolist() == [2] * 10
    assert tests.describe()["subset"]["images"] == 20 and tests.describe()["subset"]["of"] == 50
    config = TrainConfig(synthetic_test_size=64)
    synthetic = build_test(config, CPU, subset=16)
    y = torch.cat([y for _, y in synthetic.test_batches(24)])
    assert len(y) == 16 and torch.bincount(y, minlength=8).tolist() == [2] * 8
    assert synthetic.describe()["subset"]["of"] == 64
    with pytest.raises(ValueError, match="--subset 65"):
        build_test(config, CPU, subset=65)


# -- the command line ------------------------------------------------------------------------------

def test_evaluate_timms_rope_vits_on_imagenette(imagenette, tmp_path, capsys):
    """The four rope-vit architectures, random weights, both protocols, a subset: one JSON each,
    recording the timm preprocessing, the ten-logit scoring and the subset."""
    pytest.importorskip("timm")
    out = tmp_path / "out"
    code = evaluate.main(["--timm", *ROPE_VIT, "--dataset", "imagenette", "--imagenette-size", "160px",
                          "--data-dir", str(imagenette), "--resolutions", "32", "48",
                          "--protocols", "extrapolate", "interpolate", "--subset", "10", "--num-workers", "0",
                          "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ROPE_VIT:
        record = json.loads((out / name / "evaluation.json").read_text())
        assert record["source"] == {"timm": name, "pretrained": False}
        assert record["encoding"] == ("mixed" if "mixed" in name else "axial")
        assert record["ape"] == ("ape-learned" if "ape" in name else None)
        assert record["train_resolution"] == 224
        assert record["accuracy"].keys() == {"extrapolate", "interpolate"}
        for by_resolution in record["accuracy"].values():
            assert by_resolution.keys() == {"32", "48"}
            assert all(v["images"] == 10 for v in by_resolution.values())
        assert record["scoring"]["logit_indices"] == imagenet_indices(WNIDS)
        assert record["preprocessing"]["crop_pct"] == 0.9 and record["preprocessing"]["interpolation"] == "bicubic"
        assert record["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
        assert "pretrained_cfg" in record["preprocessing"]["source"]
        assert record["subset"]["images"] == 10 and record["subset"]["of"] == 20
        assert record["data"]["dataset"] == "imagenette" and record["data"]["imagenette_size"] == "160px"
        assert (out / name / "evaluation.png").stat().st_size > 1000
    assert f"{ROPE_VIT[0]}  interpolate    48 px" in capsys.readouterr().out


def test_evaluate_a_timm_model_on_an_imagenet_val_folder(tmp_path, capsys):
    """An ImageNet-style val folder of three classes: scored on their three logits; the crop
    fraction from the command line replaces timm's and says so; the forward under bf16 autocast."""
    pytest.importorskip("timm")
    classes = ["n01443537", "n03888257", "n15075141"]
    write_folder(tmp_path / "imagenet" / "val", classes)
    code = evaluate.main(["--timm", "vit_small_patch16_rope_mixed_224", "--dataset", "imagenet",
                          "--data-dir", str(tmp_path / "imagenet"), "--resolutions", "32",
                          "--eval-crop-pct", "1.0", "--precision", "bf16", "--num-workers", "0",
                          "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert record["scoring"]["logit_indices"] == [1, 701, 999]
    assert record["preprocessing"]["crop_pct"] == 1.0 and "--eval-crop-pct" in record["preprocessing"]["source"]
    assert record["accuracy"]["native"]["32"]["images"] == 3 * PER_CLASS and record["subset"] is None
    assert record["precision"] == "bf16"


@pytest.mark.parametrize("args, phrases", [
    (["--timm", "vit_smal_patch16_rope_224"], ["has no such model", "did you mean vit_small_patch16_rope_224"]),
    (["--timm", "vit_tiny_patch16_224"], ["--timm vit_tiny_patch16_224", "expected one of timm's RoPE ViTs"]),
    (["--subset", "999"], ["--subset 999", "between 1 and the 20 test images"]),
    (["--subset", "0"], ["--subset 0", "at least 1"]),
    (["--data-dir", "{tmp}/nowhere"], ["imagenette: no data in", "--download"]),
    (["--dataset", "imagenet", "--data-dir", "{tmp}/nowhere"], ["nowhere/val does not exist"]),
    (["--dataset", "imagenett"], ["invalid choice: 'imagenett'"]),
])
def test_bad_input_is_refused_in_a_line_or_two(imagenette, tmp_path, capsys, args, phrases):
    pytest.importorskip("timm")
    base = {"--timm": "vit_small_patch16_rope_224", "--dataset": "imagenette", "--imagenette-size": "160px",
            "--data-dir": str(imagenette), "--resolutions": "32", "--num-workers": "0", "--device": "cpu",
            "--out": str(tmp_path / "out")}
    given = dict(zip(args[::2], [a.replace("{tmp}", str(tmp_path)) for a in args[1::2]]))
    argv = [part for key, value in {**base, **given}.items() for part in (key, value)]
    try:
        code = evaluate.main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert not (tmp_path / "out").exists()


def test_smoke_mode_downloads_nothing(monkeypatch, capsys):
    monkeypatch.setenv("ROPELIB_SMOKE", "1")
    code = evaluate.main(["--timm", "vit_small_patch16_rope_224", "--pretrained", "--resolutions", "224"])
    assert code == 2 and "downloads nothing" in capsys.readouterr().err


def test_the_real_command_refuses_an_unknown_model_without_a_traceback(tmp_path):
    pytest.importorskip("timm")
    env = {**os.environ, "ROPELIB_SMOKE": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "ropelib.evaluate", "--timm", "vit_small_patch16_rope_mixd_224",
                             "--dataset", "imagenette", "--data-dir", str(tmp_path), "--resolutions", "224"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "did you mean vit_small_patch16_rope_mixed_224" in result.stderr
