"""Model text (characters / tone pinyin) and WER text normalization."""

from __future__ import annotations

import pytest

from stages.text_norm import (
    compute_wer,
    join_word_texts,
    normalize_for_model,
    normalize_for_wer,
    spell_number,
)

ZH = "对，这就是我，万人敬仰的太乙真人。"  # the transcript of f5tts_basic_ref_zh.wav


def test_chinese_transcript_to_tone_pinyin(media_manifest):
    ref = next(r["transcript"] for r in media_manifest if r["file"] == "f5tts_basic_ref_zh.wav")
    assert ref == ZH
    assert normalize_for_model(ref, "zh") == "dui4， zhe4 jiu4 shi4 wo3， wan4 ren2 jing4 yang3 de tai4 yi3 zhen1 ren2。"


def test_neutral_tone_and_sandhi():
    assert normalize_for_model("我的", "zh") == "wo3 de"
    assert normalize_for_model("我的", "zh", neutral_tone_with_five=True) == "wo3 de5"
    assert normalize_for_model("你好", "zh") == "ni2 hao3"  # third-tone sandhi, as F5-TTS (tone_sandhi=True)


def test_mixed_chinese_keeps_latin_runs_as_characters():
    # F5-TTS: ASCII ";" becomes "," and curly quotes straight; full-width punctuation stays
    assert normalize_for_model("我爱 Python 编程；“好”; 吧", "zh") == 'wo3 ai4 Python bian1 cheng2；" hao3", ba'
    # Chinese characters get pinyin even when the language label says otherwise
    assert normalize_for_model("hello 世界", "en") == "hello shi4 jie4"


def test_latin_model_text_keeps_case_and_punctuation():
    assert normalize_for_model("  Some call me\tNature…  “Mother” ﬁne; Ｏk ", "en") == \
        'Some call me Nature... "Mother" fine, Ok'
    assert normalize_for_model("Ça va? Très bien!", "fr") == "Ça va? Très bien!"


def test_wer_normalization():
    assert normalize_for_wer("And so, my fellow Americans: ask not—don't!", "en") == \
        "and so my fellow americans ask not don't"
    assert normalize_for_wer("Bin blue at F2 now; 42 or 105.", "en") == \
        "bin blue at f two now forty two or one hundred five"
    assert normalize_for_wer("Le 2 mai", "fr") == "le 2 mai"  # numbers are spelled out for English only
    assert normalize_for_wer(ZH, "zh") == "对 这 就 是 我 万 人 敬 仰 的 太 乙 真 人"


@pytest.mark.parametrize("n,words", [(0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"),
                                     (300, "three hundred"), (512, "five hundred twelve")])
def test_spell_number(n, words):
    assert spell_number(n) == words


def test_compute_wer_and_cer():
    assert compute_wer("Bin blue at F two now.", "bin blue at f2 now", "en") == 0.0
    assert compute_wer("bin blue at f two now", "Bimblue F2 now.", "en") == pytest.approx(0.5)
    assert compute_wer(ZH, "对这就是你", "zh") == pytest.approx(10 / 14)  # CER: 1 sub + 9 deletions of 14 chars
    assert compute_wer("", "", "en") == 0.0 and compute_wer("...", "words", "en") == 1.0


def test_chinese_ascii_punctuation_after_han_becomes_fullwidth():
    # whisper base writes an ASCII comma in Chinese; the model text gets the full-width one of transcripts
    assert normalize_for_model("对,这就是我万人仅仰的太以真人.", "zh") == \
        "dui4， zhe4 jiu4 shi4 wo3 wan4 ren2 jin3 yang3 de tai4 yi3 zhen1 ren2。"
    assert normalize_for_model("我爱 Python, 吧?", "zh") == "wo3 ai4 Python, ba？"  # only right after Chinese
    assert normalize_for_model("hello 世界, ok", "en") == "hello shi4 jie4, ok"  # not Chinese-language text


def test_joined_words_keep_hyphens_and_elisions_whole():
    words = ["sous", "-officier", "en", "cette", "soirée,", "d", "'abord", "l", "\u2019armée"]
    assert join_word_texts(words, "fr") == "sous-officier en cette soirée, d'abord l\u2019armée"
    assert join_word_texts(["a", "well", "-known", "rock", "'n'", "roll", "-", "yes"], "en") == \
        "a well-known rock 'n' roll - yes"  # English "'em" / "'n'" stand alone
    assert join_word_texts([" Hi", " there", "'s"], "en") == "Hi there's"  # whisper's own spacing wins
    assert join_word_texts(["对，", "这", "就是"], "zh") == "对，这就是"
