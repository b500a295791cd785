"""Rotations from the exponential map of block-diagonal generators: LieRE and ComRoPE.

``R(p) = exp(sum_i p_i A_i)`` with skew-symmetric ``A_i`` made of ``m = d/b`` blocks of size
``b x b``. The exponential of a block-diagonal matrix is block-diagonal, so the fast path
exponentiates the ``b x b`` blocks (:func:`ropelib.linalg.expm`, float32, once per call for
queries and keys together) and applies them blockwise (:func:`rotate_blocks`).

* ``liere`` (Ostmeier et al. 2025): the blocks are free. For ``b >= 3`` they generally do not
  commute, and the encoding is not exactly relative. ``b = 2`` is Mixed RoPE.
* ``comrope-ap`` and ``comrope-ld`` (Yu et al. 2025): the blocks are constrained to commute
  (ComRoPE Theorem 1: then and only then ``R(p)^T R(p') = R(p' - p)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..linalg import block_diagonal, expm, skew_from_upper
from .base import RotaryEncoding, _is_int
from .kernels import rotate_blocks


class BlockRotary(RotaryEncoding):
    """Shared machinery: block generators ``(axes, H, m, b, b)`` -> ``expm`` -> :func:`rotate_blocks`.

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

    def _rotation_table(self, pos):
        blocks = self.block_generators().to(pos.dtype)
        return expm(torch.einsum("nc,chmij->hnmij", pos, blocks))  # (H, N, m, b, b)

    def _rotate_with(self, x, blocks):
        return rotate_blocks(x, blocks)

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
