"""The fast paths: how rotations are applied without ever forming a d x d matrix.

Two shapes of rotation cover every variant:

* **planes** (RoPE 1D, axial, uniform, mixed): ``d/2`` independent 2x2 rotations by angles
  ``theta``, pair ``k`` being channels ``(2k, 2k+1)`` (``adjacent``, rope-vit and timm) or
  ``(k, k + d/2)`` (``half``, GPT-NeoX and HF "rotate_half");
* **blocks** (LieRE, ComRoPE, Spherical): ``d/b`` independent ``b x b`` rotations applied to
  contiguous channel blocks ``[b*j, b*j + b)``.
"""

from __future__ import annotations

import torch

LAYOUTS = ("adjacent", "half")


def pair_channels(head_dim: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel indices ``(first, second)`` of each of the ``head_dim/2`` rotation planes."""
    k = torch.arange(head_dim // 2)
    if layout == "adjacent":
        return 2 * k, 2 * k + 1
    return k, k + head_dim // 2


def _swap_pairs(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The partner of every channel: ``(x1, x0)`` per pair."""
    if layout == "adjacent":
        return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x.roll(x.shape[-1] // 2, dims=-1)


def _expand(half_table: torch.Tensor, layout: str, signs: tuple[float, float]) -> torch.Tensor:
    """Per-pair values ``(..., d/2)`` to per-channel ``(..., d)``, signed per pair member."""
    first, second = signs[0] * half_table, signs[1] * half_table
    if layout == "adjacent":
        return torch.stack((first, second), dim=-1).flatten(-2)
    return torch.cat((first, second), dim=-1)


def _rotate(x: torch.Tensor, C: torch.Tensor, S: torch.Tensor, layout: str) -> torch.Tensor:
    # (x0, x1) -> (x0 c - x1 s, x1 c + x0 s) as x*C + swap(x)*S with S = (-s, +s):
    # three passes over x, where timm's x*cos + rot(x)*sin takes five.
    out = x * C
    return out.addcmul_(_swap_pairs(x, layout), S)


class PlanarRotation(torch.autograd.Function):
    """Rotate channel pairs of ``x`` (``(..., N, d)``) by angles with ``cos``/``sin`` ``(..., N, d/2)``.

    Backward is the inverse rotation (angle ``-theta``), plus gradients for the tables when the
    frequencies are learned; autograd would store and replay every intermediate instead.
    """

    @staticmethod
    def forward(ctx, x, cos, sin, layout):
        C = _expand(cos, layout, (1.0, 1.0))
        S = _expand(sin, layout, (-1.0, 1.0))
        ctx.layout = layout
        ctx.table_shape = cos.shape
        ctx.save_for_backward(x if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) else None, C, S)
        return _rotate(x, C, S, layout)

    @staticmethod
    def backward(ctx, grad):
        x, C, S = ctx.saved_tensors
        layout = ctx.layout
        grad_x = grad_cos = grad_sin = None
        if ctx.needs_input_grad[0]:
            grad_x = _rotate(grad, C, -S, layout)
        if ctx.needs_input_grad[1]:
            grad_C = (grad * x).sum_to_size(C.shape)
            first, second = _split_pairs(grad_C, layout)
            grad_cos = (first + second).sum_to_size(ctx.table_shape)
        if ctx.needs_input_grad[2]:
            grad_S = (grad * _swap_pairs(x, layout)).sum_to_size(S.shape)
            first, second = _split_pairs(grad_S, layout)
            grad_sin = (second - first).sum_to_size(ctx.table_shape)
        return grad_x, grad_cos, grad_sin, None


def _split_pairs(t: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    if layout == "adjacent":
        return t.unflatten(-1, (-1, 2)).unbind(-1)
    return t.chunk(2, dim=-1)


def rotate_planes(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "adjacent") -> torch.Tensor:
    """Rotate the channel planes of ``x`` ``(..., H, N, d)`` by tables ``(H or 1, N, d/2)``.

    The tables are cast to ``x``'s dtype, so under bf16 autocast the output is bf16 (what
    ``scaled_dot_product_attention`` wants), while the angles themselves were computed in
    float32.
    """
    return PlanarRotation.apply(x, cos.to(x.dtype), sin.to(x.dtype), layout)


def rotate_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Apply ``b x b`` rotation blocks ``(H or 1, N, m, b, b)`` to ``x`` ``(..., H, N, m*b)``.

    ``out[..., n, j*b:(j+1)*b] = blocks[h, n, j] @ x[..., n, j*b:(j+1)*b]``; one batched matrix
    product over (head, token, block) with the batch entries as columns, so no ``d x d`` matrix
    and no per-sample copy of the blocks is ever made.
    """
    m, b = blocks.shape[-3], blocks.shape[-1]
    blocks = blocks.to(x.dtype).expand(x.shape[-3], *blocks.shape[1:])  # shared blocks: every head
    return torch.einsum("hnmij,...hnmj->...hnmi", blocks, x.unflatten(-1, (m, b))).flatten(-2)
