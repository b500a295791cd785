"""Spherical RoPE (A Circular Argument, van de Geijn et al. 2025, sec. 4, fig. 2, app. F).

The head is cut into ``T = d/3`` triplets. Each triplet is turned on the sphere by two Euler
rotations: first a *roll* by ``alpha = omega^x_t p_x`` about its first axis (turning components
1 and 2), then a *yaw* by ``beta = omega^y_t p_y`` about its last axis (turning components 0
and 1)::

    R_t(p) = Yaw(beta) @ Roll(alpha)

The two generators do not commute (their commutator is the third rotation generator), so
``R(p)^T R(p')`` is *not* a function of ``p' - p``: Spherical RoPE is not exactly relative, the
paper's point being that it works as well as Mixed RoPE regardless.

Our reading where the paper's formulas did not survive extraction (see the reference notes):
the axis assignment above, and frequencies ``omega_t = theta^(-t/T)`` with ``theta = 100``,
spanning the same range as Axial RoPE's.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import RotaryEncoding
from .kernels import rotate_blocks

# so(3) generators on a triplet (a, b, c): exp(alpha * ROLL) turns (b, c), exp(beta * YAW) turns (a, b).
ROLL = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
YAW = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


class SphericalRoPE(RotaryEncoding):
    """Spherical RoPE: triplets rolled with ``p_x``, then yawed with ``p_y``.

    ``learnable=True`` gives "Learned Spherical RoPE": every (head, axis, triplet) frequency is a
    parameter, initialised at the fixed values. Positions default to the paper's ``circular``
    convention.

    Parameters: ``frequencies`` ``(H, 2, T)`` if learnable, else a ``(1, 2, T)`` buffer.
    """

    name = "spherical"
    default_convention = "circular"

    def __init__(self, head_dim: int, num_heads: int = 1, *, theta: float = 100.0, learnable: bool = False,
                 **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(3, "channels rotate in triplets")
        if not theta > 0:
            raise ValueError(f"{self.name}: theta must be positive, got {theta!r}")
        self.theta = float(theta)
        self.learnable = bool(learnable)
        triplets = head_dim // 3
        t = torch.arange(triplets, dtype=torch.float64)
        magnitudes = (self.theta ** (-t / triplets)).to(torch.float32)
        freqs = torch.stack((magnitudes, magnitudes)).unsqueeze(0)  # (1, 2, T)
        if self.learnable:
            self.frequencies = nn.Parameter(freqs.repeat(num_heads, 1, 1))
        else:
            self.register_buffer("frequencies", freqs, persistent=False)

    def _rotation_table(self, pos):
        freqs = self.frequencies.to(pos.dtype)
        alpha = pos[:, 0].view(1, -1, 1) * freqs[:, 0].unsqueeze(1)  # (H, N, T)
        beta = pos[:, 1].view(1, -1, 1) * freqs[:, 1].unsqueeze(1)
        ca, sa, cb, sb = alpha.cos(), alpha.sin(), beta.cos(), beta.sin()
        zero = torch.zeros_like(ca)
        # Yaw(beta) @ Roll(alpha), written out: cheaper than two 3x3 products per token.
        rows = (
            torch.stack((cb, -sb * ca, sb * sa), -1),
            torch.stack((sb, cb * ca, -cb * sa), -1),
            torch.stack((zero, sa, ca), -1),
        )
        return torch.stack(rows, dim=-2)  # (H, N, T, 3, 3)

    def _rotate_with(self, x, blocks):
        return rotate_blocks(x, blocks)

    def generators(self) -> torch.Tensor:
        freqs = self.frequencies.expand(self.num_heads, -1, -1)  # (H, 2, T)
        eye = torch.eye(self.head_dim // 3, dtype=freqs.dtype, device=freqs.device)
        out = []
        for axis, unit in ((0, ROLL), (1, YAW)):
            unit = unit.to(freqs)
            # block diagonal of omega_t * unit, as a Kronecker product per head
            blocks = torch.einsum("ht,tu,ij->htiuj", freqs[:, axis], eye, unit)
            out.append(blocks.reshape(self.num_heads, self.head_dim, self.head_dim))
        return torch.stack(out)

    def _exp_generators(self, pos, generators):
        # Order matters: roll with p_x first, then yaw with p_y.
        roll = torch.linalg.matrix_exp(pos[:, 0].view(1, -1, 1, 1) * generators[0].unsqueeze(1))
        yaw = torch.linalg.matrix_exp(pos[:, 1].view(1, -1, 1, 1) * generators[1].unsqueeze(1))
        return yaw @ roll
