"""Rotations from the exponential map of block-diagonal generators: LieRE and ComRoPE.

``R(p) = exp(sum_i p_i A_i)`` with skew-symmetric ``A_i`` made of ``m = d/b`` blocks of size
``b x b``. The exponential of a block-diagonal matrix is block-diagonal, so the fast paths build a
table of ``b x b`` blocks per (head, token, block), ``(H, N, m, b, b)``, once per call for queries
and keys together, and apply it blockwise (:class:`_BlockProduct`):

* ``liere`` (Ostmeier et al. 2025): the blocks are free. For ``b >= 3`` they generally do not
  commute, and the encoding is not exactly relative. ``b = 2`` is Mixed RoPE. One matrix
  exponential per (head, token, block): :func:`ropelib.linalg.expm`, which chooses each block's
  squarings on the device (no host sync).
* ``comrope-ap`` and ``comrope-ld`` (Yu et al. 2025): the blocks are constrained to commute
  (ComRoPE Theorem 1: then and only then ``R(p)^T R(p') = R(p' - p)``). By construction, block
  ``j`` of head ``h`` is ``exp(t_j(p) S_hj)`` for one skew ``S_hj`` and a scalar ``t_j(p)`` linear in
  ``p``, so one eigendecomposition per ``S_hj`` and forward gives every token's block as planar
  rotations by ``t_j(p) lam_k`` in the eigenbasis of ``S_hj``: the Mixed-RoPE form of commuting
  generators (ComRoPE's theory appendix). :func:`ropelib.linalg.expm_skew_scaled` does it, a few
  dozen 8x8 decompositions instead of thousands of exponentials.

Every variant keeps the definition's dense path, ``_dense_rotation_table`` (one exponential per
token and block): LieRE's only path, ComRoPE's under ``torch.compile`` and in the tests.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..linalg import block_diagonal, expm, expm_skew_scaled, skew_from_upper
from .base import RotaryEncoding, _is_int
from .kernels import rotate_blocks

# Blocks are applied in groups of at most this many channels: 2 blocks of 8 as one 16x16
# block-diagonal matrix. Larger groups waste products on the zeros, smaller ones pay the
# per-matrix overhead of batched BLAS calls (CPU, ViT-S, one thread, forward: ~55 ms for 8,
# ~43 ms for 16, ~39 ms for 32 channels per group, on a noisy machine).
_GROUP_CHANNELS = 16
# On the CPU, torch.bmm writes a strided ``out=`` one matrix at a time (a gemm call each, threaded
# by itself: with 2 threads on a shared 2-core machine, 2 s instead of 35 ms); with a contiguous
# result it makes one batched gemm call. So the groups go through a contiguous buffer of about
# this many bytes, small enough to stay in cache until it is copied to its place in the output.
_CPU_BUFFER_BYTES = 4 << 20


def _blocks_per_group(num_blocks: int, block_size: int) -> int:
    """The largest divisor ``k`` of ``num_blocks`` with ``k * block_size <= 16`` (at least 1)."""
    return max(k for k in range(1, num_blocks + 1)
               if num_blocks % k == 0 and (k == 1 or k * block_size <= _GROUP_CHANNELS))


class _BlockProduct(torch.autograd.Function):
    """``out[..., h, n, j*b:(j+1)*b] = blocks[h, n, j] @ x[..., h, n, j*b:(j+1)*b]``.

    ``x`` ``(..., H, N, m*b)``, ``blocks`` ``(H, N, m, b, b)``. The product of :func:`rotate_blocks`,
    computed by three batched matrix products that read ``x`` and the gradient at their own
    strides: with ``x`` viewed as ``(S, H*N*m/k, k*b)`` (``S`` the leading batch), every group of
    ``k`` blocks is one ``(S, kb) @ (kb, kb)`` product. ``rotate_blocks``' einsum instead copies
    ``x``, its output and, backward, the gradient into another layout and back (about 1.5x the
    time, forward and backward, on the CPU at ViT-S shapes). Once differentiable.
    """

    @staticmethod
    def forward(ctx, x, blocks, per_group):
        H, N, m, b, _ = blocks.shape
        x = x.contiguous()
        grouped = block_diagonal(blocks.to(x.dtype).unflatten(2, (m // per_group, per_group)))
        grouped = grouped.reshape(-1, per_group * b, per_group * b)  # (H*N*m/k, kb, kb)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        with torch.autocast(x.device.type, enabled=False):  # dtypes are explicit; out= and autocast do not mix
            _bmm_into(_rows(out, grouped), _rows(x, grouped), grouped.mT)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, grouped)
        ctx.per_group, ctx.blocks_shape, ctx.blocks_dtype = per_group, blocks.shape, blocks.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, grouped = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_blocks = None
        with torch.autocast(grad.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_x = torch.empty_like(grad, memory_format=torch.contiguous_format)
                _bmm_into(_rows(grad_x, grouped), _rows(grad, grouped), grouped)
            if ctx.needs_input_grad[1]:
                # d out_s / d M = g_s x_s^T summed over the S rows; only the diagonal blocks of
                # each group are parameters.
                full = torch.bmm(_rows(grad, grouped).mT, _rows(x, grouped))  # (H*N*m/k, kb, kb)
                H, N, m, b, _ = ctx.blocks_shape
                k = ctx.per_group
                full = full.view(H, N, m // k, k, b, k, b)
                grad_blocks = full.diagonal(dim1=3, dim2=5).movedim(-1, 3).reshape(H, N, m, b, b)
                grad_blocks = grad_blocks.to(ctx.blocks_dtype)
        return grad_x, grad_blocks, None


def _rows(t: torch.Tensor, grouped: torch.Tensor) -> torch.Tensor:
    """``(groups, S, kb)``: a contiguous ``(S, ..., H, N, d)`` tensor seen group by group (a view)."""
    return t.view(-1, grouped.shape[0], grouped.shape[-1]).transpose(0, 1)


def _bmm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, chunk: int | None = None) -> None:
    """``out[i] = a[i] @ b[i]`` for a strided ``out`` ``(groups, S, kb)`` (a view of the output).

    On the CPU through a contiguous buffer, ``chunk`` groups at a time (default: about 4 MiB),
    so that every product is one batched gemm call (see ``_CPU_BUFFER_BYTES``); elsewhere (cuBLAS
    takes the strides as they are) in one call, unless ``chunk`` is given.
    """
    if chunk is None:
        if out.device.type != "cpu":
            torch.bmm(a, b, out=out)
            return
        chunk = max(1, _CPU_BUFFER_BYTES // (out.shape[1] * out.shape[2] * out.element_size()))
    buffer = out.new_empty((min(chunk, out.shape[0]), *out.shape[1:]))
    for start in range(0, out.shape[0], chunk):
        stop = min(start + chunk, out.shape[0])
        part = buffer[: stop - start]
        torch.bmm(a[start:stop], b[start:stop], out=part)
        out[start:stop].copy_(part)


def apply_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Apply ``b x b`` blocks ``(H or 1, N, m, b, b)`` to ``x`` ``(..., H, N, m*b)``: :func:`rotate_blocks`,
    faster (:class:`_BlockProduct`). Under ``torch.compile`` it is ``rotate_blocks``, which the
    compiler fuses itself (and which needs no ``out=`` into strided views)."""
    if torch.compiler.is_compiling():
        return rotate_blocks(x, blocks)
    m, b = blocks.shape[-3], blocks.shape[-1]
    blocks = blocks.expand(x.shape[-3], *blocks.shape[1:])
    return _BlockProduct.apply(x, blocks, _blocks_per_group(m, b))


class BlockRotary(RotaryEncoding):
    """Shared machinery: block generators ``(axes, H, m, b, b)`` -> blocks ``(H, N, m, b, b)`` -> :func:`apply_blocks`.

    Args:
        block_size: ``b``, the size of the blocks; ``head_dim`` must be a multiple of it.
        axes: width of a position vector (2 for images, 1 for sequences, 3 for video).
    """

    learnable = True

    def __init__(self, head_dim: int, num_heads: int = 1, *, block_size: int = 8, axes: int = 2, **options):
        super().__init__(head_dim, num_heads, **options)
        if not _is_int(block_size) or block_size < 2:
            raise ValueError(f"{self.name}: block_size must be an integer >= 2, got {block_size!r}")
        if not _is_int(axes) or axes < 1:
            raise ValueError(f"{self.name}: axes must be a positive integer, got {axes!r}")
        self.block_size = block_size
        self.axes = axes
        self._require_divisible(block_size, f"the generators are made of {block_size}x{block_size} blocks")
        self.num_blocks = head_dim // block_size

    def block_generators(self) -> torch.Tensor:
        """``(axes, H or 1, m, b, b)`` skew-symmetric blocks of the generators."""
        raise NotImplementedError

    def commuting_factors(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For commuting generators, ``(S, t)`` with ``sum_c pos[n, c] A_c`` block ``(h, j)`` equal to
        ``t[., j, n] * S[h, j]``: ``S`` ``(H, m, b, b)`` skew, ``t`` ``(H or 1, m, N)``. ``None``: no such
        factorisation (LieRE)."""
        return None

    def _rotation_table(self, pos):
        factors = None if torch.compiler.is_compiling() else self.commuting_factors(pos)
        if factors is None:
            return self._dense_rotation_table(pos)
        # float64 inside (a few dozen b x b matrices and an (N, m) table of scalars), float32 out.
        skew, scale = factors
        return expm_skew_scaled(skew, scale, dtype=pos.dtype).transpose(1, 2)  # (H, N, m, b, b)

    def _dense_rotation_table(self, pos):
        """The definition, block by block: ``expm`` of every token's generator blocks, ``(H, N, m, b, b)``."""
        blocks = self.block_generators().to(pos.dtype)
        return expm(torch.einsum("nc,chmij->hnmij", pos, blocks))

    def _rotate_with(self, x, blocks):
        return apply_blocks(x, blocks)

    def generators(self) -> torch.Tensor:
        blocks = self.block_generators()
        return block_diagonal(blocks.expand(self.axes, self.num_heads, *blocks.shape[2:]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", block_size={self.block_size}, axes={self.axes}"


class LieRE(BlockRotary):
    """LieRE (Ostmeier et al. 2025, sec. 4, alg. 1): learned skew-symmetric generators per axis.

    Each generator's ``b x b`` blocks are free skew-symmetric matrices, one set per head (and, in
    a ViT, per layer). Init as the official code: strict upper-triangle entries ``U[0, 1) * 2 pi``
    (``init_scale``), generator ``U - U^T``. ``b = 8`` is the paper's best (LieRE_8);
    ``b = head_dim`` is dense (LieRE_64). Positions default to LieRE's ``linspace(0, S/S0, S)``.

    Parameters: ``generator_entries`` ``(axes, H, m, b(b-1)/2)``: only the free entries, so the
    parameter count matches the paper's (64.5k for LieRE_8 on ViT-B).
    """

    name = "liere"
    default_convention = "liere"

    def __init__(self, head_dim: int, num_heads: int = 1, *, block_size: int = 8, axes: int = 2,
                 init_scale: float = 2 * math.pi, **options):
        super().__init__(head_dim, num_heads, block_size=block_size, axes=axes, **options)
        free = block_size * (block_size - 1) // 2
        self.generator_entries = nn.Parameter(
            torch.rand(axes, num_heads, self.num_blocks, free) * float(init_scale)
        )

    def block_generators(self):
        return skew_from_upper(self.generator_entries, self.block_size)


class ComRoPEAP(BlockRotary):
    """ComRoPE-AP, "axial partition" (Yu et al. 2025, prop. 2, eq. 8).

    Block ``j`` belongs to axis ``j mod axes`` alone (blocks interleave across axes, as in the
    official ``ComRoPEAPAttention``); the generators of different axes act on disjoint blocks and
    therefore commute. Block ``j`` of head ``h`` is ``P_hj - P_hj^T`` with ``P ~ N(0, init_std^2)``;
    ``init_std=0`` starts at the identity rotation (ComRoPE's choice for fine-tuning). Positions
    default to patch centres in (0, 1); prefix tokens (CLS) default to the image centre, rotated.

    Parameters: ``angle_matrices`` ``(H, m, b, b)``.
    """

    name = "comrope-ap"
    default_convention = "centre"
    default_prefix_position = "centre"  # ComRoPE rotates CLS as a patch at the image centre

    def __init__(self, head_dim: int, num_heads: int = 1, *, block_size: int = 8, axes: int = 2,
                 init_std: float = 1.0, **options):
        super().__init__(head_dim, num_heads, block_size=block_size, axes=axes, **options)
        self.angle_matrices = nn.Parameter(
            torch.randn(num_heads, self.num_blocks, block_size, block_size) * float(init_std)
        )
        owner = torch.arange(self.num_blocks) % axes
        mask = (owner == torch.arange(axes).unsqueeze(1)).float()  # (axes, m)
        self.register_buffer("axis_mask", mask.view(axes, 1, self.num_blocks, 1, 1), persistent=False)

    def block_generators(self):
        P = self.angle_matrices
        return self.axis_mask * (P - P.transpose(-1, -2)).unsqueeze(0)

    def commuting_factors(self, pos):
        # Block j turns with its own axis only: t_j(p) = p[axis(j)].
        P = self.angle_matrices.double()
        scale = pos.double() @ self.axis_mask.view(self.axes, self.num_blocks).double()  # (N, m)
        return P - P.mT, scale.T.unsqueeze(0)


class ComRoPELD(BlockRotary):
    """ComRoPE-LD, "linearly dependent" (Yu et al. 2025, prop. 3, eq. 10).

    Every axis scales one shared skew block: ``B_ij = theta_ij (P_j - P_j^T)``. Multiples of one
    matrix commute, so the encoding is exactly relative, yet every block sees every axis (oblique
    directions, like Mixed RoPE; ``b = 2`` *is* Mixed RoPE). ``P ~ N(0, init_std^2)`` per head;
    ``theta ~ N(0, 1)`` per axis and block, shared across heads, as in the official
    ``ComRoPELDAttention`` (the paper writes one ``theta`` per axis).

    Parameters: ``angle_matrices`` ``(H, m, b, b)`` and ``axis_scales`` ``(axes, m)``.
    """

    name = "comrope-ld"
    default_convention = "centre"
    default_prefix_position = "centre"  # ComRoPE rotates CLS as a patch at the image centre

    def __init__(self, head_dim: int, num_heads: int = 1, *, block_size: int = 8, axes: int = 2,
                 init_std: float = 1.0, **options):
        super().__init__(head_dim, num_heads, block_size=block_size, axes=axes, **options)
        self.angle_matrices = nn.Parameter(
            torch.randn(num_heads, self.num_blocks, block_size, block_size) * float(init_std)
        )
        self.axis_scales = nn.Parameter(torch.randn(axes, self.num_blocks))

    def block_generators(self):
        P = self.angle_matrices
        skew = (P - P.transpose(-1, -2)).unsqueeze(0)  # (1, H, m, b, b)
        return self.axis_scales.view(self.axes, 1, self.num_blocks, 1, 1) * skew

    def commuting_factors(self, pos):
        # Every axis scales block j's one skew matrix: t_j(p) = sum_c theta_cj p_c.
        P = self.angle_matrices.double()
        scale = pos.double() @ self.axis_scales.double()  # (N, m)
        return P - P.mT, scale.T.unsqueeze(0)
