"""The matrix exponential and the skew-symmetric helpers."""

from __future__ import annotations

import pytest
import torch

from ropelib.linalg import block_diagonal, commutator, expm, rope_canonical_form, skew_from_upper, upper_from_skew


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
