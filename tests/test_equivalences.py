"""The papers' equivalences between variants, each as a test."""

from __future__ import annotations

import pytest
import torch

from ropelib.encodings.kernels import pair_channels
from ropelib.linalg import rope_canonical_form
from conftest import make_encoding, random_positions

TOL = {"atol": 1e-5, "rtol": 1e-5}


def _same_rotation(a, b, pos, tol=TOL):
    x = torch.randn(3, a.num_heads, pos.shape[0], a.head_dim)
    torch.testing.assert_close(a.matrix(pos), b.matrix(pos), **tol)
    torch.testing.assert_close(a.rotate(x, pos), b.rotate(x, pos), **tol)


def test_liere_with_2x2_blocks_expresses_mixed():
    """LieRE sec. 4: block size two is RoPE-Mixed. A 2x2 block [[0, e], [-e, 0]] = -e J turns its
    plane by -e.p, so generator entries e = -omega reproduce Mixed's frequencies omega."""
    mixed = make_encoding("mixed", num_heads=3)
    liere = make_encoding("liere", num_heads=3, block_size=2)
    with torch.no_grad():
        liere.generator_entries.copy_(-mixed.frequencies.permute(2, 0, 1).unsqueeze(-1))
    _same_rotation(mixed, liere, random_positions(mixed, 10))


def test_comrope_ld_with_2x2_blocks_is_mixed():
    """ComRoPE table 10: RoPE-Mixed is ComRoPE-LD with 2x2 blocks. Block j of head h turns its plane
    by -theta_cj s_hj p_c with s = P_01 - P_10, i.e. Mixed with omega_hjc = -theta_cj s_hj."""
    ld = make_encoding("comrope-ld", num_heads=3, block_size=2)
    mixed = make_encoding("mixed", num_heads=3)
    P = ld.angle_matrices.detach()
    s = P[..., 0, 1] - P[..., 1, 0]  # (H, m)
    with torch.no_grad():
        mixed.frequencies.copy_(-(ld.axis_scales.detach().T.unsqueeze(0) * s.unsqueeze(-1)))
    _same_rotation(ld, mixed, random_positions(ld, 10))


def test_mixed_with_one_head_is_comrope_ld_with_2x2_blocks():
    """And back: any single-head Mixed RoPE is an LD encoding (P_01 = omega_y, theta = (-omega_x/omega_y, -1))."""
    mixed = make_encoding("mixed", num_heads=1)
    ld = make_encoding("comrope-ld", num_heads=1, block_size=2)
    omega = mixed.frequencies.detach()[0]  # (m, 2)
    with torch.no_grad():
        ld.angle_matrices.zero_()
        ld.angle_matrices[0, :, 0, 1] = omega[:, 1]
        ld.axis_scales.copy_(torch.stack((-omega[:, 0] / omega[:, 1], -torch.ones_like(omega[:, 1]))))
    _same_rotation(mixed, ld, random_positions(mixed, 10))


def test_one_dimensional_liere_is_rope_with_learned_frequencies_in_another_basis():
    """Theorem 1 of A Circular Argument (LieRE app. A): exp(p A) = Q R_rope(p) Q^T with Q orthogonal,
    so 1D LieRE's logits equal learned-frequency RoPE's on Q^T q and Q^T k (Q absorbed in W_q, W_k)."""
    d, heads = 16, 2
    liere = make_encoding("liere", num_heads=heads, head_dim=d, block_size=d, axes=1, init_scale=1.0)
    A = liere.generators()[0].detach()  # (H, d, d)
    Q, frequencies = rope_canonical_form(A)
    rope = make_encoding("rope1d", num_heads=heads, head_dim=d, learnable=True)
    with torch.no_grad():
        rope.frequencies.copy_(frequencies)
    pos = torch.linspace(-3, 3, 7).unsqueeze(-1)
    x = torch.randn(2, heads, 7, d)
    in_rope_basis = torch.einsum("hji,bhnj->bhni", Q, x)  # Q^T x
    expected = torch.einsum("hij,bhnj->bhni", Q, rope.rotate(in_rope_basis, pos))  # Q R_rope Q^T x
    torch.testing.assert_close(liere.rotate(x, pos), expected, atol=1e-4, rtol=1e-4)


def test_axial_is_mixed_with_frequencies_on_the_axes():
    axial = make_encoding("axial", num_heads=2)
    mixed = make_encoding("mixed", num_heads=2)
    with torch.no_grad():
        mixed.frequencies.copy_(axial.frequency_vectors().expand(2, -1, -1))
    _same_rotation(axial, mixed, random_positions(axial, 10), tol={"atol": 1e-6, "rtol": 1e-6})


def test_uniform_is_axial_with_one_frequency():
    uniform = make_encoding("uniform", num_heads=2)
    axial = make_encoding("axial", num_heads=2, learnable=True)
    with torch.no_grad():
        axial.frequencies.fill_(1.0)
    _same_rotation(uniform, axial, random_positions(axial, 10), tol={"atol": 1e-6, "rtol": 1e-6})


@pytest.mark.parametrize("name", ["rope1d", "axial", "uniform", "mixed"])
def test_adjacent_and_half_layouts_differ_by_a_fixed_permutation(name):
    adjacent = make_encoding(name, layout="adjacent")
    half = make_encoding(name, layout="half")
    half.load_state_dict(adjacent.state_dict())
    first, second = pair_channels(adjacent.head_dim, "adjacent")
    perm = torch.cat((first, second))  # half-layout channel k <- adjacent channel perm[k]
    pos = random_positions(adjacent, 9)
    x = torch.randn(2, adjacent.num_heads, 9, adjacent.head_dim)
    torch.testing.assert_close(half.rotate(x[..., perm], pos), adjacent.rotate(x, pos)[..., perm],
                               atol=1e-6, rtol=1e-6)
    # and the dense matrices are conjugate by the same permutation
    Ra, Rh = adjacent.matrix(pos), half.matrix(pos)
    torch.testing.assert_close(Rh, Ra[..., perm, :][..., perm], atol=1e-6, rtol=1e-6)
    # without the permutation they are different rotations
    assert not torch.allclose(half.rotate(x, pos), adjacent.rotate(x, pos), atol=1e-3)
