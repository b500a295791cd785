"""A Vision Transformer whose position encoding is chosen by name.

    model = ropelib.vit.vit("small", encoding="mixed", num_classes=100, img_size=32, patch_size=4)
    logits = model(images)                      # (B, 3, H, W) at any H, W divisible by the patch size

Pre-norm blocks (ViT, Dosovitskiy et al. 2021; DeiT-III, Touvron et al. 2022), attention through
``F.scaled_dot_product_attention``, optional LayerScale and stochastic depth. Every attention layer
owns its own rotary encoding (rope-vit, LieRE and ComRoPE all learn them per layer); an additive
encoding is added once to the patch tokens, before the CLS token is prepended (DeiT-III).
Parameter names follow timm's, so that :func:`from_timm` can load timm's RoPE-ViT checkpoints.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import remedies
from .encodings import ENCODINGS, build_encoding
from .encodings.base import HeadDimError
from .options import check_types, flag, option
from .positions import PROTOCOLS, grid_centre

PRESETS = {  # embed_dim, depth, num_heads
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}


@dataclass
class ViTConfig:
    """Everything that defines a model. ``head_dim`` may differ from ``embed_dim / num_heads``
    (A Circular Argument uses 60 per head on CIFAR, so that pairs, triplets and quadruples fit).
    The checks run when the config is made, so a training run refuses a bad model before it
    reads any data."""

    img_size: int = option(224, "training resolution (pixels); it fixes the training grid of the positions")
    patch_size: int = option(16, "patch size (pixels)")
    in_chans: int = option(3, "input channels")
    num_classes: int = option(1000, "classes (a training run takes them from the data)")
    embed_dim: int = option(384, "token width")
    depth: int = option(12, "transformer blocks")
    num_heads: int = option(6, "attention heads")
    head_dim: int | None = option(None, "channels per head (default: embed_dim / num_heads)")
    mlp_ratio: float = option(4.0, "MLP hidden width / embed_dim")
    qkv_bias: bool = option(True, "bias in the query/key/value projection")
    encoding: str = option("mixed", "position encoding: any name of ropelib.ENCODING_NAMES")
    encoding_options: dict = option(help="the encoding's options, e.g. '{learnable: true}'", factory=dict)
    ape: str | None = option(None, "an additive encoding next to a rotary one (rope-vit's RoPE + APE)")
    ape_options: dict = option(help="its options, e.g. '{resize: antialias}' (timm's resize)", factory=dict)
    class_token: bool = option(True, "prepend a CLS token")
    global_pool: str = option("token", "token (the CLS token) | avg (mean of the patch tokens)")
    layer_scale: float | None = option(None, "LayerScale initial value (none: no LayerScale)")
    drop_path: float = option(0.0, "stochastic depth, rising linearly to this over the blocks")
    dropout: float = option(0.0, "dropout")
    position_jitter: float = option(0.0, "training-time jitter of rotary positions, in patches (ComRoPE)")
    position_augment: dict = option(help="training-time coordinate augmentation of DINOv3, e.g. '{rescale: 2.0}' "
                                         "(keys shift, jitter, rescale; ropelib.remedies.dinov3_coords)", factory=dict)

    def __post_init__(self):
        problems = check_types(self)
        if problems:
            raise ValueError("; ".join(problems))
        problems = []
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                problems.append(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.num_classes < 0:
            problems.append(f"--num-classes must be >= 0, got {self.num_classes}")
        if not (0 <= self.drop_path < 1 and 0 <= self.dropout < 1):
            problems.append("--drop-path and --dropout must lie in [0, 1)")
        if self.position_jitter < 0:
            problems.append(f"--position-jitter must be >= 0, got {self.position_jitter}")
        unknown = sorted(set(self.position_augment) - {"shift", "jitter", "rescale"})
        if unknown:
            problems.append(f"--position-augment: unknown key(s) {', '.join(unknown)}; use shift, jitter, rescale")
        if self.mlp_ratio <= 0:
            problems.append(f"--mlp-ratio must be positive, got {self.mlp_ratio}")
        if self.encoding not in ENCODINGS:
            close = difflib.get_close_matches(self.encoding, ENCODINGS, n=1)
            problems.append(f"--encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}"
                            + (f" (did you mean {close[0]}?)" if close else ""))
        elif ENCODINGS[self.encoding].kind == "rotary" and ENCODINGS[self.encoding].axes != 2:
            problems.append(f"--encoding {self.encoding!r} is 1D; a ViT needs a 2D encoding")
        if self.ape is not None:
            if self.ape not in ENCODINGS or ENCODINGS[self.ape].kind != "additive":
                problems.append(f"--ape must be an additive encoding (ape-learned, ape-sincos), got {self.ape!r}")
            elif self.encoding in ENCODINGS and ENCODINGS[self.encoding].kind != "rotary":
                problems.append("--ape adds an absolute embedding next to a rotary encoding; with "
                                f"--encoding {self.encoding} set the encoding to the APE itself instead")
        if self.img_size >= 1 and self.patch_size >= 1 and self.img_size % self.patch_size:
            problems.append(f"--img-size {self.img_size} is not divisible by --patch-size {self.patch_size}")
        if self.head_dim is None and self.num_heads >= 1 and self.embed_dim % self.num_heads:
            problems.append(f"--embed-dim {self.embed_dim} is not divisible by --num-heads {self.num_heads}; "
                            "set --head-dim explicitly")
        if self.head_dim is not None and self.head_dim < 1:
            problems.append(f"--head-dim must be at least 1, got {self.head_dim}")
        if self.global_pool not in ("token", "avg"):
            problems.append(f"--global-pool must be token or avg, got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            problems.append("--global-pool token needs a class token (--class-token)")
        if not problems:
            problems += self._encoding_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _encoding_problems(self) -> list[str]:
        """Build one layer's encoding (cheap) so that a head_dim or an option it cannot use is
        refused now, naming the option that fixes it, not at the first forward."""
        kind = ENCODINGS[self.encoding].kind
        try:
            with torch.random.fork_rng(devices=[]):  # checking must not move the caller's random stream
                if kind == "rotary":
                    build_encoding(self.encoding, self.dim_per_head, self.num_heads, train_grid=self.grid,
                                   **self.encoding_options)
                elif kind == "additive":
                    build_encoding(self.encoding, self.embed_dim, 1, train_grid=self.grid, **self.encoding_options)
                if self.ape is not None:
                    build_encoding(self.ape, self.embed_dim, 1, train_grid=self.grid, **self.ape_options)
        except HeadDimError as error:
            need = error.divisor
            return [f"{error} (set --head-dim, e.g. {need * max(1, round(self.dim_per_head / need))})"]
        except (ValueError, TypeError) as error:
            return [f"{error} (--encoding-options)" if "option" in str(error) else str(error)]
        return []

    @property
    def grid(self) -> tuple[int, int]:
        return (self.img_size // self.patch_size, self.img_size // self.patch_size)

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.embed_dim // self.num_heads


# DropPath and LayerScale: timm has both, but timm is an optional dependency (ropelib[train]);
# these ten lines keep ropelib.vit importable with torch alone (as on a reader's laptop).
class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for a whole sample (Huang et al. 2016)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch (CaiT; DeiT-III), initialised small."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention; queries and keys rotated by this layer's rotary encoding."""

    def __init__(self, config: ViTConfig, rotary: nn.Module | None):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.dim_per_head
        inner = self.num_heads * self.head_dim
        self.qkv = nn.Linear(config.embed_dim, 3 * inner, bias=config.qkv_bias)
        self.proj = nn.Linear(inner, config.embed_dim)
        self.rotary = rotary
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None, table=None) -> torch.Tensor:
        qkv = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if self.rotary is not None:
            q, k = self.rotary.rotate(qkv[:2], pos, table).unbind(0)  # one table for queries and keys
        else:
            q, k = qkv[0], qkv[1]
        x = F.scaled_dot_product_attention(q, k, qkv[2], dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(x, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ViTConfig, rotary: nn.Module | None, drop_path: float):
        super().__init__()
        dim = config.embed_dim
        scale = (lambda: LayerScale(dim, config.layer_scale)) if config.layer_scale is not None else nn.Identity
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), Attention(config, rotary), scale()
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * config.mlp_ratio),
                                                                          config.dropout), scale()
        self.drop_path = DropPath(drop_path)

    def forward(self, x, pos, table=None):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), pos, table)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class VisionTransformer(nn.Module):
    """ViT with pluggable position encodings; see :class:`ViTConfig` and :func:`vit`."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(c.in_chans, c.embed_dim, c.patch_size, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim)) if c.class_token else None
        self.num_prefix_tokens = int(c.class_token)

        kind = ENCODINGS[c.encoding].kind
        ape_name = c.encoding if kind in ("additive", "none") else c.ape
        self.ape = None
        if ape_name is not None and ENCODINGS[ape_name].kind == "additive":
            options = c.encoding_options if ape_name == c.encoding else c.ape_options
            # an additive encoding only needs its width: head_dim * num_heads = embed_dim
            self.ape = build_encoding(ape_name, head_dim=c.embed_dim, num_heads=1, train_grid=c.grid, **options)
        rotary = kind == "rotary"
        self.drop = nn.Dropout(c.dropout)
        rates = torch.linspace(0, c.drop_path, c.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(c, self._rotary(c) if rotary else None, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _rotary(self, c: ViTConfig) -> nn.Module:
        return build_encoding(c.encoding, c.dim_per_head, c.num_heads, num_prefix_tokens=self.num_prefix_tokens,
                              train_grid=c.grid, **c.encoding_options)

    @property
    def rotary_encodings(self) -> list[nn.Module]:
        return [blk.attn.rotary for blk in self.blocks if blk.attn.rotary is not None]

    def rotary_positions(self, h: int, w: int, protocol: str = "native", device=None):
        """``(positions, table)`` of an ``h x w`` patch grid for every block: the positions in the
        encoding's convention, placed by ``protocol`` when the grid is not the training grid, with
        ComRoPE-style jitter in training. For a fixed encoding (every layer the same) the rotation
        table is computed here, once per forward, and handed to every block, as timm's Eva does;
        learned encodings compute their own per layer. ``(None, None)`` without rotary encoding."""
        rotary = self.rotary_encodings
        if not rotary:
            return None, None
        if protocol not in PROTOCOLS:
            raise ValueError(f"ViT: unknown position protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        first = rotary[0]
        grid = first.positions(h, w, protocol=protocol, device=device)
        # every token's position, prefix tokens (ComRoPE's CLS at the centre) from the unperturbed grid
        pos = first.full_positions(grid)
        jitter, augment = self.config.position_jitter, self.config.position_augment
        if self.training and (jitter > 0 or augment):
            patches = _jitter(grid, h, w, jitter) if jitter > 0 else grid
            if augment:  # DINOv3: one random shift/aspect/scale of the whole grid, about its centre
                patches = remedies.dinov3_coords(patches, centre=grid_centre(grid)[0], **augment)
            pos = torch.cat((pos[: self.num_prefix_tokens], patches))
        table = None if first.learnable else first.table(pos, complete=True)
        return pos, table

    def remedy_tables(self, h: int, w: int, remedy: str, remedy_options: dict | None = None, device=None):
        """``(positions, [table of each block])`` of an ``h x w`` patch grid under a test-time
        ``remedy`` (:mod:`ropelib.remedies`): the training spacing (``extrapolate``) with each
        layer's frequencies rescaled, per layer because learned encodings have their own. Raises
        ``ValueError`` for a model without rotary encoding or a remedy its encoding cannot take."""
        encodings = self.rotary_encodings
        if not encodings:
            raise ValueError(f"ViT: remedy {remedy!r} rescales rotary encodings; {self.config.encoding} "
                             "has none (it is not rotary): evaluate it without a remedy")
        pos = encodings[0].positions(h, w, protocol="extrapolate", device=device)
        return pos, [remedies.rescaled_table(e, pos, None, (h, w), remedy, **(remedy_options or {}))
                     for e in encodings]

    def forward_features(self, images: torch.Tensor, protocol: str = "native", remedy: str = "none",
                         remedy_options: dict | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` images to ``(B, prefix + N, embed_dim)`` normalised tokens.

        ``protocol`` (``native``, ``extrapolate``, ``interpolate``; :mod:`ropelib.positions`) places
        the patches of an image whose grid is not the training grid. ``remedy`` (``pi``, ``ntk``,
        ``yarn``; :mod:`ropelib.remedies`) instead keeps the training spacing and rescales the
        rotary frequencies for the new grid, layer by layer."""
        if images.ndim != 4:
            raise ValueError(f"ViT: expected images of shape (B, C, H, W), got {tuple(images.shape)}")
        H, W = images.shape[-2:]
        p = self.config.patch_size
        if H % p or W % p:
            raise ValueError(
                f"ViT: image size {H}x{W} is not divisible by the patch size {p}; "
                f"resize or crop to a multiple of {p} (e.g. {H // p * p}x{W // p * p})"
            )
        x = self.patch_embed.proj(images)
        h, w = x.shape[-2:]
        x = rearrange(x, "b d h w -> b (h w) d")
        if self.ape is not None:
            x = x + self.ape.embed_grid(h, w, x.device).to(x.dtype)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x), dim=1)
        x = self.drop(x)
        if remedy == "none":
            pos, table = self.rotary_positions(h, w, protocol, x.device)
            tables = [table] * len(self.blocks)
        else:
            pos, tables = self.remedy_tables(h, w, remedy, remedy_options, x.device)
        for blk, table in zip(self.blocks, tables):
            x = blk(x, pos, table)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0] if self.config.global_pool == "token" else x[:, self.num_prefix_tokens:].mean(1)
        return self.head(x)

    def forward(self, images: torch.Tensor, protocol: str = "native", remedy: str = "none",
                remedy_options: dict | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)``; ``protocol`` and ``remedy`` as in :meth:`forward_features`."""
        return self.forward_head(self.forward_features(images, protocol, remedy, remedy_options))

    def no_weight_decay(self) -> set[str]:
        """Names of parameters trained without weight decay: the CLS token and every position
        parameter (frequencies, generators, APE tables); :func:`param_groups` adds all 1-D ones."""
        names = {"cls_token"} if self.cls_token is not None else set()
        for module_name, module in self.named_modules():
            if hasattr(module, "no_weight_decay") and module is not self:
                names |= {f"{module_name}.{n}" for n in module.no_weight_decay()}
        return names


def _jitter(pos: torch.Tensor, h: int, w: int, strength: float) -> torch.Tensor:
    """ComRoPE's training-time perturbation: Gaussian jitter of every patch position with std
    0.5 * strength patches, clamped to half a patch, one draw per batch."""
    step = torch.stack(((pos[1, 0] - pos[0, 0]) if w > 1 else pos.new_tensor(1.0),
                        (pos[w, 1] - pos[0, 1]) if h > 1 else pos.new_tensor(1.0)))
    noise = (torch.randn_like(pos) * 0.5 * strength).clamp(-0.5, 0.5)
    return pos + noise * step


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def vit(preset: str = "small", **overrides) -> VisionTransformer:
    """A ViT from a preset size (``tiny``, ``small``, ``base``, ``large``) and any
    :class:`ViTConfig` field; ``preset="custom"`` takes the sizes from ``overrides``."""
    if preset != "custom" and preset not in PRESETS:
        raise ValueError(f"unknown ViT preset {preset!r}; choose one of {', '.join(PRESETS)} or 'custom'")
    valid = {f.name for f in fields(ViTConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"vit: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(valid))}")
    return VisionTransformer(ViTConfig(**{**PRESETS.get(preset, {}), **overrides}))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: weight decay on matrices, none on biases, norms, LayerScale and
    the model's ``no_weight_decay()`` parameters (position encodings, CLS token)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -- timm interop -----------------------------------------------------------------------------------

def from_timm(timm_model: nn.Module) -> VisionTransformer:
    """Convert one of timm's RoPE ViTs (the rope-vit ports: ``vit_{small,base,large}_patch16_rope_224``,
    ``..._rope_mixed_224``, ``..._rope_ape_224``, ``..._rope_mixed_ape_224``) into a ropelib ViT that
    gives the same logits, and that can then be evaluated at other resolutions.

    Raises ``ValueError`` for timm models with features this conversion does not cover.
    """
    try:
        from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, RotaryEmbeddingMixed
        from timm.models.eva import Eva
    except ImportError as error:  # pragma: no cover
        raise ImportError("from_timm needs timm: pip install 'ropelib[train]'") from error
    m = timm_model
    if not isinstance(m, Eva) or m.rope is None:
        raise ValueError(f"from_timm: expected one of timm's RoPE ViTs (an Eva model with rope), got {type(m).__name__}")
    rope, blk = m.rope, m.blocks[0]
    problems = []
    if isinstance(rope, RotaryEmbeddingCat):
        encoding, options = "axial", {"theta": float(rope.temperature)}
        if rope.in_pixels or rope.ref_feat_shape is not None or rope.grid_offset != 0:
            problems.append("axial rope with pixel bands, ref_feat_shape or a grid offset")
    elif isinstance(rope, RotaryEmbeddingMixed):
        encoding, options = "mixed", {"theta": float(rope.temperature)}
    else:
        problems.append(f"rope type {type(rope).__name__}")
    if getattr(rope, "grid_indexing", "xy") != "xy":
        problems.append("rope grid_indexing other than 'xy'")
    if getattr(rope, "rotate_half", False):
        problems.append("rotate_half layout")
    if getattr(blk.attn, "qkv", None) is None or not isinstance(blk.attn.q_norm, nn.Identity) \
            or not isinstance(blk.attn.norm, nn.Identity) or getattr(blk.attn, "gate", None) is not None:
        problems.append("attention other than fused qkv without norms or gates")
    if type(blk.mlp).__name__ != "Mlp" or not isinstance(blk.mlp.norm, nn.Identity):
        problems.append("an MLP other than fc1-GELU-fc2")
    if m.cls_token is None or m.global_pool != "token" or getattr(m, "reg_token", None) is not None:
        problems.append("pooling other than a single CLS token")
    if m.pos_embed is not None and not m.no_embed_class:
        problems.append("an absolute embedding with a CLS slot")
    if not isinstance(m.norm_pre, nn.Identity) or not isinstance(m.fc_norm, nn.Identity):
        problems.append("pre-norm or fc-norm layers")
    if problems:
        raise ValueError("from_timm: unsupported timm model (" + "; ".join(problems) + ")")

    patch = m.patch_embed.patch_size[0]
    config = ViTConfig(
        img_size=m.patch_embed.img_size[0], patch_size=patch, in_chans=m.patch_embed.proj.in_channels,
        num_classes=m.num_classes, embed_dim=m.embed_dim, depth=len(m.blocks), num_heads=blk.attn.num_heads,
        head_dim=blk.attn.head_dim, mlp_ratio=blk.mlp.fc1.out_features / m.embed_dim,
        qkv_bias=blk.attn.qkv.bias is not None, encoding=encoding, encoding_options=options,
        ape="ape-learned" if m.pos_embed is not None else None,
        ape_options={"resize": "antialias"} if m.pos_embed is not None else {}, class_token=True, global_pool="token",
        layer_scale=1.0 if blk.gamma_1 is not None else None,
    )
    model = VisionTransformer(config)
    state = {}
    for name, tensor in m.state_dict().items():
        if name.startswith("rope."):
            continue
        target = (name.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
                  .replace("pos_embed", "ape.table"))
        state[target] = tensor[0] if name == "pos_embed" else tensor
    if encoding == "mixed":  # timm: (2, depth, H, D/2) -> per layer (H, D/2, 2)
        for i, enc in enumerate(model.rotary_encodings):
            state[f"blocks.{i}.attn.rotary.frequencies"] = rope.freqs[:, i].permute(1, 2, 0).detach()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"from_timm: weights did not map cleanly (missing {missing}, unexpected {unexpected})")
    return model.eval()
