"""ropelib against A Circular Argument's own definitions (van de Geijn et al. 2025).

The references below are our own transcriptions, written from the paper and from reading the
first author's public code (GitHub ChasevdG/CARE, ``care/Positional_Embeddings/``), never copied
from it: each spells out, channel by channel, what that code computes.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import ropelib

from conftest import make_encoding

D = 48  # 16 triplets, 12 quadruples
GRID = (5, 7)  # non-square: a swapped x and y cannot hide


def care_spherical(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """The authors' Spherical RoPE. ``x`` ``(B, H, N, d)``, ``pos`` ``(N, 2)``, ``freqs`` ``(T,)``.

    Triplet t is the channels (3t, 3t+1, 3t+2) =: (u, v, w). First the y angle turns the (u, w)
    plane, then the x angle turns the (v, w) plane, each as a 2D rotation (a, b) -> (a c - b s,
    a s + b c).
    """
    B, H, N, d = x.shape
    ax = pos[:, 0:1] * freqs  # (N, T)
    ay = pos[:, 1:2] * freqs
    u, v, w = x.reshape(B, H, N, d // 3, 3).unbind(-1)
    u, w = u * ay.cos() - w * ay.sin(), u * ay.sin() + w * ay.cos()
    v, w = v * ax.cos() - w * ax.sin(), v * ax.sin() + w * ax.cos()
    return torch.stack((u, v, w), -1).reshape(B, H, N, d)


def care_axial(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """The authors' Axial RoPE: channels viewed as (axis, pair, 2), the x planes first; pair t of
    axis a turns by ``pos[a] * freqs[t]``."""
    B, H, N, d = x.shape
    z = x.reshape(B, H, N, 2, d // 4, 2)
    angles = pos.view(N, 2, 1) * freqs  # (N, 2, d/4)
    a, b = z[..., 0], z[..., 1]
    out = torch.stack((a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()), -1)
    return out.reshape(B, H, N, d)


def paper_frequencies(count: int, d: int) -> torch.Tensor:
    """omega_t = 1 / 100^(2t/d), t = 0 .. count-1 (the paper's formula; the code's evaluation)."""
    return 1.0 / 100.0 ** (2 * torch.arange(count, dtype=torch.float64) / d)


def _inputs(heads=2):
    x = torch.randn(3, heads, GRID[0] * GRID[1], D, dtype=torch.float64)
    pos = ropelib.patch_positions(*GRID, convention="circular", dtype=torch.float64)
    return x, pos


def test_spherical_default_frequencies_are_the_authors():
    enc = make_encoding("spherical", head_dim=63, num_heads=1)
    torch.testing.assert_close(enc.frequencies[0, 0].double(), paper_frequencies(21, 63), rtol=1e-6, atol=0)
    assert enc.frequencies[0, 0, 0] == 1.0
    assert abs(enc.frequencies[0, 0, -1].item() - 100 ** (-40 / 63)) < 1e-7  # about 0.054
    assert enc.convention == "circular"


def test_spherical_yx_is_the_authors_code():
    enc = make_encoding("spherical", head_dim=D, order="yx").double()
    x, pos = _inputs()
    expected = care_spherical(x, pos, paper_frequencies(D // 3, D))
    torch.testing.assert_close(enc.rotate(x, pos), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.einsum("hnij,bhnj->bhni", enc.matrix(pos), x), expected, atol=1e-6, rtol=0)


def test_spherical_xy_differs_from_the_authors_code():
    """The default (the paper's Fig. 2 caption) is not the code's order: the test can see it."""
    enc = make_encoding("spherical", head_dim=D).double()
    x, pos = _inputs()
    assert (enc.rotate(x, pos) - care_spherical(x, pos, paper_frequencies(D // 3, D))).abs().max() > 0.1


def _signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            S = torch.zeros(3, 3, dtype=torch.float64)
            S[range(3), perm] = torch.tensor(signs, dtype=torch.float64)
            yield S


def test_the_two_orders_are_one_encoding_of_the_transposed_image():
    """R_yx(p) = S^T R_xy(p_y, p_x) S for one fixed signed permutation S of each triplet's channels:
    y-first on an image is x-first on its transpose, with the channels relabelled."""
    xy = make_encoding("spherical", head_dim=D, num_heads=1).double()
    yx = make_encoding("spherical", head_dim=D, num_heads=1, order="yx").double()
    pos = (torch.rand(40, 2, dtype=torch.float64) * 2 - 1) * 4
    R_yx = yx.matrix(pos)[0]  # (N, d, d)
    R_xy_transposed = xy.matrix(pos.flip(-1))[0]
    eye = torch.eye(D // 3, dtype=torch.float64)
    found = [S for S in _signed_permutations()
             if torch.allclose(torch.kron(eye, S).T @ R_xy_transposed @ torch.kron(eye, S), R_yx, atol=1e-6)]
    assert len(found) >= 1
    # ... and without the transpose no relabelling makes them equal.
    R_xy = xy.matrix(pos)[0]
    assert not any(torch.allclose(torch.kron(eye, S).T @ R_xy @ torch.kron(eye, S), R_yx, atol=1e-6)
                   for S in _signed_permutations())


@pytest.mark.parametrize("order", ["xy", "yx"])
def test_spherical_orders_rotate_as_their_matrices(order):
    enc = make_encoding("spherical", head_dim=D, order=order, learnable=True)
    x = torch.randn(2, 2, 9, D)
    pos = ropelib.patch_positions(3, 3, convention="circular")
    torch.testing.assert_close(enc.rotate(x, pos), torch.einsum("hnij,bhnj->bhni", enc.matrix(pos), x),
                               atol=1e-5, rtol=1e-5)


def test_papers_axial_is_axial_with_theta_10():
    """The paper's 100^(-2t/d) per quadruple on (-pi, pi) positions is rope-vit's form with theta = 10."""
    enc = make_encoding("axial", head_dim=D, theta=10.0, convention="circular").double()
    x, pos = _inputs()
    expected = care_axial(x, pos, paper_frequencies(D // 4, D))
    torch.testing.assert_close(enc.rotate(x, pos), expected, atol=1e-6, rtol=0)
    # rope-vit's default theta = 100 is a different (lower) set of frequencies
    default = make_encoding("axial", head_dim=D, convention="circular").double()
    assert (default.rotate(x, pos) - expected).abs().max() > 0.1


def test_uniform_one_turn_and_the_authors_frequency():
    x, pos = _inputs()
    one_turn = make_encoding("uniform", head_dim=D).double()  # the paper's text: omega = 1 on (-pi, pi)
    torch.testing.assert_close(one_turn.rotate(x, pos), care_axial(x, pos, torch.ones(D // 4, dtype=torch.float64)),
                               atol=1e-6, rtol=0)
    care = make_encoding("uniform", head_dim=D, frequency="care").double()  # the code: 1/pi
    torch.testing.assert_close(care.rotate(x, pos), care_axial(x, pos, torch.full((D // 4,), 1 / math.pi,
                                                                                   dtype=torch.float64)),
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="frequency must be 'one-turn', 'care' or a positive number"):
        make_encoding("uniform", head_dim=D, frequency="half")


@pytest.mark.parametrize("name", ["axial", "spherical"])
def test_learned_frequency_inits(name):
    head_dim = 48
    fixed = make_encoding(name, head_dim=head_dim, num_heads=3, learnable=True)
    uniform = make_encoding(name, head_dim=head_dim, num_heads=3, learnable=True, init="uniform")
    reference = make_encoding(name, head_dim=head_dim, num_heads=1)
    torch.testing.assert_close(fixed.frequencies.detach(), reference.frequencies.expand(3, -1, -1))
    f = uniform.frequencies.detach()
    assert f.shape == fixed.frequencies.shape and f.min() >= 0 and f.max() < 1 and f.std() > 0.1
    with pytest.raises(ValueError, match="only applies to learned frequencies"):
        make_encoding(name, head_dim=head_dim, init="uniform")
