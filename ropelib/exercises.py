"""Self-checks for the chapters' exercises: call one with your answer to see whether it is right.

Each check runs your function on fresh random inputs, compares it with ropelib's own version,
prints a one-line verdict and returns ``True``; a wrong answer raises :class:`ExerciseError`
(an ``AssertionError``) saying what differs, so a notebook cell turns red.

>>> from ropelib import exercises
>>> exercises.check_sincos_1d(my_sincos_1d)
sincos_1d: correct (3 cases)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .encodings import build_encoding
from .positions import patch_positions


class ExerciseError(AssertionError):
    """Your answer differs from the expected one; the message says how."""


def _compare(name: str, got, expected: torch.Tensor, case: str, atol=1e-5, rtol=1e-5) -> None:
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: expected a tensor for {case}, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise ExerciseError(f"{name}: for {case} the shape is {tuple(got.shape)}, expected {tuple(expected.shape)}")
    if not torch.allclose(got.double(), expected.double(), atol=atol, rtol=rtol):
        worst = (got.double() - expected.double()).abs().max().item()
        raise ExerciseError(f"{name}: wrong values for {case} (largest difference {worst:.3g})")


def _passed(name: str, cases: int) -> bool:
    print(f"{name}: correct ({cases} cases)")
    return True


# -- chapter 1 -------------------------------------------------------------------------------------

def check_attention(fn: Callable) -> bool:
    """``fn(q, k, v)``: softmax attention for ``(..., N, d)`` tensors, without a mask."""
    g = torch.Generator().manual_seed(1)
    cases = [(2, 3, 5, 4), (1, 1, 7, 8), (4, 9, 16)]
    for shape in cases:
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        _compare("attention", fn(q, k, v), F.scaled_dot_product_attention(q, k, v), f"shape {shape}")
    return _passed("attention", len(cases))


def sincos_1d_reference(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MAE's 1D embedding: ``[sin(p w_k), cos(p w_k)]`` with ``w_k = temperature^(-k/(dim/2))``."""
    k = torch.arange(dim // 2, dtype=torch.float64)
    angles = positions.double().unsqueeze(-1) * temperature ** (-k / (dim / 2))
    return torch.cat((angles.sin(), angles.cos()), dim=-1).float()


def check_sincos_1d(fn: Callable) -> bool:
    """``fn(positions, dim)`` -> ``(N, dim)``: sines then cosines, ``w_k = 10000^(-k/(dim/2))``."""
    cases = [(torch.arange(7.0), 8), (torch.arange(14.0), 64), (torch.tensor([0.5, 3.0, -2.0]), 16)]
    for positions, dim in cases:
        _compare("sincos_1d", fn(positions, dim), sincos_1d_reference(positions, dim),
                 f"{len(positions)} positions, dim={dim}")
    return _passed("sincos_1d", len(cases))


# -- chapter 2 -------------------------------------------------------------------------------------

def check_rope_1d(fn: Callable, layout: str = "adjacent") -> bool:
    """``fn(x, positions, base)``: RoPE of ``x`` ``(B, H, N, d)`` at ``positions`` ``(N,)``."""
    g = torch.Generator().manual_seed(2)
    cases = [(2, 1, 5, 8, 10000.0), (1, 3, 9, 16, 100.0), (3, 2, 4, 32, 10000.0)]
    for B, H, N, d, base in cases:
        x = torch.randn(B, H, N, d, generator=g)
        positions = torch.randn(N, generator=g) * 5
        enc = build_encoding("rope1d", head_dim=d, num_heads=H, base=base, layout=layout)
        _compare(f"rope_1d ({layout})", fn(x, positions, base), enc.rotate(x, positions.unsqueeze(-1)),
                 f"x of shape {(B, H, N, d)}, base={base:g}")
    return _passed(f"rope_1d ({layout})", len(cases))


def check_relative(score_fn: Callable, axes: int = 1, trials: int = 20) -> bool:
    """``score_fn(q, k, p, p_prime)`` -> scores ``(...)``; passes if shifting both positions by the
    same offset never changes them (i.e. the score depends on ``p_prime - p`` only)."""
    g = torch.Generator().manual_seed(3)
    for trial in range(trials):
        q, k = torch.randn(2, 16, generator=g)
        p, p_prime, shift = (torch.randn(axes, generator=g) * 4 for _ in range(3))
        a, b = score_fn(q, k, p, p_prime), score_fn(q, k, p + shift, p_prime + shift)
        if not torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1e-4, rtol=1e-4):
            raise ExerciseError(f"relative: trial {trial}: shifting both positions by {shift.tolist()} "
                                f"changed the score from {float(a):.4f} to {float(b):.4f}")
    return _passed("relative", trials)


# -- chapter 3 -------------------------------------------------------------------------------------

def check_axial(fn: Callable) -> bool:
    """``fn(x, positions, theta)``: rope-vit's axial RoPE of ``x`` ``(B, H, N, d)`` at ``(N, 2)`` positions."""
    g = torch.Generator().manual_seed(4)
    cases = [(2, 1, (3, 4), 8, 100.0), (1, 2, (5, 5), 16, 100.0), (1, 1, (2, 7), 32, 10.0)]
    for B, H, grid, d, theta in cases:
        pos = patch_positions(*grid)
        x = torch.randn(B, H, pos.shape[0], d, generator=g)
        enc = build_encoding("axial", head_dim=d, num_heads=H, theta=theta)
        _compare("axial", fn(x, pos, theta), enc.rotate(x, pos), f"grid {grid}, d={d}, theta={theta:g}")
    return _passed("axial", len(cases))


# -- chapters 4, 6, 7: parameter counts ------------------------------------------------------------

def count_position_parameters(name: str, head_dim: int, num_heads: int, depth: int, **options) -> int:
    """Position-encoding parameters of a ViT with one encoding per layer."""
    enc = build_encoding(name, head_dim=head_dim, num_heads=num_heads, **options)
    return depth * sum(p.numel() for p in enc.parameters())


def check_parameter_count(answer: int, name: str, head_dim: int, num_heads: int, depth: int, **options) -> bool:
    """Your count of the position parameters of a ViT (``depth`` layers, one encoding each)."""
    expected = count_position_parameters(name, head_dim, num_heads, depth, **options)
    if int(answer) != expected:
        hint = "too many" if answer > expected else "too few"
        raise ExerciseError(f"parameter count: {answer} is {hint} for {name} with head_dim={head_dim}, "
                            f"{num_heads} heads, depth {depth}{', ' + str(options) if options else ''}")
    return _passed("parameter count", 1)


# -- chapters 5-7: generators ----------------------------------------------------------------------

def check_commuting(generators: torch.Tensor, expect: bool = True) -> bool:
    """``generators`` ``(k, d, d)`` skew-symmetric; passes if they pairwise commute (``expect=True``)
    or if some pair does not (``expect=False``)."""
    A = torch.as_tensor(generators).double()
    if not torch.allclose(A, -A.transpose(-1, -2), atol=1e-6):
        raise ExerciseError("commuting: the generators are not skew-symmetric (A^T = -A)")
    worst = 0.0
    for i in range(A.shape[0]):
        for j in range(i + 1, A.shape[0]):
            c = A[i] @ A[j] - A[j] @ A[i]
            worst = max(worst, c.norm().item() / max(A[i].norm().item() * A[j].norm().item(), 1e-12))
    commute = worst < 1e-6
    if commute != expect:
        raise ExerciseError(f"commuting: largest relative commutator norm {worst:.3g}: the generators "
                            f"{'commute' if commute else 'do not commute'}")
    return _passed("commuting", 1)


def check_rope_equation(rotation: Callable, axes: int = 2, trials: int = 10) -> bool:
    """``rotation(p)`` -> ``(d, d)`` for a position ``(axes,)``; passes if ``R(x)^T R(y) = R(y - x)``."""
    g = torch.Generator().manual_seed(5)
    for trial in range(trials):
        x, y = (torch.randn(axes, generator=g, dtype=torch.float64) for _ in range(2))
        lhs = rotation(x).double().T @ rotation(y).double()
        rhs = rotation(y - x).double()
        if not torch.allclose(lhs, rhs, atol=1e-5):
            raise ExerciseError(f"RoPE equation: fails at trial {trial} (difference "
                                f"{(lhs - rhs).abs().max().item():.3g})")
    return _passed("RoPE equation", trials)


def wavelength_in_patches(frequency: float) -> float:
    """Patches per full turn of a plane turning ``frequency`` radians per patch."""
    return 2 * math.pi / frequency
