"""Sentence segmentation for the text shards: one sentence per line, good enough for NSP.

The segmenter is Wikimedia's `sentencex` (PyPI, rule based, written in Rust): it knows
per-language abbreviation lists ("Dr.", "U.S.", "e.g.", "z. B.", "т. е."), keeps decimals,
quotes and ellipses inside a sentence, falls back from a language it does not know to a related
one (and finally to English), needs no model download, and segments about 50 MB of text a
second on one core. On the hand-checked sample in `tests/data/extract_text/sentences_gold.txt`
it reproduces most gold sentences exactly; the figure is in `docs/extract_text.md` and
`benchmarks/bench_extract_text.py --sentences` prints it next to pysbd's.

Input is a list of paragraphs (one line of cleaned text each): a sentence never spans two
paragraphs, which matches how Wikipedia and books are laid out and keeps the segmenter from
joining a heading-like fragment to the next paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import sentencex

DEFAULT_LANGUAGE = "en"

# A sentence must stay on exactly one line of the shard, also for readers that split lines on
# more than "\n" (Python's str.splitlines also splits on \r \v \f \x1c-\x1e \x85 \u2028
# \u2029): every whitespace run, those included, becomes one plain space (normalize_whitespace).
_HAS_WORD = re.compile(r"\w")
# Abbreviations that announce a number ("approx. 500", "Vol. 12", "pp. 45", "No. 1"): sentencex
# lists some of them for some languages only and splits after the others. A piece that starts
# with a digit right after one of these continues the sentence.
_NUMBER_ABBREVIATION = re.compile(
    r"(?:^|\s)\(?(?:approx|ca|cf|ch|chap|eq|eqs|fig|figs|no|nos|nr|op|p|pp|para|ref|sec|sect|vol|vols)"
    r"\.$",
    re.IGNORECASE,
)
_STARTS_WITH_DIGIT = re.compile(r"\d")

# Language names as Project Gutenberg headers spell them, to ISO 639-1 codes sentencex knows.
_LANGUAGE_NAMES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "finnish": "fi",
    "polish": "pl",
    "czech": "cs",
    "hungarian": "hu",
    "russian": "ru",
    "ukrainian": "uk",
    "bulgarian": "bg",
    "greek": "el",
    "latin": "la",
    "catalan": "ca",
    "esperanto": "eo",
    "chinese": "zh",
    "japanese": "ja",
    "tagalog": "tl",
    "welsh": "cy",
    "irish": "ga",
}


# The languages sentencex (1.0) has rules of its own for: the modules of its Rust crate. Any
# other it segments with the rules of a language MediaWiki falls back to, or with its generic
# ones (full stops, question and exclamation marks): good enough for most languages written
# with those, but Thai, say, writes no full stop, so a Thai paragraph stays one sentence.
SENTENCEX_RULES = frozenset(
    [
        "am",
        "ar",
        "bg",
        "bn",
        "ca",
        "da",
        "de",
        "el",
        "en",
        "es",
        "fi",
        "fr",
        "gu",
        "hi",
        "hy",
        "it",
        "ja",
        "kk",
        "kn",
        "ml",
        "mr",
        "my",
        "nl",
        "pa",
        "pl",
        "pt",
        "ru",
        "sk",
        "ta",
        "te",
        "uk",
    ]
)


def fallback_note(language: str) -> str | None:
    """What to tell a user whose text is in `language` (a `language_code`) about its sentence
    rules: None when sentencex has rules of its own for it."""
    if language in SENTENCEX_RULES:
        return None
    return (
        f"sentencex has no sentence rules of its own for language {language!r}: it falls back "
        "to a related language's or to its generic ones (full stops, question and exclamation "
        "marks); check a few sentences of the output"
    )


def language_code(language: str | None) -> str:
    """Normalises a language name or tag ("English", "en-GB", "pt_BR") to a short code.

    Args:
      language: a language name, a BCP 47 tag, or None/"" for the default.

    Returns:
      A lowercase code such as "en"; `DEFAULT_LANGUAGE` when nothing usable was given.
    """
    if not language:
        return DEFAULT_LANGUAGE
    value = language.strip().lower()
    if value in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[value]
    # "en-GB", "pt_BR", "zh-hans": sentencex's rules are per base language.
    code = re.split(r"[-_]", value, maxsplit=1)[0]
    if re.fullmatch(r"[a-z]{2,3}", code):
        return code
    return DEFAULT_LANGUAGE


def normalize_whitespace(text: str) -> str:
    """One line, single plain spaces, no leading or trailing space."""
    # str.split() splits on every Unicode whitespace character, the line breaks above included.
    return " ".join(text.split())


def split_sentences(paragraph: str, *, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Splits one paragraph into sentences.

    Args:
      paragraph: running text; line breaks inside it are treated as spaces.
      language: a code as returned by `language_code` ("en", "ru", ...).

    Returns:
      The sentences in order, each one line with normalised whitespace, none empty. A piece
      with no letter or digit (a stray quote mark or bracket), or one that starts with a digit
      after "approx.", "Vol.", "pp.", "No." and the like, is glued to the sentence before.
    """
    text = normalize_whitespace(paragraph)
    if not text:
        return []
    sentences: list[str] = []
    for piece in sentencex.segment(language, text):
        piece = piece.strip()
        if not piece:
            continue
        if sentences and (
            not _HAS_WORD.search(piece)
            or (_STARTS_WITH_DIGIT.match(piece) and _NUMBER_ABBREVIATION.search(sentences[-1]))
        ):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def split_paragraphs(paragraphs: Iterable[str], *, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Sentences of a whole document, given as paragraphs; see `split_sentences`."""
    sentences: list[str] = []
    for paragraph in paragraphs:
        sentences.extend(split_sentences(paragraph, language=language))
    return sentences


def parse_gold_sample(text: str) -> list[tuple[str, list[str]]]:
    """Reads a hand-checked sample (format: `tests/data/extract_text/sentences_gold.txt`).

    Returns:
      One `(language, gold_sentences)` pair per paragraph.
    """
    blocks: list[tuple[str, list[str]]] = []
    for raw_block in re.split(r"\n\s*\n", text):
        lines = [
            line.strip()
            for line in raw_block.splitlines()
            if line.strip() and not line.startswith("#")
        ]
        if not lines:
            continue
        header = re.fullmatch(r"\[([\w-]+)\]", lines[0])
        if not header or len(lines) < 2:
            raise ValueError(f"gold block must start with [language] and hold sentences: {lines}")
        blocks.append((header.group(1), lines[1:]))
    return blocks


def agreement(
    blocks: Iterable[tuple[str, list[str]]],
    segment: Callable[[str, str], list[str]],
) -> dict[str, float]:
    """How well a segmenter reproduces gold sentences.

    Args:
      blocks: `(language, gold_sentences)` pairs, e.g. from `parse_gold_sample`.
      segment: `segment(paragraph, language) -> sentences`.

    Returns:
      `precision` and `recall` of exactly reproduced sentences (compared as character spans of
      the paragraph, so a sentence cut in two counts as one miss and two wrong), their `f1`, and
      `paragraphs_exact`, the fraction of paragraphs segmented exactly like the gold.
    """
    correct = predicted = expected = exact = total = 0
    for language, gold in blocks:
        paragraph = " ".join(gold)
        found = [normalize_whitespace(s) for s in segment(paragraph, language)]
        found = [s for s in found if s]
        gold_spans = _spans(gold)
        found_spans = _spans(found)
        correct += len(gold_spans & found_spans)
        predicted += len(found_spans)
        expected += len(gold_spans)
        exact += gold_spans == found_spans
        total += 1
    precision = correct / predicted if predicted else 0.0
    recall = correct / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "paragraphs_exact": exact / total if total else 0.0,
    }


def _spans(sentences: list[str]) -> set[tuple[int, int]]:
    """Character spans of sentences joined by single spaces."""
    spans = set()
    start = 0
    for sentence in sentences:
        spans.add((start, start + len(sentence)))
        start += len(sentence) + 1
    return spans
