"""Rotations in independent 2D planes: RoPE 1D, Axial, Uniform and Mixed RoPE.

Each of the ``d/2`` planes ``k`` of a head turns by the angle ``omega_k . p``: a frequency
*vector* ``omega_k`` (one entry per position axis) dotted with the position. The variants differ
only in which vectors they use:

* ``rope1d``: ``omega_k = base^(-2k/d)`` on a single axis (RoFormer, Su et al. 2021, eq. 15).
* ``axial``: the first ``d/4`` planes turn with x, the last ``d/4`` with y, with magnitudes
  ``theta^(-4t/d)``, ``theta = 100`` (rope-vit, Heo et al. 2024, eq. 12).
* ``uniform``: axial with one frequency for every plane (A Circular Argument, sec. 4).
* ``mixed``: every plane has a learnable 2D vector, initialised per head as axial rotated by a
  random angle (rope-vit eq. 14).

Planar rotations commute, so ``R(p)^T R(p') = R(p' - p)``: all four are exactly relative.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..positions import position_step
from .base import RotaryEncoding, check_init
from .kernels import LAYOUTS, pair_channels, rotate_planes


class PlanarRotary(RotaryEncoding):
    """Shared machinery: frequency vectors -> angles -> cos/sin -> :func:`rotate_planes`.

    Args:
        layout: ``"adjacent"`` (pairs ``(2k, 2k+1)``, default, as rope-vit and timm) or
            ``"half"`` (pairs ``(k, k + d/2)``). The two are equal up to a fixed permutation of
            the channels (see :func:`ropelib.encodings.kernels.pair_channels`).
    """

    def __init__(self, head_dim: int, num_heads: int = 1, *, layout: str = "adjacent", **base):
        super().__init__(head_dim, num_heads, **base)
        if layout not in LAYOUTS:
            raise ValueError(f"{self.name}: layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout

    def frequency_vectors(self) -> torch.Tensor:
        """``(H or 1, d/2, axes)``: the frequency vector of every plane."""
        raise NotImplementedError

    def _rotation_table(self, pos):
        freqs = self.frequency_vectors().to(pos.dtype)
        angles = torch.einsum("nc,hkc->hnk", pos, freqs)  # (H, N, d/2)
        with torch.no_grad():
            return angles, (angles.cos(), angles.sin())

    def _rotate_with(self, x, table):
        angles, cos_sin = table
        return rotate_planes(x, angles, self.layout, cos_sin)

    def generators(self) -> torch.Tensor:
        freqs = self.frequency_vectors().expand(self.num_heads, -1, -1)  # (H, d/2, axes)
        first, second = pair_channels(self.head_dim, self.layout)
        A = freqs.new_zeros(self.axes, self.num_heads, self.head_dim, self.head_dim)
        per_axis = freqs.permute(2, 0, 1)  # (axes, H, d/2)
        # exp(theta * J) with J = [[0, -1], [1, 0]] turns (x0, x1) to (x0 c - x1 s, x1 c + x0 s).
        A[:, :, second, first] = per_axis
        A[:, :, first, second] = -per_axis
        return A

    def extra_repr(self) -> str:
        return super().extra_repr() + f", layout={self.layout!r}"


def _rope_magnitudes(count: int, theta: float, exponent_scale: float) -> torch.Tensor:
    """``theta^(-exponent_scale * t)`` for ``t = 0 .. count-1``."""
    t = torch.arange(count, dtype=torch.float64)
    return (theta ** (-exponent_scale * t)).to(torch.float32)


class RoPE1D(PlanarRotary):
    """RoFormer's RoPE on a 1D sequence (Su et al. 2021, eq. 15), positions ``(N, 1)``.

    ``omega_k = base^(-2k/d)``, ``k = 0 .. d/2-1``. With ``learnable=True`` every head learns its
    own frequencies (initialised at these): this is exactly 1D LieRE up to a change of basis
    (Theorem 1 of A Circular Argument; :func:`ropelib.linalg.rope_canonical_form`).

    Parameters: ``frequencies`` ``(H, d/2)`` if learnable, else a fixed ``(1, d/2)`` buffer.
    """

    name = "rope1d"
    axes = 1

    def __init__(self, head_dim: int, num_heads: int = 1, *, base: float = 10000.0, learnable: bool = False,
                 **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(2, "channels rotate in pairs")
        if not base > 0:
            raise ValueError(f"{self.name}: base must be positive, got {base!r}")
        self.base = float(base)
        self.learnable = bool(learnable)
        freqs = _rope_magnitudes(head_dim // 2, self.base, 2.0 / head_dim).unsqueeze(0)
        if self.learnable:
            self.frequencies = nn.Parameter(freqs.repeat(num_heads, 1))
        else:
            self.register_buffer("frequencies", freqs, persistent=False)

    def frequency_vectors(self):
        return self.frequencies.unsqueeze(-1)


class AxialRoPE(PlanarRotary):
    """RoPE-Axial (Heo et al. 2024, eq. 12): half the planes see x, half see y.

    Planes ``t < d/4`` turn by ``omega_t * p_x``, planes ``d/4 + t`` by ``omega_t * p_y``, with
    ``omega_t = theta^(-4t/d)`` and ``theta = 100`` (rope-vit's ViT models; 1 down to about
    0.013 rad per patch for ``d = 64``). ``learnable=True`` gives "Learned Axial RoPE" (A Circular
    Argument): every (head, axis, plane) frequency becomes a parameter, initialised at these
    (``init="uniform"`` draws them U[0, 1) instead, as the authors' public code does).

    A Circular Argument's Axial RoPE is this encoding with ``theta = 10`` on ``circular`` positions:
    its ``omega_t = 100^(-2t/d)`` per quadruple equals ``10^(-4t/d)`` (the authors' code,
    ChasevdG/CARE ``Axial_RoPE``, lays the channels out as here: x planes first, adjacent pairs).

    Parameters: ``frequencies`` ``(H, 2, d/4)`` (x row, y row) if learnable, else a ``(1, 2, d/4)``
    buffer.
    """

    name = "axial"

    def __init__(self, head_dim: int, num_heads: int = 1, *, theta: float = 100.0, learnable: bool = False,
                 init: str = "fixed", **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(4, "x and y each need head_dim/4 rotation planes")
        if not theta > 0:
            raise ValueError(f"{self.name}: theta must be positive, got {theta!r}")
        self.theta = float(theta)
        self.learnable = bool(learnable)
        self.init = check_init(init, self.name, self.learnable)
        magnitudes = _rope_magnitudes(head_dim // 4, self.theta, 4.0 / head_dim)
        freqs = torch.stack((magnitudes, magnitudes)).unsqueeze(0)  # (1, 2, d/4): x row, y row
        if self.learnable:
            start = torch.rand(num_heads, 2, head_dim // 4) if init == "uniform" else freqs.repeat(num_heads, 1, 1)
            self.frequencies = nn.Parameter(start)
        else:
            self.register_buffer("frequencies", freqs, persistent=False)

    def frequency_vectors(self):
        return _axial_vectors(self.frequencies)


def _axial_vectors(frequencies: torch.Tensor) -> torch.Tensor:
    """``(H, 2, d/4)`` per-axis frequencies to ``(H, d/2, 2)`` vectors: x on the first d/4 planes,
    y on the last d/4 (rope-vit's ``compute_axial_cis``)."""
    fx, fy = frequencies.unbind(1)
    zero = torch.zeros_like(fx)
    return torch.stack((torch.cat((fx, zero), -1), torch.cat((zero, fy), -1)), dim=-1)


class UniformRoPE(PlanarRotary):
    """Uniform-frequency RoPE (A Circular Argument, sec. 4): axial with one frequency for all planes.

    An ablation: it tests whether a *spread* of frequencies matters. ``frequency`` chooses the one
    frequency; the paper's text and the authors' code disagree:

    * ``"one-turn"`` (default; the paper's text, "one rotation cycle across the entire image"):
      ``omega = 2 pi / (S0 * step)`` with ``step`` the patch spacing of the convention, so every
      patch of the training image has its own angle. In the paper's ``circular`` convention
      (positions spanning ``2 pi`` per image) that is ``omega = 1`` whatever the grid; other
      conventions need ``train_grid``.
    * ``"care"``: ``omega = 1/pi``, the value in the authors' public code (ChasevdG/CARE,
      ``Axial_RoPE(uniform_freq=True)``): 2 radians, a third of a turn, across a (-pi, pi) image.
    * a positive number: that frequency, in radians per unit of position.

    Buffer: ``frequencies`` ``(1, 2, d/4)``, laid out as axial's.
    """

    name = "uniform"
    default_convention = "circular"

    def __init__(self, head_dim: int, num_heads: int = 1, *, frequency: float | str = "one-turn", **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(4, "x and y each need head_dim/4 rotation planes")
        if frequency == "one-turn" or frequency is None:
            per_axis = self._one_turn_frequencies()
        elif frequency == "care":
            per_axis = (1 / math.pi, 1 / math.pi)
        elif isinstance(frequency, str) or isinstance(frequency, bool) or not frequency > 0:
            raise ValueError(
                f"{self.name}: frequency must be 'one-turn', 'care' or a positive number, got {frequency!r}"
            )
        else:
            per_axis = (float(frequency), float(frequency))
        self.frequency = per_axis
        freqs = torch.tensor(per_axis, dtype=torch.float32).view(1, 2, 1).repeat(1, 1, head_dim // 4)
        self.register_buffer("frequencies", freqs, persistent=False)

    def frequency_vectors(self):
        return _axial_vectors(self.frequencies)

    def _one_turn_frequencies(self) -> tuple[float, float]:
        if self.convention == "circular":
            return (1.0, 1.0)
        if self.train_grid is None:
            raise ValueError(
                f"{self.name}: with convention {self.convention!r} the frequency depends on the training "
                "grid; pass train_grid=(h0, w0) (or frequency=...)"
            )
        h0, w0 = self.train_grid
        return tuple(2 * math.pi / (s * position_step(self.convention, s)) for s in (w0, h0))


class MixedRoPE(PlanarRotary):
    """RoPE-Mixed (Heo et al. 2024, eq. 14): a learnable 2D frequency vector per plane and head.

    Plane ``k`` of head ``h`` turns by ``omega_hk . p = omega^x_hk p_x + omega^y_hk p_y``. Init as in
    rope-vit's ``init_random_2d_freqs``: magnitudes ``theta^(-4t/d)`` (``theta = 10``, ``t < d/4``);
    per head one angle ``phi ~ U[0, 2 pi)``; planes ``t`` point along ``phi``, planes ``d/4 + t``
    along ``phi + pi/2``. At init each head is an axial RoPE turned by ``phi``; training then
    moves every vector freely, and the encoding stays exactly relative because the angle is
    linear in ``p``.

    Parameters: ``frequencies`` ``(H, d/2, 2)``, excluded from weight decay.
    """

    name = "mixed"
    learnable = True

    def __init__(self, head_dim: int, num_heads: int = 1, *, theta: float = 10.0, **options):
        super().__init__(head_dim, num_heads, **options)
        self._require_divisible(4, "the init splits the head_dim/2 planes into two perpendicular halves")
        if not theta > 0:
            raise ValueError(f"{self.name}: theta must be positive, got {theta!r}")
        self.theta = float(theta)
        magnitudes = _rope_magnitudes(head_dim // 4, self.theta, 4.0 / head_dim)  # (d/4,)
        phi = torch.rand(num_heads, 1) * 2 * math.pi
        angles = torch.cat((phi.expand(-1, head_dim // 4), (phi + math.pi / 2).expand(-1, head_dim // 4)), -1)
        mags = torch.cat((magnitudes, magnitudes))
        self.frequencies = nn.Parameter(torch.stack((mags * angles.cos(), mags * angles.sin()), dim=-1))

    def frequency_vectors(self):
        return self.frequencies
