from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from speechrag.models.alignment import (
    AlignmentConfig,
    _sq_cost,
    alignment_loss,
    cosine_similarity_matrix,
    entropic_ot,
    sinkhorn_divergence,
)


def clouds(seed: int, b: int = 3, n: int = 6, d: int = 4, dtype=torch.float64):
    """A padded batch of point clouds with different lengths, and its mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g, dtype=dtype)
    lengths = torch.tensor([n, n - 2, n - 3][:b])
    mask = torch.arange(n)[None] < lengths[:, None]
    x = x.masked_fill(~mask[..., None], 7.0)  # junk on padding must not matter
    return x, mask


def sphere_clouds(seed: int, b: int = 3, n: int = 6, d: int = 4):
    """Clouds on the unit sphere (as the alignment loss normalizes them): costs <= 2."""
    x, mask = clouds(seed, b, n, d)
    return torch.nn.functional.normalize(x, dim=-1), mask


def test_small_blur_matches_exact_ot() -> None:
    """As epsilon -> 0 the entropic value approaches POT's exact (network simplex) OT."""
    x, xm = clouds(0, b=1, n=5)
    y, ym = clouds(1, b=1, n=7)
    x, y = x[0, :5], y[0, :7]
    cost = _sq_cost(x, y)
    exact = ot.emd2(np.full(5, 1 / 5), np.full(7, 1 / 7), cost.numpy())
    approx = entropic_ot(cost, torch.ones(5, dtype=torch.bool), torch.ones(7, dtype=torch.bool),
                         eps=1e-3, iters=3000)
    assert float(approx) == pytest.approx(exact, rel=0.02)
    rough = entropic_ot(cost, torch.ones(5, dtype=torch.bool), torch.ones(7, dtype=torch.bool),
                        eps=0.5, iters=300)
    assert abs(float(rough) - exact) > abs(float(approx) - exact)  # epsilon matters


def test_divergence_symmetric_and_zero_on_identical() -> None:
    x, xm = clouds(2)
    y, ym = clouds(3)
    xy = sinkhorn_divergence(x, xm, y, ym, blur=0.5, iters=200)
    yx = sinkhorn_divergence(y, ym, x, xm, blur=0.5, iters=200)
    torch.testing.assert_close(xy, yx.T, atol=1e-6, rtol=1e-6)
    xx = sinkhorn_divergence(x, xm, x, xm, blur=0.5, iters=200)
    torch.testing.assert_close(torch.diagonal(xx), torch.zeros(3, dtype=x.dtype), atol=1e-8,
                               rtol=0)
    off = xx[~torch.eye(3, dtype=torch.bool)]
    assert torch.all(off > 1e-3)  # different clouds are apart


@pytest.mark.parametrize("domain", ["log", "kernel"])
def test_batched_equals_per_pair(domain: str) -> None:
    # one domain for both ("auto" decides per call, so a batch and its pairs could differ
    # by the two loops' unconverged remainders, ~1e-7 here); the kernel loop needs
    # clouds it cannot underflow on
    make = sphere_clouds if domain == "kernel" else clouds
    x, xm = make(4)
    y, ym = make(5, n=8)
    batched = sinkhorn_divergence(x, xm, y, ym, blur=0.5, iters=100, domain=domain)
    for i in range(3):
        for j in range(3):
            xi, yj = x[i:i + 1, :int(xm[i].sum())], y[j:j + 1, :int(ym[j].sum())]
            one = sinkhorn_divergence(xi, torch.ones(xi.shape[:2], dtype=torch.bool), yj,
                                      torch.ones(yj.shape[:2], dtype=torch.bool), 0.5, 100,
                                      domain)
            torch.testing.assert_close(batched[i, j], one[0, 0])


def test_gradients_match_finite_differences() -> None:
    x, xm = clouds(6, b=2, n=4, d=3)
    y, ym = clouds(7, b=2, n=5, d=3)
    x.requires_grad_(True)

    def f(xx: torch.Tensor) -> torch.Tensor:
        return sinkhorn_divergence(xx, xm, y, ym, blur=0.7, iters=500).sum()

    f(x).backward()
    assert x.grad is not None and x.grad[xm].abs().sum() > 0
    assert torch.all(x.grad[~xm] == 0)  # padding gets no gradient
    h = 1e-6
    for idx in [(0, 0, 0), (0, 3, 2), (1, 1, 1)]:
        e = torch.zeros_like(x)
        e[idx] = h
        numeric = (f(x.detach() + e) - f(x.detach() - e)) / (2 * h)
        assert float(x.grad[idx]) == pytest.approx(float(numeric), rel=1e-3, abs=1e-6)


def test_cosine_similarity_ignores_padding() -> None:
    x, xm = clouds(8)
    y, ym = clouds(9)
    sim = cosine_similarity_matrix(x, xm, y, ym)
    a = x[1, :int(xm[1].sum())].mean(0)
    b = y[2, :int(ym[2].sum())].mean(0)
    assert float(sim[1, 2]) == pytest.approx(float(torch.cosine_similarity(a, b, dim=0)))


@pytest.mark.parametrize("similarity", ["cosine", "wasserstein"])
def test_alignment_loss_prefers_true_pairs(similarity: str) -> None:
    """Speech states that are noisy copies of their own transcript's states score a lower
    loss than the same states paired with shuffled transcripts; several layers sum."""
    g = torch.Generator().manual_seed(0)
    text = [torch.randn(4, 6, 8, generator=g) for _ in range(2)]
    tmask = torch.ones(4, 6, dtype=torch.bool)
    speech = [t.repeat_interleave(2, dim=1) + 0.1 * torch.randn(4, 12, 8, generator=g)
              for t in text]
    smask = torch.ones(4, 12, dtype=torch.bool)
    one = AlignmentConfig(similarity=similarity, layers=((-1, -1),))
    both = AlignmentConfig(similarity=similarity, layers=((0, 0), (1, 1)))
    good = alignment_loss(one, speech, smask, text, tmask)
    shuffled = [t[[1, 2, 3, 0]] for t in text]
    bad = alignment_loss(one, speech, smask, shuffled, tmask)
    assert float(good) < float(bad)
    summed = alignment_loss(both, speech, smask, text, tmask)
    assert float(summed) == pytest.approx(
        float(good) + float(alignment_loss(AlignmentConfig(similarity, ((0, 0),)), speech,
                                           smask, text, tmask)), rel=1e-5)
    with pytest.raises(ValueError, match="similarity"):
        AlignmentConfig(similarity="dot")


def test_kernel_and_log_domain_agree() -> None:
    """The fast kernel loop reaches the log-domain loop's value and gradient; "auto"
    takes the kernel for unit-sphere clouds at the paper's blur and the log domain where
    the kernel would underflow."""
    x, xm = sphere_clouds(8, n=9, d=5)
    y, ym = sphere_clouds(9, n=7, d=5)
    out, grads = {}, {}
    for domain in ("kernel", "log", "auto"):
        xx = x.clone().requires_grad_(True)
        out[domain] = sinkhorn_divergence(xx, xm, y, ym, blur=0.5, iters=200, domain=domain)
        out[domain].sum().backward()
        grads[domain] = xx.grad
    torch.testing.assert_close(out["kernel"], out["log"], atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(grads["kernel"], grads["log"], atol=1e-9, rtol=1e-6)
    assert torch.equal(out["auto"], out["kernel"])
    assert torch.all(grads["kernel"][~xm] == 0)
    # the same clouds at a tiny blur: the kernel would underflow, auto goes to the log domain
    tiny = sinkhorn_divergence(x, xm, y, ym, blur=0.02, iters=50)
    assert torch.equal(tiny, sinkhorn_divergence(x, xm, y, ym, blur=0.02, iters=50,
                                                 domain="log"))
    assert torch.isfinite(tiny).all()
    with pytest.raises(ValueError, match="domain"):
        sinkhorn_divergence(x, xm, y, ym, domain="fft")


def test_kernel_domain_symmetric_and_zero_on_identical() -> None:
    x, xm = sphere_clouds(10)
    y, ym = sphere_clouds(11, n=8)
    xy = sinkhorn_divergence(x, xm, y, ym, blur=0.5, iters=200, domain="kernel")
    yx = sinkhorn_divergence(y, ym, x, xm, blur=0.5, iters=200, domain="kernel")
    torch.testing.assert_close(xy, yx.T, atol=1e-8, rtol=1e-6)
    same = sinkhorn_divergence(x, xm, x, xm, blur=0.5, iters=200, domain="kernel")
    torch.testing.assert_close(torch.diagonal(same), torch.zeros(3, dtype=x.dtype), atol=1e-9,
                               rtol=0)
