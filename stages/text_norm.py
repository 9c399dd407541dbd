"""Text normalization: the model text stored with each clip, and the text WER is computed on.

Model text (``normalize_for_model``) follows F5-TTS's ``convert_char_to_pinyin``
(``f5_tts/model/utils.py``), written out as one string:

* Latin and other non-Chinese scripts are kept as characters: NFKC, curly
  quotes made straight and ``;`` made ``,`` (F5-TTS's translation table),
  whitespace collapsed. Case and punctuation are KEPT: F5-TTS's character
  vocabulary has both, and they carry prosody.
* Chinese characters become pinyin with tone numbers (pypinyin ``Style.TONE3``,
  tone sandhi on), each syllable preceded by a space as in F5-TTS, so
  punctuation that follows sticks to it (``wo3，``); runs of spaces are
  collapsed to one and the ends stripped (F5-TTS keeps a leading space). The neutral tone
  carries no digit, as in F5-TTS (``neutral_tone_with_five=True`` writes ``5``).
  Non-Chinese runs inside Chinese text stay characters; full-width
  punctuation is kept (no NFKC for Chinese: F5-TTS's vocabulary has ``，`` and ``。``),
  and in Chinese-language text ASCII ``, . ? ! : ;`` right after a Chinese
  character become full-width (whisper base writes ``对,这``; transcripts
  and larger models write ``对，这``), so one corpus has one comma.
  F5-TTS segments words with jieba first; pypinyin's own phrase dictionary
  is used here instead (jieba is not a dependency), which can differ on rare
  polyphones.

Whisper's simplified/traditional choice is steered by its prompt (``asr.initial_prompts``): no
character conversion is done here.

Words joined back into text (``join_word_texts``, when whisper's own spacing is lost) glue a
word starting with ``-`` (``sous -officier``, ``well -known``) to the previous one, and for
languages with elision (French, Italian, Catalan) a word starting with an apostrophe (``d 'abord``).

WER text (``normalize_for_wer``) is NFKC, lower case, without punctuation;
letter/digit runs are split and, for English, integers below 1000 are
spelled out (so "F2" and "f two" match). Chinese, Japanese and Korean
characters are separate tokens, so WER on them is the character error rate.
"""

from __future__ import annotations

import re
import unicodedata

F5_TRANSLATION = str.maketrans({";": ",", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
CJK_LANGUAGES = ("zh", "yue", "ja", "ko")
UNSPACED_LANGUAGES = ("zh", "yue", "ja")  # words are written without spaces between them
ELISION_LANGUAGES = ("fr", "it", "ca")  # "d'abord": whisper splits the word at the apostrophe
FULLWIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"})
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = _HAN + r"\u3040-\u30ff\uac00-\ud7af"
HAN_RUN = re.compile(f"[{_HAN}]+")
ASCII_PUNCT_AFTER_HAN = re.compile(f"(?<=[{_HAN}])[,.?!:;]")
CJK_CHAR = re.compile(f"[{_CJK}]")
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def is_chinese_language(language: str | None) -> bool:
    return bool(language) and language.split("-")[0].lower() in ("zh", "yue")


def contains_han(text: str) -> bool:
    return HAN_RUN.search(text) is not None


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def convert_han_to_pinyin(run: str, neutral_tone_with_five: bool = False) -> list[str]:
    """Tone-numbered pinyin syllables (``Style.TONE3``, tone sandhi) for a run of Chinese characters."""
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(run, style=Style.TONE3, tone_sandhi=True, neutral_tone_with_five=neutral_tone_with_five)


def normalize_for_model(text: str, language: str | None, neutral_tone_with_five: bool = False) -> str:
    """The text a TTS model trains on: characters for Latin scripts, tone pinyin for Chinese.

    Chinese is converted when ``language`` is Chinese or when the text holds
    Chinese characters (a mislabelled or mixed transcript still gets pinyin).
    """
    text = text.translate(F5_TRANSLATION)
    if not (is_chinese_language(language) or contains_han(text)):
        return collapse_whitespace(unicodedata.normalize("NFKC", text))
    if is_chinese_language(language):
        text = fullwidth_chinese_punctuation(text)
    parts: list[str] = []
    pos = 0
    for m in HAN_RUN.finditer(text):
        parts.append(text[pos:m.start()])
        syllables = convert_han_to_pinyin(m.group(), neutral_tone_with_five)
        parts.append("".join(" " + s for s in syllables))  # F5-TTS: a space before each syllable
        pos = m.end()
    parts.append(text[pos:])
    return collapse_whitespace("".join(parts))


def fullwidth_chinese_punctuation(text: str) -> str:
    """ASCII ``, . ? ! : ;`` right after a Chinese character made full-width (``对,这`` -> ``对，这``)."""
    return ASCII_PUNCT_AFTER_HAN.sub(lambda m: m.group().translate(FULLWIDTH), text)


def spell_number(n: int) -> str:
    """English words for 0 <= n < 1000 ("two", "forty two", "one hundred five")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + spell_number(rest))


def normalize_for_wer(text: str, language: str | None) -> str:
    """Space-separated tokens for WER: lower case, no punctuation; CJK characters are one token each."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\w)['\u2019](?=\w)", "\u0000", text)  # keep word-internal apostrophes (don't)
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" and c != "\u0000" else c for c in text)
    text = text.replace("\u0000", "'")
    text = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", text)  # F2 -> f 2
    text = CJK_CHAR.sub(lambda m: f" {m.group()} ", text)
    lang = (language or "en").split("-")[0].lower()
    if lang == "en":
        text = re.sub(r"\b\d{1,3}\b", lambda m: spell_number(int(m.group())), text)
    return collapse_whitespace(text)


def compute_wer(reference: str, hypothesis: str, language: str | None) -> float:
    """WER (jiwer) of ``hypothesis`` against ``reference`` after ``normalize_for_wer``; CER for CJK.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    import jiwer

    ref = normalize_for_wer(reference, language)
    hyp = normalize_for_wer(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def join_word_texts(words: list[str], language: str | None) -> str:
    """Text of a run of whisper words: kept as given when they carry their own leading spaces,
    else joined with spaces (without for Chinese and Japanese).

    Whisper starts a word at a lone ``-`` or ``'`` token and glues it to the next word, so
    ``sous-officier`` comes as ``sous`` + ``-officier`` and ``d'abord`` as ``d`` + ``'abord``:
    those are glued back (apostrophes only in languages with elision, as English ``'em``
    stands alone).
    """
    lang = (language or "").split("-")[0].lower()
    if lang in UNSPACED_LANGUAGES or any(w[:1].isspace() for w in words):
        return "".join(words).strip()
    out = ""
    for word in (w.strip() for w in words):
        if not word:
            continue
        glue = (out[-1:].isalpha() and word[1:2].isalpha()
                and (word[0] == "-" or (word[0] in "'\u2019" and lang in ELISION_LANGUAGES)))
        out += word if glue or not out else " " + word
    return out
