"""Absolute position embeddings (APE): a vector added to each patch token before the first block.

* ``ape-learned``: a trainable table, one vector per patch of the training grid (ViT, Dosovitskiy
  et al. 2021; DeiT-III), trunc-normal init with std 0.02, excluded from weight decay.
* ``ape-sincos``: fixed 2D sines and cosines (MAE, He et al. 2022, ``util/pos_embed.py``).

The CLS token gets no embedding (DeiT-III and rope-vit add the table to the patches only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..positions import RESOLUTION_BEHAVIOUR, axis_positions, position_step
from .base import PositionEncoding

# The cubic convolution kernel of PyTorch's (and OpenCV's) bicubic interpolation.
_CUBIC_A = -0.75


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Weights ``(N, 4)`` of the samples at offsets -1, 0, 1, 2 for fractional offsets ``t`` in [0, 1)."""
    a = _CUBIC_A

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return torch.stack((far(t + 1), near(t), near(1 - t), far(2 - t)), dim=-1)


def bicubic_sample(table: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample a grid of vectors ``(h0, w0, D)`` at ``coords`` ``(N, 2)`` = (column, row) in cell units.

    Integer coordinates return the cells exactly; beyond the edges the border cells repeat.
    On the cell centres of another grid size this equals ``F.interpolate(mode="bicubic",
    align_corners=False)``, the resize rope-vit and LieRE apply to a learned APE.
    """
    h0, w0, _ = table.shape
    offsets = torch.arange(-1, 3, device=coords.device)
    start = coords.floor()
    frac = coords - start
    cols = (start[:, 0].long().unsqueeze(1) + offsets).clamp(0, w0 - 1)  # (N, 4)
    rows = (start[:, 1].long().unsqueeze(1) + offsets).clamp(0, h0 - 1)
    weights = _cubic_weights(frac[:, 1]).unsqueeze(2) * _cubic_weights(frac[:, 0]).unsqueeze(1)  # (N, 4, 4)
    neighbours = table[rows.unsqueeze(2), cols.unsqueeze(1)]  # (N, 4, 4, D)
    return torch.einsum("nij,nijd->nd", weights.to(table.dtype), neighbours)


class AdditiveEncoding(PositionEncoding):
    """Base of the APEs: ``embed(pos) -> (N, dim)`` with ``dim = num_heads * head_dim``."""

    kind = "additive"

    @property
    def dim(self) -> int:
        return self.head_dim * self.num_heads

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        """``enc(pos)`` is ``enc.embed(pos)``."""
        return self.embed(pos)

    def embed_grid(self, h: int, w: int, device=None) -> torch.Tensor:
        """``(h * w, dim)``: the embeddings of an ``h x w`` patch grid (what a ViT adds)."""
        return self.embed(self.positions(h, w, device=device))


class LearnedAPE(AdditiveEncoding):
    """Learned absolute position embedding: one trainable vector per patch of ``train_grid``.

    ``embed(pos)`` reads the table at any position by bicubic interpolation, so a new image size
    needs no separate resize step: with the default ``centre`` convention a larger grid samples
    the same table more densely (*interpolation*, as rope-vit and timm resize APE). With an
    extrapolating convention, positions past the training grid see the border vectors.

    ``resize`` decides how a whole grid of another size is read (:meth:`embed_grid`, which the ViT
    uses) when the convention interpolates:

    * ``"bicubic"`` (default): ``F.interpolate(mode="bicubic", align_corners=False)``, as rope-vit,
      DeiT and LieRE resize APE (the cubic kernel with a = -0.75); equal to :meth:`embed` there.
    * ``"antialias"``: the same with ``antialias=True``, as timm's ``resample_abs_pos_embed``
      (PIL's cubic kernel, a = -0.5, widened when shrinking). :func:`ropelib.vit.from_timm` sets it,
      so that converted models give timm's logits at every resolution.

    Parameters: ``table`` ``(h0 * w0, dim)``, row-major, ``trunc_normal_(std=init_std)`` with DeiT's and
    timm's 0.02 by default (cut at +-2, so in effect N(0, 0.02^2)).
    """

    name = "ape-learned"
    default_convention = "centre"

    RESIZES = ("bicubic", "antialias")

    def __init__(self, head_dim: int, num_heads: int = 1, *, train_grid: tuple[int, int] = (14, 14),
                 init_std: float = 0.02, resize: str = "bicubic", **options):
        super().__init__(head_dim, num_heads, train_grid=train_grid, **options)
        if not init_std >= 0:
            raise ValueError(f"{self.name}: init_std must be >= 0, got {init_std!r}")
        if resize not in self.RESIZES:
            raise ValueError(f"{self.name}: resize must be one of {self.RESIZES}, got {resize!r}")
        self.resize = resize
        h0, w0 = self.train_grid
        self.table = nn.Parameter(torch.empty(h0 * w0, self.dim))
        nn.init.trunc_normal_(self.table, std=float(init_std))

    def table_coordinates(self, pos: torch.Tensor) -> torch.Tensor:
        """Positions ``(N, 2)`` in units of training-grid cells (cell ``i`` at ``i``)."""
        h0, w0 = self.train_grid
        first = torch.tensor(
            [axis_positions(s, self.convention, s, dtype=torch.float64)[0].item() for s in (w0, h0)],
            dtype=pos.dtype, device=pos.device,
        )
        step = torch.tensor([position_step(self.convention, s) for s in (w0, h0)], dtype=pos.dtype,
                            device=pos.device)
        coords = (pos - first) / step
        # Rounding puts training-grid positions a few ulp off their cells; snap them, so that the
        # training grid reads the table exactly (weights 0, 1, 0, 0).
        nearest = coords.round()
        return torch.where((coords - nearest).abs() < 1e-4, nearest, coords)

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` embeddings for positions ``(N, 2)`` in this encoding's convention."""
        pos = self._check_positions(pos)
        h0, w0 = self.train_grid
        coords = self.table_coordinates(pos.to(self.table.device))
        return bicubic_sample(self.table.view(h0, w0, self.dim), coords)

    def embed_grid(self, h: int, w: int, device=None) -> torch.Tensor:
        h0, w0 = self.train_grid
        if (h, w) == (h0, w0):
            return self.table
        if self.resize == "bicubic" or RESOLUTION_BEHAVIOUR[self.convention] != "interpolation":
            return super().embed_grid(h, w, device)
        # timm's resample_abs_pos_embed; F.interpolate because our sampler has no antialiased kernel
        grid = self.table.view(1, h0, w0, self.dim).permute(0, 3, 1, 2).float()
        resized = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        return resized.permute(0, 2, 3, 1).reshape(h * w, self.dim).to(self.table.dtype)


class SinCosAPE(AdditiveEncoding):
    """Fixed 2D sine-cosine embedding in MAE's layout.

    The first ``dim/2`` channels encode x, the last ``dim/2`` encode y; each half is
    ``[sin(p omega_k), cos(p omega_k)]`` for ``omega_k = temperature^(-k / (dim/4))``,
    ``k < dim/4``. A function of the position, so any grid can be encoded (integer positions by
    default: a larger image extrapolates). Cached per grid.
    """

    name = "ape-sincos"

    def __init__(self, head_dim: int, num_heads: int = 1, *, temperature: float = 10000.0, **options):
        super().__init__(head_dim, num_heads, **options)
        if self.dim % 4:
            raise ValueError(
                f"{self.name}: num_heads * head_dim = {self.dim} must be divisible by 4 "
                "(sin and cos for each of x and y)"
            )
        if not temperature > 0:
            raise ValueError(f"{self.name}: temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        pos = self._check_positions(pos)
        return self._tables.get(self, pos, lambda: self._sincos(pos))

    def _sincos(self, pos: torch.Tensor) -> torch.Tensor:
        quarter = self.dim // 4
        k = torch.arange(quarter, dtype=torch.float64, device=pos.device)
        omega = self.temperature ** (-k / quarter)
        angles = pos.to(torch.float64).unsqueeze(-1) * omega  # (N, 2, dim/4)
        per_axis = torch.cat((angles.sin(), angles.cos()), dim=-1)  # (N, 2, dim/2)
        return per_axis.flatten(1).to(pos.dtype)  # x half, then y half
