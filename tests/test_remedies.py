"""ropelib.remedies: PI, NTK-aware and YaRN scaling per axis, and DINOv3's coordinate augmentation."""

from __future__ import annotations

import math

import pytest
import torch

import ropelib
from ropelib import remedies
from ropelib.vit import vit

PLANAR = ("rope1d", "axial", "uniform", "mixed")
NOT_PLANAR = ("spherical", "liere", "comrope-ap", "comrope-ld")
HEAD_DIM = 48
TRAIN, TEST = (4, 6), (7, 9)  # non-square and unequal scales: s_x = 9/6, s_y = 7/4


def build(name, train=TRAIN, **options):
    if name == "uniform" and "convention" not in options:
        options["convention"] = "index"  # "one-turn" with a train grid: a frequency per axis that depends on it
    return ropelib.build_encoding(name, head_dim=HEAD_DIM, num_heads=2, train_grid=train, **options)


def grid_of(enc, grid):
    return grid if enc.axes == 2 else grid[1]


def positions(enc, grid, protocol="extrapolate"):
    return enc.positions(*((grid[1],) if enc.axes == 1 else grid), protocol=protocol)


def test_grid_scales_are_per_axis_in_position_column_order():
    assert remedies.grid_scales((4, 6), (8, 6)) == (1.0, 2.0)  # (h, w) grids -> (s_x, s_y)
    assert remedies.grid_scales((4, 6), (4, 12)) == (2.0, 1.0)
    assert remedies.grid_scales(10, 25) == (2.5,)


# -- PI is the interpolate protocol --------------------------------------------------------------

@pytest.mark.parametrize("name", ropelib.ROTARY_NAMES)
@pytest.mark.parametrize("grid", [TEST, (2, 3)], ids=["larger", "smaller"])
@pytest.mark.parametrize("prefix", [None, "none", "centre"])
def test_pi_is_the_interpolate_protocol(name, grid, prefix):
    options = {} if prefix is None else {"num_prefix_tokens": 1, "prefix_position": prefix}
    enc = build(name, **options)
    g = grid_of(enc, grid)
    pos = positions(enc, grid)
    expected = positions(enc, grid, "interpolate")
    torch.testing.assert_close(remedies.pi_positions(enc, pos, None, g), expected, atol=1e-6, rtol=1e-6)
    table = remedies.rescaled_table(enc, pos, None, g, "pi")
    torch.testing.assert_close(table, enc.table(expected), atol=1e-5, rtol=1e-5)
    if prefix is not None:  # with the prefix rows supplied by the caller
        full = enc.full_positions(pos)
        torch.testing.assert_close(remedies.pi_positions(enc, full, None, g, complete=True),
                                   enc.full_positions(expected), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("convention", ["index", "liere", "circular", "centre"])
def test_pi_frequency_view_differs_by_a_constant_phase(convention):
    """PI's table is the remedied_frequencies("pi") angles (omega_a / s_a) plus one phase per plane,
    which cancels between patches."""
    enc = build("mixed", convention=convention)
    pos = positions(enc, TEST)
    angles, _ = remedies.rescaled_table(enc, pos, None, TEST, "pi")
    freqs = remedies.remedied_frequencies(enc, None, TEST, "pi")
    s_x, s_y = remedies.grid_scales(TRAIN, TEST)
    torch.testing.assert_close(freqs, enc.frequency_vectors() / torch.tensor([s_x, s_y]))
    phase = angles - torch.einsum("nc,hkc->hnk", pos, freqs)
    torch.testing.assert_close(phase, phase[:, :1].expand_as(phase), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["axial", "mixed"])
def test_yarn_with_every_frequency_interpolated_is_pi(name):
    enc = build(name, num_prefix_tokens=1)
    pos = positions(enc, TEST)
    yarn = remedies.rescaled_table(enc, pos, None, TEST, "yarn", alpha=1e6, beta=1e7, temperature="none")
    torch.testing.assert_close(yarn, remedies.rescaled_table(enc, pos, None, TEST, "pi"), atol=1e-5, rtol=1e-5)


# -- identity at the training grid; clamping ------------------------------------------------------

@pytest.mark.parametrize("name", PLANAR + ("axial-learned",))
@pytest.mark.parametrize("remedy", remedies.REMEDIES)
def test_every_remedy_is_the_identity_at_the_training_grid(name, remedy):
    enc = build("axial", learnable=True, init="uniform") if name == "axial-learned" else build(name)
    g = grid_of(enc, TRAIN)
    pos = positions(enc, TRAIN)
    got = remedies.rescaled_table(enc, pos, None, g, remedy)
    want = enc.table(pos)
    assert all(torch.equal(a, b) for a, b in zip((got[0], *got[1]), (want[0], *want[1])))
    if remedy != "none":
        assert remedies.attention_scale(remedy, TRAIN, TRAIN) == 1.0
        assert torch.equal(remedies.remedied_frequencies(enc, None, g, remedy), enc.frequency_vectors())


@pytest.mark.parametrize("name", NOT_PLANAR)
def test_pi_is_the_identity_at_the_training_grid_for_every_rotary_encoding(name):
    enc = build(name, num_prefix_tokens=1)
    pos = positions(enc, TRAIN)
    torch.testing.assert_close(remedies.rescaled_table(enc, pos, None, TRAIN, "pi"), enc.table(pos), atol=0, rtol=0)


@pytest.mark.parametrize("remedy", ["ntk", "yarn"])
def test_ntk_and_yarn_leave_smaller_grids_alone_unless_unclamped(remedy):
    enc = build("axial")
    small = (2, 3)
    pos = positions(enc, small)
    got = remedies.rescaled_table(enc, pos, None, small, remedy)
    torch.testing.assert_close(got, enc.table(pos), atol=0, rtol=0)
    freqs = remedies.remedied_frequencies(enc, None, small, remedy, clamp=False)
    assert (freqs.abs() >= enc.frequency_vectors().abs()).all()
    assert (freqs.abs() > enc.frequency_vectors().abs()).any()  # a scale below 1 raises frequencies


# -- NTK -------------------------------------------------------------------------------------------

def _x_frequencies(freqs):
    """The x components of axial vectors: the first d/4 planes."""
    return freqs[..., : freqs.shape[-2] // 2, 0]


@pytest.mark.parametrize("s", [2, 3])
def test_ntk_keeps_the_highest_frequency_and_divides_the_lowest_by_s(s):
    enc = build("axial", train=(4, 4))
    new = _x_frequencies(remedies.remedied_frequencies(enc, None, (4 * s, 4 * s), "ntk"))
    old = _x_frequencies(enc.frequency_vectors())
    torch.testing.assert_close(new[..., 0], old[..., 0], atol=0, rtol=0)
    torch.testing.assert_close(new[..., -1], old[..., -1] / s, atol=0, rtol=1e-6)


@pytest.mark.parametrize("s", [2, 3])
def test_ntk_is_the_base_change_base_times_s_to_the_m_over_m_minus_1(s):
    """bloc97's and FiT's base' = base * s^(D/(D-2)), D the channels of an axis, m = D/2 frequencies."""
    axial = build("axial", train=(4, 4))
    m = HEAD_DIM // 4
    raised = build("axial", train=(4, 4), theta=100.0 * s ** (m / (m - 1)))
    torch.testing.assert_close(remedies.remedied_frequencies(axial, None, (4 * s, 4 * s), "ntk"),
                               raised.frequency_vectors(), atol=1e-7, rtol=1e-5)
    rope = ropelib.build_encoding("rope1d", head_dim=HEAD_DIM, train_grid=(1, 8))
    m = HEAD_DIM // 2
    raised = ropelib.build_encoding("rope1d", head_dim=HEAD_DIM, base=10000.0 * s ** (m / (m - 1)))
    torch.testing.assert_close(remedies.remedied_frequencies(rope, None, 8 * s, "ntk"),
                               raised.frequency_vectors(), atol=1e-9, rtol=1e-5)


def test_ntk_on_learned_frequencies_ranks_by_log_magnitude_per_head_and_axis():
    enc = build("axial", learnable=True, init="uniform")
    s_x, _ = remedies.grid_scales(TRAIN, TEST)
    old = _x_frequencies(enc.frequency_vectors().detach()).double()
    new = _x_frequencies(remedies.remedied_frequencies(enc, None, TEST, "ntk").detach()).double()
    for h in range(enc.num_heads):
        hi, lo = old[h].argmax(), old[h].argmin()
        torch.testing.assert_close(new[h, hi], old[h, hi], atol=0, rtol=1e-6)
        torch.testing.assert_close(new[h, lo], old[h, lo] / s_x, atol=0, rtol=1e-6)
        u = torch.log(old[h].max() / old[h]) / torch.log(old[h].max() / old[h].min())
        torch.testing.assert_close(new[h], old[h] * s_x ** (-u), atol=0, rtol=1e-5)


def test_ntk_keeps_gradients_of_learned_frequencies():
    enc = build("mixed")
    angles, _ = remedies.rescaled_table(enc, positions(enc, TEST), None, TEST, "ntk")
    angles.sum().backward()
    assert enc.frequencies.grad is not None and enc.frequencies.grad.abs().sum() > 0


# -- YaRN ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ramp", remedies.YARN_RAMPS)
def test_yarn_ramp_in_the_turns_across_the_training_image(ramp):
    n0, n, alpha, beta = 256, 1024, 1.0, 32.0
    enc = ropelib.build_encoding("rope1d", head_dim=64, train_grid=(1, n0))
    omega = enc.frequency_vectors()[0, :, 0].double()
    r = n0 * omega / (2 * math.pi)  # index convention: L = n0
    assert r.max() > beta and r.min() < alpha  # the set spans both ends of the ramp
    new = remedies.remedied_frequencies(enc, None, n, "yarn", ramp=ramp)[0, :, 0].double()
    s = n / n0
    torch.testing.assert_close(new[r > beta], omega[r > beta], atol=0, rtol=1e-6)  # unchanged
    torch.testing.assert_close(new[r < alpha], omega[r < alpha] / s, atol=0, rtol=1e-6)  # fully interpolated
    x = r if ramp == "linear" else r.log()
    a, b = (alpha, beta) if ramp == "linear" else (math.log(alpha), math.log(beta))
    gamma = ((x - a) / (b - a)).clamp(0, 1)
    middle = (r > alpha) & (r < beta)
    assert middle.sum() >= 3
    torch.testing.assert_close(new, (1 - gamma) * omega / s + gamma * omega, atol=0, rtol=1e-6)


def test_yarn_uses_the_training_extent_of_the_convention():
    """Circular positions span 2 pi per training image: r = omega; axial theta=10 is all below 1 turn."""
    enc = build("axial", theta=10.0, convention="circular")
    freqs = remedies.remedied_frequencies(enc, None, TEST, "yarn")
    s_x, s_y = remedies.grid_scales(TRAIN, TEST)
    torch.testing.assert_close(freqs, enc.frequency_vectors() / torch.tensor([s_x, s_y]), atol=0, rtol=1e-6)


# -- per-axis scales act on the right axis -----------------------------------------------------------

@pytest.mark.parametrize("remedy", ["pi", "ntk", "yarn"])
@pytest.mark.parametrize("name", ["axial", "mixed"])
def test_per_axis_scales_act_on_their_own_axis(remedy, name):
    enc = build(name, train=(4, 6))
    old = enc.frequency_vectors().detach()
    wide = remedies.remedied_frequencies(enc, None, (4, 12), remedy).detach()  # s_x = 2, s_y = 1
    tall = remedies.remedied_frequencies(enc, None, (8, 6), remedy).detach()  # s_x = 1, s_y = 2
    assert torch.equal(wide[..., 1], old[..., 1]) and not torch.equal(wide[..., 0], old[..., 0])
    assert torch.equal(tall[..., 0], old[..., 0]) and not torch.equal(tall[..., 1], old[..., 1])
    # and in the table: moving one patch along the unscaled axis turns by the trained angle
    for grid, step, axis in (((4, 12), 12, 1), ((8, 6), 1, 0)):
        pos = positions(enc, grid)
        angles, _ = remedies.rescaled_table(enc, pos, None, grid, remedy, temperature="none") \
            if remedy == "yarn" else remedies.rescaled_table(enc, pos, None, grid, remedy)
        turned = angles[:, step] - angles[:, 0]
        torch.testing.assert_close(turned, old[..., axis], atol=1e-5, rtol=1e-5)


# -- still orthogonal and relative ---------------------------------------------------------------------

def _matrices(enc, pos, table):
    """R(p) for every token, (H, N, d, d), by rotating the basis vectors."""
    n, d = table[0].shape[-2], enc.head_dim
    basis = torch.eye(d, dtype=pos.dtype).view(d, 1, 1, d).expand(d, enc.num_heads, n, d).contiguous()
    return enc.rotate(basis, pos, table).permute(1, 2, 3, 0)  # [h, n, :, i] = R e_i


@pytest.mark.parametrize("name", PLANAR)
@pytest.mark.parametrize("remedy", ["pi", "ntk", "yarn"])
def test_remedied_rotations_are_orthogonal_and_relative(name, remedy):
    if name == "uniform" and remedy == "ntk":
        pytest.skip("ntk refuses a frequency set without spread")
    enc = build(name).double()
    grid = (5, 8)
    g = grid_of(enc, grid)
    pos = positions(enc, grid).double()
    options = {"temperature": "logits"} if remedy == "yarn" else {}
    R = _matrices(enc, pos, remedies.rescaled_table(enc, pos, None, g, remedy, **options))
    eye = torch.eye(enc.head_dim, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R.mT @ R, eye, atol=1e-12, rtol=0)
    # R(p)^T R(q) depends on q - p only: every pair of horizontal (and of vertical) neighbours agrees
    R = R.unflatten(1, grid if enc.axes == 2 else (1, grid[1]))  # (H, rows, columns, d, d)
    for pairs in (R[:, :, :-1].mT @ R[:, :, 1:], R[:, :-1].mT @ R[:, 1:]):
        pairs = pairs.flatten(1, 2)
        if pairs.shape[1]:
            torch.testing.assert_close(pairs, pairs[:, :1].expand_as(pairs), atol=1e-12, rtol=0)


# -- temperature -----------------------------------------------------------------------------------

def test_yarn_temperature_values():
    t = remedies.yarn_temperature((14, 14), (28, 28))
    assert t == pytest.approx(0.1 * math.log(2) + 1)
    assert remedies.yarn_temperature((14, 14), (14, 42)) == pytest.approx(0.1 * math.log(3) + 1)  # FiT: max
    assert remedies.yarn_temperature((14, 14), (14, 42), "area") == pytest.approx(0.1 * math.log(math.sqrt(3)) + 1)
    assert remedies.yarn_temperature((14, 14), (7, 7)) == 1.0  # s <= 1: none
    assert remedies.attention_scale("yarn", (14, 14), (28, 28), temperature="logits") == pytest.approx(t**2)
    assert remedies.attention_scale("yarn", (14, 14), (28, 28)) == 1.0  # the default table carries it
    for remedy in ("none", "pi", "ntk"):
        assert remedies.attention_scale(remedy, (14, 14), (28, 28)) == 1.0


def test_yarn_temperature_in_the_table_multiplies_the_logits_by_its_square():
    enc = build("mixed")
    pos = positions(enc, TEST)
    t = remedies.yarn_temperature(TRAIN, TEST)
    plain = remedies.rescaled_table(enc, pos, None, TEST, "yarn", temperature="logits")
    folded = remedies.rescaled_table(enc, pos, None, TEST, "yarn")
    torch.testing.assert_close(folded[0], plain[0], atol=0, rtol=0)
    torch.testing.assert_close(folded[1], tuple(c * t for c in plain[1]))
    q, k = torch.randn(2, 1, enc.num_heads, pos.shape[0], HEAD_DIM).unbind(0)
    with torch.no_grad():
        logits = lambda table: enc.rotate(q, pos, table) @ enc.rotate(k, pos, table).mT  # noqa: E731
        scale = remedies.attention_scale("yarn", TRAIN, TEST, temperature="logits")
        torch.testing.assert_close(logits(folded), scale * logits(plain), atol=1e-4, rtol=1e-5)


# -- the proposed ViT wiring ----------------------------------------------------------------------------

def _forward_with_remedy(model, images, remedy, **options):
    """VisionTransformer.forward_features + head with per-layer remedied tables: the wiring proposed
    for ropelib.vit (the positions placed with the training spacing, one table per layer)."""
    x = model.patch_embed.proj(images)
    h, w = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((model.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    encodings = model.rotary_encodings
    pos = encodings[0].positions(h, w, protocol="extrapolate", device=x.device)
    tables = [remedies.rescaled_table(enc, pos, None, (h, w), remedy, **options) for enc in encodings]
    for blk, table in zip(model.blocks, tables):
        x = blk(x, pos, table)
    return model.forward_head(model.norm(x))


@pytest.mark.parametrize("encoding", ["axial", "mixed"])
def test_vit_wiring(encoding):
    model = vit("custom", img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                            num_classes=5, encoding=encoding).eval()
    small, large = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 24, 32)
    with torch.no_grad():
        for remedy in remedies.REMEDIES:
            torch.testing.assert_close(_forward_with_remedy(model, small, remedy), model(small), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(_forward_with_remedy(model, large, "none"), model(large, protocol="extrapolate"),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(_forward_with_remedy(model, large, "pi"), model(large, protocol="interpolate"),
                                   atol=1e-5, rtol=1e-5)
        for remedy in ("ntk", "yarn"):
            assert _forward_with_remedy(model, large, remedy).isfinite().all()


# -- DINOv3's coordinate augmentation -----------------------------------------------------------------

AUGS = [dict(shift=None, jitter=None, rescale=2.0), dict(shift=0.1, jitter=1.5, rescale=2.0),
        dict(shift=0.2, jitter=None, rescale=None), dict(shift=None, jitter=2.0, rescale=None),
        dict(shift=0.0, jitter=1.0, rescale=1.0)]


@pytest.mark.parametrize("aug", AUGS)
def test_dinov3_coords_match_timm(aug):
    sincos = pytest.importorskip("timm.layers.pos_embed_sincos")
    coords = ropelib.patch_positions(5, 7, "centre") * 2 - 1
    torch.manual_seed(11)
    want = sincos._apply_coord_augs(coords, aug["shift"], aug["jitter"], aug["rescale"])
    after_timm = torch.rand(3)
    torch.manual_seed(11)
    got = remedies.dinov3_coords(coords, **aug)
    assert torch.equal(got, want)
    assert torch.equal(torch.rand(3), after_timm)  # the same number of draws
    got = remedies.dinov3_coords(coords, torch.Generator().manual_seed(11), **aug)
    assert torch.equal(got, want)


def test_dinov3_coords_match_timm_rotary_embedding():
    sincos = pytest.importorskip("timm.layers.pos_embed_sincos")
    dim, (h, w) = 16, (5, 7)
    rope = sincos.RotaryEmbeddingDinoV3(dim, temperature=100.0, feat_shape=[h, w], grid_indexing="xy",
                                        shift_coords=0.1, jitter_coords=1.5, rescale_coords=2.0).train()
    torch.manual_seed(3)
    embed = rope.get_embed()  # (N, 2 * dim): [sin | cos], rotate-half layout
    torch.manual_seed(3)
    coords = remedies.dinov3_coords(ropelib.patch_positions(h, w, "centre") * 2 - 1, shift=0.1, jitter=1.5,
                                    rescale=2.0)
    angles = (2 * math.pi * coords[:, :, None] / rope.periods).flatten(1)
    torch.testing.assert_close(embed[:, :dim], torch.cat((angles.sin(), angles.sin()), -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embed[:, dim:], torch.cat((angles.cos(), angles.cos()), -1), atol=1e-5, rtol=1e-5)


def test_dinov3_coords_defaults_and_centre():
    pos = ropelib.patch_positions(4, 4) + 1
    g = torch.Generator().manual_seed(0)
    out = remedies.dinov3_coords(pos, g)  # DINOv3's recipe: rescale 2 only, one shared factor
    ratio = out / pos
    assert torch.allclose(ratio, ratio[0, 0]) and 0.5 <= ratio[0, 0] <= 2 and ratio[0, 0] != 1
    centre = ropelib.positions.grid_centre(pos)[0]
    about = remedies.dinov3_coords(pos, torch.Generator().manual_seed(0), centre=centre)
    torch.testing.assert_close(about, centre + (pos - centre) * ratio[0, 0])


# -- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NOT_PLANAR)
@pytest.mark.parametrize("remedy", ["ntk", "yarn"])
def test_frequency_remedies_refuse_non_planar_encodings(name, remedy):
    enc = build(name)
    with pytest.raises(ValueError, match=rf"(?s)'{remedy}'.*'{name}'.*'pi'"):
        remedies.rescaled_table(enc, positions(enc, TEST), None, TEST, remedy)
    with pytest.raises(ValueError, match=name):
        remedies.remedied_frequencies(enc, None, TEST, remedy)


def test_clear_errors():
    axial = build("axial")
    pos = positions(axial, TEST)
    with pytest.raises(ValueError, match="unknown remedy 'yarm'"):
        remedies.rescaled_table(axial, pos, None, TEST, "yarm")
    with pytest.raises(TypeError, match="'pi' takes no option.*'beta'"):
        remedies.rescaled_table(axial, pos, None, TEST, "pi", beta=8)
    with pytest.raises(ValueError, match="alpha < beta"):
        remedies.rescaled_table(axial, pos, None, TEST, "yarn", alpha=4, beta=2)
    with pytest.raises(ValueError, match="ramp"):
        remedies.rescaled_table(axial, pos, None, TEST, "yarn", ramp="cosine")
    with pytest.raises(ValueError, match="(?s)'ntk'.*'uniform'"):
        remedies.rescaled_table(build("uniform"), pos, None, TEST, "ntk")
    with pytest.raises(ValueError, match="not one"):
        remedies.rescaled_table(ropelib.build_encoding("ape-sincos", 32, train_grid=TRAIN), pos, None, TEST, "pi")
    with pytest.raises(ValueError, match="train_grid"):
        remedies.rescaled_table(ropelib.build_encoding("axial", 32), pos, None, TEST, "ntk")
    with pytest.raises(ValueError, match=r"grid must be \(h, w\)"):
        remedies.rescaled_table(axial, pos, None, 7, "ntk")
    for bad in (dict(jitter=0.5), dict(rescale=-1.0), dict(shift=float("nan"))):
        with pytest.raises(ValueError, match="dinov3_coords"):
            remedies.dinov3_coords(pos, **bad)


@pytest.mark.parametrize("encoding, remedy, phrase", [
    ("spherical", "ntk", "planar"),
    ("liere", "yarn", "planar"),
    ("uniform", "ntk", "one frequency"),
    ("ape-learned", "pi", "not rotary"),
])
def test_evaluate_refuses_a_remedy_the_encoding_cannot_take_before_reading_data(encoding, remedy, phrase):
    """ropelib.evaluate checks every remedy against the model before it reads any data (the
    CIFAR-10 evaluation once found out at its first test resolution, after loading the test set)."""
    from ropelib.evaluate import check_remedies

    model = vit("custom", img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=1, head_dim=48,
                encoding=encoding, num_classes=3)
    with pytest.raises(ValueError, match=f"--remedies {remedy}") as error:
        check_remedies(model, [remedy])
    assert phrase in str(error.value)


@pytest.mark.parametrize("encoding, remedies", [
    ("axial", ["pi", "ntk", "yarn"]), ("mixed", ["pi", "ntk", "yarn"]), ("uniform", ["pi", "yarn"]),
    ("spherical", ["pi"]), ("liere", ["pi"]), ("comrope-ld", ["pi"]), ("none", ["none"]),
])
def test_evaluate_accepts_the_remedies_that_apply(encoding, remedies):
    from ropelib.evaluate import check_remedies

    model = vit("custom", img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=1, head_dim=48,
                encoding=encoding, num_classes=3)
    check_remedies(model, remedies)
