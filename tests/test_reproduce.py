"""A committed result reproduces: one run of chapter 9's synthetic sweep, trained again from what
its results.json records, gives the same numbers."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from ropelib.config import TrainConfig, load_recipe
from ropelib.provenance import environment
from ropelib.train import train

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "results" / "synthetic-sweep" / "synthetic-cpu-axial-seed0" / "results.json"


def recorded_config(out_dir: Path) -> TrainConfig:
    # what `python -m ropelib.train --recipe RESULT --out-dir OUT` runs
    return load_recipe(str(RESULT), out_dir=str(out_dir), progress=False)


@pytest.mark.skipif(not RESULT.exists(), reason="the committed sweep result is not in this checkout")
def test_a_results_json_is_a_recipe_that_re_runs_it(tmp_path):
    saved = json.loads(RESULT.read_text())
    again = recorded_config(tmp_path)
    # the same model and training as recorded (the format is the flat one of older runs)
    model = dataclasses.asdict(again.model)
    shared = set(saved["model"]) & set(model) - {"num_classes"}  # fields added since are defaults
    assert len(shared) > 15 and {k: model[k] for k in shared} == {k: saved["model"][k] for k in shared}
    for field in ("epochs", "lr", "batch_size", "seed", "synthetic_grid", "weight_decay"):
        assert getattr(again, field) == saved["config"][field], field


@pytest.mark.skipif(not RESULT.exists(), reason="the committed sweep result is not in this checkout")
def test_a_committed_synthetic_result_reproduces(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPELIB_SMOKE", "0")
    saved = json.loads(RESULT.read_text())
    results = train(recorded_config(tmp_path))
    recorded_cpu = saved["provenance"]["environment"]["cpu"]
    for size, accuracy in saved["accuracy"].items():
        ours = results["accuracy"][size]
        assert ours["images"] == accuracy["images"]
        if environment()["cpu"] == recorded_cpu and os.environ.get("OMP_NUM_THREADS") == "1":
            assert ours["top1"] == accuracy["top1"], size  # same CPU, one thread: bit for bit
        else:  # another CPU's vector units round differently; the training lands close, not identical
            assert abs(ours["top1"] - accuracy["top1"]) < 3.0, (size, ours, accuracy)


def test_configs_recorded_before_the_model_was_nested_still_load():
    """Checkpoints and results written by the earlier flat layout rebuild the same model."""
    flat = json.loads(RESULT.read_text())["config"] if RESULT.exists() else None
    if flat is None:
        pytest.skip("the committed sweep result is not in this checkout")
    config = TrainConfig.from_dict(flat)
    assert config.preset == flat["model"] == "custom"
    for name in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "head_dim", "encoding"):
        assert getattr(config.model, name) == flat[name], name
    assert config.epochs == flat["epochs"] and config.seed == flat["seed"]
