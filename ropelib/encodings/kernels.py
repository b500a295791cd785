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


def _halves(t: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the first and second channel of every plane, ``(..., d/2)`` each."""
    if layout == "adjacent":
        pairs = t.unflatten(-1, (-1, 2))
        return pairs[..., 0], pairs[..., 1]
    return t.chunk(2, dim=-1)


def _rotate_into_new(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str,
                     sign: float = 1.0) -> torch.Tensor:
    """``(x1, x2) -> (x1 c - x2 s, x2 c + x1 s)`` per plane (``sign=-1``: the inverse rotation).

    Written slice by slice into one new tensor: four passes and no temporary, where
    ``x*cos + rot(x)*sin`` (timm) materialises the rotated copy and two products.
    """
    x1, x2 = _halves(x, layout)
    if torch.compiler.is_compiling():
        # Dynamo cannot trace out= into strided views; inductor fuses this form into one kernel.
        o1, o2 = x1 * cos - sign * x2 * sin, x2 * cos + sign * x1 * sin
        if layout == "adjacent":
            return torch.stack((o1, o2), dim=-1).flatten(-2)
        return torch.cat((o1, o2), dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous, whatever x's strides
    o1, o2 = _halves(out, layout)
    torch.mul(x1, cos, out=o1)
    o1.addcmul_(x2, sin, value=-sign)
    torch.mul(x2, cos, out=o2)
    o2.addcmul_(x1, sin, value=sign)
    return out


class PlanarRotation(torch.autograd.Function):
    """Rotate the planes of ``x`` ``(..., N, d)`` by ``angles`` ``(..., N, d/2)``.

    ``cos`` and ``sin`` are the angles' (possibly cached) cosines and sines, without autograd
    history. Backward is the inverse rotation of the gradient, and, when the angles are learned,
    ``d out / d theta = (-out2, out1)``: the output turned by a quarter, so the angle gradient
    comes from the saved output in one product, without the input.
    """

    @staticmethod
    def forward(ctx, x, angles, cos, sin, layout):
        out = _rotate_into_new(x, cos, sin, layout)
        ctx.layout = layout
        ctx.angles_shape = angles.shape
        ctx.angles_dtype = angles.dtype
        ctx.save_for_backward(cos, sin, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        cos, sin, out = ctx.saved_tensors
        grad_x = grad_angles = None
        if ctx.needs_input_grad[0]:
            grad_x = _rotate_into_new(grad, cos, sin, ctx.layout, sign=-1.0)
        if ctx.needs_input_grad[1]:
            grad_angles = _angle_gradient(grad, out, ctx.layout).sum_to_size(ctx.angles_shape)
            grad_angles = grad_angles.to(ctx.angles_dtype)
        return grad_x, grad_angles, None, None, None


def _angle_gradient(grad: torch.Tensor, out: torch.Tensor, layout: str) -> torch.Tensor:
    """``d loss / d theta`` per token, before summing over the batch: ``g2 * o1 - g1 * o2``."""
    g1, g2 = _halves(grad, layout)
    o1, o2 = _halves(out, layout)
    per_token = g2 * o1
    return per_token.addcmul_(g1, o2, value=-1.0)


def rotate_planes(x: torch.Tensor, angles: torch.Tensor, layout: str = "adjacent",
                  cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Rotate the channel planes of ``x`` ``(..., H, N, d)`` by ``angles`` ``(H or 1, N, d/2)``.

    ``cos_sin`` may carry the angles' precomputed cosines and sines (a cache). They are cast to
    ``x``'s dtype, so under bf16 autocast the output is bf16 (what
    ``scaled_dot_product_attention`` wants), while the angles themselves stay float32.
    """
    if cos_sin is None:
        with torch.no_grad():
            cos_sin = (angles.cos(), angles.sin())
    cos, sin = (t.to(x.dtype) for t in cos_sin)
    return PlanarRotation.apply(x, angles, cos, sin, layout)


def rotate_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Apply ``b x b`` rotation blocks ``(H or 1, N, m, b, b)`` to ``x`` ``(..., H, N, m*b)``.

    ``out[..., n, j*b:(j+1)*b] = blocks[h, n, j] @ x[..., n, j*b:(j+1)*b]``; one batched matrix
    product over (head, token, block) with the batch entries as columns, so no ``d x d`` matrix
    and no per-sample copy of the blocks is ever made.
    """
    m, b = blocks.shape[-3], blocks.shape[-1]
    blocks = blocks.to(x.dtype).expand(x.shape[-3], *blocks.shape[1:])  # shared blocks: every head
    return torch.einsum("hnmij,...hnmj->...hnmi", blocks, x.unflatten(-1, (m, b))).flatten(-2)
