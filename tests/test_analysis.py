"""ropelib.analysis: frequencies, commutators and attention distances against known values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ropelib import analysis
from ropelib.encodings import build_encoding
from ropelib.vit import vit

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "results" / "synthetic-sweep"
GRID = (6, 6)


def encoding(name, head_dim=48, heads=2, **options):
    torch.manual_seed(0)
    return build_encoding(name, head_dim, heads, train_grid=GRID, num_prefix_tokens=1, **options)


@pytest.mark.parametrize("convention, step", [("index", 1.0), ("circular", 2 * math.pi / 6)])
def test_axial_frequencies_are_the_formula_times_the_patch_step(convention, step):
    vectors = analysis.frequency_vectors(encoding("axial", convention=convention))  # (1, 24, 2)
    expected = step * 100.0 ** (-4 * torch.arange(12, dtype=torch.float64) / 48)
    torch.testing.assert_close(vectors[:, :12, 0], expected.expand(2, -1), rtol=1e-6, atol=0)  # x planes
    torch.testing.assert_close(vectors[:, 12:, 1], expected.expand(2, -1), rtol=1e-6, atol=0)  # y planes
    assert vectors[:, :12, 1].abs().max() == 0 and vectors[:, 12:, 0].abs().max() == 0


@pytest.mark.parametrize("name", ["comrope-ap", "comrope-ld"])
def test_comrope_frequencies_are_the_angles_of_its_rotation_blocks(name):
    """Turn every block by a small displacement u (in patches): the eigenvalues of the rotation
    block are exp(+-i angle), and the angles must be |omega . u| of that block's planes."""
    enc = encoding(name).double()
    u = torch.tensor([0.3, -0.2], dtype=torch.float64)
    R = enc.matrix((u * analysis.patch_step(enc)).unsqueeze(0))[:, 1]  # (H, d, d); row 0 is CLS
    b, m = enc.block_size, enc.num_blocks
    blocks = R.view(2, m, b, m, b).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)  # (H, m, b, b)
    angles = torch.linalg.eigvals(blocks).angle().abs()  # (H, m, b): each angle twice
    direct = angles.sort(dim=-1, descending=True).values[..., 0::2]  # (H, m, b/2)
    predicted = (analysis.frequency_vectors(enc) @ u).abs().view(2, m, b // 2)
    predicted = predicted.sort(dim=-1, descending=True).values
    assert direct.max() < 3.0  # no angle wrapped around
    torch.testing.assert_close(direct, predicted, rtol=1e-7, atol=1e-9)


def test_block_eigenvalues_of_a_known_block():
    enc = encoding("comrope-ap", head_dim=8, heads=1)
    with torch.no_grad():
        enc.angle_matrices.zero_()
        # P - P^T = diag(2 J, 5 J, 0, 0) with J = [[0, -1], [1, 0]]: frequencies 5, 2, 0, 0
        enc.angle_matrices[0, 0, 1, 0], enc.angle_matrices[0, 0, 3, 2] = 2.0, 5.0
    torch.testing.assert_close(analysis.block_eigenvalues(enc)[0, 0],
                               torch.tensor([5.0, 2.0, 0.0, 0.0], dtype=torch.float64))


def test_axis_frequencies_of_mixed_are_the_sorted_components():
    enc = encoding("mixed")
    freqs = analysis.axis_frequencies(enc)  # (2, H, d/2), index convention: step 1
    expected = enc.frequencies.detach().double().abs().movedim(-1, 0).sort(-1, descending=True).values
    torch.testing.assert_close(freqs, expected, rtol=1e-6, atol=1e-7)


def test_frequency_vectors_refuse_liere():
    with pytest.raises(TypeError, match="axis_frequencies"):
        analysis.frequency_vectors(encoding("liere"))


def test_axis_angle():
    v = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0], [-1.0, math.sqrt(3)]])
    torch.testing.assert_close(analysis.axis_angle(v), torch.tensor([0.0, 45.0, 0.0, 30.0]))


@pytest.mark.parametrize("name", ["axial", "mixed", "uniform", "comrope-ap", "comrope-ld"])
def test_commuting_encodings_have_zero_commutator_and_are_relative(name):
    enc = encoding(name)
    assert analysis.commutator_norms(enc).max() < 1e-7
    assert analysis.relativity_defect(enc).max() < 1e-6


def test_liere_commutator_is_positive_bounded_and_scale_free():
    enc = encoding("liere")
    c = analysis.commutator_norms(enc)
    assert c.shape == (2, 6) and (c > 0.01).all() and (c <= 1).all()
    with torch.no_grad():
        enc.generator_entries.mul_(3.0)
    torch.testing.assert_close(analysis.commutator_norms(enc), c)
    assert (analysis.relativity_defect(enc) > 0.1).all()


def test_commutator_of_one_spherical_triplet_is_one_half():
    # roll and yaw of unit speed: [ROLL, YAW] is the third so(3) generator, ||.||_F = sqrt(2),
    # and ||ROLL||_F = ||YAW||_F = sqrt(2): sqrt(2) / (sqrt(2) * 2) = 1/2
    enc = build_encoding("spherical", 3, 1, train_grid=GRID, theta=100.0)
    torch.testing.assert_close(analysis.commutator_norms(enc), torch.tensor([[0.5]], dtype=torch.float64))


def test_uniform_attention_distance_of_a_two_by_two_grid():
    assert analysis.uniform_attention_distance(2, 2) == pytest.approx((2 + math.sqrt(2)) / 4)


def test_attention_distance_of_identity_and_of_one_key():
    n = 9
    eye = torch.zeros(1, 1, n + 1, n + 1)
    eye[0, 0, 1:, 1:] = torch.eye(n)
    eye[0, 0, 0, 0] = 1
    assert analysis.attention_distance(eye, (3, 3))["distance"].item() == 0
    corner = torch.zeros(1, 1, n + 1, n + 1)
    corner[..., 1] = 1.0  # every token attends to the first patch, (0, 0)
    expected = analysis.patch_distances(3, 3)[0].mean()
    torch.testing.assert_close(analysis.attention_distance(corner, (3, 3))["distance"][0], expected)


SMALL = dict(img_size=24, patch_size=4, embed_dim=32, depth=2, num_heads=2, head_dim=16, num_classes=8)


@pytest.mark.parametrize("name", ["none", "mixed"])
def test_zero_queries_and_keys_give_uniform_attention(name):
    torch.manual_seed(0)
    model = vit("custom", encoding=name, **SMALL)
    inner = SMALL["num_heads"] * SMALL["head_dim"]
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[: 2 * inner] = 0  # q = k = 0 for every token: all scores equal
            blk.attn.qkv.bias[: 2 * inner] = 0
    probs = analysis.attention_probabilities(model, torch.randn(3, 3, 24, 24))
    assert len(probs) == 2 and probs[0].shape == (3, 2, 37, 37)
    for p in probs:
        result = analysis.attention_distance(p, (6, 6))
        torch.testing.assert_close(result["distance"], torch.full((2,), analysis.uniform_attention_distance(6, 6),
                                                                  dtype=torch.float64))
        torch.testing.assert_close(result["prefix_share"], torch.full((2,), 1 / 37, dtype=torch.float64))


@pytest.mark.parametrize("name", ["mixed", "liere", "comrope-ld"])
def test_recomputed_probabilities_give_the_attention_output(name):
    torch.manual_seed(0)
    model = vit("custom", encoding=name, **SMALL).eval()
    seen = []

    def keep(attn, args, output):
        seen.append((attn, args[0], output))

    hooks = [blk.attn.register_forward_hook(keep) for blk in model.blocks]
    images = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    probs = analysis.attention_probabilities(model, images)
    for (attn, x, output), p in zip(seen, probs):
        B, T, _ = x.shape
        v = attn.qkv(x).view(B, T, 3, attn.num_heads, attn.head_dim)[:, :, 2].transpose(1, 2)
        mixed = (p @ v).transpose(1, 2).reshape(B, T, -1)
        torch.testing.assert_close(attn.proj(mixed), output, rtol=1e-4, atol=1e-5)


def test_initial_model_is_the_committed_runs_start():
    """Rebuilt from the seed, the initial LieRE generators are where training started: the trained
    ones moved a few percent from them, and another seed's are unrelated."""
    run = SWEEP / "synthetic-cpu-liere-seed0"
    key = "blocks.0.attn.rotary.generator_entries"
    trained = torch.load(run / "position-parameters.pt", weights_only=True)[key].flatten()
    start = analysis.initial_model(run / "results.json").state_dict()[key].flatten()
    other = analysis.initial_model(SWEEP / "synthetic-cpu-liere-seed1" / "results.json").state_dict()[key].flatten()
    assert (trained - start).norm() < 0.1 * start.norm()
    assert torch.corrcoef(torch.stack([trained, other]))[0, 1].abs() < 0.3
    model = analysis.trained_model(run)
    torch.testing.assert_close(model.state_dict()[key].flatten(), trained, rtol=0, atol=0)


CIFAR_MIXED = ROOT / "results" / "cifar10-cpu" / "cifar10-cpu-mixed-seed0"


@pytest.mark.skipif(not CIFAR_MIXED.exists(), reason="the committed CIFAR-10 mixed run is not in this checkout")
def test_initial_model_reads_a_results_json_with_the_model_nested_in_its_config():
    # runs recorded since the model's fields were nested have no top-level "model"; their class
    # count is in config.model. Mixed's frequencies start random: the rebuilt start must be the
    # run's own (the trained ones moved from it, but far less than to another seed's start)
    start = analysis.initial_model(CIFAR_MIXED / "results.json")
    assert start.config.num_classes == 10
    trained = torch.load(CIFAR_MIXED / "position-parameters.pt", weights_only=True)
    key = next(k for k in trained if k.startswith("blocks.0.attn.rotary."))
    first, last = start.state_dict()[key].flatten(), trained[key].flatten()
    assert 0 < (last - first).norm() < 0.5 * first.norm()
