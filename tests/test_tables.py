"""Positions reach attention one way: the ViT computes them, and for a fixed encoding its rotation
table, once per forward, and hands both to every block (as timm's Eva does). No caches."""

from __future__ import annotations

import pytest
import torch

from conftest import make_encoding
from ropelib.vit import vit

FIXED = ["axial", "uniform", "spherical"]
TINY = dict(img_size=16, patch_size=4, embed_dim=48, depth=3, num_heads=2, head_dim=24, num_classes=5)


def _count_tables(model, monkeypatch):
    calls = []
    for enc in model.rotary_encodings:
        original = enc._rotation_table

        def counting(pos, original=original):
            calls.append(pos.shape[0])
            return original(pos)

        monkeypatch.setattr(enc, "_rotation_table", counting)
    return calls


@pytest.mark.parametrize("name", FIXED)
def test_a_fixed_encoding_computes_one_table_per_forward(name, monkeypatch):
    model = vit("custom", encoding=name, **TINY)
    assert all(enc.state_dict() == {} for enc in model.rotary_encodings)  # nothing saved, nothing learned
    calls = _count_tables(model, monkeypatch)
    model(torch.randn(2, 3, 16, 16))
    assert calls == [1 + 16]  # one table (CLS + 16 patches) for the three blocks
    model(torch.randn(2, 3, 24, 24))
    assert calls == [17, 1 + 36]  # a new grid, a new table: nothing is remembered between calls


@pytest.mark.parametrize("name", ["mixed", "liere", "comrope-ld"])
def test_learned_encodings_compute_their_own_table_in_every_layer(name, monkeypatch):
    model = vit("custom", encoding=name, **TINY)
    calls = _count_tables(model, monkeypatch)
    model(torch.randn(2, 3, 16, 16))
    assert calls == [17, 17, 17]


@pytest.mark.parametrize("name", ["axial", "spherical", "liere", "comrope-ap"])
def test_a_table_handed_in_rotates_as_one_computed_inside(name):
    enc = make_encoding(name, num_prefix_tokens=1)
    pos = enc.positions(3, 4)
    x = torch.randn(2, enc.num_heads, 13, enc.head_dim)
    torch.testing.assert_close(enc.rotate(x, pos, enc.table(pos)), enc.rotate(x, pos), atol=0, rtol=0)


def test_moving_a_model_needs_no_cache_invalidation():
    model = vit("custom", encoding="axial", **TINY).eval()
    x = torch.randn(1, 3, 16, 16)
    expected = model(x).double()
    out = model.double()(x.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
