"""ropelib.vit: the model, its position encodings, resolutions, weight decay and timm interop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ropelib
from ropelib.vit import PRESETS, ViTConfig, from_timm, param_groups, vit

TINY = dict(embed_dim=48, depth=2, num_heads=2, head_dim=24, img_size=16, patch_size=4, num_classes=5)
TWO_D = [n for n in ropelib.ENCODING_NAMES if n != "rope1d"]


@pytest.mark.parametrize("encoding", TWO_D)
def test_every_encoding_at_several_resolutions(encoding):
    model = vit("custom", encoding=encoding, **TINY).eval()
    for size in (16, 24, 8, 20):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)
    assert model(torch.randn(1, 3, 16, 24)).shape == (1, 5)  # not square


def test_presets_and_head_dims():
    for name, sizes in PRESETS.items():
        config = ViTConfig(**sizes)
        assert config.dim_per_head == sizes["embed_dim"] // sizes["num_heads"]
    model = vit("small", img_size=32, patch_size=4, num_heads=12, head_dim=60, encoding="spherical", num_classes=10)
    attn = model.blocks[0].attn
    assert attn.qkv.out_features == 3 * 12 * 60 and attn.rotary.head_dim == 60  # 60 per head: the CIFAR setting
    # timm's vit_small_patch16_224 has 22,050,664 parameters, 197 x 384 of them its position table
    assert sum(p.numel() for p in vit("small", num_classes=1000, encoding="none").parameters()) == 22_050_664 - 197 * 384


def test_bad_configurations():
    with pytest.raises(ValueError, match="encoding 'rope2d' is not one of"):
        ViTConfig(encoding="rope2d")
    with pytest.raises(ValueError, match="encoding 'rope1d' is 1D"):
        ViTConfig(encoding="rope1d")
    with pytest.raises(ValueError, match="--img-size 30 is not divisible by --patch-size 4"):
        ViTConfig(img_size=30, patch_size=4)
    with pytest.raises(ValueError, match="ape must be an additive encoding"):
        ViTConfig(encoding="mixed", ape="axial")
    with pytest.raises(TypeError, match="unknown field"):
        vit("small", heads=3)
    with pytest.raises(ValueError, match="unknown ViT preset 'huge'"):
        vit("huge")
    with pytest.raises(ValueError, match="spherical: head_dim=64 must be divisible by 3"):
        vit("small", encoding="spherical")


def test_image_size_not_divisible_by_the_patch_size():
    model = vit("custom", encoding="mixed", **TINY)
    with pytest.raises(ValueError, match=r"image size 18x16 is not divisible by the patch size 4; .* 16x16"):
        model(torch.randn(1, 3, 18, 16))


def test_weight_decay_groups_exclude_position_parameters():
    model = vit("custom", encoding="liere", ape="ape-learned", layer_scale=1e-4, **TINY)
    decay, no_decay = param_groups(model, 0.05)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    named = dict(model.named_parameters())
    for name in ["cls_token", "ape.table", "blocks.0.attn.rotary.generator_entries", "blocks.1.ls1.gamma",
                 "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"]:
        assert id(named[name]) in no_decay_ids, name
    assert id(named["blocks.0.attn.qkv.weight"]) not in no_decay_ids
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


def test_each_layer_has_its_own_rotary_encoding():
    model = vit("custom", encoding="mixed", **TINY)
    first, second = model.rotary_encodings
    assert first is not second and not torch.equal(first.frequencies, second.frequencies)


def test_position_protocols_only_matter_away_from_the_training_resolution():
    torch.manual_seed(0)
    model = vit("custom", encoding="axial", **TINY).eval()
    x, big = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 32, 32)
    outputs = {}
    for protocol in ropelib.positions.PROTOCOLS:  # an argument of the forward, never a model setting
        outputs[protocol] = (model(x, protocol=protocol), model(big, protocol=protocol))
    torch.testing.assert_close(outputs["interpolate"][0], outputs["native"][0])
    torch.testing.assert_close(outputs["extrapolate"][1], outputs["native"][1])  # index convention extrapolates
    assert not torch.allclose(outputs["interpolate"][1], outputs["native"][1], atol=1e-4)


def test_learned_ape_is_resized_bicubically():
    model = vit("custom", encoding="ape-learned", **TINY)
    table = model.ape.table.detach().T.reshape(1, 48, 4, 4)
    resized = F.interpolate(table, size=(6, 6), mode="bicubic", align_corners=False).reshape(48, 36).T
    torch.testing.assert_close(model.ape.embed_grid(6, 6).detach(), resized,
                               atol=1e-6, rtol=1e-5)


def test_gradients_reach_the_position_parameters_through_the_model():
    model = vit("custom", encoding="comrope-ld", **TINY)
    F.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    for enc in model.rotary_encodings:
        assert enc.angle_matrices.grad.abs().sum() > 0 and enc.axis_scales.grad.abs().sum() > 0


TIMM = ["vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224", "vit_small_patch16_rope_ape_224",
        "vit_small_patch16_rope_mixed_ape_224", "vit_base_patch16_rope_mixed_224"]


@pytest.mark.parametrize("name", TIMM)
def test_from_timm_gives_the_same_logits(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, img_size=32, num_classes=11).eval()
    with torch.no_grad():  # random weights everywhere (timm inits biases at 0 and LayerScale at 1e-5)
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = from_timm(reference)
    assert model.config.encoding == ("mixed" if "mixed" in name else "axial")
    assert (model.ape is not None) == ("ape" in name)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=2e-5, rtol=1e-4)
        assert model(torch.randn(1, 3, 64, 48)).shape == (1, 11)  # and then any other resolution


def test_from_timm_refuses_what_it_cannot_convert():
    timm = pytest.importorskip("timm")
    with pytest.raises(ValueError, match="expected one of timm's RoPE ViTs"):
        from_timm(timm.create_model("vit_tiny_patch16_224", pretrained=False))
    eva = timm.create_model("vit_small_patch16_rope_224", pretrained=False, img_size=32, rope_grid_indexing="ij")
    with pytest.raises(ValueError, match="grid_indexing other than 'xy'"):
        from_timm(eva)


@pytest.mark.parametrize("encoding", ["mixed", "spherical", "comrope-ld"])
def test_the_whole_model_compiles(encoding):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = vit("custom", encoding=encoding, **TINY)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 3])
    eager = F.cross_entropy(model(x), y)
    (eager_grad,) = torch.autograd.grad(eager, model.patch_embed.proj.weight)
    compiled = torch.compile(model, backend="aot_eager")
    loss = F.cross_entropy(compiled(x), y)
    (grad,) = torch.autograd.grad(loss, model.patch_embed.proj.weight)
    torch.testing.assert_close(loss, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, eager_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("encoding", ["comrope-ap", "comrope-ld"])
def test_comrope_rotates_cls_at_the_image_centre_even_with_jitter(encoding):
    """ComRoPE places CLS at (0.5, 0.5) and rotates it; jitter moves the patches, never CLS."""
    model = vit("custom", img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, head_dim=16,
                encoding=encoding, num_classes=3, position_jitter=1.0)
    enc = model.rotary_encodings[0]
    assert enc.prefix_position == "centre"
    grid = enc.positions(4, 4)
    centre = torch.tensor([[0.5, 0.5]])
    torch.testing.assert_close(enc.full_positions(grid)[:1], centre)
    seen, rotate = [], enc.rotate

    def recording(x, pos, table=None):
        seen.append(pos.clone())
        return rotate(x, pos, table)

    enc.rotate = recording
    model.train()
    model(torch.randn(2, 3, 16, 16))
    pos = seen[-1]
    assert pos.shape == (17, 2)  # CLS row first, then the 16 jittered patches
    torch.testing.assert_close(pos[:1], centre, rtol=0, atol=0)
    assert (pos[1:] - grid).abs().max() > 1e-3  # the patches did move
    assert ((pos[1:] - grid).abs() <= 0.5 / 4 + 1e-6).all()  # by at most half a patch
    # and the rotation of a CLS query at the centre is not the identity
    q = torch.randn(1, 2, 17, 16)
    assert (rotate(q, grid)[..., 0, :] - q[..., 0, :]).abs().max() > 1e-3


def test_other_encodings_leave_cls_unrotated():
    for name in ("axial", "mixed", "liere", "spherical"):
        enc = ropelib.build_encoding(name, head_dim=24, num_heads=2, num_prefix_tokens=1)
        q = torch.randn(1, 2, 10, 24)
        torch.testing.assert_close(enc.rotate(q, enc.positions(3, 3))[..., 0, :], q[..., 0, :])


def _sharpened_timm(timm, name):
    """A timm RoPE ViT whose logits see positions: LayerScale 1 (timm's 1e-5 makes every block
    nearly an identity) and queries/keys scaled up so attention is peaked, not uniform."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, img_size=64, num_classes=7, dynamic_img_size=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        if model.pos_embed is not None:
            model.pos_embed.normal_(0, 1.0)
        for blk in model.blocks:
            blk.gamma_1.fill_(1.0)
            blk.gamma_2.fill_(1.0)
            inner = blk.attn.qkv.weight.shape[0] // 3
            blk.attn.qkv.weight[: 2 * inner] *= 8.0
    return model


@pytest.mark.parametrize("name", TIMM[:4])
def test_from_timm_gives_timms_logits_at_every_resolution(name):
    timm = pytest.importorskip("timm")
    reference = _sharpened_timm(timm, name)
    model = from_timm(reference)
    torch.manual_seed(1)
    for size in [(32, 32), (48, 48), (64, 64), (80, 96), (128, 112)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = reference(x)
            assert expected.std() > 0.1  # the logits are not washed out
            torch.testing.assert_close(model(x), expected, atol=2e-4, rtol=1e-4, msg=f"{name} at {size}")


def test_the_resolution_test_sees_how_the_ape_is_resized():
    """With rope-vit's non-antialiased resize instead of timm's, the logits differ: the test above can fail."""
    timm = pytest.importorskip("timm")
    reference = _sharpened_timm(timm, "vit_small_patch16_rope_ape_224")
    model = from_timm(reference)
    model.ape.resize = "bicubic"
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() > 1e-2


@pytest.mark.parametrize("encoding", ["axial", "mixed"])
def test_resolution_remedies_are_an_argument_of_the_forward(encoding):
    """ropelib.remedies through the model: position interpolation is the interpolate protocol; at
    the training size every remedy is the plain model; NTK and YaRN change a larger grid."""
    torch.manual_seed(0)
    model = vit("custom", encoding=encoding, **TINY).eval()
    x, big = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 32, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(big, remedy="pi"), model(big, protocol="interpolate"), atol=1e-5, rtol=1e-5)
        for remedy in ("pi", "ntk", "yarn"):
            torch.testing.assert_close(model(x, remedy=remedy), model(x), atol=1e-6, rtol=1e-6)
            if remedy != "pi":
                assert not torch.allclose(model(big, remedy=remedy), model(big, protocol="extrapolate"), atol=1e-4)
    with pytest.raises(ValueError, match="remedy 'ntk' rescales rotary encodings"):
        vit("custom", encoding="ape-learned", **TINY)(big, remedy="ntk")


def test_dinov3_coordinate_augmentation_in_training_only():
    torch.manual_seed(0)
    model = vit("custom", encoding="axial", position_augment={"rescale": 2.0, "shift": 0.5}, **TINY)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))  # evaluation: the plain grid
        pos, _ = model.rotary_positions(4, 4)
        enc = model.rotary_encodings[0]
        torch.testing.assert_close(pos, enc.full_positions(enc.positions(4, 4)))
        model.train()
        augmented, _ = model.rotary_positions(4, 4)
    assert augmented.shape == (17, 2) and not torch.allclose(augmented[1:], pos[1:])
    torch.testing.assert_close(augmented[0], torch.zeros(2))  # CLS stays unrotated
    with pytest.raises(ValueError, match="--position-augment: unknown key"):
        ViTConfig(position_augment={"scale": 2.0})
