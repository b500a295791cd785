"""The one smoke switch of the course: ``ROPELIB_SMOKE=1``.

Every notebook and the training code read it through :func:`is_smoke`, and then run tiny:
synthetic data, a tiny model, a few steps, no downloads, no progress bars. Continuous
integration sets it; a reader on Colab leaves it unset and gets the real sizes.
"""

from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_smoke() -> bool:
    """True when ``ROPELIB_SMOKE`` is set to 1/true/yes/on; an unrecognised value is an error."""
    value = os.environ.get("ROPELIB_SMOKE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"ROPELIB_SMOKE={os.environ['ROPELIB_SMOKE']!r} is not understood; set it to 1 (smoke mode) or 0 / unset it"
    )
