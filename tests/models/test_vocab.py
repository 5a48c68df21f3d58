from __future__ import annotations

import pytest

from speechrag.models.text_encoder import TextEncoder
from speechrag.models.vocab import respell, spell, spelling_table
from speechrag.train.data import train_vocabulary


@pytest.fixture(scope="module")
def text() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2")


def test_spell_takes_the_longest_kept_piece_first() -> None:
    kept = {"sum": 1, "su": 2, "##mat": 3, "##at": 4, "##ra": 5, "##r": 6, "##a": 7, "m": 8}
    assert spell("sumatra", kept) == [1, 4, 5]  # sum ##at ##ra, not su ##mat ##ra
    assert spell("##matra", kept) == [3, 5]  # a continuation stays one: ##mat ##ra
    assert spell("sum", kept) == [1]  # a kept piece is itself
    assert spell("sumx", kept) is None  # no piece for "x": not spellable
    assert spell("matra", kept) == [8, 4, 5]  # "mat" is kept only as "##mat": m ##at ##ra


def test_real_table_spells_rare_tokens_with_kept_pieces_that_read_the_same(
        text: TextEncoder) -> None:
    tok = text.model.tokenizer
    kept = train_vocabulary(text, 20).tolist()
    keep = set(kept)
    table = spelling_table(tok, kept)
    assert table and not keep & set(table)  # only tokens outside the kept set
    assert not set(tok.all_special_ids) & set(table)
    for i, pieces in list(table.items())[::97]:
        assert len(pieces) >= 2 and set(pieces) <= keep
        assert (tok.convert_tokens_to_string(tok.convert_ids_to_tokens(pieces))
                == tok.convert_tokens_to_string([tok.convert_ids_to_tokens(i)]))
    # a whole sentence: kept ids stay, rare words come back when the pieces are decoded
    sentence = "Orangutans live in the rainforests of Borneo and Sumatra."
    ids = text.token_ids([sentence])[0]
    spelled = respell(ids, table)
    assert set(spelled) <= keep | {i for i in ids if i not in table and i not in keep}
    assert len(spelled) > len(ids) > len(set(ids) - keep)
    assert tok.decode(spelled) == tok.decode(ids)
    assert [i for i in spelled if i in keep][:4] == [i for i in ids if i in keep][:4]
