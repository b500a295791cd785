"""Small linear-algebra tools for rotations: skew-symmetric generators and their exponential.

Every rotary position encoding is ``R(p) = exp(sum_i p_i A_i)`` for skew-symmetric generators
``A_i`` (or, for Spherical RoPE, a product of such exponentials). These helpers build and
analyse those generators, and exponentiate them: :func:`expm` for any batch of matrices (one
per token, LieRE), :func:`expm_skew_scaled` for many multiples ``t S`` of one skew matrix
(commuting generators, ComRoPE).
"""

from __future__ import annotations

import math

import torch

# Scaling-and-squaring thresholds for the degree-8 Taylor polynomial: the largest 1-norm of the
# scaled matrix X for which the truncation acts like a relative backward error below the unit
# roundoff u, i.e. ||X||^8 / 9! <= u (Higham, "Functions of Matrices", sec. 10.3).
# float32: (6e-8 * 9!)^(1/8) = 0.62; float64: (1.1e-16 * 9!)^(1/8) = 0.049. Rounded down.
_EXPM_THETA = {torch.float32: 0.5, torch.float64: 0.04}
# The most squarings any matrix gets: the loop below always runs this many steps, because
# choosing fewer would need the largest norm on the host. 2^16 * 0.5 = 32768 in float32 (an
# angle whose float32 ulp is already 0.004 rad) and 2^20 * 0.04 = 41943 in float64.
_EXPM_MAX_SQUARINGS = {torch.float32: 16, torch.float64: 20}


def expm(A: torch.Tensor) -> torch.Tensor:
    """Matrix exponential of a batch of square matrices ``(..., n, n)``, without a host sync.

    A degree-8 Taylor polynomial (Paterson-Stockmeyer: 4 matrix products) on ``A / 2**s``, then
    ``s`` squarings, with ``s = ceil(log2(||A||_1 / theta))`` chosen *per matrix, on the device*:
    every matrix is scaled by its own power of two and the squaring loop runs a fixed number of
    steps (16 in float32, 20 in float64), each matrix taking only its first ``s`` of them
    (``torch.where``). So

    * nothing is read back to the host (no ``.item()``, no data-dependent Python branch): the
      GPU never stalls, and ``torch.compile(fullgraph=True)`` captures it whole;
    * each matrix is as accurate as ``torch.linalg.matrix_exp`` makes it: a small block does not
      pay for the squarings of the largest one in the batch (every squaring doubles the
      rounding error already there; 16 needless squarings of a block near the identity would
      cost it a factor 2^16).

    Accurate to the unit roundoff of the dtype for 1-norms up to 32768 (float32) or 41943
    (float64); beyond, the Taylor step works outside its range and accuracy degrades. For the
    thousands of 8x8 blocks of LieRE it is several times cheaper than ``torch.matrix_exp``,
    forward and especially backward, which autograd derives from the products above.
    """
    if A.dtype not in _EXPM_THETA:
        raise TypeError(f"expm: needs float32 or float64 matrices, got {A.dtype}; use A.float()")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"expm: needs square matrices (..., n, n), got shape {tuple(A.shape)}")
    max_squarings = _EXPM_MAX_SQUARINGS[A.dtype]
    with torch.no_grad():
        norms = A.abs().sum(-2).amax(-1)  # 1-norm of every matrix, (...)
        # log2(0) = -inf clamps to 0 squarings; NaN/inf inputs give NaN outputs whatever s is.
        squarings = torch.ceil(torch.log2(norms / _EXPM_THETA[A.dtype]))
        squarings = squarings.nan_to_num(0.0).clamp_(0, max_squarings)[..., None, None]
    X = A * torch.exp2(-squarings)  # a power of two: the scaling itself is exact
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    X2 = X @ X
    X3 = X2 @ X
    X4 = X2 @ X2
    low = eye + X + X2 / 2 + X3 / 6
    high = eye / 24 + X / 120 + X2 / 720 + X3 / 5040 + X4 / 40320
    E = low + X4 @ high
    for step in range(max_squarings):
        E = torch.where(squarings > step, E @ E, E)
    return E


class _SkewExpScaled(torch.autograd.Function):
    """``exp(t S)`` for skew ``S`` through the eigendecomposition of the Hermitian ``iS``.

    Forward in float64 (the matrices are few and small), returned in ``dtype``; backward in the
    incoming gradient's precision (float32 gradients need no float64 work). Once differentiable.
    See :func:`expm_skew_scaled`.
    """

    @staticmethod
    def forward(ctx, S, t, dtype):
        Sd, td = S.detach().double(), t.detach().double()
        Sd = (Sd - Sd.mT) / 2  # the skew part: S itself when skew, and a function of all of S
        # iS is Hermitian: iS = V diag(lam) V^H with V unitary, whatever the multiplicities, so
        # exp(tS) = V diag(exp(-i t lam)) V^H holds for repeated and zero eigenvalues alike.
        lam, V = torch.linalg.eigh(1j * Sd)  # (..., b), (..., b, b)
        outer = V.mT.unsqueeze(-1) * V.mT.conj().unsqueeze(-2)  # (..., k, b, b): v_k v_k^H
        # Real part of (cos - i sin)(Re + i Im) of v_k v_k^H: exp(tS) is real.
        sym, anti = outer.real.flatten(-2), outer.imag.flatten(-2)  # (..., k, b*b)
        angles = td.unsqueeze(-1) * lam.unsqueeze(-2)  # (..., n, k)
        cos, sin = angles.cos(), angles.sin()
        out = (cos @ sym + sin @ anti).unflatten(-1, lam.shape[-1:] * 2)  # (..., n, b, b)
        ctx.save_for_backward(lam, V, td, cos, sin, sym, anti)
        ctx.shapes = (S.shape, S.dtype, t.shape, t.dtype)
        return out.to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        lam, V, td, cos, sin, sym, anti = ctx.saved_tensors
        S_shape, S_dtype, t_shape, t_dtype = ctx.shapes
        work = torch.promote_types(grad.dtype, torch.float32)
        G = grad.to(work).contiguous().flatten(-2)  # (..., n, b*b)
        lam, td = lam.to(work), td.to(work)
        need_S, need_t = ctx.needs_input_grad[:2]
        # Every projection of G the two gradients need, in one GEMM per S: (n, b*b) @ (b*b, .).
        columns = [sym, anti] if need_t else []
        if need_S:
            # V^H G_n V for every n: the rows of V^T (x) V^H, entry (a, b) of V^H G V per row.
            kron = torch.einsum("...ia,...jb->...abij", V.conj(), V).flatten(-4, -3).flatten(-2)
            columns += [kron.real, kron.imag]
        projections = (G @ torch.cat(columns, -2).to(work).mT).split([c.shape[-2] for c in columns], -1)
        grad_S = grad_t = None
        if need_t:
            # d exp(tS)/dt = sum_k lam_k (-sin_k Re(v v^H) + cos_k Im(v v^H)).
            along_sym, along_anti = projections[:2]  # (..., n, k)
            grad_t = ((cos.to(work) * along_anti - sin.to(work) * along_sym) * lam.unsqueeze(-2)).sum(-1)
            grad_t = grad_t.sum_to_size(t_shape).to(t_dtype)
        if need_S:
            # The adjoint Frechet derivative of exp at the normal matrix X = tS: in X's
            # eigenbasis, the elementwise product with the conjugated divided differences
            # exp[mu_a, mu_b] of the eigenvalues mu = -i t lam (Higham, "Functions of Matrices",
            # thm. 3.11). exp[mu_a, mu_b] = exp(-i t (lam_a + lam_b)/2) sinc(t (lam_a - lam_b)/2):
            # continuous, and exp(mu_a) where lam_a = lam_b, so repeated eigenvalues (S = 0 at
            # init_std=0, S = diag(J, J, ..)) get the exact gradient, where differentiating
            # eigh itself would divide by lam_a - lam_b = 0.
            inner_re, inner_im = projections[-2:]  # (..., n, b*b): V^H G_n V
            half_t = (td / 2).unsqueeze(-1)  # (..., n, 1)
            gap = (lam.unsqueeze(-1) - lam.unsqueeze(-2)).flatten(-2).unsqueeze(-2)  # (..., 1, b*b)
            mean = (lam.unsqueeze(-1) + lam.unsqueeze(-2)).flatten(-2).unsqueeze(-2)
            size = torch.sinc(half_t * gap / math.pi) * td.unsqueeze(-1)  # t * conj(divided difference)
            phase = half_t * mean
            w_re, w_im = size * phase.cos(), size * phase.sin()
            z_re = (w_re * inner_re - w_im * inner_im).sum(-2)  # sum over n: (..., b*b)
            z_im = (w_re * inner_im + w_im * inner_re).sum(-2)
            Z = torch.complex(z_re, z_im).unflatten(-1, lam.shape[-1:] * 2).to(V.dtype)
            grad_skew = (V @ Z @ V.mH).real
            grad_S = ((grad_skew - grad_skew.mT) / 2).sum_to_size(S_shape).to(S_dtype)
        return grad_S, grad_t, None


def expm_skew_scaled(S: torch.Tensor, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``exp(t S)`` for many scalars ``t`` per skew-symmetric matrix ``S``: one eigendecomposition.

    Args:
        S: ``(..., b, b)`` real skew-symmetric matrices; only the skew part ``(S - S^T)/2`` is
            used (so the function, and its gradient, are defined for every real ``S``).
        t: ``(..., n)`` scalars; the leading dimensions of ``S`` and ``t`` broadcast.
        dtype: of the result (default: ``S``'s and ``t``'s promoted). Pass float64 ``S`` and ``t``
            and ``dtype=torch.float32`` for a float32 result rounded once.

    Returns:
        ``(..., n, b, b)``: ``out[..., q, :, :] = exp(t[..., q] * S[...])``.

    The one-parameter subgroup ``t -> exp(tS)`` is, in the eigenbasis of ``S``, a set of planar
    rotations by angles ``t * lam_k``: ``S = V diag(-i lam) V^H`` (from ``torch.linalg.eigh`` of the
    Hermitian ``iS``) gives ``exp(tS) = sum_k cos(t lam_k) Re(v_k v_k^H) + sin(t lam_k) Im(v_k v_k^H)``.
    This is the Mixed-RoPE form of commuting generators (ComRoPE, Yu et al. 2025, theory appendix:
    commuting skew generators are simultaneously block-diagonalisable, i.e. RoPE-Mixed in a
    learned orthogonal basis). The cost is one ``b x b`` eigendecomposition per ``S`` plus one
    ``(n, 2b) @ (2b, b*b)`` product, where :func:`expm` costs a dozen ``b x b`` products per ``t``.

    The forward is exact to float64 rounding (decomposition, angles and sums run in float64
    whatever the inputs' dtype) and rounded once to ``dtype``: a float32 result is within half an
    ulp, where ``torch.linalg.matrix_exp`` in float32 loses digits with the norm of ``tS``. The
    backward runs in the gradient's precision. Differentiable in ``S`` and ``t``; the gradient in
    ``S`` is the adjoint Frechet derivative (divided differences), well defined and exact for
    repeated eigenvalues, including ``S = 0``. Not for ``torch.compile`` (complex ``eigh``); the
    callers fall back to :func:`expm` there. On a GPU, ``torch.linalg.eigh`` may read its error
    flag back to the host (one small sync per call; :func:`expm` has none).
    """
    return _SkewExpScaled.apply(S, t, dtype or torch.promote_types(S.dtype, t.dtype))


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
