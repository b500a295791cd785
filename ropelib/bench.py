"""Benchmark: the cost of rotating queries and keys, forward and backward, for every encoding.

    python -m ropelib.bench                     # CPU, float32, ViT-S shapes
    python -m ropelib.bench --device cuda       # GPU: float32 and bf16 autocast
    python -m ropelib.bench --json results/bench-cpu.json

Each encoding rotates queries and keys stacked as ``(2, B, H, N, d)`` (how the ViT calls it:
one table for both) and back-propagates a fixed gradient, learnable frequencies included. Times
are reported as ratios to

* **copy**: a forward copy of q and k and a backward copy of their gradient, the memory traffic
  any out-of-place elementwise operation must pay (the floor);
* **timm**: ``apply_rot_embed_cat`` with timm's ``RotaryEmbeddingCat`` (axial) and
  ``RotaryEmbeddingMixed`` (mixed; its table rebuilt every call as in training);
* **mixed**: ropelib's Mixed RoPE, for the block variants.

Timings interleave the candidates round by round and report the median, because a shared
machine's speed drifts. This is a benchmark, not a test: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from .encodings import ROTARY_NAMES, build_encoding
from .provenance import provenance, write_json
from .smoke import is_smoke

# Targets of the ropelib issues: ratio limits, checked and printed, never enforced. The commuting
# ComRoPE variants are Mixed RoPE in a learned basis (one eigendecomposition per forward, then
# one b x b block per token): <= 1.5x mixed. LieRE keeps one matrix exponential per token and
# block: <= 4x mixed.
TARGETS = {
    ("axial", "copy"): 3.0, ("mixed", "copy"): 3.0,
    ("axial", "timm"): 1.0, ("mixed", "timm"): 1.0,
    ("liere", "mixed"): 4.0, ("comrope-ap", "mixed"): 1.5, ("comrope-ld", "mixed"): 1.5,
}


class _Copy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clone()


def _timm_candidates(B, H, N, d, grid, device, x):
    try:
        from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, RotaryEmbeddingMixed, apply_rot_embed_cat
    except ImportError:
        return {}
    axial = RotaryEmbeddingCat(dim=d, temperature=100, in_pixels=False, feat_shape=list(grid),
                               grid_indexing="xy").to(device)
    mixed = RotaryEmbeddingMixed(dim=H * d, depth=1, num_heads=H, temperature=10, feat_shape=list(grid),
                                 grid_indexing="xy").to(device)

    def timm_axial():
        return apply_rot_embed_cat(x, axial.get_embed())

    def timm_mixed():
        return apply_rot_embed_cat(x, mixed.get_embed()[0])

    return {"timm-axial": (timm_axial, [x]), "timm-mixed": (timm_mixed, [x, mixed.freqs])}


def _encoding_candidate(name, B, H, N, d, grid, device, x63, x):
    head_dim = 63 if name == "spherical" else d  # Spherical needs triplets: 63 per head (the paper's choice)
    enc = build_encoding(name, head_dim=head_dim, num_heads=H).to(device)
    pos = enc.positions(N, device=device) if enc.axes == 1 else enc.positions(*grid, device=device)
    inp = x63 if head_dim == 63 else x
    return (lambda: enc.rotate(inp, pos)), [inp, *enc.parameters()]


def interleaved_medians(candidates: dict, device: torch.device, rounds: int, warmup: int = 2,
                        progress: bool = False) -> dict:
    """Median seconds of each ``candidates[name]()`` call, timed round by round (each round runs
    every candidate once), so that a drift of the machine's speed hits all of them alike."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in candidates.values():  # allocations, caches, lazy initialisation
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for r in range(rounds):
        for name, fn in candidates.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
        if progress:
            print(f"  round {r + 1}/{rounds}", end="\r", flush=True)
    if progress:
        print(" " * 30, end="\r")
    return {name: statistics.median(t) for name, t in times.items()}


def measure(device="cpu", batch=64, heads=6, grid=(14, 14), head_dim=64, rounds=15, bf16=False,
            names=ROTARY_NAMES, verbose=None) -> dict:
    """Median forward+backward milliseconds per candidate."""
    device = torch.device(device)
    verbose = sys.stdout.isatty() if verbose is None else verbose
    N = grid[0] * grid[1]
    shape = (2, batch, heads, N, head_dim)
    x = torch.randn(shape, device=device, requires_grad=True)
    x63 = torch.randn(*shape[:-1], 63, device=device, requires_grad=True)
    grads = {64: torch.randn(shape, device=device), 63: torch.randn(*shape[:-1], 63, device=device)}
    candidates = {"copy": ((lambda: _Copy.apply(x)), [x])}
    for name in names:
        candidates[name] = _encoding_candidate(name, batch, heads, N, head_dim, grid, device, x63, x)
    candidates.update(_timm_candidates(batch, heads, N, head_dim, grid, device, x))

    def run(fn, leaves):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = fn()
        out.backward(grads[out.shape[-1]].to(out.dtype))
        for t in leaves:
            t.grad = None

    seconds = interleaved_medians({key: (lambda fn=fn, leaves=leaves: run(fn, leaves))
                                   for key, (fn, leaves) in candidates.items()}, device, rounds, progress=verbose)
    return {key: 1e3 * t for key, t in seconds.items()}


def ratios(ms: dict) -> dict:
    """Each encoding's time as a ratio to the copy floor, to timm, and (block variants) to mixed."""
    out = {}
    for name, t in ms.items():
        if name == "copy" or name.startswith("timm-"):
            continue
        row = {"ms": t, "copy": t / ms["copy"]}
        if f"timm-{name}" in ms:
            row["timm"] = t / ms[f"timm-{name}"]
        if name in ("liere", "comrope-ap", "comrope-ld", "spherical") and "mixed" in ms:
            row["mixed"] = t / ms["mixed"]
        out[name] = row
    return out


def format_table(ms: dict, title: str) -> str:
    rows = ratios(ms)
    lines = [title, f"{'encoding':<12} {'ms':>8} {'x copy':>8} {'x timm':>8} {'x mixed':>8}  targets"]
    for name, row in rows.items():
        cells = [f"{row.get(k, float('nan')):8.2f}" if k in row else f"{'':>8}" for k in ("copy", "timm", "mixed")]
        verdicts = []
        for (target_name, ref), limit in TARGETS.items():
            if target_name == name and ref in row:
                verdicts.append(f"{'ok' if row[ref] <= limit else 'MISSED'} (<= {limit:g}x {ref})")
        lines.append(f"{name:<12} {row['ms']:8.2f} {' '.join(cells)}  {', '.join(verdicts)}")
    refs = [f"copy {ms['copy']:.2f} ms"] + [f"{k} {v:.2f} ms" for k, v in ms.items() if k.startswith("timm-")]
    lines.append("reference times: " + ", ".join(refs))
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="write the results and their provenance here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {"batch": args.batch, "heads": 6, "grid": (14, 14), "head_dim": 64, "rounds": args.rounds}
    if is_smoke():
        config.update(batch=2, grid=(4, 4), rounds=2)
    device = torch.device(args.device)
    settings = [("float32", False)] + ([("bf16-autocast", True)] if device.type == "cuda" else [])
    results = {}
    for label, bf16 in settings:
        ms = measure(device, config["batch"], config["heads"], config["grid"], config["head_dim"],
                     config["rounds"], bf16=bf16)
        results[label] = {"ms": ms, "ratios": ratios(ms)}
        B, H, (h, w), d = config["batch"], config["heads"], config["grid"], config["head_dim"]
        print(format_table(ms, f"rotate q and k, forward + backward, {device.type} {label}: "
                               f"B={B} H={H} N={h * w} d={d} (spherical d=63), median of {config['rounds']}"))
        print()
    record = {"benchmark": "ropelib.bench", "config": config, "results": results,
              "provenance": provenance(device, smoke=is_smoke())}
    if args.json:
        write_json(record, args.json)
    return record


if __name__ == "__main__":
    main()
