"""Fixed tables are computed once per grid size and never enter the state dict."""

from __future__ import annotations

import pytest
import torch

from conftest import make_encoding

FIXED = ["rope1d", "axial", "uniform", "spherical"]


def _count_tables(enc, monkeypatch):
    calls = []
    original = enc._rotation_table

    def counting(pos):
        calls.append(pos.shape[0])
        return original(pos)

    monkeypatch.setattr(enc, "_rotation_table", counting)
    return calls


@pytest.mark.parametrize("name", FIXED)
def test_fixed_tables_are_cached_per_grid_and_not_saved(name, monkeypatch):
    enc = make_encoding(name)
    assert enc.state_dict() == {} and list(enc.parameters()) == []
    calls = _count_tables(enc, monkeypatch)
    grid = (lambda *s: enc.positions(s[0] * s[1])) if enc.axes == 1 else enc.positions
    small, large = grid(4, 4), grid(6, 6)
    x_small = torch.randn(2, enc.num_heads, small.shape[0], enc.head_dim)
    x_large = torch.randn(2, enc.num_heads, large.shape[0], enc.head_dim)
    first = enc.rotate(x_small, small)
    enc.rotate(x_large, large)
    again = enc.rotate(x_small, small)
    assert calls == [16, 36]
    torch.testing.assert_close(again, first, atol=0, rtol=0)
    # a new tensor (even with equal values) or an in-place change is never served stale
    enc.rotate(x_small, small.clone())
    small.mul_(2)
    enc.rotate(x_small, small)
    assert calls == [16, 36, 16, 16]


def test_learnable_tables_are_recomputed_every_call(monkeypatch):
    enc = make_encoding("mixed")
    calls = _count_tables(enc, monkeypatch)
    pos = enc.positions(3, 3)
    x = torch.randn(1, enc.num_heads, 9, enc.head_dim)
    enc.rotate(x, pos)
    enc.rotate(x, pos)
    assert calls == [9, 9]


def test_moving_the_module_clears_the_cache(monkeypatch):
    enc = make_encoding("axial")
    pos = enc.positions(3, 3)
    x = torch.randn(1, enc.num_heads, 9, enc.head_dim)
    enc.rotate(x, pos)
    enc.double()
    out = enc.rotate(x.double(), pos.double())
    assert out.dtype == torch.float64
