"""Shared helpers for the ropelib tests."""

from __future__ import annotations

import os

import pytest
import torch

import ropelib

# One head_dim every variant accepts: pairs (2), quadruples (4), triplets (3), 8x8 blocks.
HEAD_DIM = 48
RELATIVE = ("rope1d", "axial", "uniform", "mixed", "comrope-ap", "comrope-ld")
NOT_RELATIVE = ("spherical", "liere")

# CI machines have 2 cores; keep torch from oversubscribing them when pytest-xdist runs 2 workers.
torch.set_num_threads(int(os.environ.get("ROPELIB_TEST_THREADS", "1")))


def make_encoding(name: str, num_heads: int = 2, head_dim: int = HEAD_DIM, **options):
    return ropelib.build_encoding(name, head_dim=head_dim, num_heads=num_heads, **options)


def random_positions(enc, n: int, scale: float = 3.0, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Random real positions in [-scale, scale]^axes (the algebra does not care about grids)."""
    return (torch.rand(n, enc.axes, generator=generator, dtype=dtype) * 2 - 1) * scale


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
