"""BERT's basic tokenization (text -> words), exactly as google-research/bert does it, but fast.

google-research/bert's `BasicTokenizer` walks the text one character at a time in Python. Here
the same rules become a few whole-string operations (regular expressions, `str.lower`,
`unicodedata.normalize`), with every character class computed from the same `unicodedata`
tables Google's code consults, so the result is the same word for word:

  1. drop NUL, U+FFFD and control characters (categories Cc and Cf, except tab, newline and
     carriage return); whitespace (category Zs, tab, newline, CR) separates words;
  2. CJK ideographs become words of their own;
  3. when lower-casing: `str.lower()`; when stripping accents: NFD, then drop non-spacing
     marks (category Mn), so "Café" -> "cafe". Google strips accents exactly when it
     lower-cases; `strip_accents` sets it apart, as Hugging Face's BERT tokenizer does (a
     cased vocab without accents, or an uncased one that keeps them: "résumé" is not
     "resume" in French or Czech, and stripping Devanagari's or Thai's vowel signs (also
     category Mn) breaks their words);
  4. every punctuation character (category P*, plus every non-alphanumeric printable ASCII
     character such as "$", "+", "^", "`") becomes a word of its own.

Why each whole-string step equals Google's per-token step: Google lower-cases and strips accents
per whitespace-separated token, and the only context those operations read (final sigma, a
combining mark's base) never crosses whitespace.

The same classes are also given as RE2 patterns (`re2_class`), so the TensorFlow graph version of
the tokenizer applies identical rules with `tf.strings.regex_replace`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import unicodedata
from collections.abc import Sequence

import numpy as np

# Google's `_is_chinese_char`: the CJK Unified Ideographs blocks (not Hiragana, Katakana or
# Hangul, which are written with spaces or are split into words by WordPiece).
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# Google's `_is_punctuation` counts all of these ASCII characters as punctuation, although
# Unicode files several of them ("$", "+", "<", "=", ">", "^", "`", "|", "~") as symbols.
_ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# ASCII control characters Google deletes (tab, newline and CR are whitespace instead).
ASCII_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Ranges = tuple[tuple[int, int], ...]


def _ranges(mask: np.ndarray) -> Ranges:
    """Sorted inclusive code point ranges [(first, last), ...] where `mask` (bool [0x110000])."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return tuple(
        (int(first), int(end) - 1) for first, end in zip(edges[::2], edges[1::2], strict=True)
    )


@dataclasses.dataclass(frozen=True)
class CharacterClasses:
    """Google's character classes as code point ranges, from this Python's `unicodedata`."""

    removed: Ranges  # NUL, U+FFFD, Cc and Cf except "\t\n\r": deleted from the text
    whitespace: Ranges  # separates words: str.isspace() (which includes every Zs character)
    punctuation: Ranges  # P* plus Google's ASCII symbols: each one a word of its own
    cjk: Ranges  # CJK ideographs: each one a word of its own
    nonspacing_marks: Ranges  # Mn: deleted after NFD when lower-casing (accent stripping)


@functools.cache
def character_classes() -> CharacterClasses:
    """Computes the classes once per process (a fraction of a second: one pass over Unicode)."""
    code_points = np.arange(sys.maxunicode + 1)
    category_names: dict[str, int] = {}
    categories = np.fromiter(
        (
            category_names.setdefault(unicodedata.category(chr(cp)), len(category_names))
            for cp in range(sys.maxunicode + 1)
        ),
        dtype=np.int8,
        count=sys.maxunicode + 1,
    )

    def category_in(*names: str) -> np.ndarray:
        wanted = [category_names[name] for name in names if name in category_names]
        return np.isin(categories, wanted)

    removed = category_in("Cc", "Cf") | (code_points == 0) | (code_points == 0xFFFD)
    removed[[0x09, 0x0A, 0x0D]] = False
    # Google splits with str.split(), i.e. on str.isspace(); Zs, tab, newline and CR are all in
    # it. Characters that are both control and space (\x0b, \x1c...) are deleted first.
    whitespace = np.zeros(len(code_points), dtype=bool)
    whitespace[[cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()]] = True
    whitespace &= ~removed
    punctuation = category_in("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")
    for first, last in _ASCII_PUNCTUATION_RANGES:
        punctuation[first : last + 1] = True
    return CharacterClasses(
        removed=_ranges(removed),
        whitespace=_ranges(whitespace),
        punctuation=_ranges(punctuation),
        cjk=CJK_RANGES,
        nonspacing_marks=_ranges(category_in("Mn")),
    )


def python_class(ranges: Ranges) -> str:
    """A Python `re` pattern matching one code point in `ranges`.

    Python's `re` tests a set's characters beyond U+FFFF one range at a time, after its fast
    bitmap of the first 65,536: with the hundreds of astral ranges of classes such as Mn, every
    character would pay for that list. So the astral part sits behind a one-range guard.
    """

    def char(cp: int) -> str:
        return re.escape(chr(cp)) if cp > 0 else "\\x00"

    def one_class(part: Ranges) -> str:
        return "[" + "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in part) + "]"

    bmp = tuple((a, min(b, 0xFFFF)) for a, b in ranges if a <= 0xFFFF)
    astral = tuple((max(a, 0x10000), b) for a, b in ranges if b > 0xFFFF)
    if not astral:
        return one_class(bmp)
    if not bmp:
        return one_class(astral)
    return f"(?:{one_class(bmp)}|(?![\\x00-\\uffff]){one_class(astral)})"


def re2_class(ranges: Ranges) -> str:
    """An RE2 character class (for `tf.strings.regex_replace`) matching the same code points."""
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges]
    return "[" + "".join(parts) + "]"


@dataclasses.dataclass(frozen=True)
class _Patterns:
    removed: re.Pattern
    cjk: re.Pattern
    nonspacing_marks: re.Pattern
    punctuation: re.Pattern


@functools.cache
def _patterns() -> _Patterns:
    classes = character_classes()
    return _Patterns(
        removed=re.compile(python_class(classes.removed)),
        cjk=re.compile(python_class(classes.cjk)),
        nonspacing_marks=re.compile(python_class(classes.nonspacing_marks)),
        punctuation=re.compile(python_class(classes.punctuation)),
    )


def resolve_strip_accents(do_lower_case: bool, strip_accents: bool | None) -> bool:
    """Whether accents are stripped: `strip_accents`, or when it is None, `do_lower_case`
    (Google's rule, under which the two go together). `contracts.metadata.tokenization` reads
    records by the same rule (the ground floor cannot import this one)."""
    return do_lower_case if strip_accents is None else bool(strip_accents)


def normalize(text: str, *, do_lower_case: bool, strip_accents: bool | None = None) -> str:
    """Steps 1-3 of the module docstring: the text with words still joined by whitespace.

    Args:
      text: one text (any length, any Unicode).
      do_lower_case: lower-case (uncased vocabularies).
      strip_accents: NFD, then drop the non-spacing marks; None: as `do_lower_case` (Google's
        rule).

    Returns:
      The cleaned text; CJK ideographs have a space on each side.
    """
    patterns = _patterns()
    if text.isascii():
        # Fast path: ASCII has no CJK, no accents and needs no NFD.
        text = ASCII_CONTROL_RE.sub("", text)
        return text.lower() if do_lower_case else text
    text = patterns.removed.sub("", text)
    text = patterns.cjk.sub(_spaced, text)
    if do_lower_case:
        text = text.lower()
    if resolve_strip_accents(do_lower_case, strip_accents):
        if not unicodedata.is_normalized("NFD", text):
            text = unicodedata.normalize("NFD", text)
        text = patterns.nonspacing_marks.sub("", text)
    return text


def split_words(text: str, *, do_lower_case: bool, strip_accents: bool | None = None) -> list[str]:
    """Google's `BasicTokenizer.tokenize`: one text to its list of words.

    Args:
      text: one text.
      do_lower_case: lower-case (uncased vocabularies).
      strip_accents: strip accents; None: as `do_lower_case`.

    Returns:
      The words, in order; punctuation characters and CJK ideographs are words of their own.
    """
    text = normalize(text, do_lower_case=do_lower_case, strip_accents=strip_accents)
    return _patterns().punctuation.sub(_spaced, text).split()


def _spaced(match: re.Match) -> str:
    # A function is faster than the template r" \g<0> ", which `re` re-expands per match.
    return f" {match.group()} "


def split_words_batch(
    texts: Sequence[str], *, do_lower_case: bool, strip_accents: bool | None = None
) -> list[list[str]]:
    """`split_words` for each text."""
    return [
        split_words(text, do_lower_case=do_lower_case, strip_accents=strip_accents)
        for text in texts
    ]
