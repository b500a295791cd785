"""Position conventions: values, token order, and what a larger grid does."""

from __future__ import annotations

import math

import pytest
import torch

from ropelib.positions import CONVENTIONS, RESOLUTION_BEHAVIOUR, patch_positions, position_step, sequence_positions


def test_row_major_tokens_with_x_then_y():
    pos = patch_positions(2, 3)
    expected = torch.tensor([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]], dtype=torch.float32)
    torch.testing.assert_close(pos, expected)


def test_convention_values_at_the_training_size():
    S = 4
    axis = lambda conv: patch_positions(1, S, conv)[:, 0]  # noqa: E731
    torch.testing.assert_close(axis("index"), torch.arange(4.0))
    torch.testing.assert_close(axis("liere"), torch.linspace(0, 1, 4))
    torch.testing.assert_close(axis("centre"), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    circular = axis("circular")
    torch.testing.assert_close(circular, (torch.arange(4.0) + 0.5) / 4 * 2 * math.pi - math.pi)
    assert circular.min() > -math.pi and circular.max() < math.pi


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_larger_grid_extrapolates_or_interpolates(convention):
    train = patch_positions(8, 8, convention)
    big = patch_positions(16, 16, convention, train_grid=(8, 8))
    step_train = position_step(convention, 8)
    step_big = (big[1, 0] - big[0, 0]).item()
    # the image the training patches tile: their range widened by half a patch on each side
    low, high = train.min() - step_train / 2, train.max() + step_train / 2
    inside = (big >= low - 1e-6) & (big <= high + 1e-6)
    if RESOLUTION_BEHAVIOUR[convention] == "interpolation":
        assert inside.all()  # the same image, sampled twice as densely
        assert step_big == pytest.approx(step_train / 2)
    else:
        assert not inside.all()  # positions never seen in training
        assert step_big == pytest.approx(step_train, rel=0.1)  # spacing about as in training


def test_liere_uses_linspace_to_s_over_s0():
    big = patch_positions(1, 21, "liere", train_grid=(1, 14))[:, 0]
    torch.testing.assert_close(big, torch.linspace(0, 21 / 14, 21))


def test_sequence_positions_shape():
    assert sequence_positions(5).shape == (5, 1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_errors(bad):
    with pytest.raises(ValueError, match="positive integer"):
        patch_positions(bad, 3)


def test_unknown_convention_is_an_error():
    with pytest.raises(ValueError, match="unknown position convention 'pixels'.*index, liere, circular, centre"):
        patch_positions(2, 2, "pixels")
