"""Pictures of position encodings: attention-logit maps and frequencies in 2D frequency space."""

from __future__ import annotations

import math

import torch

from .encodings import RotaryEncoding


def logit_map(enc: RotaryEncoding, h: int, w: int, query: tuple[int, int], q: torch.Tensor | None = None,
              k: torch.Tensor | None = None, head: int = 0, channels=None) -> torch.Tensor:
    """Logits ``<R(p_query) q, R(p) k>`` of one query against a key at every patch, shape ``(h, w)``.

    Args:
        enc: a 2D rotary encoding.
        h, w: the patch grid; positions in the encoding's own convention.
        query: ``(x, y)`` patch of the query.
        q, k: ``(d,)`` vectors; default all ones, the content-free view of the encoding.
        head: which head's rotation to draw.
        channels: restrict ``q`` and ``k`` to these channels (e.g. one rotation plane), to see
            what a single plane contributes.
    """
    d = enc.head_dim
    q = torch.ones(d) if q is None else q.detach().clone().float()
    k = torch.ones(d) if k is None else k.detach().clone().float()
    if channels is not None:
        mask = torch.zeros(d, dtype=torch.bool)
        mask[torch.as_tensor(channels)] = True
        q, k = q * mask, k * mask
    pos = enc.positions(h, w)
    x0, y0 = query
    q_pos = pos[y0 * w + x0: y0 * w + x0 + 1]
    heads = enc.num_heads
    with torch.no_grad():
        keys = enc.rotate(k.expand(1, heads, h * w, d).contiguous(), pos)[0, head]  # (N, d)
        query_vec = enc.rotate(q.expand(1, heads, 1, d).contiguous(), q_pos)[0, head, 0]  # (d,)
    return (keys @ query_vec).reshape(h, w)


def show_maps(maps, titles, query=None, ncols=None, size=2.6, cmap="RdBu_r", suptitle=None):
    """Draw logit maps side by side, each on its own colour scale (minimum to maximum)."""
    import matplotlib.pyplot as plt

    ncols = ncols or len(maps)
    nrows = math.ceil(len(maps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             layout="constrained", squeeze=False)
    for ax, m, title in zip(axes.flat, maps, titles):
        ax.imshow(m, cmap=cmap)
        if query is not None:
            ax.plot(*query, "k+", ms=9, mew=1.5)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_frequencies(freq_vectors: torch.Tensor, ax=None, title=None, label=None, **scatter):
    """Scatter the 2D frequency vectors ``(..., 2)`` of a planar encoding (and their negatives:
    a plane turning by ``omega . p`` is the same wave as one turning by ``-omega . p``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.4))
    f = freq_vectors.detach().reshape(-1, 2)
    both = torch.cat((f, -f))
    ax.scatter(both[:, 0], both[:, 1], s=scatter.pop("s", 14), label=label, **scatter)
    limit = float(both.abs().max()) * 1.1 or 1.0
    ax.set_xlim(-limit, limit), ax.set_ylim(-limit, limit)
    ax.axhline(0, color="grey", lw=0.5), ax.axvline(0, color="grey", lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\omega_x$"), ax.set_ylabel(r"$\omega_y$")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
