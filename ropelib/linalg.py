"""Small linear-algebra tools for rotations: skew-symmetric generators and their exponential.

Every rotary position encoding is ``R(p) = exp(sum_i p_i A_i)`` for skew-symmetric generators
``A_i`` (or, for Spherical RoPE, a product of such exponentials). These helpers build and
analyse those generators.
"""

from __future__ import annotations

import math

import torch

# Scaling-and-squaring thresholds for the degree-8 Taylor polynomial: the largest 1-norm of the
# scaled matrix X for which the truncation acts like a relative backward error below the unit
# roundoff u, i.e. ||X||^8 / 9! <= u (Higham, "Functions of Matrices", sec. 10.3).
# float32: (6e-8 * 9!)^(1/8) = 0.62; float64: (1.1e-16 * 9!)^(1/8) = 0.049. Rounded down.
_EXPM_THETA = {torch.float32: 0.5, torch.float64: 0.04}


def expm(A: torch.Tensor) -> torch.Tensor:
    """Matrix exponential of a batch of square matrices ``(..., n, n)``.

    A degree-8 Taylor polynomial (Paterson-Stockmeyer: 4 matrix products) on ``A / 2**s``,
    squared ``s`` times, with one ``s`` for the whole batch. Accurate to the unit roundoff of
    the dtype (the tests compare it with float64 ``torch.matrix_exp``). For the thousands of
    8x8 blocks of LieRE and ComRoPE it is several times cheaper than ``torch.matrix_exp``,
    forward and especially backward, which autograd derives from the products above.

    Under ``torch.compile`` it defers to ``torch.matrix_exp``, because choosing ``s`` reads one
    number back from the device.
    """
    if A.dtype not in _EXPM_THETA:
        raise TypeError(f"expm: needs float32 or float64 matrices, got {A.dtype}; use A.float()")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"expm: needs square matrices (..., n, n), got shape {tuple(A.shape)}")
    if torch.compiler.is_compiling():
        # .contiguous(): torch 2.14's matrix_exp fails on batches with permuted strides.
        return torch.matrix_exp(A.contiguous())
    max_norm = float(A.detach().abs().sum(-2).amax()) if A.numel() else 0.0
    theta = _EXPM_THETA[A.dtype]
    squarings = math.ceil(math.log2(max_norm / theta)) if math.isfinite(max_norm) and max_norm > theta else 0
    X = A / 2**squarings
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    X2 = X @ X
    X3 = X2 @ X
    X4 = X2 @ X2
    low = eye + X + X2 / 2 + X3 / 6
    high = eye / 24 + X / 120 + X2 / 720 + X3 / 5040 + X4 / 40320
    E = low + X4 @ high
    for _ in range(squarings):
        E = E @ E
    return E


def skew_from_upper(entries: torch.Tensor, size: int) -> torch.Tensor:
    """Skew-symmetric matrices ``(..., size, size)`` from their strict upper triangles.

    ``entries`` has shape ``(..., size*(size-1)/2)``, in ``torch.triu_indices`` order. Storing only
    these entries is why LieRE-64 on ViT-B has 580k position parameters, not twice that.
    """
    rows, cols = torch.triu_indices(size, size, offset=1, device=entries.device)
    if entries.shape[-1] != rows.numel():
        raise ValueError(
            f"skew_from_upper: a {size}x{size} skew matrix has {rows.numel()} free entries, "
            f"got {entries.shape[-1]}"
        )
    upper = entries.new_zeros(*entries.shape[:-1], size, size)
    upper[..., rows, cols] = entries
    return upper - upper.transpose(-1, -2)


def upper_from_skew(A: torch.Tensor) -> torch.Tensor:
    """Strict upper triangle of ``(..., n, n)`` as ``(..., n*(n-1)/2)``; inverse of :func:`skew_from_upper`."""
    n = A.shape[-1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=A.device)
    return A[..., rows, cols]


def commutator(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``[A, B] = AB - BA``. Zero exactly when ``exp(A) exp(B) = exp(A + B)`` holds for all scalings."""
    return A @ B - B @ A


def block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """Dense ``(..., m*b, m*b)`` block-diagonal matrices from ``(..., m, b, b)`` blocks.

    For analysis and tests only: the fast paths never build these.
    """
    *lead, m, b, _ = blocks.shape
    dense = blocks.new_zeros(*lead, m, b, m, b)
    idx = torch.arange(m, device=blocks.device)
    dense[..., idx, :, idx, :] = blocks.movedim(-3, 0)
    return dense.reshape(*lead, m * b, m * b)


def rope_canonical_form(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write a skew-symmetric ``A`` as ``Q @ Omega @ Q.T`` with ``Omega`` a RoPE generator.

    Returns ``Q`` (orthogonal, ``(..., d, d)``) and ``frequencies`` (``(..., d/2)``, positive) such
    that ``exp(p A) = Q R_rope(p) Q^T``, where ``R_rope(p)`` rotates adjacent channel pairs
    ``(2k, 2k+1)`` by ``p * frequencies[k]``. This is Theorem 1 of "A Circular Argument" (and
    LieRE's appendix A): a 1D LieRE is RoPE with learned frequencies, seen in another basis.

    Assumes ``d`` even and ``A`` generic (non-zero, distinct eigenvalue magnitudes). Computed in
    float64.
    """
    d = A.shape[-1]
    if d % 2:
        raise ValueError(f"rope_canonical_form: needs an even dimension, got {d}")
    Ad = A.detach().to(torch.float64)
    # iA is Hermitian; its negative eigenvalues -mu belong to eigenvectors v = a + ib with
    # A v = i mu v, i.e. A a = -mu b and A b = mu a.
    lam, V = torch.linalg.eigh(1j * Ad)
    mu = -lam[..., : d // 2]  # eigh sorts ascending: the d/2 negative ones come first
    v = V[..., :, : d // 2]
    u, w = math.sqrt(2) * v.imag, math.sqrt(2) * v.real  # A u = mu w, A w = -mu u
    Q = torch.stack((u, w), dim=-1).flatten(-2)  # columns u_1, w_1, u_2, w_2, ...
    return Q.to(A.dtype), mu.to(A.dtype)
