"""Every position encoding of the course, built by name.

>>> enc = build_encoding("mixed", head_dim=64, num_heads=6)
>>> pos = patch_positions(14, 14)              # (196, 2)
>>> enc.rotate(torch.randn(2, 6, 196, 64), pos).shape
torch.Size([2, 6, 196, 64])
"""

from __future__ import annotations

from .additive import AdditiveEncoding, LearnedAPE, SinCosAPE
from .base import NoPositionEncoding, PositionEncoding, RotaryEncoding, option_names
from .block import BlockRotary, ComRoPEAP, ComRoPELD, LieRE
from .planar import AxialRoPE, MixedRoPE, PlanarRotary, RoPE1D, UniformRoPE
from .spherical import SphericalRoPE

ENCODINGS: dict[str, type[PositionEncoding]] = {
    cls.name: cls
    for cls in (
        NoPositionEncoding, LearnedAPE, SinCosAPE,
        RoPE1D, AxialRoPE, UniformRoPE, MixedRoPE, SphericalRoPE,
        LieRE, ComRoPEAP, ComRoPELD,
    )
}
ENCODING_NAMES: tuple[str, ...] = tuple(ENCODINGS)
ROTARY_NAMES: tuple[str, ...] = tuple(n for n, c in ENCODINGS.items() if c.kind == "rotary")
ADDITIVE_NAMES: tuple[str, ...] = tuple(n for n, c in ENCODINGS.items() if c.kind == "additive")


def build_encoding(name: str, head_dim: int, num_heads: int = 1, **options) -> PositionEncoding:
    """Build one attention layer's position encoding by name.

    Args:
        name: one of :data:`ENCODING_NAMES`.
        head_dim: channels per head; each variant has its own divisibility requirement.
        num_heads: heads of the attention layer.
        **options: the variant's options (see its class); a misspelt option is an error.
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; valid names: {', '.join(ENCODING_NAMES)}")
    cls = ENCODINGS[name]
    valid = option_names(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )
    return cls(head_dim, num_heads, **options)


__all__ = [
    "ENCODINGS", "ENCODING_NAMES", "ROTARY_NAMES", "ADDITIVE_NAMES", "build_encoding", "option_names",
    "PositionEncoding", "RotaryEncoding", "AdditiveEncoding", "NoPositionEncoding",
    "PlanarRotary", "BlockRotary", "LearnedAPE", "SinCosAPE", "RoPE1D", "AxialRoPE", "UniformRoPE",
    "MixedRoPE", "SphericalRoPE", "LieRE", "ComRoPEAP", "ComRoPELD",
]
