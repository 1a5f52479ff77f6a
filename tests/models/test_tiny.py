"""The tiny character tokenizer: one token per character of its alphabet, tags as single tokens."""

from __future__ import annotations

from arpo.models.tiny import ALPHABET, build_char_tokenizer


def test_default_alphabet_maps_other_characters_to_unk():
    tokenizer = build_char_tokenizer()
    ids = tokenizer.encode('a{"', add_special_tokens=False)
    assert ids[0] == tokenizer.convert_tokens_to_ids("a")
    assert ids[1:] == [tokenizer.unk_token_id] * 2
    assert "{" not in ALPHABET


def test_alphabet_gives_one_token_per_character_and_round_trips():
    tokenizer = build_char_tokenizer(tool_tags=("python",), alphabet='ab{}":')
    text = '<python>{"a":"b"}</python>'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids
    assert len(ids) == len('{"a":"b"}') + 2
    assert ids[0] == tokenizer.convert_tokens_to_ids("<python>")
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode("c", add_special_tokens=False) == [tokenizer.unk_token_id]
