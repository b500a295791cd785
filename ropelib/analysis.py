"""What trained position encodings learned: frequencies, commutators, attention distances.

Chapter 13 reads trained models with these tools:

* :func:`frequency_vectors`: the 2D frequency vector of every rotation plane, in radians per
  patch, for every encoding whose generators commute (planar RoPEs, ComRoPE) and per triplet for
  Spherical RoPE. Their magnitudes and directions per layer are the idea of Figures 4 and 5 of
  A Circular Argument (van de Geijn et al. 2025, app. I.4).
* :func:`axis_frequencies`: how fast each axis's generator alone turns (its eigenvalues), for
  any rotary encoding, LieRE included.
* :func:`block_eigenvalues`: the rotation frequencies hidden in ComRoPE's skew blocks
  (Yu et al. 2025): a skew ``b x b`` block has eigenvalues ``+-i lam_k``, and in its eigenbasis
  it is ``b/2`` planar rotations at frequencies ``lam_k``.
* :func:`commutator_norms` and :func:`relativity_defect`: how far LieRE's generators
  (Ostmeier et al. 2025) are from commuting, and what that does to relativity.
* :func:`attention_probabilities` and :func:`attention_distance`: the mean distance, in patches,
  between a query and the keys it attends to, per layer and head (Dosovitskiy et al. 2021,
  fig. 7, "mean attention distance").
* :func:`initial_model` and :func:`trained_model`: a run's model rebuilt from its
  ``results.json`` (the initial one, from the seed) with the trained position parameters of its
  ``position-parameters.pt``.

Units. Encodings place patches in different coordinates (``ropelib.positions``: integer index,
LieRE's [0, 1], the circular (-pi, pi), ComRoPE's (0, 1)), so a raw frequency means different
things in different encodings. :func:`frequency_vectors` and :func:`axis_frequencies` answer in
radians per patch of the training grid: the frequency times the distance between neighbouring
patches in the encoding's convention. (:func:`block_eigenvalues` keeps the encoding's units;
the commutator ratio and the attention distance have their own.)
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from .config import TrainConfig
from .encodings import BlockRotary, ComRoPEAP, ComRoPELD, PlanarRotary, RotaryEncoding, SphericalRoPE
from .positions import patch_positions, position_step
from .vit import VisionTransformer

# -- units ------------------------------------------------------------------------------------


def patch_step(encoding: RotaryEncoding) -> torch.Tensor:
    """``(2,)``: the distance between neighbouring patches along x and along y, in the
    encoding's position units, at its training grid (``train_grid``, set by the ViT)."""
    if encoding.train_grid is None:
        raise ValueError(f"{encoding.name}: the encoding has no train_grid; build it with train_grid=(h0, w0)")
    h0, w0 = encoding.train_grid
    return torch.tensor([position_step(encoding.convention, w0), position_step(encoding.convention, h0)],
                        dtype=torch.float64)


# -- frequencies --------------------------------------------------------------------------------


def _skew_frequencies(skew: torch.Tensor) -> torch.Tensor:
    """``(..., b, b)`` real skew-symmetric matrices to ``(..., b // 2)`` frequencies ``lam_k >= 0``,
    largest first. The eigenvalues of a real skew matrix are ``+-i lam_k`` (and 0 for odd ``b``);
    its singular values are ``lam_1, lam_1, lam_2, lam_2, ...``: every second one is a frequency."""
    singular = torch.linalg.svdvals(skew.double())  # descending
    return singular[..., 0::2][..., : skew.shape[-1] // 2]


def block_eigenvalues(encoding: ComRoPEAP | ComRoPELD) -> torch.Tensor:
    """ComRoPE's hidden frequencies: ``(H, m, b/2)``, the ``lam_k`` of every head's skew block
    ``S_hj = P_hj - P_hj^T``, largest first, in the units of the encoding's positions.

    Both ComRoPEs turn block ``j`` by ``exp(t_j(p) S_hj)`` with ``t_j`` linear in the position
    (Yu et al. 2025, eqs. 8 and 10; :meth:`ropelib.encodings.BlockRotary.commuting_factors`):
    AP: ``t_j(p) = p_axis(j)``; LD: ``t_j(p) = theta_xj p_x + theta_yj p_y``. In the eigenbasis of
    ``S_hj`` that is ``b/2`` planar rotations by ``t_j(p) lam_k``: a Mixed RoPE in disguise
    (the change of basis is absorbed by the query and key projections, A Circular Argument,
    prop. 2).
    """
    if not isinstance(encoding, (ComRoPEAP, ComRoPELD)):
        raise TypeError(f"block_eigenvalues: needs a ComRoPE encoding, got {encoding.name}")
    P = encoding.angle_matrices.detach()
    return _skew_frequencies(P - P.mT)


def frequency_vectors(encoding: RotaryEncoding) -> torch.Tensor:
    """``(H, K, 2)``: the frequency vector ``(omega_x, omega_y)`` of every rotation plane of every
    head, in radians per patch (float64). A plane turns by ``omega . p`` as the patch moves.

    * planar (axial, uniform, mixed, rope-vit eqs. 12 and 14): ``K = d/2``, the encoding's own
      ``frequency_vectors()``;
    * ComRoPE-AP and -LD: ``K = d/2``, from :func:`block_eigenvalues`: block ``j``'s planes are
      ``lam_k e_axis(j)`` (AP) or ``lam_k (theta_xj, theta_yj)`` (LD), up to sign;
    * Spherical RoPE: ``K = d/3``, the triplet's turning speeds about its x and y axes. Its two
      rotations do not commute, so this pair is not the frequency of one plane; these are the
      learned frequencies of Learned Spherical RoPE that A Circular Argument (app. I.4) discusses.

    LieRE has no frequency vectors (its generators do not commute, so no basis turns every plane
    by an angle linear in the position); use :func:`axis_frequencies` for it.
    """
    step = patch_step(encoding)
    H = encoding.num_heads
    with torch.no_grad():
        if isinstance(encoding, PlanarRotary):
            vectors = encoding.frequency_vectors().double().expand(H, -1, -1)
        elif isinstance(encoding, SphericalRoPE):
            vectors = encoding.frequencies.double().expand(H, -1, -1).mT  # (H, T, 2)
        elif isinstance(encoding, (ComRoPEAP, ComRoPELD)):
            lam = block_eigenvalues(encoding)  # (H, m, b/2)
            if isinstance(encoding, ComRoPEAP):
                direction = encoding.axis_mask.view(encoding.axes, encoding.num_blocks).double().T  # (m, 2)
            else:
                direction = encoding.axis_scales.detach().double().T  # (m, 2): (theta_xj, theta_yj)
            vectors = (lam.unsqueeze(-1) * direction[None, :, None, :]).flatten(1, 2)  # (H, m*b/2, 2)
        else:
            raise TypeError(f"frequency_vectors: {encoding.name} has no frequency vectors; "
                            "use axis_frequencies (LieRE's generators do not commute)")
    return vectors * step


def axis_frequencies(encoding: RotaryEncoding) -> torch.Tensor:
    """``(2, H, d/2)``: the frequencies of the x generator and of the y generator alone, in radians
    per patch, largest first: the eigenvalue magnitudes ``lam`` of each dense generator ``A_c``,
    whose rotations ``exp(p_c A_c)`` turn planes at ``p_c lam``. Defined for every rotary encoding;
    for planar ones it is ``|omega_x|`` and ``|omega_y|`` sorted (zeros where a plane ignores the axis)."""
    with torch.no_grad():
        generators = encoding.generators()  # (2, H, d, d)
    freqs = _skew_frequencies(generators)  # (2, H, d/2)
    return freqs * patch_step(encoding).view(2, 1, 1)


def axis_angle(vectors: torch.Tensor) -> torch.Tensor:
    """``(...)`` angle in degrees between each vector ``(..., 2)`` and the nearest axis, in
    [0, 45]: 0 on an axis, 45 on a diagonal; 22.5 on average for random directions."""
    angle = torch.rad2deg(torch.atan2(vectors[..., 1].abs(), vectors[..., 0].abs()))
    return torch.minimum(angle, 90 - angle)


# -- commutators and relativity (LieRE) ---------------------------------------------------------------


def commutator_norms(encoding: RotaryEncoding) -> torch.Tensor:
    """``(H, m)``: ``||[A_x, A_y]||_F / (sqrt(2) ||A_x||_F ||A_y||_F)`` per head and block, in [0, 1].

    ``A_x``, ``A_y`` are the blocks of the head's generators (LieRE and ComRoPE: the ``m = d/b``
    blocks ``b x b``; other encodings: one block, the dense ``d x d`` generators, ``m = 1``). The
    commutator decides relativity: ``R(p)^T R(p')`` depends on ``p' - p`` only if it is zero
    (ComRoPE, Yu et al. 2025, theorem 1); LieRE (Ostmeier et al. 2025) does not constrain it.

    Normalisation: the ratio is scale-free (scaling a generator, or changing the position units,
    leaves it unchanged), so it compares layers, seeds and encodings whose frequencies differ; by
    the Böttcher-Wenzel inequality ``||XY - YX||_F <= sqrt(2) ||X||_F ||Y||_F`` it is at most 1.
    Per block, because a block-diagonal rotation is independent rotations of its blocks: the
    dense ratio of ``m`` similar blocks would be about ``1/sqrt(m)`` of theirs. Zero for commuting
    generators, and where one axis's block is zero.
    """
    with torch.no_grad():
        if isinstance(encoding, BlockRotary):
            A = encoding.block_generators().double().expand(-1, encoding.num_heads, -1, -1, -1)  # (2, H, m, b, b)
        else:
            A = encoding.generators().double().unsqueeze(2)  # (2, H, 1, d, d)
    Ax, Ay = A[0], A[1]
    commutator = torch.linalg.matrix_norm(Ax @ Ay - Ay @ Ax)
    scale = math.sqrt(2) * torch.linalg.matrix_norm(Ax) * torch.linalg.matrix_norm(Ay)
    return torch.where(scale > 0, commutator / scale.clamp_min(1e-300), torch.zeros_like(scale))


def relativity_defect(encoding: RotaryEncoding) -> torch.Tensor:
    """``(H,)``: how far the encoding is from relative on its training grid, per head.

    The mean over all ordered pairs of patches ``(p, p')`` of
    ``||R(p)^T R(p') - R(p' - p)||_F / sqrt(d)``, from the dense matrices of
    :meth:`RotaryEncoding.matrix` (float64). 0 for a relative encoding (commuting generators);
    at most 2 (two orthogonal matrices differ by at most ``2 sqrt(d)``).
    """
    h0, w0 = encoding.train_grid
    grid = patch_positions(h0, w0, encoding.convention, dtype=torch.float64)  # (N, 2)
    index = patch_positions(h0, w0, "index").long()  # (N, 2) integer (column, row)
    # the (2 w0 - 1)(2 h0 - 1) distinct offsets p' - p, and which one each pair has
    di = (index.unsqueeze(0) - index.unsqueeze(1)).reshape(-1, 2)  # (N*N, 2), pair (n, n'): n' - n
    distinct, which = torch.unique(di, dim=0, return_inverse=True)
    offsets = distinct.double() * patch_step(encoding)  # in the encoding's position units
    prefix = encoding.num_prefix_tokens  # encoding.matrix puts the prefix tokens first: dropped
    N = grid.shape[0]
    total = torch.zeros(encoding.num_heads, dtype=torch.float64)
    with torch.no_grad():
        R = encoding.matrix(grid)[:, prefix:].double()  # (H, N, d, d)
        shifted = encoding.matrix(offsets)[:, prefix:].double()  # (H, distinct, d, d)
        for n in range(N):  # one query patch at a time: (H, N, d, d) at once, not (H, N, N, d, d)
            pairs = R[:, n].mT.unsqueeze(1) @ R  # R(p_n)^T R(p_n') for every n'
            target = shifted[:, which[n * N:(n + 1) * N]]  # R(p_n' - p_n)
            total += torch.linalg.matrix_norm(pairs - target).sum(-1)
    return total / (N * N * math.sqrt(encoding.head_dim))


# -- attention distance ------------------------------------------------------------------------------


@torch.no_grad()
def attention_probabilities(model: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """Attention probabilities of every block, ``[(B, H, T, T)] * depth`` (``T``: CLS and patches),
    for ``images`` ``(B, C, H, W)``; the model is put in eval mode.

    ``ropelib.vit.Attention`` calls ``F.scaled_dot_product_attention``, which never returns its
    probabilities. A forward pre-hook on every block's attention module records what the module
    receives (normalised tokens ``x``, positions, rotation table) and recomputes, as that module
    does: ``q, k = R(p) W_q x, R(p) W_k x`` and ``softmax(q k^T / sqrt(d))``. A test checks that
    these probabilities, times the values, give the module's output.
    """
    probabilities = []

    def record(attn, args):
        x, pos = args[0], args[1]
        table = args[2] if len(args) > 2 else None
        B, T, _ = x.shape
        qkv = attn.qkv(x).view(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = (attn.rotary.rotate(qkv[:2], pos, table) if attn.rotary is not None else qkv[:2]).unbind(0)
        scores = (q @ k.mT) * attn.head_dim ** -0.5
        probabilities.append(scores.float().softmax(dim=-1))

    model.eval()
    hooks = [blk.attn.register_forward_pre_hook(record) for blk in model.blocks]
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return probabilities


def patch_distances(h: int, w: int) -> torch.Tensor:
    """``(h*w, h*w)``: Euclidean distances between patch centres, in patches (row-major tokens)."""
    grid = patch_positions(h, w, "index").double()
    return torch.cdist(grid, grid)


def attention_distance(probabilities: torch.Tensor, grid: tuple[int, int],
                       num_prefix_tokens: int = 1) -> dict[str, torch.Tensor]:
    """Mean attention distance per head from probabilities ``(B, H, T, T)``.

    For every patch query, the distance to each patch key weighted by the attention it gets,
    summed, then averaged over queries and images (Dosovitskiy et al. 2021, fig. 7, who measure it
    in pixels; here in patches, so multiply by the patch size for pixels). Prefix tokens (CLS)
    have no place in the image: their rows are left out, and so is the attention a patch pays
    them, the patch keys' weights being renormalised to sum to one. Returns

    * ``"distance"``: ``(H,)`` mean attention distance in patches;
    * ``"prefix_share"``: ``(H,)`` mean share of a patch query's attention on the prefix tokens.
    """
    h, w = grid
    p = num_prefix_tokens
    if probabilities.shape[-1] != p + h * w:
        raise ValueError(f"attention_distance: {probabilities.shape[-1]} tokens, expected {p} + {h}x{w}")
    patches = probabilities[..., p:, :].double()  # patch queries, (B, H, N, T)
    prefix_share = patches[..., :p].sum(-1)  # (B, H, N)
    to_patches = patches[..., p:]
    to_patches = to_patches / to_patches.sum(-1, keepdim=True)
    distance = (to_patches * patch_distances(h, w)).sum(-1)  # (B, H, N)
    return {"distance": distance.mean(dim=(0, 2)), "prefix_share": prefix_share.mean(dim=(0, 2))}


def uniform_attention_distance(h: int, w: int) -> float:
    """The mean attention distance of attention spread evenly over all ``h x w`` patches: the mean
    distance between two patches drawn at random (the same patch included)."""
    return patch_distances(h, w).mean().item()


# -- models of a run -----------------------------------------------------------------------------------


def _read_results(results: dict | str | Path) -> dict:
    return results if isinstance(results, dict) else json.loads(Path(results).read_text())


def initial_model(results: dict | str | Path) -> VisionTransformer:
    """The model a run started from, rebuilt from its ``results.json`` (or its parsed dict).

    ``ropelib.train`` seeds torch with the run's seed, builds the data pipeline (which draws
    nothing from torch's global generator) and then the model; this does the same without the
    data, so random initial values (Mixed's directions, LieRE's and ComRoPE's matrices) are the
    run's own, and fixed ones (learned axial and spherical start at the fixed frequencies) are
    too. The caller's random stream is left as it was.
    """
    record = _read_results(results)
    config = TrainConfig.from_dict(record["config"])
    # runs recorded before the model's fields were nested keep the class count in "model"
    num_classes = record.get("model", {}).get("num_classes", config.model.num_classes)
    model_config = dataclasses.replace(config.model, num_classes=num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(record["seed"])
        model = VisionTransformer(model_config)
    return model.eval()


def trained_model(run_folder: str | Path) -> VisionTransformer:
    """A run's initial model (:func:`initial_model`) with the trained position parameters of
    ``run_folder/position-parameters.pt`` loaded: its encodings are the trained ones, everything
    else (patch embedding, attention and MLP weights) is at initialisation, since only the position
    parameters are committed. Enough to analyse the encodings; attention needs the full model.pt."""
    folder = Path(run_folder)
    model = initial_model(folder / "results.json")
    state = torch.load(folder / "position-parameters.pt", map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected = {k for k in model.state_dict() if ".rotary." in k or k.startswith("ape.")}
    if unexpected or set(state) != expected:
        raise ValueError(f"{folder}: position parameters do not match the model rebuilt from results.json "
                         f"(unexpected {sorted(unexpected)}, missing {sorted(expected - set(state))})")
    return model.eval()
