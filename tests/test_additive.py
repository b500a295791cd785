"""Learned and sin-cos absolute position embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_encoding


def test_learned_ape_table_init_and_exact_lookup_at_training_grid():
    enc = make_encoding("ape-learned", num_heads=6, head_dim=64)  # ViT-S: 14x14, 384 channels
    assert enc.table.shape == (196, 384)
    # DeiT/timm's trunc_normal_(std=.02) cuts at +-2 in absolute terms: effectively N(0, 0.02^2)
    assert abs(enc.table.std().item() - 0.02) < 0.001 and abs(enc.table.mean().item()) < 0.001
    torch.testing.assert_close(enc.embed(enc.positions(14, 14)), enc.table, atol=0, rtol=0)
    assert enc.no_weight_decay() == {"table"}


def test_learned_ape_at_a_new_grid_is_a_bicubic_resize():
    """What rope-vit and LieRE do to APE at a new resolution: F.interpolate(bicubic, align_corners=False)."""
    enc = make_encoding("ape-learned", num_heads=2, head_dim=8, train_grid=(6, 5))
    image = enc.table.detach().T.reshape(1, 16, 6, 5)
    for h, w in [(9, 11), (4, 3), (12, 10)]:
        resized = F.interpolate(image, size=(h, w), mode="bicubic", align_corners=False)
        expected = resized.reshape(16, h * w).T
        torch.testing.assert_close(enc.embed(enc.positions(h, w)).detach(), expected, atol=1e-6, rtol=1e-5)


def test_learned_ape_extrapolating_convention_repeats_the_border():
    enc = make_encoding("ape-learned", num_heads=1, head_dim=4, train_grid=(3, 3), convention="index")
    table = enc.table.detach().view(3, 3, 4)
    far = torch.tensor([[7.0, 1.0], [-5.0, -9.0]])  # column 7 of a 3-wide table; far above and left
    torch.testing.assert_close(enc.embed(far).detach(), torch.stack((table[1, 2], table[0, 0])), atol=1e-6, rtol=0)


def _bicubic_sample(table, coords, a=-0.75):
    """The sampler LearnedAPE had before it used F.grid_sample, kept as the reference: the cubic
    convolution kernel of F.interpolate on the 4 x 4 cells around ``coords`` ``(N, 2)`` = (column,
    row) in cell units, the tap indices clamped to the table (the border repeats)."""
    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    def weights(t):
        return torch.stack((far(t + 1), near(t), near(1 - t), far(2 - t)), dim=-1)

    h0, w0, _ = table.shape
    offsets = torch.arange(-1, 3)
    start = coords.floor()
    frac = coords - start
    cols = (start[:, 0].long().unsqueeze(1) + offsets).clamp(0, w0 - 1)
    rows = (start[:, 1].long().unsqueeze(1) + offsets).clamp(0, h0 - 1)
    w = weights(frac[:, 1]).unsqueeze(2) * weights(frac[:, 0]).unsqueeze(1)
    return torch.einsum("nij,nijd->nd", w.to(table.dtype), table[rows.unsqueeze(2), cols.unsqueeze(1)])


@pytest.mark.parametrize("convention", ["index", "centre"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_learned_ape_samples_like_the_clamped_bicubic_reference(convention, dtype, tolerance):
    """grid_sample (bicubic, border) gives the reference's numbers inside the table, in the band
    within two cells of its edges (where some taps are clamped) and far beyond (all taps clamped)."""
    enc = make_encoding("ape-learned", num_heads=2, head_dim=8, train_grid=(5, 7), convention=convention).to(dtype)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        enc.table.normal_(generator=g)
    h0, w0 = enc.train_grid
    span = torch.tensor([w0, h0], dtype=dtype)
    coords = torch.cat([
        torch.rand(500, 2, generator=g, dtype=dtype) * (span - 1),  # inside
        torch.rand(500, 2, generator=g, dtype=dtype) * (span + 4) - 2,  # around the border
        torch.rand(500, 2, generator=g, dtype=dtype) * 60 - 30,  # far outside
        torch.cartesian_prod(torch.arange(-3, w0 + 3), torch.arange(-3, h0 + 3)).to(dtype),  # cells and beyond
    ])
    # positions that land on these table coordinates in the encoding's convention
    origin = enc.table_coordinates(torch.zeros(1, 2, dtype=dtype))
    pos = (coords - origin) / (enc.table_coordinates(torch.ones(1, 2, dtype=dtype)) - origin)
    torch.testing.assert_close(enc.table_coordinates(pos), coords, atol=1e-4, rtol=0)
    coords = enc.table_coordinates(pos)
    table = enc.table.view(h0, w0, enc.dim)
    # the reference in float64 (embed samples in float64 and rounds once, whatever the table's dtype)
    got, expected = enc.embed(pos), _bicubic_sample(table.double(), coords.double())
    torch.testing.assert_close(got.double(), expected, atol=tolerance, rtol=0)
    grad_got, = torch.autograd.grad(got.square().sum(), enc.table)
    grad_expected, = torch.autograd.grad(expected.square().sum(), enc.table)
    torch.testing.assert_close(grad_got.double(), grad_expected.double(), atol=100 * tolerance, rtol=1e-6)


def test_learned_ape_embed_grid_resizes_with_or_without_antialias():
    """embed_grid: the table itself on the training grid; elsewhere the bicubic read of embed, or
    timm's antialiased resize (F.interpolate(antialias=True)) when resize="antialias" (from_timm)."""
    enc = make_encoding("ape-learned", num_heads=2, head_dim=8, train_grid=(6, 5), resize="antialias")
    assert enc.embed_grid(6, 5) is enc.table
    image = enc.table.detach().T.reshape(1, 16, 6, 5)
    for h, w in [(3, 2), (12, 10)]:
        expected = F.interpolate(image, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        torch.testing.assert_close(enc.embed_grid(h, w).detach(), expected.reshape(16, h * w).T, atol=1e-6, rtol=1e-5)
    enc.resize = "bicubic"
    torch.testing.assert_close(enc.embed_grid(9, 11), enc.embed(enc.positions(9, 11)), atol=0, rtol=0)


def _mae_reference(embed_dim, h, w):
    """MAE's get_2d_sincos_pos_embed, restated from the paper's code description (numpy, float64)."""
    def one_axis(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))  # (w, h) order, as MAE
    return np.concatenate([one_axis(embed_dim // 2, grid[0]), one_axis(embed_dim // 2, grid[1])], axis=1)


def test_sincos_ape_matches_mae_layout():
    enc = make_encoding("ape-sincos", num_heads=3, head_dim=16)
    emb = enc.embed(enc.positions(5, 7))
    expected = torch.from_numpy(_mae_reference(48, 5, 7)).float()
    torch.testing.assert_close(emb, expected, atol=1e-6, rtol=1e-6)
    assert dict(enc.named_parameters()) == {} and enc.state_dict() == {}


def test_sincos_ape_is_computed_at_every_call_without_a_cache():
    enc = make_encoding("ape-sincos", num_heads=3, head_dim=16)
    enc._tables = None  # no per-positions cache: embed must not reach for one
    small, large = enc.positions(4, 4), enc.positions(8, 8)
    first = enc.embed(small)
    assert enc.embed(large).shape == (64, 48)
    again = enc.embed(small)
    assert again is not first
    torch.testing.assert_close(again, first, atol=0, rtol=0)
    small.mul_(2)  # an in-place change is seen at once
    torch.testing.assert_close(enc.embed(small), enc.embed(enc.positions(4, 4) * 2), atol=0, rtol=0)


def test_none_encoding_does_nothing():
    enc = make_encoding("none")
    x = torch.randn(2, 2, 6, 48)
    assert enc.rotate(x, enc.positions(2, 3)) is x
    assert enc.embed(enc.positions(2, 3)).abs().sum() == 0
    assert math.isclose(float(sum(p.numel() for p in enc.parameters())), 0.0)
