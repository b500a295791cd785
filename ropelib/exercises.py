"""Checks for the chapters' exercises: self-checks for the student, graded checks for the teacher.

**Self-check.** Call one with your answer. It runs your function on fresh random inputs, compares it
with ropelib's own version, prints a one-line verdict and returns ``True``; a wrong answer raises
:class:`ExerciseError` (an ``AssertionError``) that says what is wrong, where (the first wrong
entry, expected and got) and, where it recognises the mistake, what to change:

>>> from ropelib import exercises
>>> exercises.check_sincos_1d(my_sincos_1d)
sincos_1d: correct (3 cases)

**Grading.** :data:`EXERCISES` lists every exercise of the book in order: the names its answer
defines (a function ``rope_half``, a value ``answer``...), the names of the chapter it reads
(``tokens``, ``A_x``...), the check that grades them and its points, or, for an exercise without
one, why. ``python -m ropelib.grade NOTEBOOK`` runs them on a student's notebook (see
:mod:`ropelib.grade`). NumPy arrays, lists and numbers are accepted wherever a tensor is
expected; anything else, or a wrong shape, gets a message rather than an exception.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import math
import shlex
import statistics
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .encodings import build_encoding
from .positions import patch_positions


class ExerciseError(AssertionError):
    """Your answer differs from the expected one; the message says how."""


def _fail(message: str):
    raise ExerciseError(message)


# -- turning answers into tensors and numbers, with messages instead of exceptions -----------------

def _tensor(value, what: str) -> torch.Tensor:
    """``value`` (a tensor, a NumPy array, a number or a nested list) as a float64 CPU tensor."""
    if value is None:
        _fail(f"{what} is None: did a function forget to `return` its result?")
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        value = [v.detach().cpu().numpy() for v in value]
    try:
        t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        _fail(f"{what} should be a tensor (or a NumPy array), got {type(value).__name__}")
    if t.is_complex():
        _fail(f"{what} is complex: give real numbers (a plane's two channels as two real entries)")
    return t.cpu().double()


def _number(value, what: str) -> float:
    t = _tensor(value, what)
    if t.numel() != 1:
        _fail(f"{what} should be one number, got {t.numel()} of them (shape {tuple(t.shape)})")
    return t.item()


def _integer(value, what: str) -> int:
    x = _number(value, what)
    if x != round(x):
        _fail(f"{what} should be a whole number, got {x}")
    return int(round(x))


def _matrices(value, what: str, count: int | None = None) -> torch.Tensor:
    """A stack ``(k, d, d)`` of square matrices (a tensor, or a list of matrices)."""
    A = _tensor(value, what)
    if A.dim() != 3 or A.shape[1] != A.shape[2] or (count and A.shape[0] != count):
        _fail(f"{what} should be {count or 'k'} square matrices, shape ({count or 'k'}, d, d); "
              f"got shape {tuple(A.shape)}")
    return A


def _call(fn, name: str, args: tuple, case: str):
    """``fn(*args)``; an error in it becomes a message naming the inputs."""
    if not callable(fn):
        _fail(f"`{name}` should be a function, got {type(fn).__name__}")
    try:
        return fn(*args)
    except ExerciseError:
        raise
    except Exception as error:
        shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else repr(a) for a in args)
        _fail(f"{name} raised {type(error).__name__} for {case}: {error} "
              f"(it was called with torch tensors of shapes {shapes})")


def _where(got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, axes=None) -> str:
    """``first wrong entry at token 2, channel 5: expected 0.1234, got -0.5678 (7 of 40 entries wrong)``."""
    wrong = ~torch.isclose(got, expected, atol=atol, rtol=rtol)
    index = tuple(int(i) for i in wrong.nonzero()[0])
    names = axes[-len(index):] if axes and len(axes) >= len(index) else None
    at = ", ".join(f"{n} {i}" for n, i in zip(names, index)) if names else f"index {index}"
    return (f"first wrong entry at {at}: expected {expected[index].item():.6g}, got {got[index].item():.6g} "
            f"({int(wrong.sum())} of {wrong.numel()} entries wrong)")


def _compare(name: str, got, expected: torch.Tensor, case: str, hints=(), hint: str = "", axes=None,
             atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Raise an :class:`ExerciseError` unless ``got`` is close to ``expected``. ``hints``: pairs
    (message, function giving the result of a known mistake); a result equal to one names it."""
    got = _tensor(got, f"{name}'s result for {case}")
    expected = expected.detach().double()
    if got.shape != expected.shape:
        _fail(f"{name}: for {case} the result has shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    if torch.allclose(got, expected, atol=atol, rtol=rtol):
        return
    for message, mistake in hints:
        other = mistake().detach().double()
        if other.shape == got.shape and torch.allclose(got, other, atol=atol, rtol=rtol):
            _fail(f"{name}: wrong values for {case}: {message}")
    _fail(f"{name}: wrong values for {case}; {_where(got, expected, atol, rtol, axes)}"
          + (f". Hint: {hint}" if hint else ""))


def _close(got: float, expected: float, rtol: float = 0.02, atol: float = 1e-9) -> bool:
    return abs(got - expected) <= atol + rtol * abs(expected)


def _name(fn, default: str) -> str:
    name = getattr(fn, "__name__", default)
    return default if name == "<lambda>" else name


def _passed(name: str, cases: int) -> bool:
    print(f"{name}: correct ({cases} cases)")
    return True


TOKENS = ("batch", "head", "token", "channel")


def _rotate_pairs(x: torch.Tensor, angles: torch.Tensor, layout: str = "adjacent") -> torch.Tensor:
    """``x`` ``(..., N, d)`` turned plane by plane by ``angles`` ``(N, d/2)``: planes are the pairs
    ``(2i, 2i+1)`` (``adjacent``) or ``(i, i + d/2)`` (``half``). For the mistakes the checks name."""
    x = x.double()
    a, b = (x[..., 0::2], x[..., 1::2]) if layout == "adjacent" else x.chunk(2, dim=-1)
    c, s = angles.cos(), angles.sin()
    a, b = a * c - b * s, b * c + a * s
    return torch.stack((a, b), -1).flatten(-2) if layout == "adjacent" else torch.cat((a, b), -1)


# -- chapter 1 -------------------------------------------------------------------------------------

def check_attention(fn: Callable) -> bool:
    """``fn(q, k, v)``: softmax attention for ``(..., N, d)`` tensors, without a mask."""
    name = _name(fn, "attention")
    g = torch.Generator().manual_seed(1)
    cases = [(2, 3, 5, 4), (1, 1, 7, 8), (4, 9, 16)]
    for shape in cases:
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        logits, d = q @ k.mT, shape[-1]
        _compare(name, _call(fn, name, (q, k, v), f"shape {shape}"), F.scaled_dot_product_attention(q, k, v),
                 f"q, k, v of shape {shape}", axes=("batch", "head", "query", "channel"),
                 hint="softmax(q k^T / sqrt(d)) v, the softmax over the last axis (the keys)", hints=[
                     ("the logits are not scaled: divide q k^T by sqrt(d) before the softmax",
                      lambda: logits.softmax(-1) @ v),
                     ("the logits are divided by d: divide them by sqrt(d)", lambda: (logits / d).softmax(-1) @ v),
                     ("the softmax normalises over the queries (dim=-2): each query's weights over the keys "
                      "should sum to 1 (dim=-1)", lambda: (logits / math.sqrt(d)).softmax(-2) @ v)])
    return _passed(name, len(cases))


def sincos_1d_reference(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MAE's 1D embedding: ``[sin(p w_k), cos(p w_k)]`` with ``w_k = temperature^(-k/(dim/2))``."""
    k = torch.arange(dim // 2, dtype=torch.float64)
    angles = positions.double().unsqueeze(-1) * temperature ** (-k / (dim / 2))
    return torch.cat((angles.sin(), angles.cos()), dim=-1).float()


def check_sincos_1d(fn: Callable) -> bool:
    """``fn(positions, dim)`` -> ``(N, dim)``: sines then cosines, ``w_k = 10000^(-k/(dim/2))``."""
    name = _name(fn, "sincos_1d")
    cases = [(torch.arange(7.0), 8), (torch.arange(14.0), 64), (torch.tensor([0.5, 3.0, -2.0]), 16)]
    for positions, dim in cases:
        k = torch.arange(dim // 2, dtype=torch.float64)
        p = positions.double()[:, None]
        angles, wrong = p * 10000.0 ** (-k / (dim / 2)), p * 10000.0 ** (-k / dim)
        _compare(name, _call(fn, name, (positions, dim), f"dim={dim}"), sincos_1d_reference(positions, dim),
                 f"{len(positions)} positions, dim={dim}", axes=("position", "channel"), atol=1e-4,
                 hint="channel k < dim/2 is sin(p w_k), channel dim/2 + k is cos(p w_k)", hints=[
                     ("cosines come first: put the sines in the first half",
                      lambda: torch.cat((angles.cos(), angles.sin()), -1)),
                     ("sines and cosines are interleaved: all sines first, then all cosines",
                      lambda: torch.stack((angles.sin(), angles.cos()), -1).flatten(-2)),
                     ("w_k = 10000^(-k/dim): the exponent is k/(dim/2)",
                      lambda: torch.cat((wrong.sin(), wrong.cos()), -1))])
    return _passed(name, len(cases))


def check_unshuffled(unshuffled, self_attention: Callable, tokens: torch.Tensor, perm: torch.Tensor) -> bool:
    """Exercise 1.1: ``unshuffled``, the output for the shuffled tokens put back in order with the
    inverse permutation, equals ``self_attention(tokens)``."""
    out = self_attention(tokens).detach()
    shuffled = self_attention(tokens[perm]).detach()
    _compare("unshuffled", unshuffled, out, "the chapter's tokens", axes=("token", "channel"), atol=1e-5, hints=[
        ("it is still the shuffled output: index it with the inverse permutation torch.argsort(perm)",
         lambda: shuffled),
        ("you indexed with perm again, which shuffles twice: the inverse permutation is torch.argsort(perm)",
         lambda: shuffled[perm])],
        hint="self_attention(tokens[perm])[torch.argsort(perm)]")
    return _passed("unshuffled", 1)


# -- chapter 2 -------------------------------------------------------------------------------------

def check_rope_1d(fn: Callable, layout: str = "adjacent") -> bool:
    """``fn(x, positions, base)``: RoPE of ``x`` ``(B, H, N, d)`` at ``positions`` ``(N,)``."""
    name = f"{_name(fn, 'rope_1d')} ({layout})"
    other = "half" if layout == "adjacent" else "adjacent"
    pairs = {"adjacent": "adjacent channels (x0, x1), (x2, x3), ...", "half": "channel i with channel i + d/2"}
    g = torch.Generator().manual_seed(2)
    cases = [(2, 1, 5, 8, 10000.0), (1, 3, 9, 16, 100.0), (3, 2, 4, 32, 10000.0)]
    for B, H, N, d, base in cases:
        x = torch.randn(B, H, N, d, generator=g)
        positions = torch.randn(N, generator=g) * 5
        enc = build_encoding("rope1d", head_dim=d, num_heads=H, base=base, layout=layout)
        column = positions.unsqueeze(-1)
        i = torch.arange(d // 2, dtype=torch.float64)
        _compare(name, _call(fn, name, (x, positions, base), f"base={base:g}"), enc.rotate(x, column),
                 f"x of shape {(B, H, N, d)}, base={base:g}", axes=TOKENS,
                 hint=f"plane i turns by position * base^(-2i/d) and pairs {pairs[layout]}", hints=[
                     (f"it pairs {pairs[other]}; this exercise pairs {pairs[layout]}",
                      lambda: build_encoding("rope1d", head_dim=d, num_heads=H, base=base, layout=other)
                      .rotate(x, column)),
                     ("it rotates the other way: the first channel of a plane becomes x_a cos - x_b sin, "
                      "the second x_b cos + x_a sin", lambda: enc.rotate(x, -column)),
                     ("it ignores `base` (it uses 10000 whatever base it is given)",
                      lambda: build_encoding("rope1d", head_dim=d, num_heads=H, layout=layout).rotate(x, column)),
                     ("the frequencies are base^(-i/d); RoPE's are base^(-2i/d)",
                      lambda: _rotate_pairs(x, positions.double()[:, None] * base ** (-i / d), layout))])
    return _passed(name, len(cases))


def check_relative(score_fn: Callable, axes: int = 1, trials: int = 20) -> bool:
    """``score_fn(q, k, p, p_prime)`` -> scores ``(...)``; passes if shifting both positions by the
    same offset never changes them (the score depends on ``p_prime - p`` only), and moving one
    position does change them."""
    name = _name(score_fn, "score")
    g = torch.Generator().manual_seed(3)
    moved = False
    for trial in range(trials):
        q, k = torch.randn(2, 16, generator=g)
        p, p_prime, shift = (torch.randn(axes, generator=g) * 4 for _ in range(3))
        case = f"trial {trial}"
        a = _number(_call(score_fn, name, (q, k, p, p_prime), case), f"{name}'s result")
        b = _number(_call(score_fn, name, (q, k, p + shift, p_prime + shift), case), f"{name}'s result")
        c = _number(_call(score_fn, name, (q, k, p, p_prime + shift), case), f"{name}'s result")
        if not _close(a, b, 1e-4, 1e-4):
            _fail(f"relative: {case}: shifting both positions by {[round(s, 3) for s in shift.tolist()]} "
                  f"changed the score from {a:.4f} to {b:.4f}: it depends on the positions themselves, "
                  "not only on p' - p. Hint: rotate q by its position and k by its own, with the same rule")
        moved |= not _close(a, c, 1e-4, 1e-4)
    if not moved:
        _fail("relative: the score never changes when p' - p changes: it is relative only because it "
              "ignores the positions. Rotate q and k by angles proportional to their positions")
    return _passed("relative", trials)


def check_score_2d(score: Callable) -> bool:
    """Exercise 2.1: ``score(q, k, p, p_prime)`` for 2D ``q, k`` and positions ``(1,)`` is
    ``q^T R(theta p)^T R(theta p') k = q^T R(theta (p' - p)) k`` for some ``theta != 0``."""
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def s(q, k, p, p_prime):
        case = f"q = {q.tolist()}, k = {k.tolist()}, p = {p:g}, p' = {p_prime:g}"
        return _number(_call(score, "score", (q, k, torch.tensor([float(p)]), torch.tensor([float(p_prime)])),
                             case), "score's result")

    check_relative(lambda q, k, p, pp: score(q[:2].contiguous(), k[:2].contiguous(), p, pp))
    if not _close(s(e1, e1, 0.7, 0.7), 1.0, 1e-4, 1e-4):
        _fail(f"score: at equal positions the two rotations should cancel, so score(e1, e1, p, p) = 1; "
              f"got {s(e1, e1, 0.7, 0.7):.4f}")
    small = math.atan2(-s(e1, e2, 0.0, 0.01), s(e1, e1, 0.0, 0.01)) / 0.01
    one = math.atan2(-s(e1, e2, 0.0, 1.0), s(e1, e1, 0.0, 1.0))
    theta = one + 2 * math.pi * round((small - one) / (2 * math.pi))
    g = torch.Generator().manual_seed(21)
    for _ in range(10):
        q, k = torch.randn(2, 2, generator=g)
        p, p_prime = (torch.randn(1, generator=g).item() * 3 for _ in range(2))
        a = theta * (p_prime - p)
        R = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        expected, got = (q @ R @ k).item(), s(q, k, p, p_prime)
        if not _close(got, expected, 1e-3, 1e-4):
            _fail(f"score: it is relative but not a rotation of the 2D vectors: with theta = {theta:.4f} "
                  f"(read off offset 1) q^T R(theta (p' - p)) k = {expected:.4f} for p = {p:.3f}, "
                  f"p' = {p_prime:.3f}, got {got:.4f}. Turn q by R(theta p) and k by R(theta p')")
    return _passed("score", 10)


def check_far(q_far, k_far) -> bool:
    """Exercise 2.4: ``q_far``, ``k_far`` (64 numbers each) whose RoPE logit (base 10000) is larger
    with 200 positions between them than at the same position."""
    q, k = (_tensor(v, n).flatten() for v, n in ((q_far, "q_far"), (k_far, "k_far")))
    for t, n in ((q, "q_far"), (k, "k_far")):
        if t.numel() != 64:
            _fail(f"{n} has {t.numel()} entries; it should be one vector in R^64")
    enc = build_encoding("rope1d", head_dim=64, num_heads=1)

    def logit(m, n):
        at = lambda p: torch.tensor([[float(p)]], dtype=torch.float64)  # noqa: E731
        return (enc.rotate(q.view(1, 1, 1, 64), at(m)) * enc.rotate(k.view(1, 1, 1, 64), at(n))).sum().item()

    near, far, back = logit(0, 0), logit(0, 200), logit(200, 0)
    if max(far, back) > near + 1e-6:
        return _passed("q_far, k_far", 1)
    _fail(f"q_far, k_far: the logit with the key 200 positions after the query is {far:.4f} "
          f"(and {back:.4f} with it 200 before), not larger than at distance 0 ({near:.4f}). "
          "Hint: take any q and k = R(-200) q, the query turned back by 200 positions")


# -- chapter 3 -------------------------------------------------------------------------------------

def check_axial(fn: Callable) -> bool:
    """``fn(x, positions, theta)``: rope-vit's axial RoPE of ``x`` ``(B, H, N, d)`` at ``(N, 2)`` positions."""
    name = _name(fn, "axial")
    g = torch.Generator().manual_seed(4)
    cases = [(2, 1, (3, 4), 8, 100.0), (1, 2, (5, 5), 16, 100.0), (1, 1, (2, 7), 32, 10.0)]
    for B, H, grid, d, theta in cases:
        pos = patch_positions(*grid)
        x = torch.randn(B, H, pos.shape[0], d, generator=g)
        enc = build_encoding("axial", head_dim=d, num_heads=H, theta=theta)
        p = pos.double()
        one_d = theta ** (-2 * torch.arange(d // 4, dtype=torch.float64) / d)
        _compare(name, _call(fn, name, (x, pos, theta), f"theta={theta:g}"), enc.rotate(x, pos),
                 f"grid {grid}, d={d}, theta={theta:g}", axes=TOKENS,
                 hint="plane t < d/4 turns by theta^(-4t/d) p_x, plane d/4 + t by theta^(-4t/d) p_y; "
                      "planes are adjacent pairs", hints=[
                     ("it rotates the halves' pairs (x_i, x_{i+d/2}); rope-vit's axial RoPE rotates adjacent "
                      "pairs (x0, x1), (x2, x3), ...",
                      lambda: build_encoding("axial", head_dim=d, num_heads=H, theta=theta, layout="half")
                      .rotate(x, pos)),
                     ("x and y are swapped: the first d/4 planes turn with p_x (column 0 of the positions)",
                      lambda: enc.rotate(x, pos.flip(-1))),
                     ("it rotates the other way: the first channel of a plane becomes x_a cos - x_b sin",
                      lambda: enc.rotate(x, -pos)),
                     ("it ignores `theta` (it uses 100 whatever theta it is given)",
                      lambda: build_encoding("axial", head_dim=d, num_heads=H).rotate(x, pos)),
                     ("the frequencies are 1D RoPE's theta^(-2t/d); axial RoPE's d/4 planes per axis use "
                      "theta^(-4t/d)",
                      lambda: _rotate_pairs(x, torch.cat((p[:, :1] * one_d, p[:, 1:] * one_d), -1)))])
    return _passed(name, len(cases))


def check_slow_planes(slow_14, slow_24) -> bool:
    """Exercise 3.3: how many of the 16 x-planes (d = 64, theta = 100) turn by less than a quarter
    turn across a 14-patch row, and across a 24-patch row."""
    omega = build_encoding("axial", head_dim=64).frequencies[0, 0].double()
    for value, name, patches in ((slow_14, "slow_14", 14), (slow_24, "slow_24", 24)):
        got = _integer(value, name)
        expected = int(((patches - 1) * omega < math.pi / 2).sum())
        if got == expected:
            continue
        if got == int((patches * omega < math.pi / 2).sum()):
            why = f"a {patches}-patch row spans offsets 0 to {patches - 1}, so a plane turns by {patches - 1} ω_t"
        elif got == 16 - expected:
            why = "you counted the planes that turn by more than a quarter turn"
        else:
            why = f"count the planes t with {patches - 1} ω_t < π/2, ω_t = 100^(-4t/64), t = 0..15"
        _fail(f"{name} is {got}: {why}")
    return _passed("slow planes", 2)


def _permutation(value, name: str, d: int) -> torch.Tensor:
    p = _tensor(value, name).flatten()
    if p.numel() != d or not torch.equal(p, p.round()):
        _fail(f"{name} should be {d} whole numbers (a channel permutation), got {p.numel()} "
              f"{'numbers' if torch.equal(p, p.round()) else 'of which some are not whole'}")
    p = p.long()
    counts = torch.bincount(p.clamp(0, d - 1), minlength=d)
    if (p < 0).any() or (p >= d).any() or (counts != 1).any():
        missing = (counts == 0).nonzero().flatten()[:3].tolist()
        _fail(f"{name} is not a permutation of 0..{d - 1}: it misses {missing}"
              + (f" and repeats {(counts > 1).nonzero().flatten()[:3].tolist()}" if (counts > 1).any() else ""))
    return p


def check_yfirst_perm(perm) -> bool:
    """Exercise 3.4: ``perm`` with ``yfirst(x[..., perm]) == axial(x)[..., perm]`` (d = 64), where
    ``yfirst(x, pos) = axial(x, pos.flip(-1))``."""
    p = _permutation(perm, "perm", 64)
    enc = build_encoding("axial", head_dim=64)
    g = torch.Generator().manual_seed(31)
    x, pos = torch.randn(1, 1, 12, 64, generator=g).double(), torch.randn(12, 2, generator=g).double() * 4
    _compare("perm", enc.rotate(x[..., p], pos.flip(-1)), enc.rotate(x, pos)[..., p],
             "yfirst(x[..., perm]) against axial(x)[..., perm]", axes=TOKENS,
             hint="y-first turns its first half of the planes with y, where axial puts x: perm moves the "
                  "second half of the channels (32-63) in front of the first, pairs intact")
    return _passed("perm", 1)


# -- chapter 4 -------------------------------------------------------------------------------------

def check_mixed_as_axial(as_mixed) -> bool:
    """Exercise 4.1: a ``mixed`` encoding (6 heads, head_dim 64) equal to ``axial`` with theta = 100."""
    axial = build_encoding("axial", head_dim=64, num_heads=6)
    expected = axial.frequency_vectors().expand(6, -1, -1).double()
    f = _tensor(getattr(as_mixed, "frequencies", as_mixed), "as_mixed.frequencies")
    if f.shape != expected.shape:
        _fail(f"as_mixed.frequencies has shape {tuple(f.shape)}: build it with "
              "ropelib.build_encoding('mixed', head_dim=64, num_heads=6), frequencies (6, 32, 2)")
    theta10 = build_encoding("axial", head_dim=64, num_heads=6, theta=10.0).frequency_vectors()
    _compare("as_mixed.frequencies", f, expected, "the (head, plane) frequency vectors",
             axes=("head", "plane", "axis (0: x, 1: y)"), hints=[
                 ("these are axial's vectors for theta = 10 (the magnitudes of Mixed's phi = 0 init): "
                  "ropelib's axial uses theta = 100", lambda: theta10.expand(6, -1, -1)),
                 ("x and y are swapped: the first d/4 planes should be (ω_t, 0), turning with x",
                  lambda: expected.flip(-1))],
             hint="copy axial's frequency_vectors(): (ω_t, 0) for the first 16 planes, (0, ω_t) for the rest")
    if hasattr(as_mixed, "rotate"):
        g = torch.Generator().manual_seed(41)
        x, pos = torch.randn(1, 6, 20, 64, generator=g), torch.randn(20, 2, generator=g) * 5
        _compare("as_mixed", as_mixed.rotate(x, pos), axial.rotate(x, pos), "random queries", axes=TOKENS,
                 atol=1e-4, rtol=1e-4, hint="build as_mixed with the default layout (adjacent pairs)")
    return _passed("as_mixed", 1)


def check_anti_diagonal(one) -> bool:
    """Exercise 4.2: plane 0 of a one-head Mixed RoPE, ``one``, draws stripes along the anti-diagonal
    with a wavelength of 4 patches: its frequency vector is ``±(1, 1) / sqrt(2) * 2 pi / 4``."""
    f = _tensor(getattr(one, "frequencies", one), "one.frequencies")
    if f.dim() == 0 or f.shape[-1] != 2:
        _fail(f"one.frequencies has shape {tuple(f.shape)}: give a Mixed RoPE encoding (or plane 0's vector (2,))")
    w = f.reshape(-1, 2)[0]
    norm = w.norm().item()
    if abs(w[0] - w[1]) > 1e-4 * max(norm, 1.0):
        diagonal = abs(w[0] + w[1]) < 1e-4 * norm
        along = " (yours is along (1, -1), which draws them along the diagonal)" if diagonal else ""
        _fail(f"plane 0's frequency vector is ({w[0]:.4f}, {w[1]:.4f}). Its stripes run perpendicular to it, "
              f"so stripes along the anti-diagonal (Δx = -Δy) need a vector along (1, 1){along}")
    if abs(norm - math.pi / 2) > 1e-3:
        unit = " (4 is the wavelength; the frequency is 2π / wavelength)" if abs(norm - 4) < 1e-3 else ""
        _fail(f"plane 0's frequency vector has length {norm:.4f}; a wavelength of 4 patches needs "
              f"2π/4 ≈ 1.5708{unit}")
    return _passed("one", 1)


def count_position_parameters(name: str, head_dim: int, num_heads: int, depth: int, **options) -> int:
    """Position-encoding parameters of a ViT with one encoding per layer."""
    enc = build_encoding(name, head_dim=head_dim, num_heads=num_heads, **options)
    return depth * sum(p.numel() for p in enc.parameters())


def check_parameter_count(answer, name: str, head_dim: int, num_heads: int, depth: int, **options) -> bool:
    """Your count of the position parameters of a ViT (``depth`` layers, one encoding each)."""
    answer = _integer(answer, "the parameter count")
    expected = count_position_parameters(name, head_dim, num_heads, depth, **options)
    if answer == expected:
        return _passed("parameter count", 1)
    setting = f"{name} with head_dim={head_dim}, {num_heads} heads, depth {depth}"
    setting += f", {options}" if options else ""
    if answer > 0 and expected % answer == 0:
        factor = expected // answer
        what = {depth: "one layer's count: every layer has its own encoding",
                num_heads: "one head's count: every head has its own parameters",
                depth * num_heads: "one head of one layer"}.get(factor, "count every layer and head")
        _fail(f"parameter count: {answer:,} is {factor} times too few for {setting} ({what})")
    if expected and answer % expected == 0:
        _fail(f"parameter count: {answer:,} is {answer // expected} times too many for {setting} "
              "(is something shared, or counted twice?)")
    _fail(f"parameter count: {answer:,} is too {'many' if answer > expected else 'few'} for {setting}")


def check_same_rotation(same_rotation) -> bool:
    """Exercise 4.4: two different patches of the 14 x 14 grid, as row-major indices ``(i, j)`` (or
    ``((x, y), (x', y'))``), that Uniform RoPE with ``frequency=2.0`` turns by the same rotation."""
    t = _tensor(same_rotation, "same_rotation")
    if t.shape == (2, 2):
        t = t[:, 1] * 14 + t[:, 0]
    if t.shape != (2,) or not torch.equal(t, t.round()):
        _fail(f"same_rotation should be two patch indices (i, j), row-major as positions(14, 14), "
              f"got shape {tuple(t.shape)}")
    i, j = (int(v) for v in t.tolist())
    if not (0 <= i < 196 and 0 <= j < 196) or i == j:
        _fail(f"same_rotation = ({i}, {j}): give two different patches, indices 0 to 195")
    enc = build_encoding("uniform", head_dim=8, num_heads=1, frequency=2.0)
    R = enc.matrix(enc.positions(14, 14)[[i, j]].double())[0]
    gap = (R[0] - R[1]).abs().max().item()
    if gap > 1e-6:
        _fail(f"patches {i} (x={i % 14}, y={i // 14}) and {j} (x={j % 14}, y={j // 14}) get different "
              f"rotations (largest difference {gap:.3f}). Hint: two turns across 14 patches repeat "
              "every 7 patches along a row or a column")
    return _passed("same_rotation", 1)


# -- chapter 5 -------------------------------------------------------------------------------------

L_ROLL = torch.tensor([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # turns (b, c)
L_YAW = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float64)  # turns (a, b)


def _roll(angle: float) -> torch.Tensor:
    return torch.linalg.matrix_exp(angle * L_ROLL)


def check_roll_yaw_commutator(my_commutator) -> bool:
    """Exercise 5.1: ``my_commutator`` ``(3, 3)``, [L_roll, L_yaw] = L_roll L_yaw - L_yaw L_roll."""
    expected = L_ROLL @ L_YAW - L_YAW @ L_ROLL
    _compare("my_commutator", my_commutator, expected, "[L_roll, L_yaw]", axes=("row", "column"), hints=[
        ("that is L_yaw L_roll - L_roll L_yaw: the commutator [A, B] is AB - BA", lambda: -expected),
        ("that is L_roll L_yaw alone: subtract L_yaw L_roll", lambda: L_ROLL @ L_YAW)],
        hint="rows and columns count from 0; multiply the chapter's two matrices out")
    return _passed("my_commutator", 1)


def check_same_axis(rotation: Callable) -> bool:
    """Exercise 5.2: ``rotation(p)`` ``(3, 3)`` for ``p = (p_x, p_y)`` is
    ``Roll(omega p_x) Roll(omega p_y) = Roll(omega (p_x + p_y))``: the chapter's roll (it turns
    channels (b, c) and keeps a) for both coordinates, with one frequency ``omega != 0``. An
    encoding that is relative in another way (a yaw, two frequencies) does not pass."""
    def R(p):
        M = _tensor(_call(rotation, "rotation", (torch.tensor(p, dtype=torch.float64),), f"p = {p}"),
                    f"rotation({p})")
        if M.shape != (3, 3):
            _fail(f"rotation({p}) has shape {tuple(M.shape)}; it should be one 3 x 3 matrix (one triplet)")
        return M

    eye, e0 = torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64)
    for p in ([0.9, 0.0], [0.0, 0.9]):
        M = R(p)
        if not torch.allclose(M.T @ M, eye, atol=1e-5):
            _fail(f"rotation({p}) is not a rotation: R^T R differs from I by {(M.T @ M - eye).abs().max():.3g}")
        if not (torch.allclose(M[:, 0], e0, atol=1e-5) and torch.allclose(M[0], e0, atol=1e-5)):
            axis = "x" if p[0] else "y"
            _fail(f"rotation({p}) moves channel a, so p_{axis} does not drive a roll (a roll turns (b, c) and "
                  "keeps a). The exercise rolls for both coordinates: Roll(ω p_x) Roll(ω p_y); is one "
                  "factor a yaw?")
    if not torch.allclose(R([0.9, 0.0]), R([0.0, 0.9]), atol=1e-5):
        _fail("rotation((0.9, 0)) differs from rotation((0, 0.9)): both coordinates should turn the roll "
              "with the same frequency ω (R(p) = Roll(ω p_x) Roll(ω p_y))")
    M = R([0.01, 0.0])
    omega = math.atan2(M[2, 1].item(), M[1, 1].item()) / 0.01
    if abs(omega) < 1e-6:
        _fail("rotation(p) does not turn at all: choose a frequency ω != 0")
    g = torch.Generator().manual_seed(51)
    for _ in range(5):
        p = (torch.randn(2, generator=g, dtype=torch.float64) * 2).tolist()
        expected = _roll(omega * (p[0] + p[1]))
        _compare("rotation", R(p), expected, f"p = ({p[0]:.3f}, {p[1]:.3f})", axes=("row", "column"),
                 atol=1e-5, hint=f"Roll(ω p_x) Roll(ω p_y) = Roll(ω (p_x + p_y)), here ω = {omega:.4f} "
                 "(read off rotation((0.01, 0)))")
    return _passed("rotation", 7)


def _spherical(x: torch.Tensor, pos: torch.Tensor, first: str, swap: bool = False) -> torch.Tensor:
    """Chapter 5's triplets: ``first="yaw"`` is Roll(ω p_x) Yaw(ω p_y) (yaw applied first),
    ``first="roll"`` the paper's Yaw(ω p_y) Roll(ω p_x); ``swap`` exchanges p_x and p_y."""
    d = x.shape[-1]
    omega = 100.0 ** (-2 * torch.arange(d // 3, dtype=torch.float64) / d)
    pos = pos.double().flip(-1) if swap else pos.double()
    alpha, beta = pos[:, :1] * omega, pos[:, 1:] * omega
    a, b, c = x.double().unflatten(-1, (-1, 3)).unbind(-1)
    for turn in ("yaw", "roll") if first == "yaw" else ("roll", "yaw"):
        if turn == "yaw":
            a, b = a * beta.cos() - b * beta.sin(), b * beta.cos() + a * beta.sin()
        else:
            b, c = b * alpha.cos() - c * alpha.sin(), c * alpha.cos() + b * alpha.sin()
    return torch.stack((a, b, c), -1).flatten(-2)


def check_yaw_first(yaw_first: Callable) -> bool:
    """Exercise 5.3: ``yaw_first(x, pos)``: every triplet ``(a, b, c)`` of ``x`` ``(..., N, 3T)``
    turned by ``Roll(ω_t p_x) Yaw(ω_t p_y)`` (yaw first, then roll), ``ω_t = 100^(-2t/d)``."""
    g = torch.Generator().manual_seed(52)
    cases = [(1, 1, 5, 6), (2, 3, 7, 63)]
    for B, H, N, d in cases:
        x, pos = torch.randn(B, H, N, d, generator=g), torch.randn(N, 2, generator=g) * 3
        _compare("yaw_first", _call(yaw_first, "yaw_first", (x, pos), f"d={d}"), _spherical(x, pos, "yaw"),
                 f"x of shape {(B, H, N, d)}", axes=TOKENS, atol=1e-4, rtol=1e-4, hints=[
                     ("it rolls first, then yaws: that is the paper's order, Yaw(ω p_y) Roll(ω p_x); this "
                      "order yaws (a, b) by ω p_y first", lambda: _spherical(x, pos, "roll")),
                     ("x and y are swapped: the yaw turns with p_y, the roll with p_x",
                      lambda: _spherical(x, pos, "yaw", swap=True))],
                 hint="yaw turns (a, b) by ω_t p_y; then roll turns (b, c) by ω_t p_x")
    return _passed("yaw_first", len(cases))


# -- chapter 6 -------------------------------------------------------------------------------------

def check_commuting(generators, expect: bool = True) -> bool:
    """``generators`` ``(k, d, d)`` skew-symmetric; passes if they pairwise commute (``expect=True``)
    or if some pair does not (``expect=False``)."""
    A = _matrices(generators, "the generators")
    if not torch.allclose(A, -A.transpose(-1, -2), atol=1e-6):
        g, i, j = (int(v) for v in torch.unravel_index((A + A.mT).abs().argmax(), A.shape))
        _fail(f"commuting: the generators are not skew-symmetric (A^T = -A): generator {g} has "
              f"{A[g, i, j]:.4g} at ({i}, {j}) and {A[g, j, i]:.4g} at ({j}, {i})")
    worst, pair = 0.0, (0, 0)
    for i in range(A.shape[0]):
        for j in range(i + 1, A.shape[0]):
            c = (A[i] @ A[j] - A[j] @ A[i]).norm().item() / max(A[i].norm().item() * A[j].norm().item(), 1e-12)
            worst, pair = max((worst, pair), (c, (i, j)))
    commute = worst < 1e-6
    if commute != expect:
        _fail(f"commuting: the largest relative commutator norm is {worst:.3g} (generators {pair}): the "
              f"generators {'commute' if commute else 'do not commute'}")
    return _passed("commuting", 1)


def _block_size(A: torch.Tensor) -> int:
    """The smallest ``b`` for which every matrix of ``A`` ``(k, d, d)`` is block-diagonal with
    ``b x b`` blocks (``d`` itself if none smaller)."""
    d = A.shape[-1]
    for b in range(1, d + 1):
        if d % b == 0:
            outside = A[:, ~torch.block_diag(*[torch.ones(b, b)] * (d // b)).bool()]
            if outside.numel() == 0 or outside.abs().max().item() < 1e-9:
                return b
    return d


def check_block_generators(block_generators) -> bool:
    """Exercise 6.1: two (or more) skew-symmetric block-diagonal generators that do not commute."""
    A = _matrices(block_generators, "block_generators")
    if not torch.allclose(A, -A.mT, atol=1e-6):
        check_commuting(A)  # names the entry that is not skew-symmetric
    b = _block_size(A)
    if b == A.shape[-1]:
        _fail(f"block_generators are not block-diagonal: no blocks smaller than {b} x {b}; build each "
              "with ropelib.linalg.block_diagonal (or torch.block_diag) from b x b blocks, b < d")
    try:
        check_commuting(A, expect=False)
    except ExerciseError as error:
        extra = (" 2 x 2 skew-symmetric blocks are all multiples of one matrix and always commute: "
                 "use blocks of size 3 or more" if b <= 2 else
                 " Draw the blocks at random (each B - B^T), not as multiples of one another")
        _fail(str(error).replace("commuting:", "block_generators:") + "." + extra)
    return True


def check_hidden(hidden, A_x, A_y) -> bool:
    """Exercise 6.2: ``hidden``: ``(U A_x U^T, U A_y U^T)`` for one random orthogonal ``U``; they
    still commute, so they still satisfy the RoPE equation."""
    A = torch.stack([_tensor(A_x, "the chapter's A_x"), _tensor(A_y, "the chapter's A_y")])
    H = _matrices(hidden, "hidden", 2)
    if H.shape != A.shape:
        _fail(f"hidden has shape {tuple(H.shape)}, expected {tuple(A.shape)}: (U A_x U^T, U A_y U^T)")
    if torch.allclose(H, A, atol=1e-6):
        _fail("hidden are A_x and A_y themselves: conjugate both by one random orthogonal U "
              "(U = torch.linalg.qr(torch.randn(d, d)).Q)")
    for i, axis in enumerate("xy"):
        if not torch.allclose(torch.linalg.svdvals(H[i]), torch.linalg.svdvals(A[i]), atol=1e-5, rtol=1e-5):
            _fail(f"hidden[{i}] is not U A_{axis} U^T for an orthogonal U (its singular values differ from "
                  f"A_{axis}'s): is U orthogonal? Take the Q of torch.linalg.qr")
    if not _close(torch.trace(H[0] @ H[1]).item(), torch.trace(A[0] @ A[1]).item(), 1e-5, 1e-6):
        _fail("hidden: each matrix is conjugated, but not by the same U: conjugate both by one U")
    check_commuting(H)
    return True


def check_ap_axial(ap2, perm) -> bool:
    """Exercise 6.3: ``ap2``, ComRoPE-AP with 2 x 2 blocks set to rope-vit's axial frequencies, and
    ``perm`` with ``ap2.rotate(x, p)[..., perm] == axial.rotate(x[..., perm], p)``."""
    if not (hasattr(ap2, "angle_matrices") and getattr(ap2, "block_size", None) == 2 and ap2.name == "comrope-ap"):
        _fail("ap2 should be a ComRoPE-AP encoding with 2 x 2 blocks: "
              "ropelib.build_encoding('comrope-ap', head_dim=d, num_heads=1, block_size=2)")
    d, H = ap2.head_dim, ap2.num_heads
    axial = build_encoding("axial", head_dim=d, num_heads=H)
    omega = axial.frequencies[0, 0].double()
    G = ap2.block_generators().detach().double()  # (2, H, d/2, 2, 2)
    for h in range(H):
        for block in range(d // 2):
            rate, expected = G[block % 2, h, block, 1, 0].item(), omega[block // 2].item()
            if not _close(rate, expected, 1e-5, 1e-6):
                way = (" (the wrong way: block l is P - P^T, so P_01 = -ω_t turns it forwards)"
                       if _close(rate, -expected, 1e-5, 1e-6) else "")
                _fail(f"ap2: head {h}, block {block} (axis {'xy'[block % 2]}) turns by {rate:.5f} rad per unit "
                      f"of position, axial's plane {block // 2} by ω = {expected:.5f}{way}")
    p = _permutation(perm, "perm", d)
    g = torch.Generator().manual_seed(63)
    x, pos = torch.randn(1, H, 10, d, generator=g), torch.randn(10, 2, generator=g)
    _compare("perm", ap2.rotate(x, pos).detach()[..., p], axial.rotate(x[..., p], pos), "random queries",
             axes=TOKENS, atol=1e-4, rtol=1e-4,
             hint="AP's blocks alternate x, y, x, y; axial has its d/4 x planes first: perm lists the "
                  "channels of AP's even blocks, then those of its odd blocks")
    return _passed("ap2, perm", 1)


# -- chapter 7 -------------------------------------------------------------------------------------

def check_rope_equation(rotation: Callable, axes: int = 2, trials: int = 10) -> bool:
    """``rotation(p)`` -> ``(d, d)`` for a position ``(axes,)``; passes if ``R(x)^T R(y) = R(y - x)``."""
    name = _name(rotation, "rotation")
    g = torch.Generator().manual_seed(5)
    for trial in range(trials):
        x, y = (torch.randn(axes, generator=g, dtype=torch.float64) for _ in range(2))
        Rx, Ry, Rd = (_tensor(_call(rotation, name, (p,), f"p = {p.tolist()}"), f"{name}'s matrix")
                      for p in (x, y, y - x))
        if Rx.dim() != 2 or Rx.shape[0] != Rx.shape[1]:
            _fail(f"RoPE equation: {name}(p) should be one square matrix, got shape {tuple(Rx.shape)}")
        lhs = Rx.T @ Ry
        if not torch.allclose(lhs, Rd, atol=1e-5):
            _fail(f"RoPE equation: R(x)^T R(y) != R(y - x) at x = {[round(v, 3) for v in x.tolist()]}, "
                  f"y = {[round(v, 3) for v in y.tolist()]}; {_where(lhs, Rd, 1e-5, 0, ('row', 'column'))}")
    return _passed("RoPE equation", trials)


def check_liere_relative(rel) -> bool:
    """Exercise 7.2: ``rel``, a LieRE encoding whose y-generator blocks are multiples of its
    x-generator blocks, so that it is exactly relative."""
    if getattr(rel, "name", None) != "liere":
        _fail("rel should be a LieRE encoding: ropelib.build_encoding('liere', head_dim=16, num_heads=1, "
              "block_size=4)")
    B = rel.block_generators().detach().double()  # (axes, H, m, b, b)
    for h, block in itertools.product(range(B.shape[1]), range(B.shape[2])):
        bx, by = B[0, h, block], B[1, h, block]
        scale = (bx * by).sum() / (bx * bx).sum().clamp_min(1e-30)
        if (by - scale * bx).abs().max() > 1e-6 * max(by.abs().max().item(), 1.0):
            _fail(f"rel: head {h}, block {block}: A_y's block is not a multiple of A_x's, so the generators "
                  "do not commute; set generator_entries[1] = generator_entries[0] * scale (one scale per "
                  "head and block)")
    for h in range(B.shape[1]):
        with contextlib.redirect_stdout(io.StringIO()):
            check_rope_equation(lambda p: rel.matrix(p.double().view(1, 2))[h, 0].detach())
    return _passed("rel", 1)


def check_liere_params(answer_8, answer_64) -> bool:
    """Exercise 7.3: LieRE's position parameters in a ViT-B for b = 8 and b = 64."""
    for value, b in ((answer_8, 8), (answer_64, 64)):
        try:
            check_parameter_count(value, "liere", 64, 12, 12, block_size=b)
        except ExerciseError as error:
            _fail(f"answer_{b}: {error}")
    return True


def check_defect_slope(defect_slope) -> bool:
    """Exercise 7.4: the log-log slope of ``|R(p)^T R(p + δ) - R(δ)|`` against ``|p|`` (δ fixed): 1."""
    s = _number(defect_slope, "defect_slope")
    if 0.8 < s < 1.2:
        return _passed("defect_slope", 1)
    why = ("a slope of 2 is what you get when δ grows with p; keep δ fixed and small" if 1.7 < s < 2.3 else
           "the defect does not grow: measure R(p)^T R(p + δ) - R(δ) for a LieRE head with non-commuting "
           "generators (init_scale around 1), p = direction * size" if abs(s) < 0.3 else
           "to leading order the defect is -[A·p, A·δ]/2, linear in |p|: use small sizes (|p| <= 0.1)")
    _fail(f"defect_slope is {s:.3f}, expected about 1: {why}")


# -- chapter 8 -------------------------------------------------------------------------------------

PREDICTED = {"liere (b=2)": ("liere", {"block_size": 2}), "comrope-ap (b=2)": ("comrope-ap", {"block_size": 2})}
WHY = {
    "commuting": "2 x 2 skew-symmetric blocks are multiples of one matrix, so blockwise generators commute",
    "relative": "commuting generators give an exactly relative encoding",
    "learnable": "both have trainable generator entries",
    "oblique": "a LieRE block has a generator for each axis on the same two channels; each ComRoPE-AP "
               "block belongs to one axis only",
}


def _structure(enc) -> dict:
    A = enc.generators().detach().double()[:, 0]
    size = ((A[0] @ A[1] - A[1] @ A[0]).norm() / (A[0].norm() * A[1].norm())).item()
    touched = A.abs().sum(-1) > 0
    return {"commuting": size < 1e-6, "relative": size < 1e-6, "learnable": any(True for _ in enc.parameters()),
            "oblique": bool((touched[0] & touched[1]).any())}


def check_prediction(prediction) -> bool:
    """Exercise 8.1: ``prediction``, ``{"liere (b=2)": {...}, "comrope-ap (b=2)": {...}}`` with the
    columns commuting, relative, learnable and oblique as ``True``/``False`` (or "yes"/"no")."""
    if not isinstance(prediction, dict):
        _fail(f"prediction should be a dict, got {type(prediction).__name__}")
    given = {str(k).replace(" ", "").lower(): v for k, v in prediction.items()}
    for label, (name, options) in PREDICTED.items():
        row = given.get(label.replace(" ", ""))
        if not isinstance(row, dict):
            _fail(f"prediction has no row {label!r} (a dict of the columns {', '.join(WHY)})")
        row = {str(k).lower(): v for k, v in row.items()}
        truth = _structure(build_encoding(name, head_dim=64, num_heads=6, **options))
        for column, expected in truth.items():
            if column not in row:
                _fail(f"prediction[{label!r}] has no {column!r}")
            value = row[column]
            value = value.strip().lower() in ("yes", "true", "y") if isinstance(value, str) else bool(value)
            if value != expected:
                _fail(f"prediction[{label!r}][{column!r}] is {'yes' if value else 'no'}; the computed row says "
                      f"{'yes' if expected else 'no'}: {WHY[column]}")
    return _passed("prediction", len(PREDICTED))


def _liere_change(scale: float) -> float:
    """Chapter 8's ``change_at``: the relative change of LieRE's (b = 8, 6 heads) logits under a
    2-patch shift, seed 0."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        enc = build_encoding("liere", head_dim=64, num_heads=6, init_scale=scale)
        q, k = torch.randn(2, 2, 6, 196, 64).unbind(0)
        pos = enc.positions(14, 14)
        moved = pos + 2 * (pos[1, 0] - pos[0, 0])
        before = enc.rotate(q, pos) @ enc.rotate(k, pos).mT
        after = enc.rotate(q, moved) @ enc.rotate(k, moved).mT
        return ((after - before).norm() / before.norm()).item()


def check_largest_scale(largest_scale) -> bool:
    """Exercise 8.3: the largest ``init_scale`` at which a 2-patch shift changes LieRE's logits by
    less than 1% (about 0.32; accepted within 15%, as other seeds and coarser bisections give)."""
    s = _number(largest_scale, "largest_scale")
    if not 0 < s < 2 * math.pi:
        _fail(f"largest_scale is {s:.4g}: it lies between 0 and the default 2π")
    below, above = _liere_change(s / 1.15), _liere_change(s * 1.15)
    if below >= 0.01:
        _fail(f"largest_scale is {s:.4f}, too large: already at {s / 1.15:.4f} the logits change by "
              f"{below:.2%} (more than 1%). Bisect: keep the lower end where the change is below 1%")
    if above < 0.01:
        _fail(f"largest_scale is {s:.4f}, too small: at {s * 1.15:.4f} the logits still change by only "
              f"{above:.2%}. Bisect further between it and 2π")
    return _passed("largest_scale", 1)


# -- chapters 9 to 13: numbers to compute, some from the chapter's committed results ---------------

def _numbers(value, what: str, count: int) -> list[float]:
    t = _tensor(value, what).flatten()
    if t.numel() != count:
        _fail(f"{what} should be {count} numbers, got {t.numel()}")
    return t.tolist()


def _check_numbers(name: str, got: list[float], expected: list[float], labels: list[str], rtol: float = 0.02,
                   atol: float = 1e-9, hints: Callable | None = None) -> None:
    for g, e, label in zip(got, expected, labels):
        if not _close(g, e, rtol, atol):
            hint = hints(g, e, label) if hints else ""
            _fail(f"{name}: {label} is {g:.4g}, expected {e:.4g}" + (f": {hint}" if hint else ""))


def check_chance_sd(chance_sd) -> bool:
    """Exercise 9.1: one standard deviation of the accuracy of a 1/8 guesser on 2,000 images, in points."""
    got, expected = _number(chance_sd, "chance_sd"), 100 * math.sqrt(0.125 * 0.875 / 2000)
    if not _close(got, expected):
        hint = ("that is a fraction: give it in percentage points (x 100)" if _close(got, expected / 100) else
                "that is the spread of the number of correct answers; divide by n" if _close(got, expected * 20) else
                "the accuracy is binomial: sqrt(p (1 - p) / n), in points")
        _fail(f"chance_sd is {got:.4g}, expected {expected:.4f} points: {hint}")
    return _passed("chance_sd", 1)


def check_paired_signs(same_sign, ours) -> bool:
    """Exercise 9.2: ``same_sign``, the labels among axial-learned, mixed and uniform whose accuracy
    minus axial's keeps its sign in every seed (from the chapter's ``ours``)."""
    if isinstance(same_sign, str) or not hasattr(same_sign, "__iter__"):
        _fail(f"same_sign should be a set of labels, e.g. {{'uniform'}}, got {type(same_sign).__name__}")
    got = {str(s) for s in same_sign}
    axial = {r["seed"]: r["top1"] for r in ours.get("axial", [])}
    expected, differences = set(), {}
    for label in ["axial-learned", "mixed", "uniform"]:
        d = [r["top1"] - axial[r["seed"]] for r in ours.get(label, []) if r["seed"] in axial]
        differences[label] = ", ".join(f"{v:+.1f}" for v in d)
        if len(d) >= 2 and len({v > 0 for v in d}) == 1:
            expected.add(label)
    for label in sorted(got - expected):
        _fail(f"same_sign: {label} - axial changes sign from seed to seed ({differences.get(label, 'no runs')})")
    for label in sorted(expected - got):
        _fail(f"same_sign: {label} - axial keeps its sign in every seed ({differences[label]}): include it")
    return _passed("same_sign", 1)


def check_command(command) -> bool:
    """Exercise 9.3: ``command``, the shell command that trains learned spherical RoPE with seed 3 on
    the synthetic recipe; parsed with the trainer's own parser."""
    from .config import ArgumentParser, add_arguments, from_arguments, load_recipe

    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if "ropelib.train" in words:
        words = words[words.index("ropelib.train") + 1:]
    parser = ArgumentParser(prog="python -m ropelib.train")
    add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            got = from_arguments(parser.parse_args(words)).to_dict()
    except SystemExit:
        _fail(f"command: the trainer's parser rejects it: {err.getvalue().strip()}")
    except (ValueError, FileNotFoundError, argparse.ArgumentError) as error:
        _fail(f"command: {error}")
    expected = load_recipe("synthetic-cpu", encoding="spherical", encoding_options={"learnable": True},
                           seed=3).to_dict()
    def flat(config):  # model fields as "model.encoding"
        return {**{k: v for k, v in config.items() if k != "model"},
                **{f"model.{k}": v for k, v in config["model"].items()}}

    got, expected = flat(got), flat(expected)
    for key in ["recipe", "model.encoding", "model.encoding_options", "seed"] + sorted(expected):
        if got.get(key) != expected[key]:
            _fail(f"command: {key} is {got.get(key)!r}, expected {expected[key]!r}"
                  + (": learned spherical needs --encoding-options '{learnable: true}'"
                     if key == "model.encoding_options" else ""))
    return _passed("command", 1)


def check_ape_std(ape_std, sizes) -> bool:
    """Exercise 9.4: the ``init_std`` at which a learned table is as large as the patch tokens
    (linear in ``init_std``: 0.02 over the chapter's ratio at 0.02)."""
    ratio = sizes["learned, std 0.02 (DeiT)"]["table / token"]
    got, expected = _number(ape_std, "ape_std"), 0.02 / ratio
    if not _close(got, expected, 0.05):
        hint = " (you multiplied by the ratio; divide by it)" if _close(got, 0.02 * ratio, 0.05) else ""
        _fail(f"ape_std is {got:.4g}, expected {expected:.4g}: the table's size is proportional to init_std, "
              f"and at 0.02 it is {ratio:.3g} times the tokens'{hint}")
    return _passed("ape_std", 1)


def check_turns(turns, encoding) -> bool:
    """Exercise 10.1: the turns axial RoPE's frequencies make across the 6-patch training image
    (from the chapter's ``encoding``): ``turns = (highest, lowest)``, or one per frequency."""
    if not hasattr(encoding, "frequency_vectors"):
        _fail("the chapter's `encoding` is no longer the model's axial encoding (a later cell rebinds the "
              "name?): rerun the chapter's cells up to the exercise")
    f = encoding.frequency_vectors()[..., 0].detach().double()
    f = f[f != 0]
    expected = [6 * f.max().item() / (2 * math.pi), 6 * f.min().item() / (2 * math.pi)]
    got = _tensor(turns, "turns").flatten()
    got = got.tolist() if got.numel() == 2 else _numbers([got.max(), got.min()] if got.numel() else [], "turns", 2)
    _check_numbers("turns", got, expected, ["the highest", "the lowest"],
                   hints=lambda g, e, _: "a turn is 2π: r = L ω / 2π" if _close(g, e * 2 * math.pi) else "")
    return _passed("turns", 2)


def _ranges(value, name: str, protocols: list[str], width: int) -> dict:
    if not isinstance(value, dict) or set(protocols) - set(value):
        _fail(f"{name} should be a dict with the keys {protocols}")
    return {p: _numbers(value[p], f"{name}[{p!r}]", width) for p in protocols}


def check_circular_ranges(circular_ranges) -> bool:
    """Exercise 10.2: ``{protocol: (min x, max x)}`` of a 12 x 12 grid, ``circular`` convention,
    trained on 6 x 6, for native, extrapolate and interpolate."""
    protocols = ["native", "extrapolate", "interpolate"]
    got = _ranges(circular_ranges, "circular_ranges", protocols, 2)
    for p in protocols:
        x = patch_positions(12, 12, "circular", train_grid=(6, 6), protocol=p)[:, 0].double()
        _check_numbers("circular_ranges", got[p], [x.min().item(), x.max().item()],
                       [f"the smallest x under {p}", f"the largest x under {p}"], rtol=0, atol=0.01)
    return _passed("circular_ranges", 3)


def check_budget(budget_epochs, paper, cpu, rows) -> bool:
    """Exercise 11.1: epochs of the paper's recipe that thirty minutes at our throughput buy, the
    cost per image scaled by the ratio of parameter counts."""
    from .vit import VisionTransformer

    got = _number(budget_epochs, "budget_epochs")

    def parameters(config):
        model = VisionTransformer(dataclasses.replace(config.model, num_classes=100))
        return sum(p.numel() for p in model.parameters())

    ratio = parameters(paper) / parameters(cpu)
    rate = statistics.median(r["throughput"] for r in rows.values()) if rows else 130.0
    expected = 30 * 60 * rate / ratio / 50_000
    if not _close(got, expected, 0.05):
        hint = ("without scaling by the parameter ratio" if _close(got, expected * ratio, 0.05) else
                "multiplied by the ratio instead of divided" if _close(got, expected * ratio ** 2, 0.05) else
                "that is images, not epochs (an epoch is 50,000 images)" if _close(got, expected * 50_000, 0.05)
                else f"30 minutes x {rate:.1f} images/s / {ratio:.1f} (the parameter ratio) / 50,000")
        _fail(f"budget_epochs is {got:.4g}, expected {expected:.4g}: {hint}")
    return _passed("budget_epochs", 1)


def _kendall_tau(a: dict, b: dict) -> float:
    items = sorted(set(a) & set(b))
    signs = [math.copysign(1, (a[i] - a[j]) * (b[i] - b[j])) for i, j in itertools.combinations(items, 2)
             if (a[i] - a[j]) * (b[i] - b[j]) != 0]
    return sum(signs) / math.comb(len(items), 2)


def check_tau_p_value(p_value, mine_top1, PAPER_CIFAR100) -> bool:
    """Exercise 11.2: the share of all orderings of the shared encodings whose Kendall tau against
    the paper's ranking is at least ours."""
    shared = sorted(set(mine_top1) & set(PAPER_CIFAR100))
    if len(shared) < 2:
        _fail("p_value: the chapter found fewer than two encodings shared with the paper; nothing to rank")
    observed = _kendall_tau(mine_top1, PAPER_CIFAR100)
    taus = [_kendall_tau(dict(zip(shared, order)), PAPER_CIFAR100)
            for order in itertools.permutations(range(len(shared)))]
    expected = sum(t >= observed - 1e-12 for t in taus) / len(taus)
    got = _number(p_value, "p_value")
    if not _close(got, expected, 1e-6, 1e-9):
        strict = sum(t > observed + 1e-12 for t in taus) / len(taus)
        hint = "count the orderings with tau >= ours, ties included" if _close(got, strict, 1e-6, 1e-9) else (
            f"enumerate all {len(taus)} orderings and count those with tau >= {observed:+.3f}")
        _fail(f"p_value is {got:.4g}, expected {expected:.4g}: {hint}")
    return _passed("p_value", 1)


def check_significant_pairs(significant_pairs, rows, n_test) -> bool:
    """Exercise 11.3: the pairs of our encodings whose accuracies differ by more than twice the
    binomial standard error of the difference, ``sqrt(pa (1 - pa) / n + pb (1 - pb) / n)``."""
    try:
        got = {frozenset(str(x) for x in pair) for pair in significant_pairs}
    except TypeError:
        _fail("significant_pairs should be a set of pairs of encoding names, e.g. {('axial', 'uniform')}")
    expected = set()
    for a, b in itertools.combinations(rows, 2):
        pa, pb = rows[a]["top1"] / 100, rows[b]["top1"] / 100
        if abs(pa - pb) > 2 * math.sqrt(pa * (1 - pa) / n_test + pb * (1 - pb) / n_test):
            expected.add(frozenset((a, b)))
    for pair in sorted(got - expected, key=sorted):
        _fail(f"significant_pairs: {' vs '.join(sorted(pair))} differ by less than 2 standard errors")
    for pair in sorted(expected - got, key=sorted):
        _fail(f"significant_pairs: {' vs '.join(sorted(pair))} differ by more than 2 standard errors: include it")
    return _passed("significant_pairs", 1)


def check_crop(crop_sizes, crop_shares) -> bool:
    """Exercise 12.1: for crop fractions 0.9 and 1.0, ``crop_sizes[c] = (width, height)`` of a
    500 x 375 photograph resized for a 384 px centre crop, and ``crop_shares[c]``, the share of it
    the crop keeps."""
    for name, value in (("crop_sizes", crop_sizes), ("crop_shares", crop_shares)):
        if not isinstance(value, dict) or not {0.9, 1.0} <= set(value):
            _fail(f"{name} should be a dict with the keys 0.9 and 1.0")
    for crop in (0.9, 1.0):
        short = round(384 / crop)
        size = (round(500 * short / 375), short)
        _check_numbers("crop_sizes", _numbers(crop_sizes[crop], f"crop_sizes[{crop}]", 2), list(size),
                       [f"the width at {crop}", f"the height at {crop}"], rtol=0, atol=1.01,
                       hints=lambda g, e, _: "the shorter side becomes 384 / crop_pct")
        share = _number(crop_shares[crop], f"crop_shares[{crop}]")
        expected = 384 * 384 / (size[0] * size[1])
        if not _close(share, expected, 0, 0.01):
            _fail(f"crop_shares[{crop}] is {share:.4g}, expected {expected:.3f}"
                  + (": give a fraction, not a percentage" if _close(share, 100 * expected, 0, 1) else
                     ": the crop's area over the resized image's"))
    return _passed("crop_sizes, crop_shares", 2)


def check_noise(two_se) -> bool:
    """Exercise 12.2: two standard errors of the difference of two accuracies, in points, for
    Imagenette (3,925 images, 98%), a 1,000-image subset (98%) and ImageNet (50,000, 80%)."""
    settings = [("Imagenette", 3925, 0.98), ("the subset", 1000, 0.98), ("ImageNet", 50000, 0.80)]
    expected = [100 * 2 * math.sqrt(2 * p * (1 - p) / n) for _, n, p in settings]
    _check_numbers("two_se", _numbers(two_se, "two_se (Imagenette, subset, ImageNet)", 3), expected,
                   [s[0] for s in settings], rtol=0.03, hints=lambda g, e, _: (
                       "that is two standard errors of one accuracy; a difference of two has sqrt(2) times "
                       "that" if _close(g, e / math.sqrt(2), 0.03) else
                       "give it in points (x 100)" if _close(g, e / 100, 0.03) else "2 sqrt(2 p (1 - p) / n)"))
    return _passed("two_se", 3)


def check_index_ranges(index_ranges) -> bool:
    """Exercise 12.3: ``{protocol: (min x, max x, step)}`` of a 32 x 32 grid, ``index`` convention,
    trained on 14 x 14, for extrapolate and interpolate."""
    protocols = ["extrapolate", "interpolate"]
    got = _ranges(index_ranges, "index_ranges", protocols, 3)
    for p in protocols:
        x = patch_positions(32, 32, "index", train_grid=(14, 14), protocol=p)[:, 0].double()
        _check_numbers("index_ranges", got[p], [x.min().item(), x.max().item(), (x[1] - x[0]).item()],
                       [f"the smallest x under {p}", f"the largest x under {p}", f"the step under {p}"],
                       rtol=0, atol=0.01)
    return _passed("index_ranges", 2)


def check_subset(kept_6, kept_15) -> bool:
    """Exercise 12.4: the images ``--subset N`` keeps of labels 0 x 6, 1 x 4, 2 x 10, for N = 6 and 15."""
    from .data import balanced_subset

    labels = torch.tensor([0] * 6 + [1] * 4 + [2] * 10)
    for value, n in ((kept_6, 6), (kept_15, 15)):
        got = sorted(int(v) for v in _tensor(value, f"kept_{n}").flatten().tolist())
        expected = balanced_subset(labels, n).tolist()
        if got != expected:
            _fail(f"kept_{n} is {got}, expected {n} images: per class {torch.bincount(labels[expected]).tolist()}"
                  f"{'' if len(got) == n else f' (you gave {len(got)})'}; each class's picks are evenly "
                  "spaced through its own images, and a class too small for its share gives all it has")
    return _passed("kept", 2)


def check_mean_distances(mean_distances) -> bool:
    """Exercise 13.4: the mean attention distance on the 6 x 6 grid of a head attending (a) equally to
    every patch, (b) to every patch but itself, (c) to its direct neighbours, (d) to the farthest patch."""
    from .analysis import patch_distances

    d = patch_distances(6, 6)
    neighbours = (d == 1).double()
    expected = [d.mean().item(), (d.sum() / (36 * 35)).item(),
                ((d * neighbours).sum(1) / neighbours.sum(1)).mean().item(), d.max(1).values.mean().item()]
    _check_numbers("mean_distances", _numbers(mean_distances, "mean_distances (a, b, c, d)", 4), expected,
                   ["(a) every patch", "(b) every patch but itself", "(c) direct neighbours",
                    "(d) the farthest patch"],
                   rtol=0.005)
    return _passed("mean_distances", 4)


def wavelength_in_patches(frequency: float) -> float:
    """Patches per full turn of a plane turning ``frequency`` radians per patch."""
    return 2 * math.pi / frequency


# -- the register of exercises, in the book's order ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise: the names its answer defines and the check that grades them, or why it has none.

    ``check(*answers, *uses)`` returns or raises :class:`ExerciseError`; ``uses`` are the chapter's
    own names it needs (they exist when the chapter's cells above the exercise have run)."""

    label: str
    check: Callable | None = None
    answers: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    points: int = 1
    reason: str = ""  # without a check: why not

    @property
    def chapter(self) -> int:
        return int(self.label[2:].split("-")[0])

    @property
    def define(self) -> str:
        return " and ".join(f"`{n}`" for n in self.answers)


def _by_hand(label: str, reason: str) -> Exercise:
    return Exercise(label, reason=reason)


EXERCISES: list[Exercise] = [
    Exercise("ch1-equivariance", check_unshuffled, ("unshuffled",), ("self_attention", "tokens", "perm")),
    Exercise("ch1-attention", check_attention, ("my_attention",), points=2),
    Exercise("ch1-sincos", check_sincos_1d, ("my_sincos_1d",), points=2),
    _by_hand("ch1-extrapolate", "an explanation (why repeating the border is poor), read off a plot"),
    Exercise("ch2-by-hand", check_score_2d, ("score",)),
    Exercise("ch2-half", lambda fn: check_rope_1d(fn, layout="half"), ("rope_half",), points=2),
    _by_hand("ch2-base", "a plot and a judgement (which base, and why vision uses a small one)"),
    Exercise("ch2-far", check_far, ("q_far", "k_far")),
    _by_hand("ch3-separable", "a proof"),
    Exercise("ch3-implement", check_axial, ("my_axial",), points=2),
    Exercise("ch3-slow", check_slow_planes, ("slow_14", "slow_24")),
    Exercise("ch3-order", check_yfirst_perm, ("perm",)),
    Exercise("ch4-axial", check_mixed_as_axial, ("as_mixed",)),
    Exercise("ch4-direction", check_anti_diagonal, ("one",)),
    Exercise("ch4-params", lambda answer: check_parameter_count(answer, "mixed", 64, 6, 12), ("answer",)),
    Exercise("ch4-uniform-two", check_same_rotation, ("same_rotation",)),
    Exercise("ch5-commutator", check_roll_yaw_commutator, ("my_commutator",)),
    Exercise("ch5-same-axis", check_same_axis, ("rotation",), points=2),
    Exercise("ch5-order", check_yaw_first, ("yaw_first",), points=2),
    Exercise("ch6-blocks", check_block_generators, ("block_generators",)),
    Exercise("ch6-hidden", check_hidden, ("hidden",), ("A_x", "A_y")),
    Exercise("ch6-ap-axial", check_ap_axial, ("ap2", "perm"), points=2),
    Exercise("ch6-params", lambda answer: check_parameter_count(answer, "comrope-ld", 64, 12, 12), ("answer",)),
    _by_hand("ch7-orthogonal", "a proof (its numerical part is a one-line demonstration)"),
    Exercise("ch7-relative", check_liere_relative, ("rel",)),
    Exercise("ch7-params", check_liere_params, ("answer_8", "answer_64")),
    Exercise("ch7-distance", check_defect_slope, ("defect_slope",)),
    Exercise("ch8-predict", check_prediction, ("prediction",)),
    _by_hand("ch8-training", "an experiment and its reading (which row changes: none)"),
    Exercise("ch8-scale", check_largest_scale, ("largest_scale",)),
    Exercise("ch9-chance", check_chance_sd, ("chance_sd",)),
    Exercise("ch9-paired", check_paired_signs, ("same_sign",), ("ours",)),
    Exercise("ch9-cli", check_command, ("command",)),
    Exercise("ch9-ape-scale", check_ape_std, ("ape_std",), ("sizes",)),
    Exercise("ch10-turns", check_turns, ("turns",), ("encoding",)),
    Exercise("ch10-circular", check_circular_ranges, ("circular_ranges",)),
    _by_hand("ch10-seeds", "a judgement (finding or noise) on the committed runs, which the chapter prints"),
    Exercise("ch11-budget", check_budget, ("budget_epochs",), ("paper", "cpu", "rows")),
    Exercise("ch11-tau", check_tau_p_value, ("p_value",), ("mine_top1", "PAPER_CIFAR100")),
    Exercise("ch11-pairs", check_significant_pairs, ("significant_pairs",), ("rows", "n_test")),
    Exercise("ch12-crop", check_crop, ("crop_sizes", "crop_shares")),
    Exercise("ch12-noise", check_noise, ("two_se",)),
    Exercise("ch12-grid", check_index_ranges, ("index_ranges",)),
    Exercise("ch12-subset", check_subset, ("kept_6", "kept_15")),
    _by_hand("ch13-seeds", "a judgement (finding or noise) over three seeds of trained models"),
    _by_hand("ch13-aliasing", "shares read from the trained models and an explanation of aliasing"),
    _by_hand("ch13-liere-scale", "an explanation (Baker-Campbell-Hausdorff) of numbers the chapter prints"),
    Exercise("ch13-uniform-distance", check_mean_distances, ("mean_distances",)),
]
BY_LABEL = {e.label: e for e in EXERCISES}


def for_chapter(chapter: int) -> list[Exercise]:
    """The exercises of one chapter, in order (exercise ``chapter.(i + 1)`` is item ``i``)."""
    return [e for e in EXERCISES if e.chapter == chapter]


def number(label: str) -> str:
    """``"2.3"`` for the third exercise of chapter 2."""
    exercise = BY_LABEL[label]
    return f"{exercise.chapter}.{for_chapter(exercise.chapter).index(exercise) + 1}"


def grade(exercise: Exercise, namespace: dict) -> dict:
    """Grade one exercise against the names a notebook defined: ``{"points", "passed", "feedback"}``.
    Never raises for a wrong or missing answer; the student's prints are swallowed."""
    missing = [n for n in exercise.answers if n not in namespace]
    if missing:
        return {"points": 0, "passed": False, "feedback": f"not answered: define {exercise.define} "
                f"(missing: {', '.join(missing)})"}
    context = [n for n in exercise.uses if n not in namespace]
    if context:
        return {"points": 0, "passed": False, "feedback": f"the chapter's {', '.join(context)} is not defined: "
                "run the chapter's cells above the exercise too"}
    args = [namespace[n] for n in exercise.answers + exercise.uses]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exercise.check(*args)
    except ExerciseError as error:
        return {"points": 0, "passed": False, "feedback": str(error)}
    except Exception as error:  # a broken answer object the check could not even inspect
        return {"points": 0, "passed": False,
                "feedback": f"could not check {exercise.define}: {type(error).__name__}: {error}"}
    return {"points": exercise.points, "passed": True, "feedback": "correct"}
