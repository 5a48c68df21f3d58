"""The glancing sampler: training help for a non-autoregressive decoder.

Glancing Transformer for Non-Autoregressive Neural Machine Translation (Qian et al.,
2021), https://arxiv.org/abs/2008.07905, as Paraformer uses it (Gao et al., 2022,
https://arxiv.org/abs/2206.08317, its "GLM sampler").

A NAR decoder predicts all N tokens at once from the CIF embeddings, so early in
training it never sees what its neighbours really are. The sampler runs it twice:
the first pass (no gradient) predicts every token; the number of wrong ones, times a
ratio, is how many positions then get the *target* token's embedding in place of their
CIF embedding; the second pass learns to predict the remaining positions from the
revealed ones. A decoder that is already right glances at nothing, so the help fades
as it learns. Inference is a single plain pass, as without the sampler.

Shapes: B batch, N tokens (targets padded with ``ignore``).
"""

from __future__ import annotations

import torch


def glancing_mask(predicted: torch.Tensor, targets: torch.Tensor, ratio: float,
                  ignore: int = -100, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """predicted (B, N) first-pass token ids, targets (B, N) with ``ignore`` on padding
    -> (B, N) bool, True where the decoder is shown the target.

    Row b reveals floor(ratio x its number of wrong predictions) real positions, drawn
    uniformly without replacement; padding is never revealed.
    """
    real = targets != ignore
    wrong = ((predicted != targets) & real).sum(dim=1)
    count = torch.floor(ratio * wrong.to(torch.float32)).long()
    score = torch.rand(targets.shape, generator=generator, device=targets.device)
    score = score.masked_fill(~real, 2.0)  # padding sorts last, after every real position
    rank = score.argsort(dim=1).argsort(dim=1)  # each position's place in a random order
    return rank < count[:, None]
