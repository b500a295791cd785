"""The interface every position encoding shares, and the checks that guard it.

Three kinds of encoding:

* ``none``: no position information at all.
* ``additive``: a table added to the patch tokens once, before the first block
  (``embed(pos) -> (N, dim)``).
* ``rotary``: an orthogonal matrix per token, applied to queries and keys in every attention
  layer (``rotate(x, pos)``, ``matrix(pos)``).

A rotary encoding is defined by skew-symmetric generators ``A_1 .. A_k`` (one per position axis):
``R(p) = exp(p_1 A_1 + ... + p_k A_k)`` (Spherical RoPE: a product of such exponentials).
``matrix(pos)`` evaluates exactly that, densely and in float64, from ``generators()``; ``rotate``
is the fast path, and the tests hold the two together.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import torch
from torch import nn

from ..positions import check_convention, grid_centre, patch_positions, sequence_positions

PREFIX_POSITIONS = ("none", "centre")


class HeadDimError(ValueError):
    """A head_dim the encoding cannot split; ``divisor`` is what it must be a multiple of."""

    def __init__(self, message: str, divisor: int):
        super().__init__(message)
        self.divisor = divisor


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# How learned frequencies start: "fixed" at the encoding's fixed values (ours), or "uniform",
# U[0, 1) per frequency, as the authors of A Circular Argument do in their public code (ChasevdG/CARE).
FREQUENCY_INITS = ("fixed", "uniform")


def check_init(init: str, owner: str, learnable: bool) -> str:
    if init not in FREQUENCY_INITS:
        raise ValueError(f"{owner}: init must be one of {FREQUENCY_INITS}, got {init!r}")
    if init != "fixed" and not learnable:
        raise ValueError(f"{owner}: init={init!r} only applies to learned frequencies; pass learnable=True")
    return init


class PositionEncoding(nn.Module):
    """Base class: head geometry, position convention and input checks.

    Args:
        head_dim: channels per attention head (``d``).
        num_heads: attention heads (``H``); per-head parameters have this leading size.
        convention: position convention (see :mod:`ropelib.positions`); defaults to the paper's.
        train_grid: ``(h0, w0)`` patch grid at the training resolution, used by
            :meth:`positions` (and by encodings whose definition depends on it).
    """

    name: ClassVar[str] = "?"
    kind: ClassVar[str] = "?"
    default_convention: ClassVar[str] = "index"
    axes: int = 2  # width of a position vector

    def __init__(self, head_dim: int, num_heads: int = 1, *, convention: str | None = None,
                 train_grid: tuple[int, int] | None = None):
        super().__init__()
        if not _is_int(head_dim) or head_dim < 1:
            raise ValueError(f"{self.name}: head_dim must be a positive integer, got {head_dim!r}")
        if not _is_int(num_heads) or num_heads < 1:
            raise ValueError(f"{self.name}: num_heads must be a positive integer, got {num_heads!r}")
        self.head_dim = head_dim
        self.num_heads = num_heads
        self.convention = check_convention(convention or self.default_convention, owner=self.name)
        if train_grid is not None:
            if (len(train_grid) != 2 or not all(_is_int(s) and s > 0 for s in train_grid)):
                raise ValueError(f"{self.name}: train_grid must be (h0, w0) positive integers, got {train_grid!r}")
            train_grid = (int(train_grid[0]), int(train_grid[1]))
        self.train_grid = train_grid

    # -- helpers shared by every encoding ---------------------------------------------------------

    def _require_divisible(self, divisor: int, why: str) -> None:
        if self.head_dim % divisor:
            raise HeadDimError(
                f"{self.name}: head_dim={self.head_dim} must be divisible by {divisor} ({why}); "
                f"choose a head_dim that is a multiple of {divisor}", divisor
            )

    def positions(self, *grid: int, protocol: str = "native", device=None) -> torch.Tensor:
        """Positions in this encoding's convention: ``positions(h, w)`` for 2D encodings,
        ``positions(n)`` for 1D ones; ``protocol`` places grids other than ``train_grid``."""
        if self.axes == 1:
            if len(grid) != 1:
                raise ValueError(f"{self.name}: 1D encodings take positions(n), got {grid}")
            train = None if self.train_grid is None else self.train_grid[1]
            return sequence_positions(grid[0], self.convention, train, protocol=protocol, device=device)
        if len(grid) != 2:
            raise ValueError(f"{self.name}: 2D encodings take positions(h, w), got {grid}")
        return patch_positions(*grid, convention=self.convention, train_grid=self.train_grid, protocol=protocol,
                               device=device)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to exclude from weight decay: all of them (frequencies,
        generators, tables), as in every paper of the course."""
        return {name for name, _ in self.named_parameters()}

    def _check_positions(self, pos) -> torch.Tensor:
        if not isinstance(pos, torch.Tensor):
            raise TypeError(f"{self.name}: pos must be a torch.Tensor, got {type(pos).__name__}")
        if not pos.is_floating_point():
            raise TypeError(
                f"{self.name}: pos must be a floating-point tensor, got {pos.dtype}; "
                "convert it with pos.float()"
            )
        if pos.ndim != 2 or pos.shape[1] != self.axes:
            hint = "sequence_positions(n)" if self.axes == 1 else "patch_positions(h, w)"
            raise ValueError(
                f"{self.name}: pos must have shape (N, {self.axes}), got {tuple(pos.shape)}; "
                f"build it with ropelib.{hint}"
            )
        return pos

    def _param_dtype(self) -> torch.dtype:
        """float32, or float64 when the module has been converted with .double()."""
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return torch.promote_types(t.dtype, torch.float32)
        return torch.float32

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_heads={self.num_heads}, convention={self.convention!r}"


class NoPositionEncoding(PositionEncoding):
    """``none``: the transformer sees its tokens as a set (attention is permutation-equivariant)."""

    name = "none"
    kind = "none"

    def rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return x

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        pos = self._check_positions(pos)
        return pos.new_zeros(pos.shape[0], self.head_dim * self.num_heads)


class RotaryEncoding(PositionEncoding):
    """Base class of the rotary encodings: ``x -> R(p) x`` per token, ``R`` orthogonal.

    Args (in addition to :class:`PositionEncoding`'s):
        num_prefix_tokens: tokens before the patches (CLS, registers) that ``rotate`` expects in
            ``x``; ``pos`` may leave them out (they are then placed by ``prefix_position``) or
            include them as its first rows.
        prefix_position: ``"none"``: prefix tokens are not rotated, as in rope-vit, timm, LieRE
            and the Circular Argument (the default of every encoding but ComRoPE's). ``"centre"``:
            they sit at the centre of the patch grid and are rotated like a patch there, as in
            ComRoPE (``CustomVITConfig.get_positions``: CLS at (0.5, 0.5)), its default.

    Subclasses provide ``generators()`` (the definition) and ``_rotation_table``/``_rotate_with``
    (the fast path).
    """

    kind = "rotary"
    learnable: bool = False  # True when the rotation has trainable parameters
    default_prefix_position: ClassVar[str] = "none"

    def __init__(self, head_dim: int, num_heads: int = 1, *, num_prefix_tokens: int = 0,
                 prefix_position: str | None = None, **base):
        super().__init__(head_dim, num_heads, **base)
        if not _is_int(num_prefix_tokens) or num_prefix_tokens < 0:
            raise ValueError(f"{self.name}: num_prefix_tokens must be an integer >= 0, got {num_prefix_tokens!r}")
        prefix_position = prefix_position or self.default_prefix_position
        if prefix_position not in PREFIX_POSITIONS:
            raise ValueError(
                f"{self.name}: prefix_position must be one of {PREFIX_POSITIONS}, got {prefix_position!r}"
            )
        self.num_prefix_tokens = num_prefix_tokens
        self.prefix_position = prefix_position

    # -- to be provided by each variant -----------------------------------------------------------

    def generators(self) -> torch.Tensor:
        """Dense skew-symmetric generators, shape ``(axes, H, d, d)``."""
        raise NotImplementedError

    def _rotation_table(self, pos: torch.Tensor):
        """Whatever the fast path needs for positions ``(N, axes)`` (float32 or float64)."""
        raise NotImplementedError

    def _rotate_with(self, x: torch.Tensor, table) -> torch.Tensor:
        """Apply a table from :meth:`_rotation_table` to ``x``."""
        raise NotImplementedError

    # -- the public interface ---------------------------------------------------------------------

    def rotate(self, x: torch.Tensor, pos: torch.Tensor, table=None) -> torch.Tensor:
        """Rotate every token of ``x`` by its ``R(p)``.

        Args:
            x: ``(B, H, N, head_dim)`` queries or keys; any extra leading dimensions are batch
                dimensions, so queries and keys stacked as ``(2, B, H, N, d)`` share one table.
            pos: ``(N - num_prefix_tokens, axes)`` positions of the patch tokens, or ``(N, axes)``
                positions of every token, prefix tokens first (see :meth:`full_positions`).
            table: what :meth:`table` returned for these positions, when the caller computed it
                once for several layers (a ViT does so for fixed encodings, as timm's Eva does);
                by default it is computed here.

        Returns:
            A tensor shaped like ``x``, in ``x``'s dtype: token ``n`` is ``R(pos[n]) @ x[..., n, :]``.
        """
        pos = self._check_rotate_inputs(x, pos)
        if table is None:
            table = self.table(pos, complete=self.num_prefix_tokens > 0 and pos.shape[0] == x.shape[-2])
        return self._rotate_with(x, table)

    def table(self, pos: torch.Tensor, complete: bool = False):
        """The rotation table of positions ``pos`` (patches, or every token if ``complete``):
        angles and their cos/sin, or rotation blocks. Computed in float32 at least, outside
        autocast: angles reach tens of radians, and bf16 would put errors of ~0.1 rad on them."""
        full = pos if complete else self.full_positions(pos)
        dtype = torch.promote_types(pos.dtype, self._param_dtype())
        with torch.autocast(device_type=pos.device.type, enabled=False):
            return self._rotation_table(full.to(dtype))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``enc(x, pos)`` is ``enc.rotate(x, pos)``."""
        return self.rotate(x, pos)

    def matrix(self, pos: torch.Tensor) -> torch.Tensor:
        """The rotation matrices themselves, shape ``(H, num_prefix_tokens + N, d, d)`` for the
        positions ``(N, axes)`` of the patches.

        Evaluated from the definition, ``exp(sum_i p_i A_i)`` of the dense generators, in
        float64, and returned in ``pos``'s dtype. Meant for teaching and tests: it costs
        ``O(N d^3)``, where ``rotate`` costs ``O(N d)`` (planar) or ``O(N d b)`` (blocks).
        """
        pos = self._check_positions(pos)
        full = self.full_positions(pos).to(torch.float64)
        generators = self.generators().to(torch.float64)
        return self._exp_generators(full, generators).to(pos.dtype)

    def _exp_generators(self, pos: torch.Tensor, generators: torch.Tensor) -> torch.Tensor:
        """``exp(sum_c pos[n, c] A_c)`` for every token: ``(H, N, d, d)``."""
        # .contiguous(): torch 2.14's matrix_exp fails on batches with permuted strides.
        return torch.linalg.matrix_exp(torch.einsum("nc,chij->hnij", pos, generators).contiguous())

    # -- internals --------------------------------------------------------------------------------

    def full_positions(self, pos: torch.Tensor) -> torch.Tensor:
        """``(num_prefix_tokens + N, axes)``: the patches' positions ``(N, axes)`` with the prefix
        tokens' in front: the origin (``R(0) = I``: not rotated) or the grid centre.

        A caller that perturbs the patches (ComRoPE's training-time jitter) builds this from the
        unperturbed grid first, so that the CLS token stays exactly at the centre."""
        if self.num_prefix_tokens == 0:
            return pos
        if self.prefix_position == "centre":
            prefix = grid_centre(pos).expand(self.num_prefix_tokens, -1)
        else:
            prefix = pos.new_zeros(self.num_prefix_tokens, pos.shape[1])
        return torch.cat((prefix, pos), dim=0)

    def _check_rotate_inputs(self, x, pos) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{self.name}: x must be a floating-point tensor, got {x.dtype}")
        if x.ndim < 4:
            raise ValueError(
                f"{self.name}: x must have shape (B, H, N, head_dim) (extra leading batch dims allowed), "
                f"got {x.ndim} dims {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[-1] != self.head_dim:
            raise ValueError(
                f"{self.name}: x has {x.shape[-1]} channels per head but the encoding was built with "
                f"head_dim={self.head_dim}; x must be (B, H, N, head_dim)"
            )
        if x.shape[-3] != self.num_heads:
            raise ValueError(
                f"{self.name}: x has {x.shape[-3]} heads (dim -3) but the encoding was built with "
                f"num_heads={self.num_heads}; x must be (B, H, N, head_dim)"
            )
        pos = self._check_positions(pos)
        if x.shape[-2] not in (pos.shape[0] + self.num_prefix_tokens, pos.shape[0]):
            raise ValueError(
                f"{self.name}: x has {x.shape[-2]} tokens but pos has {pos.shape[0]} rows and "
                f"num_prefix_tokens={self.num_prefix_tokens}; x must have num_prefix_tokens + len(pos) "
                "tokens (build the encoding with num_prefix_tokens=1 if x carries a CLS token)"
            )
        if pos.device != x.device:
            raise ValueError(
                f"{self.name}: pos is on {pos.device} but x is on {x.device}; move it with pos.to(x.device)"
            )
        return pos

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        if self.num_prefix_tokens:
            extra += f", num_prefix_tokens={self.num_prefix_tokens}, prefix_position={self.prefix_position!r}"
        return extra


def option_names(cls) -> list[str]:
    """The keyword options a class accepts (its and its bases' keyword-only parameters)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in names:
                names.append(p.name)
    return names
