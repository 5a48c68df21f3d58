"""CTC over the text encoder's vocabulary: a loss, and a token finder that can stand in
for CIF.

CLSR (../shared/papers/000) finds its tokens with CIF, which must learn where each token
lies and, through the decoder, which token it is, at once; on the 2-core CPU machine it
was still emitting the commonest words after 75 minutes of training. CTC learns the
alignment by marginalizing over it: a CPU probe (``benchmarks/ctc_probe.py``) saw a
linear CTC head on the same frozen Whisper states reach 51% WER after 10 minutes. Used
as CLSR's ``aligner = "ctc"`` (the idea of Paraformer-v2, An et al. 2024,
https://arxiv.org/abs/2409.17746: CTC instead of CIF finds the tokens, which suits
English subword units better), each segment of the greedy path is one token, and the
logits of its first state go on to the VQ adaptor and the text encoder, so the
contrastive loss trains the head end to end through the straight-through one-hot.

Shapes: B batch, S' states (after CLSR's averaging), D width, E text-encoder width,
V' kept vocabulary, N tokens. Class 0 is the blank; token i (local id) is class i + 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """A pre-norm residual block: (..., D) -> (..., D), x + W2 gelu(W1 norm(x))."""

    def __init__(self, d: int, expand: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, expand * d)
        self.down = nn.Linear(expand * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x))))

    @torch.no_grad()
    def start_as_identity(self) -> None:
        """Zero the output projection, so the block passes its input through unchanged
        until training moves it: a block added to a trained head (``--init`` with more
        ``ctc_blocks``) then starts from the trained model's function instead of adding
        noise to it (the residual branch's first gradient still flows, through
        ``down``)."""
        self.down.weight.zero_()
        self.down.bias.zero_()


class ConvBlock(nn.Module):
    """A pre-norm residual convolution block (Conformer's convolution module, Gulati et
    al. 2020, with LayerNorm for BatchNorm): (B, S', D), mask (B, S') -> (B, S', D),
    x + W_out swish(norm(depthwise_conv_k(GLU(W_in norm(x)))))).

    It gives each state of the head its neighbours' (k // 2 on each side; at 8.3 states a
    second, k = 9 sees 0.5 s either way), which a feed-forward block cannot. Padding is
    zeroed before the convolution, so a row's output does not depend on what it is
    batched with."""

    def __init__(self, d: int, kernel: int = 9) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"ConvBlock: kernel must be odd and positive, not {kernel}")
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, 2 * d)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.post_norm = nn.LayerNorm(d)
        self.down = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.up(self.norm(x)), dim=-1) * mask[..., None].to(x.dtype)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return x + self.down(F.silu(self.post_norm(y)))

    @torch.no_grad()
    def start_as_identity(self) -> None:
        """Zero the output projection: a pass-through until trained (see FeedForward)."""
        self.down.weight.zero_()
        self.down.bias.zero_()


class CtcHead(nn.Module):
    """States (B, S', D), mask (B, S') -> logits (B, S', 1 + V'): ``conv_blocks``
    residual convolution blocks, ``blocks`` residual feed-forward blocks (none of either:
    the head is linear), then the blank's own logit and a map to the text encoder's word
    space times its (frozen) word embeddings of the kept vocabulary, plus a bias (CLSR's
    tied output layer, so the head stays small).

    Convolution and feed-forward blocks rather than attention: the Whisper states
    already carry their context, and a probe saw two Transformer layers cost twice a
    linear head's time per step on the CPU; a feed-forward block adds a nonlinearity per
    state, a convolution block its neighbours, each at a fraction of the output layer's
    cost."""

    def __init__(self, d: int, word_embeddings: torch.Tensor, blocks: int = 0,
                 conv_blocks: int = 0, conv_kernel: int = 9) -> None:
        """word_embeddings (V', E): the kept rows of the text encoder's input embeddings."""
        super().__init__()
        self.convs = nn.ModuleList(ConvBlock(d, conv_kernel) for _ in range(conv_blocks))
        self.blocks = nn.Sequential(*(FeedForward(d) for _ in range(blocks)))
        self.norm = nn.LayerNorm(d)
        self.blank = nn.Linear(d, 1)
        self.to_word_space = nn.Linear(d, word_embeddings.shape[1])
        self.register_buffer("word_embeddings", word_embeddings.detach().clone())
        self.out_bias = nn.Parameter(torch.zeros(word_embeddings.shape[0]))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.convs:
            if mask is None:
                mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            for conv in self.convs:
                h = conv(h, mask)
        h = self.norm(self.blocks(h))
        words = self.to_word_space(h) @ self.word_embeddings.T.to(h.dtype) + self.out_bias
        return torch.cat([self.blank(h), words], dim=-1)


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor,
             ignore: int) -> torch.Tensor:
    """logits (B, S', 1 + V'), mask (B, S') True on real states, targets (B, N) local ids
    (``ignore`` on padding) -> the mean over the batch of each utterance's CTC loss
    divided by its target length (an impossible alignment counts zero)."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (S', B, 1 + V')
    real = targets != ignore
    return F.ctc_loss(log_probs, (targets + 1).masked_fill(~real, 0), mask.sum(1),
                      real.sum(1), blank=0, reduction="mean", zero_infinity=True)


def greedy_tokens(logits: torch.Tensor, mask: torch.Tensor, max_tokens: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC's greedy path: the best class per state, runs merged, blanks dropped.

    logits (B, S', 1 + V'), mask (B, S') -> first (B, N) the state index where each
    token's run starts (0 on padding), n_tokens (B,), N = max(1, most tokens in a row);
    at most ``max_tokens`` per row (the text encoder's limit), the first ones kept."""
    best = logits.argmax(-1).masked_fill(~mask, 0)  # (B, S')
    prev = F.pad(best[:, :-1], (1, 0), value=0)
    start = (best > 0) & (best != prev)
    order = start.long().cumsum(1)  # 1-based token number at each start
    start &= order <= max_tokens
    n_tokens = start.sum(1)
    n = max(1, int(n_tokens.max()) if len(n_tokens) else 1)
    first = torch.zeros(best.shape[0], n, dtype=torch.long, device=best.device)
    rows, cols = start.nonzero(as_tuple=True)
    first[rows, order[rows, cols] - 1] = cols
    return first, n_tokens
