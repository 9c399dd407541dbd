"""The text vocabulary: ``text_model`` strings (see ``stages/text_norm.py``) to token ids.

Tokenization rule (:func:`tokenize`), following F5-TTS's character/pinyin vocabulary:

* Whitespace runs are first collapsed to one space and the ends stripped (``text_model``
  is already written that way, so this only matters for hand-typed text).
* Latin and other non-Chinese text: one token per character, spaces and punctuation
  included (``"Hi, you"`` -> ``H i , ␣ y o u``).
* Chinese text is stored as tone-number pinyin, each syllable preceded by a space
  (``"dui4， zhe4 jiu4 shi4 wo3"``). A text is read as pinyin when at least
  ``PINYIN_MIN_FRACTION`` of its space-separated words start with a toned syllable
  (a syllable of pinyin shape followed by a tone digit 1-5). In such a text a syllable
  that starts a word (at the start of the text or after a space) is one token: a toned
  one (``zhe4``, also when letters follow: ``yong4iPhone``), a neutral-tone one without digit (``de``, ``ma``) only when no
  letter follows it. Everything else, punctuation stuck to a syllable (``dui4，`` ->
  ``dui4`` ``，``), spaces, Latin runs inside Chinese text and Han characters pypinyin
  left alone, is one token per character.

Ids: 0 = ``<filler>`` (padding and filler, what F5-TTS pads text with), 1 = ``<unk>``
(any token not in the vocabulary), then the tokens seen by :meth:`Vocab.build`, sorted
by code point so a vocabulary is reproducible. ``vocab.txt`` holds one token per line
in id order (a line holding one space is the space token).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

FILLER = "<filler>"
UNK = "<unk>"
FILLER_ID = 0
UNK_ID = 1
PINYIN_MIN_FRACTION = 0.3  # fraction of words that must be toned syllables for a text to be read as pinyin

_INITIALS = "zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw]"
_FINALS = ("iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|van|üan|ai|an|ao|ei|en|er|ia|ie|in|iu|ou|ua|ui|un|uo|"
           "ve|üe|vn|ün|a|e|i|o|u|v|ü|m|n|ng")
SYLLABLE = f"(?:{_INITIALS})?(?:{_FINALS})"
TONED = re.compile(f"(?:{SYLLABLE})[1-5](?![0-9])")  # the tone digit ends it; letters may follow
NEUTRAL = re.compile(f"(?:{SYLLABLE})(?![0-9A-Za-zü])")


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def is_pinyin_text(text: str) -> bool:
    """True when enough of the words of ``text`` start with a toned pinyin syllable."""
    words = text.split(" ")
    if not words:
        return False
    toned = sum(1 for w in words if TONED.match(w))
    return toned > 0 and toned >= PINYIN_MIN_FRACTION * len(words)


def tokenize(text: str) -> list[str]:
    """Tokens of one ``text_model`` string (rule in the module docstring)."""
    text = collapse_whitespace(text)
    if not is_pinyin_text(text):
        return list(text)
    tokens: list[str] = []
    i = 0
    while i < len(text):
        if i == 0 or text[i - 1] == " ":
            m = TONED.match(text, i) or NEUTRAL.match(text, i)
            if m:
                tokens.append(m.group())
                i = m.end()
                continue
        tokens.append(text[i])
        i += 1
    return tokens


class Vocab:
    """Token <-> id table; id 0 is the filler/padding token, id 1 the unknown token."""

    def __init__(self, tokens: list[str]):
        if tokens[:2] != [FILLER, UNK]:
            raise ValueError(f"a vocabulary starts with {FILLER!r}, {UNK!r}; got {tokens[:2]!r}")
        if len(set(tokens)) != len(tokens):
            dup = [t for t, n in Counter(tokens).items() if n > 1]
            raise ValueError(f"duplicate vocabulary tokens: {dup[:10]!r}")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def encode(self, text_model: str) -> list[int]:
        """Token ids of ``text_model``; unknown tokens map to ``UNK_ID``."""
        return [self.ids.get(t, UNK_ID) for t in tokenize(text_model)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; filler ids are dropped, unknown ones written ``<unk>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == FILLER_ID:
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return "".join(out)

    @classmethod
    def build(cls, texts: Iterable[str | None], min_count: int = 1) -> Vocab:
        """A vocabulary of every token seen at least ``min_count`` times in ``texts`` (None skipped)."""
        counts: Counter[str] = Counter()
        for text in texts:
            if text:
                counts.update(tokenize(text))
        kept = sorted(t for t, n in counts.items() if n >= min_count and t not in (FILLER, UNK))
        return cls([FILLER, UNK, *kept])

    def save(self, path: str | Path) -> None:
        """Write ``vocab.txt``: one token per line, in id order."""
        bad = [t for t in self.tokens if "\n" in t or "\r" in t or t == ""]
        if bad:
            raise ValueError(f"tokens that cannot be written one per line: {bad[:5]!r}")
        Path(path).write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a ``vocab.txt`` written by :meth:`save`."""
        text = Path(path).read_text(encoding="utf-8")
        if not text.endswith("\n"):
            raise ValueError(f"{path}: not a vocab.txt (no trailing newline)")
        return cls(text[:-1].split("\n"))
