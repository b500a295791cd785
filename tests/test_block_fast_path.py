"""The fast paths of the block encodings against their dense definition.

ComRoPE-AP and -LD build their blocks from one eigendecomposition per skew matrix and forward
(:func:`ropelib.linalg.expm_skew_scaled`); LieRE and, under ``torch.compile``, ComRoPE exponentiate
every token's blocks (``_dense_rotation_table``, :func:`ropelib.linalg.expm`). Both are applied by
``apply_blocks``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_encoding, random_positions
from ropelib.encodings.block import _blocks_per_group, apply_blocks
from ropelib.encodings.kernels import rotate_blocks

COMMUTING = ["comrope-ap", "comrope-ld"]


def _double(enc):
    """A float64 copy: the definition evaluated from the same parameter values, exactly."""
    return copy.deepcopy(enc).double()


@pytest.mark.parametrize("name", COMMUTING)
@pytest.mark.parametrize("block_size", [2, 3, 4, 8])
def test_commuting_table_equals_the_dense_exponentials(name, block_size):
    enc = make_encoding(name, head_dim=24, block_size=block_size, num_prefix_tokens=1)
    pos = enc.full_positions(random_positions(enc, 9, 4.0))
    assert enc.commuting_factors(pos) is not None
    fast = enc.table(pos, complete=True)
    assert fast.shape == (2, 10, 24 // block_size, block_size, block_size) and fast.dtype == torch.float32
    exact = _double(enc)._dense_rotation_table(pos.double())
    torch.testing.assert_close(fast.double(), exact, atol=1e-7, rtol=0)
    torch.testing.assert_close(_double(enc).table(pos.double(), complete=True), exact, atol=1e-12, rtol=0)


def test_liere_has_no_commuting_factorisation():
    enc = make_encoding("liere")
    assert enc.commuting_factors(random_positions(enc, 3)) is None


@pytest.mark.parametrize("name", COMMUTING)
def test_commuting_table_in_float32_is_more_accurate_than_matrix_exp(name):
    """float32 table: correctly rounded (computed in float64), where matrix_exp in float32 loses
    digits with the angle. Measured (ViT-S, 196 tokens, |p| <= 0.1 .. 64): ours <= 3.0e-8,
    matrix_exp 5e-7 .. 5e-4."""
    for scale in (0.1, 1.0, 4.0, 16.0, 64.0):
        torch.manual_seed(int(scale * 10))
        enc = make_encoding(name, num_heads=6, head_dim=64)
        pos = random_positions(enc, 196, scale)
        exact = _double(enc)._dense_rotation_table(pos.double())
        ours = (enc.table(pos, complete=True).double() - exact).abs().max()
        generators = torch.einsum("nc,chmij->hnmij", pos, enc.block_generators()).contiguous()
        theirs = (torch.linalg.matrix_exp(generators).double() - exact).abs().max()
        assert ours <= 6e-8, (scale, ours)
        assert ours <= theirs, (scale, ours, theirs)


def _grads(enc, x, pos, g, dense):
    params = list(enc.parameters())
    if dense:
        out = apply_blocks(x, enc._dense_rotation_table(enc.full_positions(pos)))
    else:
        out = enc.rotate(x, pos)
    return out, torch.autograd.grad((out * g).sum(), [x, *params])


@pytest.mark.parametrize("name", COMMUTING)
@pytest.mark.parametrize("init", ["random", "zero", "repeated"])
def test_commuting_gradients_match_the_dense_path(name, init):
    """float64: the fast path's gradients are the dense path's, also where the generators'
    eigenvalues repeat: S = 0 (init_std=0, ComRoPE's fine-tuning start) and S = c diag(J, J, ..)."""
    enc = make_encoding(name, block_size=4, num_prefix_tokens=1).double()
    if init != "random":
        with torch.no_grad():
            enc.angle_matrices.zero_()
            if init == "repeated":
                for k in range(2):  # P - P^T = 1.5 diag(J, J) in every block of every head
                    enc.angle_matrices[..., 2 * k + 1, 2 * k] = 0.75
                    enc.angle_matrices[..., 2 * k, 2 * k + 1] = -0.75
    pos = random_positions(enc, 7, 2.0, dtype=torch.float64)
    x = torch.randn(3, 2, 8, enc.head_dim, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, 8, enc.head_dim, dtype=torch.float64)
    out_fast, fast = _grads(enc, x, pos, g, dense=False)
    out_dense, dense = _grads(enc, x, pos, g, dense=True)
    torch.testing.assert_close(out_fast, out_dense, atol=1e-12, rtol=0)
    if init == "zero":
        torch.testing.assert_close(out_fast, x, atol=1e-15, rtol=0)  # the identity rotation
    for a, b in zip(fast, dense):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
    assert fast[1].abs().sum() > 0  # angle_matrices learn even from S = 0


@pytest.mark.parametrize("name", COMMUTING)
@pytest.mark.parametrize("init_std", [1.0, 0.0])
def test_commuting_fast_path_gradcheck(name, init_std):
    enc = make_encoding(name, num_heads=1, head_dim=8, block_size=4, init_std=init_std).double()
    pos = random_positions(enc, 3, 1.0, dtype=torch.float64)
    names = [n for n, _ in enc.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in enc.named_parameters())
    x = torch.randn(1, 1, 3, 8, dtype=torch.float64, requires_grad=True)

    def rotate(x, *params):
        return torch.func.functional_call(enc, dict(zip(names, params)), args=(x, pos))

    assert torch.autograd.gradcheck(rotate, (x, *values), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", COMMUTING)
def test_commuting_float32_gradients_match_float64(name):
    enc = make_encoding(name, num_heads=3, head_dim=48)
    pos = random_positions(enc, 20, 3.0)
    x = torch.randn(2, 3, 20, 48)
    g = torch.randn_like(x)
    _, got = _grads(enc, x.requires_grad_(), pos, g, dense=False)
    enc64 = _double(enc)
    _, ref = _grads(enc64, x.detach().double().requires_grad_(), pos.double(), g.double(), dense=True)
    for a, b in zip(got, ref):
        assert (a.double() - b).abs().max() <= 1e-4 * b.abs().max()


def test_positions_that_require_grad_get_the_dense_gradient():
    enc = make_encoding("comrope-ld").double()
    pos = random_positions(enc, 5, 2.0, dtype=torch.float64).requires_grad_()
    x = torch.randn(1, 2, 5, enc.head_dim, dtype=torch.float64)
    (fast,) = torch.autograd.grad(enc.rotate(x, pos).square().sum(), pos)
    (dense,) = torch.autograd.grad(apply_blocks(x, enc._dense_rotation_table(pos)).square().sum(), pos)
    torch.testing.assert_close(fast, dense, atol=1e-10, rtol=1e-9)


# -- applying the blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize("block_size, head_dim", [(8, 64), (8, 48), (4, 12), (3, 48), (2, 24), (24, 48)])
def test_apply_blocks_equals_rotate_blocks(block_size, head_dim):
    m = head_dim // block_size
    k = _blocks_per_group(m, block_size)
    assert m % k == 0 and (k == 1 or k * block_size <= 16)
    blocks = torch.randn(3, 5, m, block_size, block_size, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 3, 5, head_dim, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    ours = apply_blocks(x, blocks)
    ref = rotate_blocks(x, blocks)
    torch.testing.assert_close(ours, ref, atol=1e-13, rtol=0)
    got = torch.autograd.grad((ours * g).sum(), (x, blocks))
    want = torch.autograd.grad((ref * g).sum(), (x, blocks))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_apply_blocks_gradcheck_shared_blocks_and_strided_input():
    blocks = torch.randn(1, 3, 2, 4, 4, dtype=torch.float64, requires_grad=True)  # shared by both heads
    x = torch.randn(3, 8, 2, 2, dtype=torch.float64).permute(3, 2, 0, 1).requires_grad_()  # (2, 2, 3, 8), strided
    assert not x.is_contiguous()
    torch.testing.assert_close(apply_blocks(x, blocks), rotate_blocks(x, blocks), atol=1e-14, rtol=0)
    assert torch.autograd.gradcheck(apply_blocks, (x, blocks))


def test_apply_blocks_under_bf16_autocast():
    blocks = torch.randn(2, 5, 6, 8, 8)
    x = torch.randn(3, 2, 5, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = apply_blocks(x.bfloat16(), blocks)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rotate_blocks(x, blocks), atol=0.1, rtol=0.02)


# -- LieRE: exponentials on the device -------------------------------------------------------------


def test_liere_table_captures_as_one_graph():
    """No host read in LieRE's table (per-block squarings chosen on the device): the table
    compiles with fullgraph=True; with CUDA, it runs under sync debug mode "error"."""
    enc = make_encoding("liere")
    pos = enc.full_positions(enc.positions(3, 4))
    compiled = torch.compile(enc._rotation_table, fullgraph=True, backend="eager", dynamic=False)
    torch.testing.assert_close(compiled(pos), enc._rotation_table(pos), atol=0, rtol=0)
    if torch.cuda.is_available():
        enc, pos = enc.cuda(), pos.cuda()
        x = torch.randn(2, enc.num_heads, pos.shape[0], enc.head_dim, device="cuda")
        enc.rotate(x, pos, enc.table(pos, complete=True))  # warm up
        table = enc.table(pos, complete=True)  # positions and table are the caller's; sync-free from here
        torch.cuda.set_sync_debug_mode("error")
        try:
            enc._rotation_table(pos)
            enc._rotate_with(x, table)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_liere_table_matches_float64_definition_for_small_and_large_positions():
    enc = make_encoding("liere")
    exact = _double(enc)
    for scale in (1e-4, 1.0, 30.0):
        pos = random_positions(enc, 12, scale)
        ours = enc.table(pos, complete=True).double()
        ref = exact._dense_rotation_table(pos.double())
        generators = torch.einsum("nc,chmij->hnmij", pos, enc.block_generators()).contiguous()
        theirs = (torch.linalg.matrix_exp(generators).double() - ref).abs().max()
        assert (ours - ref).abs().max() <= 3 * theirs + 1e-7, scale


@pytest.mark.parametrize("chunk", [None, 1, 3, 1000])
def test_bmm_into_a_strided_output_in_chunks(chunk):
    from ropelib.encodings.block import _bmm_into

    a = torch.randn(4, 7, 6, 16).view(4, 42, 16).transpose(0, 1)  # (42 groups, 4 rows, 16), strided
    b = torch.randn(42, 16, 16)
    out = torch.full((4, 42, 16), float("nan")).transpose(0, 1)
    _bmm_into(out, a, b, chunk)
    torch.testing.assert_close(out, torch.bmm(a, b), atol=1e-5, rtol=1e-5)
