"""Patch positions and the four coordinate conventions of the papers.

A position encoding only ever sees coordinates. Which coordinates a patch gets decides what
happens when the image grows: with integer indices a larger image reaches positions never
seen in training (*extrapolation*); with coordinates normalised to the image, a larger image
samples the same range more densely (*interpolation*).

========== ======================================== ============================= ===============
convention coordinate of patch i on an axis of S      paper                          larger image
           patches (training size S0)
========== ======================================== ============================= ===============
index      i                                         rope-vit (Heo et al. 2024),    extrapolation
                                                     RoFormer, timm
liere      linspace(0, S/S0, S)[i]                   LieRE (Ostmeier et al. 2025)   extrapolation
circular   (i + 1/2 - S/2) * 2*pi / S0               A Circular Argument            extrapolation
                                                     (van de Geijn et al. 2025)
centre     (i + 1/2) / S                             ComRoPE (Yu et al. 2025)       interpolation
========== ======================================== ============================= ===============

``circular`` places patch centres in (-pi, pi) at the training size: the paper normalises
positions to [-pi, pi]; using patch centres (rather than both end points) keeps the first and
last patch distinct, which Uniform RoPE needs for "one cycle across the image" to give every
patch its own angle. At other sizes the spacing stays 2*pi/S0, as in the paper's
"[-pi P/P0, pi P/P0]".

Tokens are ordered row-major (t = y * w + x), as in rope-vit, timm, LieRE and ComRoPE, and the
two columns of a 2D position are (x, y) = (column, row).
"""

from __future__ import annotations

import math

import torch

CONVENTIONS = ("index", "liere", "circular", "centre")

# How to place the patches of an image whose grid differs from the training grid:
# "native": the convention's own formula (the table above);
# "extrapolate": keep the training spacing and continue past the training image;
# "interpolate": map the new grid onto the training image, sampled more densely.
PROTOCOLS = ("native", "extrapolate", "interpolate")

# What a larger test image does to each convention's coordinates.
RESOLUTION_BEHAVIOUR = {
    "index": "extrapolation",
    "liere": "extrapolation",
    "circular": "extrapolation",
    "centre": "interpolation",
}


def check_convention(convention: str, owner: str = "patch_positions") -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"{owner}: unknown position convention {convention!r}; "
            f"choose one of {', '.join(CONVENTIONS)}"
        )
    return convention


def _check_size(name: str, value, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return value


def axis_positions(
    size: int,
    convention: str = "index",
    train_size: int | None = None,
    *,
    protocol: str = "native",
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Coordinates of ``size`` patches along one axis, shape ``(size,)``.

    ``train_size`` is the number of patches on this axis at the training resolution (``S0``);
    it defaults to ``size``, i.e. "this is the training resolution". ``protocol`` (one of
    :data:`PROTOCOLS`) chooses how a different size is placed; at the training size all agree.
    """
    check_convention(convention, "axis_positions")
    size = _check_size("size", size, "axis_positions")
    train_size = size if train_size is None else _check_size("train_size", train_size, "axis_positions")
    if protocol not in PROTOCOLS:
        raise ValueError(f"axis_positions: unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol != "native" and size != train_size:
        # Fractional patch indices u of the training grid, mapped by the convention's affine law.
        first = axis_positions(train_size, convention, train_size, dtype=torch.float64)[0].item()
        step = position_step(convention, train_size)
        u = torch.arange(size, dtype=torch.float64, device=device)
        if protocol == "interpolate":
            u = (u + 0.5) * train_size / size - 0.5
        return (first + u * step).to(dtype)
    # float64 for the arithmetic, so that every convention is exact to the last bit of dtype.
    i = torch.arange(size, dtype=torch.float64, device=device)
    if convention == "index":
        coords = i
    elif convention == "liere":
        # LieRE's PositionEncoderBase: linspace(0, S/S0, S); spacing 1/(S0-1) at training size.
        coords = torch.linspace(0.0, size / train_size, size, dtype=torch.float64, device=device)
    elif convention == "circular":
        coords = (i + 0.5 - size / 2) * (2 * math.pi / train_size)
    else:  # centre
        coords = (i + 0.5) / size
    return coords.to(dtype)


def position_step(convention: str, train_size: int) -> float:
    """Distance between neighbouring patches at the training size, in the convention's units."""
    check_convention(convention, "position_step")
    train_size = _check_size("train_size", train_size, "position_step")
    if convention == "index":
        return 1.0
    if convention == "liere":
        return 1.0 / (train_size - 1) if train_size > 1 else 1.0
    if convention == "circular":
        return 2 * math.pi / train_size
    return 1.0 / train_size  # centre


def patch_positions(
    h: int,
    w: int,
    convention: str = "index",
    train_grid: tuple[int, int] | None = None,
    *,
    protocol: str = "native",
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Positions of an ``h x w`` patch grid, shape ``(h*w, 2)``, columns ``(x, y)``, row-major.

    Args:
        h, w: patch rows and columns of the image being encoded.
        convention: one of :data:`CONVENTIONS` (see the module docstring).
        train_grid: ``(h0, w0)``, the patch grid at the training resolution; defaults to
            ``(h, w)``. Only ``liere`` and ``circular`` depend on it (and the protocols).
        protocol: ``native`` (default), ``extrapolate`` or ``interpolate``: see :data:`PROTOCOLS`.

    Example:
        >>> patch_positions(2, 3)
        tensor([[0., 0.], [1., 0.], [2., 0.], [0., 1.], [1., 1.], [2., 1.]])
    """
    h = _check_size("h", h, "patch_positions")
    w = _check_size("w", w, "patch_positions")
    if train_grid is None:
        train_grid = (h, w)
    if len(train_grid) != 2:
        raise ValueError(f"patch_positions: train_grid must be (h0, w0), got {train_grid!r}")
    h0, w0 = train_grid
    xs = axis_positions(w, convention, w0, protocol=protocol, device=device, dtype=dtype)
    ys = axis_positions(h, convention, h0, protocol=protocol, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each, row-major
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1)


def sequence_positions(
    n: int,
    convention: str = "index",
    train_size: int | None = None,
    *,
    protocol: str = "native",
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Positions of a 1D sequence of ``n`` tokens, shape ``(n, 1)`` (for ``rope1d`` and 1D LieRE)."""
    return axis_positions(n, convention, train_size, protocol=protocol, device=device, dtype=dtype).unsqueeze(-1)


def grid_centre(pos: torch.Tensor) -> torch.Tensor:
    """Centre of the positions' bounding box, shape ``(1, axes)``.

    For a full patch grid this is the image centre in any convention (each is affine in the
    index), which is where ComRoPE puts the CLS token.
    """
    return (pos.amin(dim=0, keepdim=True) + pos.amax(dim=0, keepdim=True)) / 2
