"""Sinkhorn divergence over all B x B pairs at SEAL's training sizes: the kernel loop
against the log-domain loop, forward and backward, in one run.

    .venv/bin/python benchmarks/sinkhorn_speed.py [--batch 16] [--repeats 3]

Sizes: B speech sequences of up to 675 states (54 s at the adaptor's 12.5 states/s) and
B token sequences of up to 150, width 384, on the unit sphere (as the alignment loss
puts them), blur 0.5, 30 iterations: one "last"-layer Wasserstein alignment term of a
SEAL step. Repeats alternate the two loops; the table gives medians and the ratio, and
how far the two loops' values and gradients are apart.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from speechrag.models.alignment import sinkhorn_divergence


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--speech", type=int, default=675, help="longest speech sequence")
    ap.add_argument("--tokens", type=int, default=150, help="longest token sequence")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    b, n, m = args.batch, args.speech, args.tokens
    x = F.normalize(torch.randn(b, n, 384, generator=g), dim=-1)
    y = F.normalize(torch.randn(b, m, 384, generator=g), dim=-1)
    x_mask = torch.arange(n)[None] < torch.randint(n // 2, n + 1, (b,), generator=g)[:, None]
    y_mask = torch.arange(m)[None] < torch.randint(m // 3, m + 1, (b,), generator=g)[:, None]

    times: dict[str, list[float]] = {"log": [], "kernel": []}
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for _ in range(args.repeats):
        for domain in times:
            xx = x.clone().requires_grad_(True)
            t = time.perf_counter()
            d = sinkhorn_divergence(xx, x_mask, y, y_mask, 0.5, args.iters, domain)
            d.sum().backward()
            times[domain].append(time.perf_counter() - t)
            out[domain] = (d.detach(), xx.grad)
    med = {k: statistics.median(v) for k, v in times.items()}
    (d_log, g_log), (d_ker, g_ker) = out["log"], out["kernel"]
    print(f"B={b}, speech <= {n}, tokens <= {m}, {args.iters} iterations, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats")
    print("| loop | median s (forward + backward) | speedup |")
    print("|---|---|---|")
    for k in ("log", "kernel"):
        print(f"| {k} | {med[k]:.2f} | {med['log'] / med[k]:.2f}x |")
    print(f"\nmax |value difference| {float((d_log - d_ker).abs().max()):.1e} "
          f"(values up to {float(d_log.abs().max()):.3f}); gradient relative difference "
          f"{float((g_log - g_ker).norm() / g_log.norm()):.1e}")


if __name__ == "__main__":
    main()
