"""Remedies for testing a RoPE ViT at a resolution other than its training one, and DINOv3's
training-time coordinate augmentation.

A RoPE ViT trained on an ``h0 x w0`` patch grid and tested on ``h x w`` sees positions (with the
``extrapolate`` placement) beyond the training image, and so rotation angles it never saw. The
remedies of the long-context literature, applied per image axis as vision papers do, change the
frequencies (or the positions) so that the test angles stay closer to the trained ones:

* ``none``: nothing changes.
* ``pi``, position interpolation (Chen et al. 2023, "Extending Context Window of Large Language
  Models via Positional Interpolation"), per axis: positions ``p -> e + (p - e) / s_a``, the test
  image squeezed onto the training image; exactly ropelib's ``interpolate`` protocol.
* ``ntk``, NTK-aware scaling (bloc97 2023, "NTK-Aware Scaled RoPE"; per axis as FiT's VisionNTK,
  Lu et al. 2024, "FiT: Flexible Vision Transformer for Diffusion Model"): frequencies
  ``omega -> omega * s_a^(-u)``, ``u`` from 0 (the highest frequency: kept) to 1 (the lowest:
  divided by ``s_a``).
* ``yarn`` (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language
  Models"; per axis as FiT's VisionYaRN): frequencies ``omega -> omega (gamma + (1 - gamma) / s_a)``
  with ``gamma`` a ramp in the turns a frequency makes across the training image, and attention
  logits times ``(0.1 ln s + 1)^2``.

Scales are per axis, in the column order of ropelib's positions ``(x, y)``:
``s_x = w / w0``, ``s_y = h / h0`` (:func:`grid_scales`).

**Which positions.** Every remedy starts from positions placed with the training spacing, i.e.
``encoding.positions(h, w, protocol="extrapolate")`` (for the ``index`` convention that is the
``native`` placement too). ``e`` is the training image's leading edge along the axis (the first
training patch's coordinate minus half a patch: ``-1/2`` for ``index``, ``-pi`` for ``circular``,
``0`` for ``centre``). PI maps such positions onto the ``interpolate`` placement exactly, for
every rotary encoding (it only moves positions). NTK and YaRN change frequencies, so they are
defined for the planar encodings only (``rope1d``, ``axial``, ``uniform``, ``mixed``); they keep
the same anchor: a plane's angle is ``omega' . (p - e) + omega . e``, so the training image's
edge keeps its angle and a YaRN whose every frequency is interpolated *is* PI (to float
rounding; tested). Between patches the anchor is invisible (a constant phase per plane, and
planar rotations are relative); it only shows against the unrotated prefix tokens (CLS at the
origin), exactly as the ``interpolate`` protocol does. (FiT and the LLM code anchor at position 0,
the first patch; FiT has no CLS token, so the two agree on everything it computes.)

**NTK, exponent convention.** For a geometric set ``omega_k = base^(-k/m)``, ``k = 0..m-1``
(``m`` frequencies on the axis: ``d/4`` for axial, ``d/2`` for rope1d), NTK-aware scaling raises
the base to ``base' = base * s^(m/(m-1))``, so that ``omega'_k = omega_k * s^(-k/(m-1))``: the
highest frequency (``k = 0``) is unchanged and the lowest (``k = m-1``) is divided by ``s``. In
the notation of bloc97 and FiT (``find_newbase_ntk``: ``base * scale^(D/(D-2))``, ``D`` the
channels of one axis, ``D = 2m``) this is the same exponent, ``D/(D-2) = m/(m-1)``.

*Any* frequency set (learned axial, Mixed RoPE's learned 2D vectors) uses the same law written
with log-magnitudes: per head and per axis, over the non-zero components ``|omega^a_k|`` of that
axis, ``u_k = ln(max/|omega^a_k|) / ln(max/min)`` and ``omega'^a_k = omega^a_k * s_a^(-u_k)``. For
a geometric set ``u_k = k/(m-1)`` exactly, so this *is* NTK there; it depends continuously on
learned frequencies (a rank would jump when two of them swap order). A set without spread
(``uniform``: ``max = min``) has no "highest" and "lowest", and NTK refuses it (use ``pi`` or
``yarn``).

**Mixed vectors** (both an x and a y component): each component is scaled by its own axis's
factor, computed from that component (the plane's frequency *along that axis*, the rate at which
its angle turns when one moves along the axis). Why: the angle is ``omega^x p_x + omega^y p_y``,
so scaling the x component by ``1/s_x`` and the y component by ``1/s_y`` is exactly per-axis
position interpolation; NTK and YaRN decide, per frequency, how much of that interpolation to
apply, and a plane that turns fast along x but slowly along y must be extrapolated along x and
interpolated along y. For axial sets (one component zero) this reduces to the per-axis rule.

**YaRN.** Per axis, with ``L_a`` the training extent in position units (``w0`` patches times the
patch spacing: ``w0`` for ``index``, ``2 pi`` for ``circular``, 1 for ``centre``), a component
makes ``r = L_a |omega^a| / (2 pi)`` turns across the training image (YaRN's ``r = L / lambda``).
``gamma(r) = clamp((r - alpha) / (beta - alpha), 0, 1)`` (YaRN's "NTK-by-parts" ramp, ``ramp="linear"``), and
``omega' = (1 - gamma) omega / s + gamma omega``: ``r < alpha`` fully interpolated, ``r > beta``
unchanged. ``alpha = 1``, ``beta = 32`` are YaRN's defaults (``beta_slow``, ``beta_fast`` in its
and FiT's code). ``ramp="log"`` is linear in ``ln r`` instead: the public code (jquesnelle/yarn,
FiT's ``find_correction_range`` + ``linear_ramp_mask``) ramps over dimension indices, which are
linear in ``ln r`` for a geometric set (up to its rounding of the ends to whole dimensions).
Note for ViTs: a 14-patch training grid gives axial RoPE (``theta = 100``) at most ``14 / 2 pi ~ 2.2``
turns, far below ``beta = 32`` (set for LLaMA's 2048-4096 tokens): with YaRN's defaults a ViT's
YaRN is almost PI plus the temperature. Lower ``beta`` to let high frequencies extrapolate.

*Temperature*: YaRN multiplies the attention logits by ``(0.1 ln s + 1)^2`` (its code multiplies
cos and sin, hence queries and keys, by ``mscale = 0.1 ln s + 1``), 1 when ``s <= 1``. For 2D we
take ``s = max(s_x, s_y)`` as FiT does (``scale = max(H, W) / ori_max_pe_len``; ``combine="max"``);
``combine="area"`` uses ``sqrt(s_x s_y)`` (the square root of the token-count ratio).
``temperature="table"`` (default) folds ``mscale`` into the table's cos and sin like YaRN's and
FiT's code, so a caller needs no change to its attention; ``"logits"`` keeps the table orthogonal
and :func:`attention_scale` returns the logit factor to apply; ``"none"`` drops it (ablation).

**Clamping.** FiT computes its scale as ``clamp_min(size / train_size, 1)``: NTK and YaRN are
extensions, and on a *smaller* grid they leave the frequencies alone (``clamp=True``, default;
with ``clamp=False`` a scale below 1 raises frequencies instead). PI is not clamped: it is the
``interpolate`` protocol, which also stretches a smaller grid onto the training image.

**Skipped.** Spherical RoPE, LieRE and ComRoPE rotate in triplets or blocks; ``pi`` (positions
only) applies to them, ``ntk`` and ``yarn`` refuse them (one could scale the eigen-frequencies of
LieRE/ComRoPE generators, but that is not a published remedy).

**Training time.** :func:`dinov3_coords` is DINOv3's RoPE coordinate augmentation (shift, jitter,
rescale; Simeoni et al. 2025), matching timm's ``RotaryEmbeddingDinoV3``. ComRoPE's training-time
patch jitter is already in the ViT (``ViTConfig.position_jitter``, ``ropelib.vit._jitter``).
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from .encodings.base import RotaryEncoding
from .encodings.planar import PlanarRotary
from .positions import axis_positions, position_step

REMEDIES = ("none", "pi", "ntk", "yarn")
YARN_RAMPS = ("linear", "log")
TEMPERATURES = ("table", "logits", "none")
COMBINES = ("max", "area")

# Each remedy's options and their defaults (see the module docstring for the sources).
DEFAULTS: dict[str, dict] = {
    "none": {},
    "pi": {},
    "ntk": {"clamp": True},
    "yarn": {"alpha": 1.0, "beta": 32.0, "ramp": "linear", "clamp": True, "temperature": "table",
             "combine": "max"},
}


# -- options, grids, scales --------------------------------------------------------------------

def remedy_options(remedy: str, owner: str = "remedies", **options) -> dict:
    """``remedy``'s options with their defaults filled in, checked; raises ``ValueError`` for an
    unknown remedy or a bad value and ``TypeError`` for an option the remedy does not take."""
    if remedy not in REMEDIES:
        raise ValueError(f"{owner}: unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
    defaults = DEFAULTS[remedy]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise TypeError(f"{owner}: remedy {remedy!r} takes no option(s) {', '.join(map(repr, unknown))}; "
                        f"its options: {valid}")
    opts = {**defaults, **options}
    if "clamp" in opts and not isinstance(opts["clamp"], bool):
        raise ValueError(f"{owner}: clamp must be True or False, got {opts['clamp']!r}")
    if remedy == "yarn":
        alpha, beta = opts["alpha"], opts["beta"]
        if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in (alpha, beta)) \
                or not 0 < alpha < beta:
            raise ValueError(f"{owner}: yarn needs 0 < alpha < beta (turns across the training image), "
                             f"got alpha={alpha!r}, beta={beta!r}")
        for name, allowed in (("ramp", YARN_RAMPS), ("temperature", TEMPERATURES), ("combine", COMBINES)):
            if opts[name] not in allowed:
                raise ValueError(f"{owner}: yarn's {name} must be one of {', '.join(allowed)}, got {opts[name]!r}")
    return opts


def _sizes(value, axes: int, what: str, owner: str) -> tuple[int, ...]:
    """A grid as sizes in the column order of positions: ``(h, w) -> (w, h)`` for 2D; ``n``,
    ``(n,)`` (or ``(h, w) -> (w,)``, as :meth:`PositionEncoding.positions` reads a 1D train grid)
    for 1D."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        value = tuple(value)
    except TypeError:
        value = None
    ok = value is not None and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if ok and axes == 2 and len(value) == 2:
        return (value[1], value[0])
    if ok and axes == 1 and len(value) in (1, 2):
        return (value[-1],)
    shape = "(h, w)" if axes == 2 else "n or (n,)"
    raise ValueError(f"{owner}: {what} must be {shape} positive integers for a {axes}D encoding, got {value!r}")


def grid_scales(train_grid, grid) -> tuple[float, ...]:
    """Per-axis scales in the column order of positions: ``(w / w0, h / h0)`` for 2D grids
    ``(h, w)``, ``(n / n0,)`` for 1D sizes ``n``."""
    axes = 1 if isinstance(grid, int) or len(tuple(grid)) == 1 else 2
    train = _sizes(train_grid, axes, "train_grid", "grid_scales")
    test = _sizes(grid, axes, "grid", "grid_scales")
    return tuple(n / n0 for n, n0 in zip(test, train))


def _geometry(encoding, train_grid, grid, owner):
    """``(train sizes, scales, edges, extents)`` per position column."""
    train_grid = encoding.train_grid if train_grid is None else train_grid
    if train_grid is None:
        raise ValueError(f"{owner}: {encoding.name} was built without train_grid; pass train_grid=(h0, w0)")
    train = _sizes(train_grid, encoding.axes, "train_grid", owner)
    test = _sizes(grid, encoding.axes, "grid", owner)
    scales = tuple(n / n0 for n, n0 in zip(test, train))
    steps = tuple(position_step(encoding.convention, n0) for n0 in train)
    # The training image's leading edge: its first patch centre minus half a patch.
    edges = tuple(axis_positions(n0, encoding.convention, n0, dtype=torch.float64)[0].item() - step / 2
                  for n0, step in zip(train, steps))
    extents = tuple(n0 * step for n0, step in zip(train, steps))
    return train, scales, edges, extents


def _require_rotary(encoding, remedy: str, owner: str) -> None:
    if not isinstance(encoding, RotaryEncoding):
        raise ValueError(f"{owner}: remedy {remedy!r} applies to rotary encodings; "
                         f"{getattr(encoding, 'name', type(encoding).__name__)!r} is not one")


def _require_planar(encoding, remedy: str, owner: str) -> None:
    _require_rotary(encoding, remedy, owner)
    if not isinstance(encoding, PlanarRotary):
        raise ValueError(
            f"{owner}: remedy {remedy!r} rescales the frequencies of planar rotations (rope1d, axial, uniform, "
            f"mixed); {encoding.name!r} rotates in triplets or blocks and has no such frequencies. "
            "Use remedy 'pi' (it only moves positions) or 'none'"
        )


# -- frequencies -------------------------------------------------------------------------------

def remedied_frequencies(encoding: PlanarRotary, train_grid, grid, remedy: str, **options) -> torch.Tensor:
    """The frequency vectors of a planar encoding after a remedy, shaped like
    ``encoding.frequency_vectors()``: ``(H or 1, d/2, axes)``.

    ``"pi"`` gives the frequency view of PI, ``omega^a / s_a`` per component (unclamped); the
    table of :func:`rescaled_table` adds the anchor phase that makes it the ``interpolate``
    protocol exactly. The factors are computed from detached frequencies, so a learned encoding's
    gradient flows through ``omega * factor`` as through a fixed rescale.

    Args:
        encoding: a :class:`PlanarRotary` (rope1d, axial, uniform, mixed).
        train_grid: ``(h0, w0)`` (1D: ``n0``); ``None`` takes ``encoding.train_grid``.
        grid: ``(h, w)`` of the test image (1D: ``n``).
        remedy: one of :data:`REMEDIES`; options as in :data:`DEFAULTS`.
    """
    owner = "remedied_frequencies"
    opts = remedy_options(remedy, owner, **options)
    _require_planar(encoding, remedy, owner)
    freqs = encoding.frequency_vectors()
    if remedy == "none":
        return freqs
    _, scales, _, extents = _geometry(encoding, train_grid, grid, owner)
    return freqs * _factors(encoding, freqs.detach(), scales, extents, remedy, opts, owner).to(freqs.dtype)


def _factors(encoding, freqs, scales, extents, remedy, opts, owner) -> torch.Tensor:
    """Per-component multipliers ``(H or 1, d/2, axes)``, in float64; exactly 1 where s_a = 1."""
    mag = freqs.abs().to(torch.float64)
    s = torch.tensor(scales, dtype=torch.float64, device=mag.device)
    if opts.get("clamp"):
        s = s.clamp(min=1.0)
    if remedy == "pi":
        return (1.0 / s).expand_as(mag)
    if remedy == "ntk":
        nonzero = mag > 0
        hi = mag.amax(dim=1, keepdim=True)  # per head and axis
        lo = torch.where(nonzero, mag, torch.inf).amin(dim=1, keepdim=True)
        spread = torch.log(hi / lo)  # (H, 1, axes); nan/-inf where an axis has no non-zero component
        flat = (spread == 0) & (s != 1)
        if bool(flat.any()):
            raise ValueError(
                f"{owner}: remedy 'ntk' keeps the highest frequency and divides the lowest by s, but "
                f"{encoding.name!r} has one frequency per axis (no spread); use remedy 'pi' or 'yarn'"
            )
        usable = nonzero & (spread > 0)
        u = torch.where(usable, torch.log(hi / mag.clamp(min=1e-300)) / spread.clamp(min=1e-300), 0.0)
        return torch.where(usable, s ** (-u), 1.0)
    # yarn: the ramp in the turns r each component makes across the training image
    L = torch.tensor(extents, dtype=torch.float64, device=mag.device)
    r = L * mag / (2 * math.pi)
    alpha, beta = float(opts["alpha"]), float(opts["beta"])
    if opts["ramp"] == "linear":
        gamma = ((r - alpha) / (beta - alpha)).clamp(0.0, 1.0)
    else:
        gamma = ((torch.log(r) - math.log(alpha)) / (math.log(beta) - math.log(alpha))).clamp(0.0, 1.0)
    # gamma + (1 - gamma)/s written so that s = 1 gives exactly 1
    return 1.0 - (1.0 - gamma) * (1.0 - 1.0 / s)


# -- tables ------------------------------------------------------------------------------------

def pi_positions(encoding: RotaryEncoding, pos: torch.Tensor, train_grid, grid, *,
                 complete: bool = False) -> torch.Tensor:
    """Position interpolation: ``p -> e + (p - e) / s_a`` per column (Chen et al. 2023, per axis).

    Args:
        pos: ``(N, axes)`` positions placed with the training spacing (``protocol="extrapolate"``);
            with ``complete`` the prefix tokens' rows come first (see :meth:`RotaryEncoding.table`).

    Returns:
        ``(N, axes)``: for a grid's ``extrapolate`` positions, its ``interpolate`` positions
        (equal to float rounding). Prefix rows at the origin (``prefix_position="none"``: not
        rotated) are left there; a centre prefix row moves with the grid, whose centre the affine
        map carries along.
    """
    owner = "pi_positions"
    _require_rotary(encoding, "pi", owner)
    pos = encoding._check_positions(pos)
    _, scales, edges, _ = _geometry(encoding, train_grid, grid, owner)
    wide = pos.to(torch.float64)
    columns = [col if s == 1 else e + (col - e) / s for col, s, e in zip(wide.unbind(-1), scales, edges)]
    out = torch.stack(columns, dim=-1).to(pos.dtype)
    keep = _unrotated_prefix(encoding, complete)
    if keep:
        out = torch.cat((pos[:keep], out[keep:]))
    return out


def _unrotated_prefix(encoding: RotaryEncoding, complete: bool) -> int:
    """Leading rows of a complete position table that are prefix tokens kept unrotated."""
    if complete and encoding.prefix_position == "none":
        return encoding.num_prefix_tokens
    return 0


def yarn_temperature(train_grid, grid, combine: str = "max") -> float:
    """YaRN's ``mscale = 0.1 ln s + 1`` (1 for ``s <= 1``), by which queries and keys are each
    multiplied; ``s = max(s_x, s_y)`` (FiT) or ``sqrt(s_x s_y)`` (``combine="area"``)."""
    if combine not in COMBINES:
        raise ValueError(f"yarn_temperature: combine must be one of {', '.join(COMBINES)}, got {combine!r}")
    return _mscale(grid_scales(train_grid, grid), combine)


def _mscale(scales: tuple[float, ...], combine: str) -> float:
    s = max(scales) if combine == "max" else math.prod(scales) ** (1 / len(scales))
    return 0.1 * math.log(s) + 1.0 if s > 1 else 1.0


def attention_scale(remedy: str, train_grid, grid, **options) -> float:
    """The factor by which a caller must still multiply the attention logits ``q.k / sqrt(d)``
    when it uses :func:`rescaled_table` with the same options.

    It is 1 except for ``yarn`` with ``temperature="logits"``, where it is YaRN's
    ``(0.1 ln s + 1)^2`` (with the default ``temperature="table"`` the table already carries it, so
    1 is returned and nothing is applied twice). Pass it to attention as
    ``F.scaled_dot_product_attention(q, k, v, scale=attention_scale(...) / math.sqrt(d))``.
    """
    opts = remedy_options(remedy, "attention_scale", **options)
    if remedy != "yarn" or opts["temperature"] != "logits":
        return 1.0
    return yarn_temperature(train_grid, grid, opts["combine"]) ** 2


def rescaled_table(encoding: RotaryEncoding, pos: torch.Tensor, train_grid, grid, remedy: str = "none", *,
                   complete: bool = False, **options):
    """The rotation table of ``pos`` under a remedy, usable as ``encoding.rotate(x, pos, table)``.

    Args:
        encoding: a rotary encoding (``pi``, ``none``: any; ``ntk``, ``yarn``: planar ones).
        pos: ``(N, axes)`` patch positions placed with the training spacing
            (``encoding.positions(h, w, protocol="extrapolate")``), or with ``complete`` the
            positions of every token, prefix tokens first (as :meth:`RotaryEncoding.table`).
        train_grid: ``(h0, w0)`` (1D: ``n0``); ``None`` takes ``encoding.train_grid``.
        grid: ``(h, w)`` of the image being encoded (1D: ``n``): it gives the scales ``s_a``.
        remedy: one of :data:`REMEDIES`.
        complete: as in :meth:`RotaryEncoding.table`.
        **options: the remedy's (:data:`DEFAULTS`): ``ntk``: ``clamp``; ``yarn``: ``alpha``,
            ``beta``, ``ramp``, ``clamp``, ``temperature``, ``combine``.

    Returns:
        What :meth:`RotaryEncoding.table` returns: for planar encodings ``(angles, (cos, sin))``
        with ``angles`` ``(H or 1, P + N, d/2)`` (``P`` prefix tokens). ``none`` is exactly
        ``encoding.table(pos, complete)``; ``pi`` is ``encoding.table`` of :func:`pi_positions`;
        ``ntk``/``yarn`` give plane ``k`` the angle ``omega'_k . (p - e) + omega_k . e`` (``e`` the
        training image's edge), 0 for prefix tokens that are not rotated, and with ``yarn``'s
        ``temperature="table"`` cos and sin times YaRN's ``mscale``. At the training grid every
        remedy returns the encoding's own table, bit for bit.
    """
    owner = "rescaled_table"
    opts = remedy_options(remedy, owner, **options)
    if remedy in ("ntk", "yarn"):
        _require_planar(encoding, remedy, owner)
    else:
        _require_rotary(encoding, remedy, owner)
    pos = encoding._check_positions(pos)
    if remedy == "none":
        return encoding.table(pos, complete)
    if remedy == "pi":
        return encoding.table(pi_positions(encoding, pos, train_grid, grid, complete=complete), complete)

    _, scales, edges, extents = _geometry(encoding, train_grid, grid, owner)
    full = pos if complete else encoding.full_positions(pos)
    # prefix rows lead `full` either way (full_positions puts them there, or the caller did)
    keep = _unrotated_prefix(encoding, True)
    # As RotaryEncoding.table: at least float32, outside autocast (angles reach tens of radians).
    dtype = torch.promote_types(pos.dtype, encoding._param_dtype())
    with torch.autocast(device_type=pos.device.type, enabled=False):
        freqs = encoding.frequency_vectors().to(dtype)
        factors = _factors(encoding, freqs.detach(), scales, extents, remedy, opts, owner)
        remedied = freqs * factors.to(dtype)
        full = full.to(dtype)
        edge = torch.tensor(edges, dtype=dtype, device=pos.device)
        # omega'.(p - e) + omega.e = omega'.p + (omega - omega').e: exactly omega.p where omega' = omega
        angles = torch.einsum("nc,hkc->hnk", full, remedied)
        angles = angles + torch.einsum("c,hkc->hk", edge, freqs - remedied).unsqueeze(1)
        if keep:
            rotated = torch.arange(full.shape[0], device=pos.device) >= keep
            angles = torch.where(rotated[None, :, None], angles, 0.0)
        with torch.no_grad():
            cos, sin = angles.cos(), angles.sin()
            if remedy == "yarn" and opts["temperature"] == "table":
                # YaRN's and FiT's code: cos and sin times mscale, so q.k gains mscale^2
                mscale = _mscale(scales, opts["combine"])
                if mscale != 1.0:
                    cos, sin = cos * mscale, sin * mscale
    return angles, (cos, sin)


# -- training time: DINOv3's coordinate augmentation ---------------------------------------------

def dinov3_coords(pos: torch.Tensor, generator: torch.Generator | None = None, *, shift: float | None = None,
                  jitter: float | None = None, rescale: float | None = 2.0,
                  centre: torch.Tensor | None = None) -> torch.Tensor:
    """DINOv3's RoPE coordinate augmentation (Simeoni et al. 2025, "DINOv3"; "RoPE-box jittering"):
    one random transform of a whole batch's positions, drawn per call (per forward), in this order:

    1. ``shift``: add ``U[-shift, shift]`` per axis (in position units; ``None``: off);
    2. ``jitter``: multiply each axis by its own log-uniform factor in ``[1/jitter, jitter]``
       (``jitter >= 1``; it changes the aspect ratio; ``None``: off);
    3. ``rescale``: multiply both axes by one log-uniform factor in ``[1/rescale, rescale]``
       (``rescale >= 1``; ``None``: off).

    Defaults are DINOv3's pretraining recipe (``dinov3_vit7b16_pretrain.yaml``:
    ``pos_embed_rope_shift_coords: null``, ``jitter_coords: null``, ``rescale_coords: 2``; the
    paper: the coordinate box ``[-1, 1]`` scaled to ``[-s, s]``, ``s in [0.5, 2]``). The draws
    and their order (``axes`` uniforms for shift, ``axes`` for jitter, one for rescale, an option
    set to ``None`` drawing nothing) are those of timm's ``_apply_coord_augs``
    (``RotaryEmbeddingDinoV3``), so with the same random stream the result is identical. Note
    that timm's DINOv3 grid is ``ij`` (column 0 is y), ropelib's ``(x, y)``: the same
    distribution, with the first draw going to the other axis.

    DINOv3's coordinates are patch centres normalised to ``[-1, 1]`` per axis
    (``2 * patch_positions(h, w, "centre") - 1``), centred on the image, and jitter and rescale act
    about the origin. In other conventions pass ``centre`` (e.g. ``grid_centre(pos)``) to scale
    about the image centre instead; between patches it makes no difference (rotary attention is
    relative), only against unrotated prefix tokens.

    Args:
        pos: ``(..., axes)`` positions, one draw shared by all of them.
        generator: the random stream; ``None`` uses torch's global one (as timm does). Draws are
            made on ``pos``'s device in its dtype.
        centre: ``(axes,)`` point that jitter and rescale keep fixed; ``None``: the origin.

    Returns:
        Positions shaped like ``pos``.
    """
    for name, value, least in (("shift", shift, 0.0), ("jitter", jitter, 1.0), ("rescale", rescale, 1.0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < least:
            raise ValueError(f"dinov3_coords: {name} must be None or a finite number >= {least:g}, got {value!r}")
    if not isinstance(pos, torch.Tensor) or not pos.is_floating_point():
        raise TypeError("dinov3_coords: pos must be a floating-point tensor (..., axes)")
    axes, device, dtype = pos.shape[-1], pos.device, pos.dtype
    coords = pos if centre is None else pos - centre
    if shift is not None:
        coords = coords + torch.empty(axes, device=device, dtype=dtype).uniform_(-shift, shift, generator=generator)
    if jitter is not None:
        bound = math.log(jitter)
        coords = coords * torch.empty(axes, device=device, dtype=dtype).uniform_(-bound, bound,
                                                                              generator=generator).exp()
    if rescale is not None:
        bound = math.log(rescale)
        coords = coords * torch.empty(1, device=device, dtype=dtype).uniform_(-bound, bound, generator=generator).exp()
    return coords if centre is None else coords + centre


__all__ = [
    "REMEDIES", "DEFAULTS", "YARN_RAMPS", "TEMPERATURES", "COMBINES", "remedy_options", "grid_scales",
    "remedied_frequencies", "pi_positions", "rescaled_table", "yarn_temperature", "attention_scale",
    "dinov3_coords",
]
