"""Learned and sin-cos absolute position embeddings."""

from __future__ import annotations

import math

import numpy as np
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
    far = torch.tensor([[7.0, 1.0]])  # column 7 of a 3-wide table
    torch.testing.assert_close(enc.embed(far).detach()[0], table[1, 2], atol=1e-6, rtol=0)


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


def test_sincos_ape_is_cached_per_grid():
    enc = make_encoding("ape-sincos", num_heads=3, head_dim=16)
    small, large = enc.positions(4, 4), enc.positions(8, 8)
    first = enc.embed(small)
    assert enc.embed(large) is not first
    assert enc.embed(small) is first


def test_none_encoding_does_nothing():
    enc = make_encoding("none")
    x = torch.randn(2, 2, 6, 48)
    assert enc.rotate(x, enc.positions(2, 3)) is x
    assert enc.embed(enc.positions(2, 3)).abs().sum() == 0
    assert math.isclose(float(sum(p.numel() for p in enc.parameters())), 0.0)
