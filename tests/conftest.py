"""Shared helpers for the ropelib tests."""

from __future__ import annotations

import os

# Notebook kernels and the book build inherit this: one thread each, so that two pytest
# workers share a 2-core machine without oversubscribing it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import ropelib

# One head_dim every variant accepts: pairs (2), quadruples (4), triplets (3), 8x8 blocks.
HEAD_DIM = 48
RELATIVE = ("rope1d", "axial", "uniform", "mixed", "comrope-ap", "comrope-ld")

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def make_encoding(name: str, num_heads: int = 2, head_dim: int = HEAD_DIM, **options):
    return ropelib.build_encoding(name, head_dim=head_dim, num_heads=num_heads, **options)


def random_positions(enc, n: int, scale: float = 3.0, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Random real positions in [-scale, scale]^axes (the algebra does not care about grids)."""
    return (torch.rand(n, enc.axes, generator=generator, dtype=dtype) * 2 - 1) * scale


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
