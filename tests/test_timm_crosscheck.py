"""ropelib's axial and mixed reproduce timm's RoPE-ViT embeddings (the official Naver ports' layout)."""

from __future__ import annotations

import pytest
import torch

timm_sincos = pytest.importorskip("timm.layers.pos_embed_sincos")

import ropelib  # noqa: E402

H, D, GRID = 6, 64, (7, 9)  # a non-square grid catches swapped x and y


def test_axial_matches_timm_rotary_embedding_cat():
    rope = timm_sincos.RotaryEmbeddingCat(dim=D, temperature=100, in_pixels=False, feat_shape=list(GRID),
                                          grid_indexing="xy")
    emb = rope.get_embed()  # (N, 2 * D): [sin | cos]
    enc = ropelib.build_encoding("axial", head_dim=D, num_heads=H)
    x = torch.randn(2, H, GRID[0] * GRID[1], D)
    expected = timm_sincos.apply_rot_embed_cat(x, emb)
    torch.testing.assert_close(enc.rotate(x, ropelib.patch_positions(*GRID)), expected, atol=1e-5, rtol=1e-5)


def test_mixed_matches_timm_rotary_embedding_mixed():
    rope = timm_sincos.RotaryEmbeddingMixed(dim=H * D, depth=1, num_heads=H, temperature=10,
                                            feat_shape=list(GRID), grid_indexing="xy")
    enc = ropelib.build_encoding("mixed", head_dim=D, num_heads=H)
    with torch.no_grad():  # timm: (2, depth, H, D/2) -> ropelib: (H, D/2, 2)
        enc.frequencies.copy_(rope.freqs[:, 0].permute(1, 2, 0))
    emb = rope.get_embed()[0]  # (H, N, 2 * D)
    x = torch.randn(2, H, GRID[0] * GRID[1], D)
    expected = timm_sincos.apply_rot_embed_cat(x, emb)
    torch.testing.assert_close(enc.rotate(x, ropelib.patch_positions(*GRID)), expected, atol=1e-5, rtol=1e-5)


def test_mixed_init_is_rope_vits_init():
    """Same random stream, same frequencies: our init is init_random_2d_freqs (theta=10)."""
    torch.manual_seed(123)
    reference = timm_sincos.init_random_2d_freqs(D, 1, H, temperature=10.0)[:, 0].permute(1, 2, 0)
    torch.manual_seed(123)
    enc = ropelib.build_encoding("mixed", head_dim=D, num_heads=H)
    torch.testing.assert_close(enc.frequencies.detach(), reference, atol=1e-6, rtol=1e-6)


def test_axial_frequencies_are_rope_vits():
    """theta = 100, magnitudes 100^(-4t/d): 1 down to 100^(-15/16) for d = 64."""
    enc = ropelib.build_encoding("axial", head_dim=D, num_heads=1)
    bands = timm_sincos.freq_bands(D // 4, temperature=100.0, step=1)
    torch.testing.assert_close(enc.frequencies[0, 0], bands)
    torch.testing.assert_close(enc.frequencies[0, 0, -1], torch.tensor(100 ** (-15 / 16)))
