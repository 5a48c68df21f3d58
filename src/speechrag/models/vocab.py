"""The output vocabulary a CLSR model emits: which tokenizer ids it keeps, and how a
transcript token outside them is spelled with the kept ones.

A model that emits only the tokens seen often in training (``vocab_min_count``) learns
them faster, but a rare token mapped to ``[UNK]`` can never come out, and rare tokens are
what questions ask about: at 20 occurrences, 35% of the test split's title tokens were
outside the kept set. Spelling such a token with kept WordPiece pieces
("sumatra" -> "sum ##at ##ra") keeps it reachable. This is WordPiece's own greedy
longest-match-first rule, run over the kept pieces only; written here because the
tokenizer library cannot restrict its vocabulary without building a new tokenizer.

Shapes: none; ids are plain ints (tokenizer ids).
"""

from __future__ import annotations

from typing import Any

CONTINUATION = "##"


def spell(piece: str, kept: dict[str, int]) -> list[int] | None:
    """Tokenizer ids of kept pieces that spell ``piece`` (a WordPiece token, "##x" when it
    continues a word), longest match first; None when some character has no kept piece.

    kept: piece string -> tokenizer id, the kept vocabulary."""
    if piece in kept:
        return [kept[piece]]
    cont = piece.startswith(CONTINUATION)
    body = piece[len(CONTINUATION):] if cont else piece
    out: list[int] = []
    i = 0
    while i < len(body):
        for j in range(len(body), i, -1):
            sub = body[i:j] if (i == 0 and not cont) else CONTINUATION + body[i:j]
            if sub in kept:
                out.append(kept[sub])
                i = j
                break
        else:
            return None
    return out


def spelling_table(tokenizer: Any, kept_ids: list[int]) -> dict[int, list[int]]:
    """For every tokenizer id outside ``kept_ids`` that kept pieces can spell, the ids of
    those pieces (in order). Special tokens ([CLS], [unused0], ...) are left out: they
    are never in a transcript.

    tokenizer: a Hugging Face WordPiece tokenizer (``get_vocab``, ``all_special_ids``)."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    keep = set(int(i) for i in kept_ids)
    kept = {s: i for s, i in vocab.items() if i in keep}
    special = set(tokenizer.all_special_ids)
    table: dict[int, list[int]] = {}
    for s, i in vocab.items():
        if i in keep or i in special or (s.startswith("[") and s.endswith("]")):
            continue
        pieces = spell(s, kept)
        if pieces is not None:
            table[i] = pieces
    return table


def respell(ids: list[int], table: dict[int, list[int]]) -> list[int]:
    """A token id sequence with every id the table knows replaced by its spelling; ids
    not in the table (kept ones, or unspellable ones) stay as they are."""
    out: list[int] = []
    for i in ids:
        out.extend(table.get(i, (i,)))
    return out
