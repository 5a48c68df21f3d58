"""The SpeechLLM on a real small LLM (SmolLM2-135M from its package, dequantized into
PyTorch) and real Whisper tiny.en states of real TTS speech."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechrag.models.alignment import AlignmentConfig, alignment_loss
from speechrag.models.losses import IGNORE
from speechrag.models.qformer import QFormerConfig
from speechrag.models.speechllm import SPEECH, SpeechLLM, SpeechLLMConfig
from speechrag.models.torch_llm import load_frozen_llm

from ..conftest import TOPICS

CONFIG = SpeechLLMConfig(llm="smollm2-135m", whisper="whisper-tiny.en",
                         qformer=QFormerConfig(input_dim=384, dim=64, heads=4, layers=1,
                                               dropout=0.0))


@pytest.fixture(scope="module")
def llm():
    return load_frozen_llm("smollm2-135m")


def _model(llm, seed: int = 0) -> SpeechLLM:
    torch.manual_seed(seed)
    return SpeechLLM(CONFIG, llm)


def test_hidden_states_are_the_llms_own(llm):
    """Layer i is block i's output, as transformers reports it for inner blocks, also when
    the blocks above the deepest asked layer are skipped."""
    ids = torch.tensor([llm.ids("A volcano is a rupture in the crust of a planet.")] * 2)
    mask = torch.ones(ids.shape, dtype=torch.bool)
    mask[1, -4:] = False
    embeds = llm.embed(ids)
    with torch.no_grad():
        full = llm.model(inputs_embeds=embeds, attention_mask=mask.long(),
                         output_hidden_states=True).hidden_states
        got = llm.hidden(embeds, mask, (0, 5, 12))
    for layer, h in zip((0, 5, 12), got, strict=True):
        torch.testing.assert_close(h[mask], full[layer][mask])
    with pytest.raises(ValueError, match="blocks"):
        llm.hidden(embeds, mask, (llm.n_layers + 1,))


def test_the_llm_is_frozen(llm):
    model = _model(llm).train()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("qformer.", "proj.")) for n in trained)
    assert not model.llm.model.training
    assert set(model.trained_state_dict()) == {n for n, _ in model.named_parameters()
                                               if not n.startswith("llm.")}


def test_prompt_splices_speech_and_labels_only_the_answer(llm, batch):
    model = _model(llm)
    speech, mask = model.speech_tokens(batch["states"][:2], batch["state_mask"][:2])
    runs = [speech[i][mask[i]] for i in range(2)]
    pieces = model.prompt(f"First {SPEECH} then {SPEECH}. Which is hot?", answer="the volcano")
    assert len(pieces) == 3 and SPEECH not in "".join(pieces)
    embeds, labels = model.embed_prompt(pieces, runs, answer="the volcano")
    n_text = sum(len(llm.ids(p)) for p in pieces)
    assert embeds.shape == (n_text + len(runs[0]) + len(runs[1]), llm.width)
    answer_ids = llm.ids("the volcano") + [llm.end_id]
    assert labels[labels != IGNORE].tolist() == answer_ids
    assert labels[-len(answer_ids):].tolist() == answer_ids
    # the first speech run sits right after the first text piece
    k = len(llm.ids(pieces[0]))
    torch.testing.assert_close(embeds[k:k + len(runs[0])], runs[0])
    with pytest.raises(ValueError, match="2 speech marker"):
        model.embed_prompt(pieces, runs[:1])


def test_a_short_training_run_lowers_both_losses(llm, batch):
    """ASR (the transcript after the speech) and contrastive alignment at two layers:
    a few steps of the projector alone lower each on real speech."""
    model = _model(llm, seed=1).train()
    states, state_mask = batch["states"], batch["state_mask"]
    texts = list(TOPICS.values())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    # LLM layers 0 and 4; the pairs index align_states' lists
    align = AlignmentConfig(similarity="cosine", layers=((0, 0), (1, 1)), temperature=0.1)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        speech, mask = model.speech_tokens(states, state_mask)
        examples = [model.embed_prompt(model.prompt(f"{SPEECH} Transcribe.", answer=t),
                                       [speech[i][mask[i]]], answer=t)
                    for i, t in enumerate(texts)]
        s, sm, t, tm = model.align_states(states, state_mask, texts, (0, 4))
        return model.lm_loss(examples), alignment_loss(align, s, sm, t, tm)

    first = losses()
    for _ in range(12):
        asr, con = losses()
        opt.zero_grad()
        (asr + con).backward()
        opt.step()
    last = losses()
    assert last[0] < first[0] - 0.5
    assert last[1] < first[1] * 0.8


def test_checkpoint_round_trip(llm, batch, tmp_path: Path):
    model = _model(llm, seed=2).eval()
    path = tmp_path / "speechllm.pt"
    model.save(path, extra={"step": 3})
    again = SpeechLLM.load(path, llm)
    with torch.no_grad():
        a, _ = model.speech_tokens(batch["states"], batch["state_mask"])
        b, _ = again.speech_tokens(batch["states"], batch["state_mask"])
    torch.testing.assert_close(a, b)
    payload = torch.load(path, weights_only=True)
    assert payload["arch"] == "speechllm" and payload["step"] == 3
    assert not any(k.startswith("llm.") for k in payload["state"])  # trained parts only
    assert payload["pretrained"]["llm"] == llm.digest and len(llm.digest) == 64
    # the projector of another LLM, or a file of another model, is refused
    other = SpeechLLMConfig.from_dict({**CONFIG.to_dict(), "llm": "qwen2.5-coder-0.5b"})
    payload["config"] = other.to_dict()
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="a projector for qwen2.5-coder-0.5b"):
        SpeechLLM.load(tmp_path / "other.pt", llm)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        SpeechLLM.load(tmp_path / "junk.pt", llm)


def test_answer_is_text_from_speech(llm, batch):
    """An untrained projector answers nonsense, but the path from states to a decoded,
    finite answer runs, and stops at max_tokens."""
    model = _model(llm).eval()
    n = int(batch["state_mask"][0].sum())
    out = model.answer(f"{SPEECH}\nWhat is this about?",
                       [(batch["states"][0, :n], batch["state_mask"][0, :n])], max_tokens=5)
    assert isinstance(out, str) and 0 < len(llm.ids(out)) <= 5


def test_lm_loss_is_the_cross_entropy_of_the_full_logits(llm, batch):
    """The loss projects onto the vocabulary only where a label is predicted: the same
    number as cross-entropy over the full logits."""
    model = _model(llm).eval()
    speech, mask = model.speech_tokens(batch["states"][:2], batch["state_mask"][:2])
    examples = [model.embed_prompt(model.prompt(f"{SPEECH} Which?", answer=a),
                                   [speech[i][mask[i]]], answer=a)
                for i, a in enumerate(["the volcano", "a violin with four strings"])]
    with torch.no_grad():
        got = model.lm_loss(examples)
        embeds = torch.nn.utils.rnn.pad_sequence([e for e, _ in examples], batch_first=True)
        labels = torch.nn.utils.rnn.pad_sequence([lab for _, lab in examples],
                                                 batch_first=True, padding_value=IGNORE)
        am = torch.nn.utils.rnn.pad_sequence([torch.ones(len(e), dtype=torch.bool)
                                              for e, _ in examples], batch_first=True)
        logits = llm.logits(embeds, am)
        want = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1),
                                                 labels[:, 1:].flatten(), ignore_index=IGNORE)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_streamed_answer_is_the_greedy_answer(llm):
    prompt = llm.chat_text(None, "Name three colours.")
    embeds = llm.embed(torch.tensor([llm.ids(prompt)]))
    pieces = list(llm.stream(embeds, 12))
    assert len(pieces) > 1 and "".join(pieces) == llm.decode(llm.greedy(embeds, 12))
