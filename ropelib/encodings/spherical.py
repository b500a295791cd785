"""Spherical RoPE (A Circular Argument, van de Geijn et al. 2025, sec. 4, fig. 2, app. F).

The head is cut into ``T = d/3`` triplets of contiguous channels ``(3t, 3t+1, 3t+2)``. Each
triplet is turned on the sphere by two Euler rotations with angles ``alpha = omega_t p_x`` and
``beta = omega_t p_y``. The order matters (the generators do not commute), and the paper and the
authors' code disagree on it; both are offered, as ``order``:

* ``"xy"`` (default; the paper's Fig. 2 caption, "x first, then y"): a *roll* by ``alpha``
  turning components (1, 2), then a *yaw* by ``beta`` turning components (0, 1)::

      R_t(p) = Yaw(beta) @ Roll(alpha)

* ``"yx"`` (the authors' public code, GitHub ChasevdG/CARE, ``Spherical_RoPE.apply_rope``): first
  components (0, 2) turn by ``beta``, then components (1, 2) by ``alpha``.

The two are the same encoding of the transposed image: swapping ``p_x`` and ``p_y`` and relabelling
each triplet's channels by a fixed signed permutation turns one into the other (tested).

Frequencies ``omega_t = theta^(-2t/d)``, ``theta = 100``, ``t = 0 .. d/3 - 1``, ``d`` the head
dimension: the paper's ``omega_d = 1/100^(2d/D)`` as the authors' code evaluates it (for
``d = 63``: 1 down to about 0.054 rad per unit of position; positions span (-pi, pi) per training
image, the ``circular`` convention).

Spherical RoPE is not exactly relative: ``R(p)^T R(p')`` is not a function of ``p' - p`` (the
commutator of the two generators is the third rotation generator). The paper's point is that it
trains as well as Mixed RoPE regardless.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import RotaryEncoding, check_init
from .kernels import rotate_blocks

# so(3) generators on a triplet (a, b, c): exp(alpha * ROLL) turns (b, c), exp(beta * YAW) turns (a, b),
# exp(beta * PITCH) turns (a, c) (c <- c cos + a sin): the authors' code's y rotation.
ROLL = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
YAW = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
PITCH = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])

ORDERS = ("xy", "yx")


class SphericalRoPE(RotaryEncoding):
    """Spherical RoPE: triplets rolled with ``p_x``, then yawed with ``p_y`` (``order="xy"``), or
    the authors' code's y-first form (``order="yx"``); see the module docstring.

    ``learnable=True`` gives "Learned Spherical RoPE": every (head, axis, triplet) frequency is a
    parameter. We initialise them at the fixed values; the authors' code draws them U[0, 1) (the
    paper does not say), which the ``init="uniform"`` option reproduces. Positions default to
    the paper's ``circular`` convention.

    Parameters: ``frequencies`` ``(H, 2, T)`` if learnable, else a ``(1, 2, T)`` buffer.
    """

    name = "spherical"
    default_convention = "circular"

    def __init__(self, head_dim: int, num_heads: int = 1, *, theta: float = 100.0, order: str = "xy",
                 learnable: bool = False, init: str = "fixed", **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(3, "channels rotate in triplets")
        if not theta > 0:
            raise ValueError(f"{self.name}: theta must be positive, got {theta!r}")
        if order not in ORDERS:
            raise ValueError(f"{self.name}: order must be one of {ORDERS}, got {order!r}")
        self.theta = float(theta)
        self.order = order
        self.learnable = bool(learnable)
        self.init = check_init(init, self.name, self.learnable)
        triplets = head_dim // 3
        t = torch.arange(triplets, dtype=torch.float64)
        magnitudes = (self.theta ** (-2 * t / head_dim)).to(torch.float32)
        freqs = torch.stack((magnitudes, magnitudes)).unsqueeze(0)  # (1, 2, T)
        if self.learnable:
            start = torch.rand(num_heads, 2, triplets) if init == "uniform" else freqs.repeat(num_heads, 1, 1)
            self.frequencies = nn.Parameter(start)
        else:
            self.register_buffer("frequencies", freqs, persistent=False)

    def _rotation_table(self, pos):
        freqs = self.frequencies.to(pos.dtype)
        alpha = pos[:, 0].view(1, -1, 1) * freqs[:, 0].unsqueeze(1)  # (H, N, T)
        beta = pos[:, 1].view(1, -1, 1) * freqs[:, 1].unsqueeze(1)
        ca, sa, cb, sb = alpha.cos(), alpha.sin(), beta.cos(), beta.sin()
        zero = torch.zeros_like(ca)
        # The products written out: cheaper than two 3x3 products per token.
        if self.order == "xy":  # Yaw(beta) @ Roll(alpha)
            rows = (
                torch.stack((cb, -sb * ca, sb * sa), -1),
                torch.stack((sb, cb * ca, -cb * sa), -1),
                torch.stack((zero, sa, ca), -1),
            )
        else:  # Roll(alpha) @ Pitch(beta), the authors' code
            rows = (
                torch.stack((cb, zero, -sb), -1),
                torch.stack((-sa * sb, ca, -sa * cb), -1),
                torch.stack((ca * sb, sa, ca * cb), -1),
            )
        return torch.stack(rows, dim=-2)  # (H, N, T, 3, 3)

    def _rotate_with(self, x, blocks):
        return rotate_blocks(x, blocks)

    def generators(self) -> torch.Tensor:
        freqs = self.frequencies.expand(self.num_heads, -1, -1)  # (H, 2, T)
        eye = torch.eye(self.head_dim // 3, dtype=freqs.dtype, device=freqs.device)
        out = []
        for axis, unit in ((0, ROLL), (1, YAW if self.order == "xy" else PITCH)):
            unit = unit.to(freqs)
            # block diagonal of omega_t * unit, as a Kronecker product per head
            blocks = torch.einsum("ht,tu,ij->htiuj", freqs[:, axis], eye, unit)
            out.append(blocks.reshape(self.num_heads, self.head_dim, self.head_dim))
        return torch.stack(out)

    def _exp_generators(self, pos, generators):
        # Order matters: "xy" turns with p_x first, then p_y; "yx" the other way round.
        about_x = torch.linalg.matrix_exp(pos[:, 0].view(1, -1, 1, 1) * generators[0].unsqueeze(1))
        about_y = torch.linalg.matrix_exp(pos[:, 1].view(1, -1, 1, 1) * generators[1].unsqueeze(1))
        return about_y @ about_x if self.order == "xy" else about_x @ about_y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", order={self.order!r}"
