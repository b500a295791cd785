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
        """``(N, dim)`` embeddings for positions ``(N, 2)`` in this encoding's convention: the table
        read by ``F.grid_sample(mode="bicubic", padding_mode="border")`` (the cubic kernel of
        ``F.interpolate``, a = -0.75), exact on the training grid, the border repeated beyond it."""
        pos = self._check_positions(pos)
        h0, w0 = self.train_grid
        coords = self.table_coordinates(pos.to(self.table.device)).double()
        # Bicubic with the border cells repeated: grid_sample's taps past the edge are clamped to it
        # (the same numbers as F.interpolate on grids). Cell i of n sits at (2i + 1) / n - 1 in its
        # normalised coordinates; in float64 the round trip costs ~1e-16, so cells are read exactly.
        grid = (2 * coords + 1) / coords.new_tensor([w0, h0]) - 1
        table = self.table.double().T.reshape(1, self.dim, h0, w0)
        sampled = F.grid_sample(table, grid.view(1, 1, -1, 2), mode="bicubic", padding_mode="border",
                                align_corners=False)
        return sampled.view(self.dim, -1).T.to(self.table.dtype)

    def embed_grid(self, h: int, w: int, device=None) -> torch.Tensor:
        h0, w0 = self.train_grid
        if (h, w) == (h0, w0):
            return self.table
        if self.resize == "bicubic" or RESOLUTION_BEHAVIOUR[self.convention] != "interpolation":
            return super().embed_grid(h, w, device)
        # timm's resample_abs_pos_embed: grid_sample has no antialiased kernel
        grid = self.table.view(1, h0, w0, self.dim).permute(0, 3, 1, 2).float()
        resized = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        return resized.permute(0, 2, 3, 1).reshape(h * w, self.dim).to(self.table.dtype)


class SinCosAPE(AdditiveEncoding):
    """Fixed 2D sine-cosine embedding in MAE's layout.

    The first ``dim/2`` channels encode x, the last ``dim/2`` encode y; each half is
    ``[sin(p omega_k), cos(p omega_k)]`` for ``omega_k = temperature^(-k / (dim/4))``,
    ``k < dim/4``. A function of the position, so any grid can be encoded (integer positions by
    default: a larger image extrapolates). Computed at every call: a few sines per position.
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
        quarter = self.dim // 4
        k = torch.arange(quarter, dtype=torch.float64, device=pos.device)
        omega = self.temperature ** (-k / quarter)
        angles = pos.to(torch.float64).unsqueeze(-1) * omega  # (N, 2, dim/4)
        per_axis = torch.cat((angles.sin(), angles.cos()), dim=-1)  # (N, 2, dim/2)
        return per_axis.flatten(1).to(pos.dtype)  # x half, then y half
