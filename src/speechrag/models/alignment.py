"""Contrastive speech-text alignment with a pluggable sequence similarity.

Contrastive pretraining for SpeechLLMs (../shared/papers/001): InfoNCE over a batch
of paired speech and text sequences, where the similarity of two *sequences* is either

- ``cosine``: cosine of the masked mean of each sequence (contr-cos), or
- ``wasserstein``: minus the debiased entropic optimal-transport (Sinkhorn) divergence
  between the two sequences as point clouds with uniform mass (contr-wasser; the
  paper uses p = 2, blur 0.5, i.e. cost |x - y|^2 / 2 and epsilon = blur^2),

at one layer or summed over several (the paper's "all" variant). All B x B pairs
are computed at once on the tensor level.

Why our own Sinkhorn instead of geomloss or POT: our sequences are padded batches
of different lengths, and every pair of a batch is needed. geomloss takes a padded
batch only with explicit weights, whose zeros turn into log(0) in its log-domain
loop, and POT's solvers work pair by pair. A masked log-domain loop over a
(B, B, N, M) cost tensor is ~40 lines; POT's exact ``emd2`` checks it in the tests.

Gradients use the envelope theorem (as geomloss does): the Sinkhorn loop runs
without autograd, and the value's gradient with respect to the cost is the
transport plan, so memory does not grow with the number of iterations.

The loop runs on the kernel exp(-C / eps) (two batched matrix-vector products per
iteration) whenever that kernel cannot underflow, as with the default unit-sphere
states (cost <= 2, eps = 0.25: the kernel lies in [e^-8, 1]); otherwise in the log
domain (a logsumexp over the whole cost tensor twice per iteration, several times
slower). Both end with the same exact log-domain step, from which value and gradient
are taken.

Shapes: B batch, N and M sequence lengths, D width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SIMILARITIES = ("cosine", "wasserstein")


def mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), mask (B, N) True on real positions -> (B, D) masked mean."""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def cosine_similarity_matrix(x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                             y_mask: torch.Tensor) -> torch.Tensor:
    """Sequences x (B, N, D) and y (B', M, D) -> (B, B') cosine of their mean-pooled vectors."""
    a = F.normalize(mean_pool(x, x_mask), dim=-1)
    b = F.normalize(mean_pool(y, y_mask), dim=-1)
    return a @ b.T


def _sq_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (..., N, D), y (..., M, D) -> (..., N, M) |x - y|^2 / 2."""
    xx = (x * x).sum(-1)[..., :, None]
    yy = (y * y).sum(-1)[..., None, :]
    return ((xx + yy - 2 * x @ y.transpose(-1, -2)) / 2).clamp(min=0)


KERNEL_MAX_EXPONENT = 30.0  # exp(-30) ~ 1e-13: far from fp32 underflow in products


def entropic_ot(cost: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor,
                eps: float, iters: int = 50, domain: str = "auto") -> torch.Tensor:
    """Entropic OT value between uniform measures on the real points.

    cost (..., N, M), x_mask (..., N), y_mask (..., M) (broadcastable to the cost's
    batch shape) -> (...) the dual value <a, f> + <b, g> after ``iters`` Sinkhorn
    updates. Differentiable in ``cost`` (envelope theorem). ``domain``: "kernel",
    "log", or "auto": the kernel when every real cost / eps <= KERNEL_MAX_EXPONENT,
    decided once per call for the whole batch. The two loops meet at convergence;
    after a few dozen iterations they differ by ~1e-7 of the value.
    """
    x_mask = x_mask.expand(cost.shape[:-1])
    y_mask = y_mask.expand(cost.shape[:-2] + cost.shape[-1:])
    log_a = torch.where(x_mask, -torch.log(x_mask.sum(-1, keepdim=True).clamp(min=1).to(
        cost.dtype)), -math.inf)
    log_b = torch.where(y_mask, -torch.log(y_mask.sum(-1, keepdim=True).clamp(min=1).to(
        cost.dtype)), -math.inf)
    if domain not in ("auto", "kernel", "log"):
        raise ValueError(f"Sinkhorn domain {domain!r}; one of auto, kernel, log")
    with torch.no_grad():
        c = cost.detach()
        real = x_mask[..., :, None] & y_mask[..., None, :]  # padding costs never count
        if domain == "kernel" or (domain == "auto" and float(
                torch.where(real, c, 0.0).max()) <= KERNEL_MAX_EXPONENT * eps):
            g = _kernel_sinkhorn(c, log_a.exp(), log_b.exp(), y_mask, eps, iters)
        else:
            g = _log_sinkhorn(c, log_a, log_b, eps, iters)
        # one exact log-domain step from g: value and plan come from here
        f = -eps * torch.logsumexp(log_b[..., None, :] + (g[..., None, :] - c) / eps, -1)
        g = -eps * torch.logsumexp(log_a[..., :, None] + (f[..., :, None] - c) / eps, -2)
        f = torch.where(x_mask, f, 0.0)
        g = torch.where(y_mask, g, 0.0)
        value = (log_a.exp() * f).sum(-1) + (log_b.exp() * g).sum(-1)
        plan = torch.exp(log_a[..., :, None] + log_b[..., None, :]
                         + (f[..., :, None] + g[..., None, :] - c) / eps)
    # Same value; its gradient with respect to the cost is the plan.
    return value + (plan * (cost - c)).sum((-1, -2))


def _log_sinkhorn(c: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, eps: float,
                  iters: int) -> torch.Tensor:
    """Symmetric log-domain updates (averaged, which converge faster) -> g (..., M)."""
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iters):
        f_new = -eps * torch.logsumexp(log_b[..., None, :] + (g[..., None, :] - c) / eps, -1)
        g_new = -eps * torch.logsumexp(log_a[..., :, None] + (f[..., :, None] - c) / eps, -2)
        f, g = (f + f_new) / 2, (g + g_new) / 2
    return g


def _kernel_sinkhorn(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     y_mask: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Scaling updates u = a / (K v), v = b / (K^T u) on K = exp(-c / eps) -> the
    potential g = eps log(v / b) (..., M), zero on padding (where a, b are zero)."""
    k = torch.exp(-c / eps)
    v = b.clone()
    for _ in range(iters):
        u = a / (k @ v[..., None])[..., 0].clamp(min=1e-30)
        v = b / (u[..., None, :] @ k)[..., 0, :].clamp(min=1e-30)
    return torch.where(y_mask, eps * torch.log(v / b.clamp(min=1e-30)), 0.0)


def sinkhorn_divergence(x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                        y_mask: torch.Tensor, blur: float = 0.5, iters: int = 50,
                        domain: str = "auto") -> torch.Tensor:
    """Debiased Sinkhorn divergence between every pair of sequences.

    x (B, N, D), y (B', M, D) with masks -> (B, B'): OT(x_i, y_j) - OT(x_i, x_i) / 2
    - OT(y_j, y_j) / 2, zero when the two point clouds are the same. ``domain`` as in
    :func:`entropic_ot`.
    """
    eps = blur ** 2
    xy = entropic_ot(_sq_cost(x[:, None], y[None]), x_mask[:, None], y_mask[None], eps, iters,
                     domain)
    xx = entropic_ot(_sq_cost(x, x), x_mask, x_mask, eps, iters, domain)
    yy = entropic_ot(_sq_cost(y, y), y_mask, y_mask, eps, iters, domain)
    return xy - xx[:, None] / 2 - yy[None] / 2


def similarity_matrix(kind: str, x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                      y_mask: torch.Tensor, blur: float = 0.5, iters: int = 50
                      ) -> torch.Tensor:
    """(B, B') similarities of every speech sequence x_i to every text sequence y_j."""
    if kind == "cosine":
        return cosine_similarity_matrix(x, x_mask, y, y_mask)
    if kind == "wasserstein":
        return -sinkhorn_divergence(x, x_mask, y, y_mask, blur, iters)
    raise ValueError(f"unknown similarity {kind!r}; one of {SIMILARITIES}")


@dataclass(frozen=True)
class AlignmentConfig:
    """Which similarity, at which layers, with which temperature.

    ``layers`` pairs a speech-side layer with a text-side layer, each an index into
    the model's list of that side's states (negative counts from the end): one pair
    is the single-layer variant, several pairs are summed (the "all" variant).
    """

    similarity: str = "cosine"
    layers: tuple[tuple[int, int], ...] = ((-1, -1),)
    temperature: float = 0.1
    blur: float = 0.5
    iters: int = 30
    # Wasserstein only: put states on the unit sphere first, so costs lie in [0, 2]
    # whatever the layer's scale and blur keeps one meaning across layers.
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"alignment similarity {self.similarity!r}; one of "
                             f"{SIMILARITIES}")
        if not self.layers:
            raise ValueError("alignment needs at least one (speech, text) layer pair")
        object.__setattr__(self, "layers", tuple(tuple(p) for p in self.layers))


def alignment_loss(config: AlignmentConfig, speech: list[torch.Tensor],
                   speech_mask: torch.Tensor, text: list[torch.Tensor],
                   text_mask: torch.Tensor) -> torch.Tensor:
    """speech: per-layer (B, N, D) states; text: per-layer (B, M, D) states of the paired
    transcripts (row i of each side is a pair) -> summed InfoNCE over the chosen layer
    pairs, both directions averaged, scalar."""
    total = speech[0].new_zeros(())
    target = torch.arange(speech_mask.shape[0], device=speech_mask.device)
    for s_layer, t_layer in config.layers:
        x, y = speech[s_layer], text[t_layer]
        if config.similarity == "wasserstein" and config.normalize:
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        sim = similarity_matrix(config.similarity, x, speech_mask, y, text_mask, config.blur,
                                config.iters)
        logits = sim / config.temperature
        total = total + (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return total
