"""Answers with the SpeechLLM (:mod:`speechrag.models.speechllm`): speech into the LLM.

``speechrag ask --context speech`` gives the LLM each hit's audio, not a transcript;
``--speech-llm`` gives it a spoken question as speech, not its words. Both go through one
trained projector and its LLM (the projector fits one LLM: the output names it). The
prompt has the layout the projector was fine-tuned on (:func:`speechrag.rag.speech_prompt`).

The prompt must fit ``MAX_PROMPT_TOKENS`` (the CPU cost of reading it grows with its
length: four speech tokens a second of audio): hits are taken in rank order and one that
would overflow is left out, counted in ``dropped``, as :func:`speechrag.rag.build_prompt`
does for text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SHIPPED = Path(__file__).parent / "trained" / "speechllm.pt"
MAX_PROMPT_TOKENS = 2048


@dataclass
class SpeechPrompt:
    """A prompt with its speech spliced in: the LLM's input (1, T, E), the text form (the
    markers where speech goes) for display, and how many hits fit or were left out."""

    embeds: torch.Tensor
    system: str
    user: str
    kept: list[int]  # indexes of the passages given, in prompt order
    dropped: int
    tokens: int


class SpeechAnswerer:
    """A trained SpeechLLM and the Whisper encoder it reads (loaded once)."""

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        from speechrag.models.speech_states import SpeechStates
        from speechrag.models.speechllm import SpeechLLM

        path = Path(checkpoint) if checkpoint else SHIPPED
        if not path.exists():
            raise ValueError(
                f"{path}: no SpeechLLM projector there" + (
                    "; this speechrag ships none yet: train one (docs/speechllm.md) and "
                    "pass --speech-llm PATH" if checkpoint is None else ""))
        self.model = SpeechLLM.load(path)
        self.states = SpeechStates(self.model.config.whisper)
        self.path = path
        self.name = f"{self.model.config.llm} with the SpeechLLM projector {path.name}"
        self.n_ctx = MAX_PROMPT_TOKENS

    def count_text(self, text: str) -> int:
        return len(self.model.llm.ids(text))

    def speech(self, samples: np.ndarray) -> torch.Tensor:
        """Audio (n,) float32 at 16 kHz -> its speech tokens (T, E)."""
        states, mask = self.states.clips([samples])
        tokens, token_mask = self.model.speech_tokens(states, mask)
        return tokens[0][token_mask[0]]

    @torch.inference_mode()
    def prompt(self, question: str | None, question_audio: np.ndarray | None,
               labels: list[str], texts: list[str | None], audios: list[np.ndarray | None],
               max_tokens: int) -> SpeechPrompt:
        """The prompt over passages in rank order (each a text, or audio where its text is
        None) and a written question, or a spoken one (``question`` None)."""
        from speechrag.rag import speech_prompt

        if (question is None) == (question_audio is None):
            raise ValueError("give a question's text or its audio, not both")
        budget = self.n_ctx - max_tokens
        asked = self.speech(question_audio) if question_audio is not None else None
        runs = [self.speech(a) if a is not None else None for a in audios]

        def build(kept: list[int]) -> tuple[torch.Tensor, str, str]:
            system, user = speech_prompt(question, [labels[i] for i in kept],
                                         [texts[i] for i in kept])
            speech = [r for r in (runs[i] for i in kept) if r is not None]
            if asked is not None:  # the question comes after the passages
                speech.append(asked)
            embeds, _ = self.model.embed_prompt(self.model.prompt(user, system=system), speech)
            return embeds, system, user

        kept: list[int] = []
        embeds, system, user = build(kept)
        if len(embeds) > budget:
            raise ValueError(f"the question alone takes {len(embeds)} of the {budget} prompt "
                             "tokens the SpeechLLM is given; ask it in fewer words or seconds")
        for i in range(len(labels)):
            trial = build(kept + [i])
            if len(trial[0]) <= budget:
                kept, (embeds, system, user) = kept + [i], trial
        return SpeechPrompt(embeds[None], system, user, kept, len(labels) - len(kept),
                            len(embeds))

    def stream(self, prompt: SpeechPrompt, max_tokens: int) -> Iterator[str]:
        yield from self.model.llm.stream(prompt.embeds, max_tokens)
