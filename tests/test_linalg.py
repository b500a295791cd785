"""The matrix exponential and the skew-symmetric helpers."""

from __future__ import annotations

import math

import pytest
import torch

from ropelib.linalg import (
    block_diagonal,
    commutator,
    expm,
    expm_skew_scaled,
    rope_canonical_form,
    skew_from_upper,
    upper_from_skew,
)


@pytest.mark.parametrize("scale", [1e-4, 0.3, 3.0])
@pytest.mark.parametrize("size", [2, 3, 8])
def test_expm_matches_matrix_exp_on_general_matrices(scale, size):
    A = torch.randn(64, size, size, dtype=torch.float64) * scale
    torch.testing.assert_close(expm(A), torch.linalg.matrix_exp(A), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("scale", [1e-4, 0.3, 3.0, 30.0, 300.0])
@pytest.mark.parametrize("size", [2, 3, 8])
def test_expm_on_rotations_is_as_accurate_as_matrix_exp(scale, size):
    A = torch.randn(64, size, size, dtype=torch.float64) * scale
    skew64 = A - A.mT
    torch.testing.assert_close(expm(skew64), torch.linalg.matrix_exp(skew64), atol=1e-12 * max(1.0, scale), rtol=0)
    skew = skew64.float()
    # float32 on rotations: as accurate as torch's own float32 matrix_exp, within a factor of 3
    ours = (expm(skew).double() - torch.linalg.matrix_exp(skew.double())).abs().max()
    torch_f32 = (torch.linalg.matrix_exp(skew).double() - torch.linalg.matrix_exp(skew.double())).abs().max()
    assert ours <= 3 * torch_f32 + 1e-7


def test_expm_gradient_matches_torch():
    A = torch.randn(20, 8, 8, dtype=torch.float64) * 2
    A = (A - A.mT).requires_grad_()
    G = torch.randn(20, 8, 8, dtype=torch.float64)
    (ours,) = torch.autograd.grad((expm(A) * G).sum(), A)
    (ref,) = torch.autograd.grad((torch.linalg.matrix_exp(A) * G).sum(), A)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9)


def test_expm_rejects_bad_input():
    with pytest.raises(TypeError, match="float32 or float64"):
        expm(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="square"):
        expm(torch.zeros(2, 3))


def test_skew_round_trip_and_block_diagonal():
    entries = torch.randn(3, 10)
    A = skew_from_upper(entries, 5)
    torch.testing.assert_close(A, -A.mT)
    torch.testing.assert_close(upper_from_skew(A), entries)
    blocks = torch.randn(4, 3, 2, 2)
    dense = block_diagonal(blocks)
    assert dense.shape == (4, 6, 6)
    torch.testing.assert_close(dense[:, 2:4, 2:4], blocks[:, 1])
    assert dense[:, :2, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="has 10 free entries"):
        skew_from_upper(torch.randn(9), 5)


def test_commutator_of_planar_generators_vanishes():
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert commutator(2 * J, -3 * J).abs().sum() == 0
    L1 = torch.tensor([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    L3 = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 0]])
    assert commutator(L1, L3).abs().sum() > 0  # so(3) does not commute


def test_rope_canonical_form():
    A = torch.randn(2, 6, 6, dtype=torch.float64)
    A = A - A.mT
    Q, freqs = rope_canonical_form(A)
    torch.testing.assert_close(Q.mT @ Q, torch.eye(6, dtype=torch.float64).expand(2, 6, 6))
    assert (freqs > 0).all()
    Omega = torch.zeros_like(A)
    for k in range(3):
        Omega[:, 2 * k + 1, 2 * k] = freqs[:, k]
        Omega[:, 2 * k, 2 * k + 1] = -freqs[:, k]
    torch.testing.assert_close(Q @ Omega @ Q.mT, A)


# -- expm: one squaring count per matrix, chosen on the device -------------------------------------


def _mixed_norm_skew_batch(per_scale=32, size=8, scales=(1e-6, 1e-3, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4)):
    """float32 skew matrices with 1-norms spread over ten decades, shuffled into one batch."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(len(scales) * per_scale, size, size, dtype=torch.float64, generator=g)
    A = A - A.mT
    norms = torch.tensor(scales, dtype=torch.float64).repeat_interleave(per_scale)
    A = A / A.abs().sum(-2).amax(-1)[:, None, None] * norms[:, None, None]
    order = torch.randperm(len(A), generator=g)
    return A[order].float(), norms[order]


def _relative_errors(E, reference):
    return (E.double() - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


def test_expm_every_block_is_as_accurate_as_matrix_exp_in_a_batch_of_mixed_norms():
    """One squaring count for the whole batch (the largest block's) would square the blocks of
    norm 0.1 to 100 up to 15 times too often, each squaring doubling the rounding error already
    there; per-block counts do not."""
    A, norms = _mixed_norm_skew_batch()
    reference = torch.linalg.matrix_exp(A.double())
    ours = _relative_errors(expm(A), reference)
    torch_f32 = _relative_errors(torch.linalg.matrix_exp(A), reference)
    for scale in norms.unique():
        sel = norms == scale
        # per decade: within a factor 3 of torch's own float32 error (plus a few unit roundoffs)
        assert ours[sel].max() <= 3 * torch_f32[sel].max() + 3e-7, (scale.item(), ours[sel].max(), torch_f32[sel].max())
    assert ours[norms <= 1].max() < 1e-6  # small blocks stay at the unit roundoff
    # what one batch-wide squaring count (the old expm's) does to the same blocks
    squarings = math.ceil(math.log2(norms.max().item() / 0.5))
    E = torch.linalg.matrix_exp(A / 2**squarings)
    for _ in range(squarings):
        E = E @ E
    one_count = _relative_errors(E, reference)
    middle = (norms >= 0.1) & (norms <= 100)
    assert one_count[middle].max() > 30 * ours[middle].max()  # measured: 9e-4 against 8e-6


def test_expm_has_no_data_dependent_control_flow():
    """No .item(), no bool(tensor): the whole function captures as one graph (a host read would
    break it), and under CUDA's sync debug mode it runs without a synchronisation."""
    A, _ = _mixed_norm_skew_batch(per_scale=2)
    compiled = torch.compile(expm, fullgraph=True, backend="eager", dynamic=False)
    torch.testing.assert_close(compiled(A), expm(A), atol=0, rtol=0)
    if torch.cuda.is_available():
        A = A.cuda()
        expm(A)  # warm up (allocations, lazy initialisation)
        torch.cuda.set_sync_debug_mode("error")
        try:
            expm(A)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_expm_of_zero_and_of_the_largest_norms():
    A = torch.zeros(3, 8, 8)
    torch.testing.assert_close(expm(A), torch.eye(8).expand(3, 8, 8), atol=0, rtol=0)
    big = torch.randn(4, 8, 8, dtype=torch.float64)
    big = (big - big.mT) / (big - big.mT).abs().sum(-2).amax(-1)[:, None, None] * 3e4  # near the float32 cap
    reference = torch.linalg.matrix_exp(big)
    assert _relative_errors(expm(big.float()), reference).max() < 1e-2
    torch.testing.assert_close(expm(big), reference, atol=1e-9, rtol=0)


# -- exp(tS) for commuting (one-parameter) families ------------------------------------------------


def _skew(*shape, scale=1.0, generator=None, dtype=torch.float64):
    P = torch.randn(*shape, dtype=dtype, generator=generator) * scale
    return P - P.mT


def _J_blocks(size, magnitudes):
    """Block-diagonal skew matrix with 2x2 blocks m_k J (a zero row/column when size is odd)."""
    S = torch.zeros(size, size, dtype=torch.float64)
    for k, mag in enumerate(magnitudes):
        S[2 * k + 1, 2 * k], S[2 * k, 2 * k + 1] = mag, -mag
    return S


# S = 0 (init_std=0), repeated magnitudes, a zero eigenvalue (odd size), a mix of both
DEGENERATE = {
    "zero": torch.zeros(8, 8, dtype=torch.float64),
    "diag(J, J, J, J)": _J_blocks(8, [0.7] * 4),
    "two pairs repeated": _J_blocks(8, [0.7, 0.7, 1.9, 1.9]),
    "odd, repeated": _J_blocks(5, [1.3, 1.3]),
}


def test_expm_skew_scaled_matches_matrix_exp_and_broadcasts():
    g = torch.Generator().manual_seed(1)
    S = _skew(3, 4, 8, 8, scale=2.0, generator=g)  # (H, m, b, b)
    t = torch.randn(1, 4, 11, dtype=torch.float64, generator=g) * 5  # (1, m, N): shared across H
    out = expm_skew_scaled(S, t)
    assert out.shape == (3, 4, 11, 8, 8) and out.dtype == torch.float64
    expected = torch.linalg.matrix_exp((t[..., None, None] * S.unsqueeze(-3)).contiguous())
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    assert expm_skew_scaled(S, t, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_expm_skew_scaled_with_repeated_eigenvalues(case):
    S = DEGENERATE[case]
    t = torch.tensor([-2.0, 0.0, 0.3, 1.0, 7.5], dtype=torch.float64)
    expected = torch.linalg.matrix_exp((t[:, None, None] * S).contiguous())
    torch.testing.assert_close(expm_skew_scaled(S, t), expected, atol=1e-13, rtol=0)


@pytest.mark.parametrize("case", ["generic", *DEGENERATE])
def test_expm_skew_scaled_gradients_are_finite_exact_and_pass_gradcheck(case):
    """Differentiating eigh divides by eigenvalue gaps (infinite for S = 0); the divided
    differences of exp do not, and give matrix_exp's own gradient (projected on skew matrices,
    the only directions the function sees)."""
    g = torch.Generator().manual_seed(2)
    S0 = _skew(6, 6, generator=g) if case == "generic" else DEGENERATE[case]
    b = S0.shape[-1]
    S = S0.clone().requires_grad_()
    t = torch.tensor([-1.5, 0.4, 2.0], dtype=torch.float64, requires_grad=True)
    G = torch.randn(3, b, b, dtype=torch.float64, generator=g)
    ours = torch.autograd.grad((expm_skew_scaled(S, t) * G).sum(), (S, t))
    ref = torch.autograd.grad((torch.linalg.matrix_exp(t[:, None, None] * S) * G).sum(), (S, t))
    assert all(torch.isfinite(x).all() for x in ours)
    torch.testing.assert_close(ours[0], (ref[0] - ref[0].mT) / 2, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(ours[1], ref[1], atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(expm_skew_scaled, (S, t), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_expm_skew_scaled_float32_gradients():
    """The backward runs in the gradient's precision: float32 gradients close to float64 ones."""
    g = torch.Generator().manual_seed(3)
    S64 = _skew(2, 3, 8, 8, generator=g).requires_grad_()
    t64 = (torch.randn(1, 3, 50, dtype=torch.float64, generator=g) * 3).requires_grad_()
    G = torch.randn(2, 3, 50, 8, 8, dtype=torch.float64, generator=g)
    ref = torch.autograd.grad((expm_skew_scaled(S64, t64) * G).sum(), (S64, t64))
    out32 = expm_skew_scaled(S64, t64, dtype=torch.float32)
    got = torch.autograd.grad((out32 * G.float()).sum(), (S64, t64))
    for a, b in zip(got, ref):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_expm_skew_scaled_float32_is_more_accurate_than_matrix_exp():
    """float32 result: computed in float64 and rounded once, so within half an ulp of 1, where
    torch.linalg.matrix_exp in float32 loses digits with the norm."""
    g = torch.Generator().manual_seed(4)
    S = _skew(48, 8, 8, generator=g).float()
    for scale in (0.1, 1.0, 10.0, 100.0):
        t = (torch.rand(48, 64, generator=g) * 2 - 1) * scale
        reference = torch.linalg.matrix_exp((t.double()[..., None, None] * S.double().unsqueeze(-3)).contiguous())
        ours = (expm_skew_scaled(S, t).double() - reference).abs().max()
        generators = (t[..., None, None] * S.unsqueeze(-3)).contiguous()  # float32, as matrix_exp sees them
        theirs = (torch.linalg.matrix_exp(generators).double() - reference).abs().max()
        assert ours <= 6e-8, (scale, ours)
        assert ours <= theirs, (scale, ours, theirs)
