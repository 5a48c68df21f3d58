"""SpeechLLM: Whisper encoder states -> window Q-Former -> linear -> a frozen LLM.

The contrastive pretraining paper's model (../shared/papers/001): the speech encoder and
the LLM stay frozen, only the projector trains. Speech enters the LLM as a run of input
embeddings spliced into the chat prompt where the text says ``SPEECH`` (the marker is
never tokenized). Three things the training and the product ask of it:

- :meth:`SpeechLLM.align_states`: the per-layer states of projected speech and of its
  transcript, for :func:`speechrag.models.alignment.alignment_loss` (layer 0: the
  LLM's input embeddings; the speech is run through the frozen LLM for deeper layers);
- :meth:`SpeechLLM.lm_loss`: next-token cross-entropy on the answer of a prompt that
  mixes text and speech (ASR pretraining, task fine-tuning);
- :meth:`SpeechLLM.answer`: the greedy answer to such a prompt.

A checkpoint holds the config and the projector's weights only (the LLM and Whisper are
named assets, checked by checksum when it loads), in the contract of
:mod:`speechrag.models.trained`.

Shapes: B batch, S encoder states (50 a second), D encoder width, T prompt length,
E the LLM's width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechrag.config import strict_config
from speechrag.models.losses import IGNORE
from speechrag.models.qformer import QFormerConfig, WindowQFormer
from speechrag.models.torch_llm import FrozenLLM, load_frozen_llm
from speechrag.models.trained import (
    load_trained_state,
    read_checkpoint,
    whisper_digest,
    write_checkpoint,
)

SPEECH = "<|speech|>"  # where a prompt's speech goes; split on, never tokenized

Part = str | torch.Tensor  # prompt text, or speech tokens (T, E)


@dataclass(frozen=True)
class SpeechLLMConfig:
    llm: str = "qwen2.5-coder-0.5b"
    whisper: str = "whisper-base"
    qformer: QFormerConfig = field(default_factory=QFormerConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpeechLLMConfig:
        values = dict(values)
        if isinstance(values.get("qformer"), dict):
            values["qformer"] = QFormerConfig.from_dict(values["qformer"])
        return strict_config(cls, values, "SpeechLLM config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpeechLLM(nn.Module):
    arch = "speechllm"

    def __init__(self, config: SpeechLLMConfig, llm: FrozenLLM | None = None) -> None:
        super().__init__()
        self.config = config
        self.llm = llm or load_frozen_llm(config.llm)
        self.qformer = WindowQFormer(config.qformer)
        self.proj = nn.Linear(config.qformer.dim, self.llm.width)
        # LayerNorm'd Q-Former outputs through this start at the scale of the LLM's
        # own token embeddings (which are far smaller than 1 per entry)
        nn.init.normal_(self.proj.weight, std=self.llm.embedding_rms() / config.qformer.dim ** 0.5)
        nn.init.zeros_(self.proj.bias)

    # -- speech -------------------------------------------------------------------------
    def speech_tokens(self, states: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, S, D), mask (B, S) -> LLM input embeddings (B, T, E) and mask
        (B, T), T = qformer.n_tokens(S)."""
        tokens, token_mask = self.qformer(states, mask)
        return self.proj(tokens), token_mask

    # -- prompts --------------------------------------------------------------------------
    def prompt(self, user: str, answer: str | None = None, system: str | None = None
               ) -> list[str]:
        """The chat prompt (system, user turn, the assistant's answer if given and its end
        token) as text pieces; between two pieces goes the speech of each SPEECH in
        ``user``, in order."""
        text = self.llm.chat_text(system, user)
        if answer is not None:
            text += answer + self.llm.tokenizer.convert_ids_to_tokens(self.llm.end_id)
        return text.split(SPEECH)

    def embed_prompt(self, pieces: list[str], speech: list[torch.Tensor],
                     answer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text pieces around the speech runs [(T_i, E)] -> the prompt's embeddings
        (T, E) and its labels (T,): IGNORE everywhere but on the answer's tokens and the
        end token (when the prompt holds an answer, its last piece ends with them)."""
        if len(pieces) != len(speech) + 1:
            raise ValueError(f"a prompt with {len(pieces) - 1} speech marker(s) got "
                             f"{len(speech)} speech input(s)")
        embeds, labels = [], []
        n_answer = len(self.llm.ids(answer)) + 1 if answer is not None else 0
        for i, text in enumerate(pieces):
            ids = self.llm.ids(text)
            if ids:
                embeds.append(self.llm.embed(ids).to(self.proj.weight.device))
                lab = [IGNORE] * len(ids)
                if i == len(pieces) - 1 and n_answer:
                    lab[-n_answer:] = ids[-n_answer:]
                labels.extend(lab)
            if i < len(speech):
                embeds.append(speech[i])
                labels.extend([IGNORE] * len(speech[i]))
        return torch.cat(embeds), torch.tensor(labels)

    # -- losses ---------------------------------------------------------------------------
    def lm_loss(self, examples: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """[(embeds (T_i, E), labels (T_i,))] -> mean next-token cross-entropy over every
        labelled token of the batch (right-padded)."""
        embeds = nn.utils.rnn.pad_sequence([e for e, _ in examples], batch_first=True)
        labels = nn.utils.rnn.pad_sequence([lab for _, lab in examples], batch_first=True,
                                           padding_value=IGNORE).to(embeds.device)
        mask = nn.utils.rnn.pad_sequence([torch.ones(len(e), dtype=torch.bool)
                                          for e, _ in examples], batch_first=True)
        # the vocabulary projection only where a label is predicted: the answer is a few
        # tokens of a prompt of hundreds, and V x E is the LLM's largest matrix
        hidden = self.llm.final_hidden(embeds, mask.to(embeds.device))[:, :-1]
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = self.llm.model.get_output_embeddings()(hidden[keep])
        return F.cross_entropy(logits, target[keep])

    def align_states(self, states: torch.Tensor, mask: torch.Tensor, texts: list[str],
                     layers: tuple[int, ...]
                     ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor],
                                torch.Tensor]:
        """Speech (B, S, D) with its transcripts -> (speech states per layer [(B, T, E)],
        speech mask, text states per layer [(B, N, E)], text mask), no prompt around
        either (as in the paper). The text side has no gradient."""
        speech, speech_mask = self.speech_tokens(states, mask)
        ids = [torch.tensor(self.llm.ids(t) or [self.llm.end_id]) for t in texts]
        text_mask = nn.utils.rnn.pad_sequence([torch.ones(len(i), dtype=torch.bool)
                                               for i in ids], batch_first=True)
        ids_padded = nn.utils.rnn.pad_sequence(ids, batch_first=True,
                                               padding_value=self.llm.end_id)
        device = speech.device
        with torch.no_grad():
            text = self.llm.hidden(self.llm.embed(ids_padded).to(device),
                                   text_mask.to(device), layers)
        return (self.llm.hidden(speech, speech_mask, layers), speech_mask, text,
                text_mask.to(device))

    # -- answers --------------------------------------------------------------------------
    @torch.inference_mode()
    def answer(self, user: str, speech: list[tuple[torch.Tensor, torch.Tensor]],
               max_tokens: int = 96, system: str | None = None) -> str:
        """A prompt with SPEECH markers and each marker's (states (S, D), mask (S,)) ->
        the greedy answer."""
        runs = [self.speech_tokens(s[None], m[None]) for s, m in speech]
        embeds, _ = self.embed_prompt(self.prompt(user, system=system),
                                      [t[0][k[0]] for t, k in runs])
        return self.llm.decode(self.llm.greedy(embeds[None], max_tokens))

    # -- checkpoints ----------------------------------------------------------------------
    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("llm.")}

    def pretrained_digests(self) -> dict[str, str]:
        return {"llm": self.llm.digest, "whisper": whisper_digest(self.config.whisper)}

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        write_checkpoint(path, self.arch, self.config.to_dict(), self.trained_state_dict(),
                         self.pretrained_digests(), extra)

    @classmethod
    def load(cls, path: str | Path, llm: FrozenLLM | None = None) -> SpeechLLM:
        """The trained projector on its LLM, in eval mode; a checkpoint of another model,
        LLM or Whisper is a ValueError naming the file."""
        payload = read_checkpoint(path, cls.arch)
        config = SpeechLLMConfig.from_dict(payload["config"])
        if llm is not None and llm.name != config.llm:
            raise ValueError(f"{path}: a projector for {config.llm}, not {llm.name}")
        model = cls(config, llm)
        load_trained_state(model, path, payload, {"llm": config.llm, "whisper": config.whisper})
        return model.eval()
