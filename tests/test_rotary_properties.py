"""Properties every rotary encoding must have, on random inputs (hypothesis draws the cases)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropelib
from conftest import RELATIVE, make_encoding, random_positions

cases = settings(max_examples=12, deadline=None, derandomize=True)
seeds = st.integers(0, 2**31 - 1)
# The exponential-map encodings compute their blocks in float32 from generators with norms in
# the tens: their error is ~1e-5, the planar ones' ~1e-7.
TOL = {"atol": 1e-4, "rtol": 1e-4}


def _inputs(enc, seed, tokens, scale, batch=2):
    g = torch.Generator().manual_seed(seed)
    pos = random_positions(enc, tokens, scale, generator=g)
    x = torch.randn(batch, enc.num_heads, tokens + enc.num_prefix_tokens, enc.head_dim, generator=g)
    return x, pos


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
@cases
@given(seed=seeds, tokens=st.integers(1, 9), scale=st.sampled_from([0.1, 1.0, 4.0]))
def test_matrix_is_orthogonal(name, seed, tokens, scale):
    enc = make_encoding(name)
    _, pos = _inputs(enc, seed, tokens, scale)
    R = enc.matrix(pos)
    assert R.shape == (enc.num_heads, tokens, enc.head_dim, enc.head_dim)
    eye = torch.eye(enc.head_dim).expand_as(R)
    torch.testing.assert_close(R @ R.mT, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R.double()), torch.ones(R.shape[:2], dtype=torch.float64),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
@cases
@given(seed=seeds, tokens=st.integers(1, 9), scale=st.sampled_from([0.1, 1.0, 4.0]),
       prefix=st.integers(0, 2), at_centre=st.booleans())
def test_rotate_equals_matrix_times_x(name, seed, tokens, scale, prefix, at_centre):
    enc = make_encoding(name, num_prefix_tokens=prefix, prefix_position="centre" if at_centre else "none")
    x, pos = _inputs(enc, seed, tokens, scale)
    expected = torch.einsum("hnij,bhnj->bhni", enc.matrix(pos), x)
    torch.testing.assert_close(enc.rotate(x, pos), expected, **TOL)


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
@cases
@given(seed=seeds, tokens=st.integers(1, 9), scale=st.sampled_from([0.1, 1.0, 4.0]))
def test_rotate_preserves_norms(name, seed, tokens, scale):
    enc = make_encoding(name)
    x, pos = _inputs(enc, seed, tokens, scale)
    torch.testing.assert_close(enc.rotate(x, pos).norm(dim=-1), x.norm(dim=-1), **TOL)


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
def test_prefix_tokens_are_unrotated_by_default(name):
    """Every encoding but ComRoPE's leaves CLS unrotated by default (ComRoPE: at the centre)."""
    enc = make_encoding(name, num_prefix_tokens=2, prefix_position="none")
    assert make_encoding(name, num_prefix_tokens=2).prefix_position == (
        "centre" if name.startswith("comrope") else "none")
    x, pos = _inputs(enc, 0, 5, 2.0)
    y = enc.rotate(x, pos)
    torch.testing.assert_close(y[:, :, :2], x[:, :, :2], atol=0, rtol=0)
    assert not torch.allclose(y[:, :, 2:], x[:, :, 2:])


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
def test_prefix_at_centre_is_rotated_like_a_patch_at_the_centre(name):
    enc = make_encoding(name, num_prefix_tokens=1, prefix_position="centre")
    pos = enc.positions(5) if enc.axes == 1 else enc.positions(3, 5)
    plain = make_encoding(name)
    plain.load_state_dict(enc.state_dict())
    x = torch.randn(2, enc.num_heads, pos.shape[0] + 1, enc.head_dim)
    centre = (pos.amin(0) + pos.amax(0)) / 2
    expected = plain.rotate(x[:, :, :1], centre.unsqueeze(0))
    torch.testing.assert_close(enc.rotate(x, pos)[:, :, :1], expected, **TOL)
    # the same, with the prefix positions given explicitly as pos's first row
    torch.testing.assert_close(enc.rotate(x, enc.full_positions(pos)), enc.rotate(x, pos), atol=0, rtol=0)


def _logits(enc, q, k, p, p_prime):
    """<R(p) q, R(p') k> for every pair of tokens: (B, H, N)."""
    return (enc.rotate(q, p) * enc.rotate(k, p_prime)).sum(-1)


@pytest.mark.parametrize("name", RELATIVE)
@cases
@given(seed=seeds, scale=st.sampled_from([0.5, 2.0]))
def test_relative_encodings_depend_only_on_the_offset(name, seed, scale):
    enc = make_encoding(name)
    g = torch.Generator().manual_seed(seed)
    q, p = _inputs(enc, seed, 8, scale)
    k = torch.randn(q.shape, generator=g)
    p_prime = random_positions(enc, 8, scale, generator=g)
    shift = random_positions(enc, 1, 3 * scale, generator=g)
    base = _logits(enc, q, k, p, p_prime)
    shifted = _logits(enc, q, k, p + shift, p_prime + shift)
    torch.testing.assert_close(shifted, base, atol=2e-4 * base.abs().max().item(), rtol=0)


@pytest.mark.parametrize("name", RELATIVE)
def test_relative_encodings_compose(name):
    """R(p)^T R(p') = R(p' - p): the defining property, on the matrices themselves."""
    enc = make_encoding(name)
    p, p_prime = random_positions(enc, 6), random_positions(enc, 6)
    lhs = enc.matrix(p).mT @ enc.matrix(p_prime)
    torch.testing.assert_close(lhs, enc.matrix(p_prime - p), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, options", [("spherical", {}), ("liere", {}), ("liere", {"block_size": 3}),
                                           ("liere", {"block_size": 4})])
def test_non_commuting_encodings_are_measurably_not_relative(name, options):
    """Spherical RoPE and LieRE (b >= 3) at their default init: a common shift changes the logits."""
    enc = make_encoding(name, **options)
    q = torch.randn(4, enc.num_heads, 16, enc.head_dim)
    k = torch.randn_like(q)
    pos = enc.positions(4, 4)
    shift = torch.full((1, 2), 3.0 * (pos[1, 0] - pos[0, 0]).item())  # three patches along x and y
    base = _logits(enc, q, k, pos, pos.flip(0))
    shifted = _logits(enc, q, k, pos + shift, pos.flip(0) + shift)
    change = ((shifted - base).abs().max() / base.abs().max()).item()
    assert change > 0.05, f"{name}: logits moved only {change:.2e} (relative) under a shift"


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
def test_generators_commute_exactly_for_the_relative_ones(name):
    enc = make_encoding(name)
    A = enc.generators().double()
    assert A.shape == (enc.axes, enc.num_heads, enc.head_dim, enc.head_dim)
    torch.testing.assert_close(A, -A.mT, atol=0, rtol=0)  # skew-symmetric
    if enc.axes == 1:
        return
    norm = ropelib.linalg.commutator(A[0], A[1]).norm() / (A[0].norm() * A[1].norm())
    if name in RELATIVE:
        assert norm < 1e-7
    else:
        assert norm > 1e-2


@pytest.mark.parametrize("name", ["axial", "mixed", "spherical", "liere"])
def test_extra_leading_dims_share_one_table(name):
    """Queries and keys stacked as (2, B, H, N, d) rotate exactly as each one alone."""
    enc = make_encoding(name)
    q, pos = _inputs(enc, 1, 6, 2.0)
    k = torch.randn_like(q)
    both = enc.rotate(torch.stack((q, k)), pos)
    torch.testing.assert_close(both[0], enc.rotate(q, pos), atol=1e-6, rtol=0)
    torch.testing.assert_close(both[1], enc.rotate(k, pos), atol=1e-6, rtol=0)


def test_spherical_order_matters():
    """Roll (x) first, then yaw (y): the opposite order is a different rotation."""
    enc = make_encoding("spherical", num_heads=1)
    A = enc.generators().double()[:, 0]
    p = torch.tensor([1.3, -0.7], dtype=torch.float64)
    roll = torch.linalg.matrix_exp(p[0] * A[0])
    yaw = torch.linalg.matrix_exp(p[1] * A[1])
    R = enc.matrix(p.view(1, 2))[0, 0]
    torch.testing.assert_close(R, yaw @ roll)
    assert (R - roll @ yaw).abs().max() > 1e-2
