from __future__ import annotations

import pytest

from model.vocab import FILLER, FILLER_ID, UNK, UNK_ID, Vocab, is_pinyin_text, tokenize
from stages.text_norm import normalize_for_model

EN = "Some call me nature, others call me mother nature."
ZH_MODEL = normalize_for_model("对，这就是我，万人敬仰的太乙真人。", "zh")


def test_latin_text_is_one_token_per_character():
    assert tokenize("Hi, you!") == ["H", "i", ",", " ", "y", "o", "u", "!"]
    assert not is_pinyin_text(EN)
    assert tokenize("  a   b ") == ["a", " ", "b"]  # whitespace collapsed like text_model


def test_pinyin_syllables_are_single_tokens():
    assert ZH_MODEL.startswith("dui4， zhe4 jiu4")
    toks = tokenize(ZH_MODEL)
    assert toks[:5] == ["dui4", "，", " ", "zhe4", " "]
    assert "de" in toks  # neutral tone, no digit
    assert toks[-1] == "。"
    assert "".join(toks) == ZH_MODEL
    # letters after a toned syllable are characters; ü written v stays in the syllable
    assert tokenize("wo3 yong4iPhone lv4 de ma？") == ["wo3", " ", "yong4", "i", "P", "h", "o", "n", "e", " ",
                                                       "lv4", " ", "de", " ", "ma", "？"]


def test_english_is_not_read_as_pinyin():
    # 'a' and 'me' have pinyin shape, but without toned syllables the text stays characters
    assert tokenize("a me") == ["a", " ", "m", "e"]
    assert len(tokenize("bin blue at f two now")) == len("bin blue at f two now")


def test_round_trip_english_and_pinyin(tmp_path):
    vocab = Vocab.build([EN, ZH_MODEL, None, ""])
    assert vocab.tokens[:2] == [FILLER, UNK]
    assert " " in vocab.tokens and "zhe4" in vocab.tokens and "，" in vocab.tokens
    for text in (EN, ZH_MODEL):
        ids = vocab.encode(text)
        assert FILLER_ID not in ids and UNK_ID not in ids
        assert vocab.decode(ids) == text
        assert vocab.decode(ids + [FILLER_ID] * 5) == text  # padding decodes to nothing
    assert len(vocab.encode(ZH_MODEL)) < len(ZH_MODEL)
    vocab.save(tmp_path / "vocab.txt")
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == FILLER and " " in lines
    loaded = Vocab.load(tmp_path / "vocab.txt")
    assert loaded == vocab and len(loaded) == len(vocab)
    assert loaded.encode(EN) == vocab.encode(EN)


def test_unknown_tokens_and_min_count():
    vocab = Vocab.build(["aab"], min_count=2)
    assert vocab.tokens == [FILLER, UNK, "a"]
    assert vocab.encode("abz") == [2, UNK_ID, UNK_ID]
    assert vocab.decode([2, UNK_ID]) == "a" + UNK


def test_build_is_order_independent():
    assert Vocab.build([EN, ZH_MODEL]).tokens == Vocab.build([ZH_MODEL, EN]).tokens


def test_bad_vocab_files(tmp_path):
    with pytest.raises(ValueError, match="starts with"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([FILLER, UNK, "a", "a"])
    (tmp_path / "v.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="v.txt"):
        Vocab.load(tmp_path / "v.txt")
