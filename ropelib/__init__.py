"""ropelib: rotary position embeddings for vision transformers, every variant behind one interface.

>>> import ropelib
>>> enc = ropelib.build_encoding("axial", head_dim=64, num_heads=6)
>>> pos = ropelib.patch_positions(14, 14, convention=enc.convention)   # (196, 2), columns (x, y)
>>> q_rot = enc.rotate(q, pos)                                          # (B, 6, 196, 64)
>>> R = enc.matrix(pos)                                                 # (6, 196, 64, 64)
"""

from .encodings import (
    ADDITIVE_NAMES,
    ENCODING_NAMES,
    ENCODINGS,
    ROTARY_NAMES,
    PositionEncoding,
    RotaryEncoding,
    build_encoding,
)
from .positions import CONVENTIONS, RESOLUTION_BEHAVIOUR, patch_positions, sequence_positions
from .smoke import is_smoke

__version__ = "0.1.0"

__all__ = [
    "ADDITIVE_NAMES", "CONVENTIONS", "ENCODINGS", "ENCODING_NAMES", "RESOLUTION_BEHAVIOUR", "ROTARY_NAMES",
    "PositionEncoding", "RotaryEncoding", "build_encoding", "is_smoke", "patch_positions",
    "sequence_positions",
]
