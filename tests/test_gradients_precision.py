"""Gradients, float64 gradcheck, bf16 autocast, torch.compile and scaled_dot_product_attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import ropelib
from conftest import make_encoding, random_positions

LEARNABLE = {
    "rope1d": {"learnable": True},
    "axial": {"learnable": True},
    "mixed": {},
    "spherical": {"learnable": True},
    "liere": {},
    "comrope-ap": {},
    "comrope-ld": {},
    "ape-learned": {},
}


@pytest.mark.parametrize("name", list(LEARNABLE))
def test_gradients_reach_every_learnable_parameter(name):
    enc = make_encoding(name, **LEARNABLE[name])
    params = dict(enc.named_parameters())
    assert params, f"{name} should have parameters with these options"
    if enc.kind == "rotary":
        pos = random_positions(enc, 12)
        q = torch.randn(2, enc.num_heads, 12, enc.head_dim)
        k = torch.randn_like(q)
        loss = (enc.rotate(q, pos) * enc.rotate(k, pos.flip(0))).sum()
    else:
        loss = enc.embed(enc.positions(3, 5)).square().sum()
    loss.backward()
    for pname, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    assert enc.no_weight_decay() == set(params)


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
def test_gradcheck_float64(name):
    options = dict(LEARNABLE.get(name, {}))
    if name in ("liere", "comrope-ap", "comrope-ld"):
        options["block_size"] = 4
    enc = make_encoding(name, num_heads=2, head_dim=12, **options).double()
    pos = random_positions(enc, 3, 1.0, dtype=torch.float64)
    x = torch.randn(1, 2, 3, 12, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in enc.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in enc.named_parameters())

    def rotate(x, *params):
        return functional_call(enc, dict(zip(names, params)), args=(x, pos), strict=False)

    assert torch.autograd.gradcheck(rotate, (x, *values), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
def test_bf16_autocast_stays_within_bf16_tolerance_on_a_32x32_grid(name):
    enc = make_encoding(name)
    pos = enc.positions(32 * 32) if enc.axes == 1 else enc.positions(32, 32)
    x = torch.randn(2, enc.num_heads, pos.shape[0], enc.head_dim)
    reference = enc.rotate(x, pos)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc.rotate(x.bfloat16(), pos)
    assert out.dtype == torch.bfloat16
    # bf16 has 8 significant bits: the rotated entries (|x| up to ~4) can be off by a few 2^-8.
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)


def test_angles_stay_float32_under_autocast():
    """Angles computed in bf16 would be off by up to |angle| * 2^-8 rad: ~0.1 rad at 31 patches."""
    enc = make_encoding("axial")
    pos = enc.positions(32, 32)
    x = torch.randn(1, enc.num_heads, pos.shape[0], enc.head_dim)
    reference = enc.rotate(x, pos)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = (enc.rotate(x.bfloat16(), pos).float() - reference).abs().max()
    naive_angles = (pos.bfloat16() @ enc.frequency_vectors()[0].T.bfloat16()).float()
    naive = ropelib.encodings.kernels.rotate_planes(x, naive_angles)
    naive_error = (naive - reference).abs().max()
    assert ours < naive_error / 4, (ours, naive_error)


@pytest.mark.parametrize("name", ["mixed", "spherical", "liere"])
def test_rotated_queries_and_keys_feed_scaled_dot_product_attention(name):
    enc = make_encoding(name, num_prefix_tokens=1)
    pos = enc.positions(4, 4)
    q, k, v = torch.randn(3, 2, enc.num_heads, 17, enc.head_dim).unbind(0)
    q_rot, k_rot = enc.rotate(torch.stack((q, k)), pos).unbind(0)
    out = F.scaled_dot_product_attention(q_rot, k_rot, v)
    manual = torch.softmax(q_rot @ k_rot.mT / enc.head_dim**0.5, dim=-1) @ v
    torch.testing.assert_close(out, manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile(backend):
    """Under torch.compile (fullgraph: no graph breaks) every rotary encoding matches eager, forward and backward."""
    names = ropelib.ROTARY_NAMES if backend == "aot_eager" else ("mixed", "liere")
    for name in names:
        torch._dynamo.reset()
        enc = make_encoding(name)
        pos = enc.positions(6) if enc.axes == 1 else enc.positions(2, 3)
        x = torch.randn(2, enc.num_heads, pos.shape[0], enc.head_dim, requires_grad=True)

        def step(x):
            return enc.rotate(x, pos).square().sum()

        eager_loss = step(x)
        (eager_grad,) = torch.autograd.grad(eager_loss, x)
        compiled = torch.compile(step, backend=backend, fullgraph=True)
        loss = compiled(x)
        (grad,) = torch.autograd.grad(loss, x)
        torch.testing.assert_close(loss, eager_loss, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(grad, eager_grad, atol=1e-4, rtol=1e-4)
