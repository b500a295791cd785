"""Bad input gets an error that names the encoding, the offending value and the requirement."""

from __future__ import annotations

import pytest
import torch

import ropelib
from conftest import make_encoding


@pytest.mark.parametrize(
    "name, head_dim, options, requirement",
    [
        ("rope1d", 63, {}, "divisible by 2"),
        ("axial", 62, {}, "divisible by 4"),
        ("uniform", 62, {}, "divisible by 4"),
        ("mixed", 62, {}, "divisible by 4"),
        ("spherical", 64, {}, "divisible by 3"),
        ("liere", 60, {}, "divisible by 8"),
        ("liere", 64, {"block_size": 6}, "divisible by 6"),
        ("comrope-ap", 60, {}, "divisible by 8"),
        ("comrope-ld", 36, {"block_size": 16}, "divisible by 16"),
    ],
)
def test_head_dim_must_suit_the_variant(name, head_dim, options, requirement):
    with pytest.raises(ValueError, match=rf"^{name}: head_dim={head_dim} must be {requirement}"):
        ropelib.build_encoding(name, head_dim=head_dim, num_heads=2, **options)


def test_sincos_width_must_be_divisible_by_4():
    with pytest.raises(ValueError, match=r"ape-sincos: num_heads \* head_dim = 6 must be divisible by 4"):
        ropelib.build_encoding("ape-sincos", head_dim=3, num_heads=2)


@pytest.mark.parametrize("name", ["axial", "liere", "rope1d"])
def test_positions_must_match_the_tokens(name):
    enc = make_encoding(name)
    pos = enc.positions(12) if enc.axes == 1 else enc.positions(3, 4)
    x = torch.randn(2, enc.num_heads, 13, enc.head_dim)
    with pytest.raises(ValueError, match=rf"{name}: x has 13 tokens but pos has 12 rows and num_prefix_tokens=0"):
        enc.rotate(x, pos)


@pytest.mark.parametrize("name, width", [("axial", 3), ("mixed", 1), ("rope1d", 2), ("ape-learned", 3)])
def test_position_width_must_match_the_axes(name, width):
    enc = make_encoding(name)
    with pytest.raises(ValueError, match=rf"{name}: pos must have shape \(N, {enc.axes}\), got \(12, {width}\)"):
        if enc.kind == "rotary":
            enc.rotate(torch.randn(1, enc.num_heads, 12, enc.head_dim), torch.zeros(12, width))
        else:
            enc.embed(torch.zeros(12, width))


def test_wrong_ranks():
    enc = make_encoding("mixed")
    pos = enc.positions(2, 3)
    with pytest.raises(ValueError, match=r"mixed: x must have shape \(B, H, N, head_dim\).*got 3 dims"):
        enc.rotate(torch.randn(enc.num_heads, 6, enc.head_dim), pos)
    with pytest.raises(ValueError, match=r"mixed: pos must have shape \(N, 2\), got \(6,\)"):
        enc.rotate(torch.randn(1, enc.num_heads, 6, enc.head_dim), pos[:, 0])


def test_heads_and_channels_of_x_must_match():
    enc = make_encoding("spherical", num_heads=2)
    pos = enc.positions(2, 3)
    with pytest.raises(ValueError, match=r"spherical: x has 3 heads \(dim -3\) but the encoding was built with num_heads=2"):
        enc.rotate(torch.randn(1, 3, 6, 48), pos)
    with pytest.raises(ValueError, match=r"spherical: x has 50 channels per head but the encoding was built with head_dim=48"):
        enc.rotate(torch.randn(1, 2, 6, 50), pos)


def test_position_types():
    enc = make_encoding("axial")
    x = torch.randn(1, enc.num_heads, 6, enc.head_dim)
    with pytest.raises(TypeError, match=r"axial: pos must be a floating-point tensor, got torch.int64; convert it with pos.float\(\)"):
        enc.rotate(x, torch.zeros(6, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="axial: pos must be a torch.Tensor, got list"):
        enc.rotate(x, [[0.0, 0.0]] * 6)
    with pytest.raises(TypeError, match="axial: x must be a floating-point tensor"):
        enc.rotate(torch.zeros(1, enc.num_heads, 6, enc.head_dim, dtype=torch.int32), enc.positions(2, 3))


def test_positions_on_another_device():
    enc = make_encoding("axial")
    x = torch.randn(1, enc.num_heads, 6, enc.head_dim)
    with pytest.raises(ValueError, match=r"axial: pos is on meta but x is on cpu; move it with pos.to\(x.device\)"):
        enc.rotate(x, torch.zeros(6, 2, device="meta"))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown encoding 'rope2d'; valid names: none, ape-learned, ape-sincos, rope1d, axial"):
        ropelib.build_encoding("rope2d", head_dim=64)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"axial: unknown option\(s\) 'thetta'; valid options: theta, learnable, init, layout"):
        ropelib.build_encoding("axial", head_dim=64, thetta=10)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("axial", {"layout": "interleaved"}, "axial: layout must be one of .*'adjacent', 'half'.*got 'interleaved'"),
        ("mixed", {"convention": "pixels"}, "mixed: unknown position convention 'pixels'"),
        ("liere", {"prefix_position": "first"}, "liere: prefix_position must be one of .*got 'first'"),
        ("liere", {"num_prefix_tokens": -1}, "liere: num_prefix_tokens must be an integer >= 0, got -1"),
        ("comrope-ap", {"block_size": 1}, "comrope-ap: block_size must be an integer >= 2, got 1"),
        ("ape-learned", {"train_grid": (14,)}, r"ape-learned: train_grid must be \(h0, w0\) positive integers"),
        ("uniform", {"convention": "index"}, "uniform: with convention 'index' the frequency depends on the training grid; pass train_grid"),
        ("axial", {"theta": -1.0}, "axial: theta must be positive, got -1.0"),
        ("ape-learned", {"init_std": -0.1}, "ape-learned: init_std must be >= 0, got -0.1"),
    ],
)
def test_bad_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        ropelib.build_encoding(name, head_dim=48, num_heads=2, **options)


@pytest.mark.parametrize("value", [0, 2.0, None])
def test_bad_head_counts(value):
    with pytest.raises(ValueError, match=rf"mixed: num_heads must be a positive integer, got {value!r}"):
        ropelib.build_encoding("mixed", head_dim=64, num_heads=value)


def test_smoke_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("ROPELIB_SMOKE", "maybe")
    with pytest.raises(ValueError, match="ROPELIB_SMOKE='maybe' is not understood"):
        ropelib.is_smoke()
    monkeypatch.setenv("ROPELIB_SMOKE", "1")
    assert ropelib.is_smoke()
    monkeypatch.setenv("ROPELIB_SMOKE", "0")
    assert not ropelib.is_smoke()
