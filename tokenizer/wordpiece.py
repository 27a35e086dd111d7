"""`WordPieceTokenizer`: Google's FullTokenizer (basic tokenization, then WordPiece) in plain
Python, without TensorFlow; the base of `tokenizer.BertTokenizer`.

Why a second implementation beside tensorflow-text's: tensorflow-text needs TensorFlow in the
process, ~0.7 GB of memory and ~10 s of start-up in every process that tokenizes. A Beam
worker of create_pretraining_data only turns lines into ids, and with several local workers
(or Dataflow's, one per core) that cost is paid once per process for nothing: measured on 6 MB
of English text, this class takes 1.3 s and tensorflow-text's FastBertTokenizer 1.3 s.
It is that fast because natural text repeats its words: each distinct word is split into
pieces once (Google's greedy longest-match-first, the loop of its `WordpieceTokenizer`) and
remembered, and most lines are ASCII, which two whole-string regular-expression passes split
exactly as Google's character loop does. The trainer, the graph version and serving keep
tensorflow-text (`BertTokenizer`, which subclasses this and overrides the batch methods).
Both are checked against Google's reference on real text and on every character.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from tokenizer import basic_tokenization, vocab

# Google's WordpieceTokenizer.max_input_chars_per_word: a longer word is one [UNK].
MAX_CHARS_PER_WORD = 100
# Scripts written without spaces between words: Thai, Lao, Myanmar (and its extensions), Khmer
# (and its symbols), Tai Le, New Tai Lue, Tai Tham, Balinese, Javanese. Their text has spaces
# between phrases only, so BERT's basic tokenization sees a whole phrase as one "word", often
# longer than MAX_CHARS_PER_WORD, and Google's tokenizer turns it into one [UNK] (mBERT's known
# weakness on Thai: most of a Thai page is lost). Here a word with a character of these scripts is split into pieces like any other
# word up to MAX_CHARS_PER_UNSPACED_WORD characters, so a vocab learned for such a language
# (build_vocab --algorithm=sentencepiece) can spell it; words in other scripts keep Google's
# limit, so nothing else changes.
UNSPACED_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x1950, 0x19FF),  # Tai Le, New Tai Lue, Khmer symbols
    (0x1A20, 0x1AAF),  # Tai Tham
    (0x1B00, 0x1B7F),  # Balinese
    (0xA980, 0xA9FF),  # Javanese, Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
)
MAX_CHARS_PER_UNSPACED_WORD = 1000
_UNSPACED = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in UNSPACED_SCRIPTS) + "]")
# Words remembered with their pieces; past this many the memo starts afresh (a bound on the
# memory of a process that sees a whole Wikipedia: ~150 bytes a word).
MEMO_WORDS = 1 << 18
# The words of an ASCII text (see `_plain_text`); the same as its `words` on ASCII, faster.
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")


@functools.cache
def _plain_text() -> tuple[re.Pattern, re.Pattern]:
    """(plain, words): `plain` fully matches the texts that Google's rules split by character
    class alone: ASCII, plus non-ASCII whitespace and the punctuation that lower-casing and NFD
    leave alone (typographic quotes and dashes, "…", "«»", "¿"...), which is most English text
    outside ASCII. On such a text, once ASCII control characters are deleted and it is
    lower-cased (or not), `words` finds Google's words: runs of ASCII letters and digits, and
    each punctuation character (every printable ASCII character that is not a letter, a digit
    or a space is punctuation to Google)."""
    classes = basic_tokenization.character_classes()

    def members(ranges: basic_tokenization.Ranges) -> list[str]:
        return [chr(cp) for a, b in ranges for cp in range(max(a, 0x80), min(b, 0xFFFF) + 1)]

    punctuation = "".join(
        c
        for c in members(classes.punctuation)
        if c.lower() == c and unicodedata.normalize("NFD", c) == c
    )
    spaces = "".join(members(classes.whitespace))
    plain = re.compile(f"[\\x00-\\x7f{re.escape(punctuation + spaces)}]*")
    words = re.compile(f"[A-Za-z0-9]+|[!-/:-@\\[-`{{-~{re.escape(punctuation)}]")
    return plain, words


def too_long(word: str) -> bool:
    """Whether WordPiece makes `word` one [UNK] for its length alone: over MAX_CHARS_PER_WORD
    characters, or over MAX_CHARS_PER_UNSPACED_WORD for a word in an unspaced script."""
    length = len(word)
    if length <= MAX_CHARS_PER_WORD:
        return False
    return length > MAX_CHARS_PER_UNSPACED_WORD or not _UNSPACED.search(word)


class WordPieceTokenizer:
    """Batched BERT tokenization (basic + WordPiece) that equals Google's FullTokenizer.

    Args:
      vocab_file: a WordPiece vocab (local or gs://), one token per line, validated by
        `tokenizer.vocab.load` (no duplicates, [PAD] [UNK] [CLS] [SEP] [MASK] present).
      do_lower_case: lower-case first (True for uncased vocabs, False for cased ones).
      strip_accents: strip accents (NFD, then drop non-spacing marks); None: as
        `do_lower_case`, which is Google's rule.

    Attributes:
      do_lower_case, strip_accents: the normalization (strip_accents resolved to a bool).
      vocab: token -> id.
      vocab_size: number of tokens.
      pad_id, unk_id, cls_id, sep_id, mask_id: ids of the special tokens.
      is_continuation: bool array of shape [vocab_size], True for "##" pieces (used by
        whole-word masking).
    """

    def __init__(
        self, vocab_file: str, *, do_lower_case: bool = True, strip_accents: bool | None = None
    ):
        self._setup(
            vocab.load(vocab_file),
            do_lower_case=do_lower_case,
            strip_accents=strip_accents,
            source=vocab_file,
        )

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[str],
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
    ):
        """A tokenizer over an in-memory vocab (validated like a file)."""
        tokens = list(tokens)
        vocab.validate(tokens)
        tokenizer = cls.__new__(cls)
        tokenizer._setup(
            tokens, do_lower_case=do_lower_case, strip_accents=strip_accents, source="<tokens>"
        )
        return tokenizer

    def _setup(
        self, tokens: list[str], *, do_lower_case: bool, strip_accents: bool | None, source: str
    ) -> None:
        self.do_lower_case = do_lower_case
        self.strip_accents = basic_tokenization.resolve_strip_accents(do_lower_case, strip_accents)
        self.source = source
        self._tokens = tokens
        self.vocab = {token: index for index, token in enumerate(tokens)}
        self.vocab_size = len(tokens)
        self.pad_id = self.vocab[vocab.PAD]
        self.unk_id = self.vocab[vocab.UNK]
        self.cls_id = self.vocab[vocab.CLS]
        self.sep_id = self.vocab[vocab.SEP]
        self.mask_id = self.vocab[vocab.MASK]
        self.is_continuation = np.array(
            [token.startswith(vocab.CONTINUATION_PREFIX) for token in tokens], dtype=bool
        )
        # No piece is longer than this: the longest-match search starts there (same pieces).
        self._longest_piece = max(len(t.removeprefix(vocab.CONTINUATION_PREFIX)) for t in tokens)
        self._memo: dict[str, tuple[int, ...]] = {}

    # Pickled (for Beam workers) as the tokens themselves: a worker may not see the vocab path.
    def __getstate__(self) -> dict:
        return {
            "tokens": self._tokens,
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "source": self.source,
        }

    def __setstate__(self, state: dict) -> None:
        self._setup(
            state["tokens"],
            do_lower_case=state["do_lower_case"],
            strip_accents=state["strip_accents"],
            source=state["source"],
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, vocab_size={self.vocab_size}, "
            f"do_lower_case={self.do_lower_case}, strip_accents={self.strip_accents})"
        )

    def words(self, text: str) -> list[str]:
        """Google's basic tokenization of one text: its words, punctuation and CJK ideographs
        as words of their own."""
        if text.isascii():
            words = _ASCII_WORDS
        else:
            plain, words = _plain_text()
            if not plain.fullmatch(text):
                return basic_tokenization.split_words(
                    text, do_lower_case=self.do_lower_case, strip_accents=self.strip_accents
                )
        if basic_tokenization.ASCII_CONTROL_RE.search(text):
            text = basic_tokenization.ASCII_CONTROL_RE.sub("", text)
        return words.findall(text.lower() if self.do_lower_case else text)

    def tokenize_to_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text.

        Args:
          texts: a batch of texts (a list of str).

        Returns:
          One int32 array of shape [num_pieces] per text, in order.
        """
        ids, lengths = self.tokenize_flat(texts)
        return np.split(ids, np.cumsum(lengths[:-1])) if len(texts) else []

    def tokenize_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The token ids of a batch of texts, end to end, and how many belong to each text.

        Args:
          texts: a batch of texts (a list of str).

        Returns:
          (ids, lengths): int32 [total pieces], int32 [len(texts)]; text i's ids are
          `ids[lengths[:i].sum():][:lengths[i]]`. Cheaper than one array per text.
        """
        if isinstance(texts, str):
            raise TypeError("tokenize_to_ids takes a sequence of texts, not one str")
        return self._flat_pieces([self.words(text) for text in texts])

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Word pieces of each text, e.g. ["the", "un", "##aff", "##able", "[UNK]"].

        Args:
          texts: a batch of texts.

        Returns:
          One list of token strings per text, in order; equal to google-research/bert's
          `FullTokenizer(vocab_file, do_lower_case).tokenize(text)` for each text.
        """
        tokens = self._tokens
        return [[tokens[i] for i in row.tolist()] for row in self.tokenize_to_ids(texts)]

    def tokenize_words(self, words: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """WordPiece ids for texts already split into words (e.g. by `split_words`).

        Args:
          words: per text, its words (no whitespace or punctuation inside a word).

        Returns:
          One int32 array of shape [num_pieces] per text.
        """
        return self._tokenize_words(words)

    def _tokenize_words(self, words_per_text: Sequence[Sequence[str]]) -> list[np.ndarray]:
        ids, lengths = self._flat_pieces(words_per_text)
        return np.split(ids, np.cumsum(lengths[:-1])) if len(words_per_text) else []

    def _flat_pieces(
        self, words_per_text: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        memo = self._memo
        if len(memo) > MEMO_WORDS:
            memo.clear()
        lookup = memo.__getitem__
        flat: list[int] = []
        lengths = []
        for words in words_per_text:
            try:
                pieces = list(map(lookup, words))
            except KeyError:  # a word not seen before: split it once
                for word in words:
                    if word not in memo:
                        memo[word] = self._word_pieces(word)
                pieces = list(map(lookup, words))
            before = len(flat)
            flat.extend(itertools.chain.from_iterable(pieces))
            lengths.append(len(flat) - before)
        return np.array(flat, dtype=np.int32), np.array(lengths, dtype=np.int32)

    def _word_pieces(self, word: str) -> tuple[int, ...]:
        """Google's WordpieceTokenizer on one word: the longest vocab piece first, "##" before
        every piece but the first; a word with a part no piece covers, or `too_long`, is one
        [UNK]."""
        if too_long(word):
            return (self.unk_id,)
        get = self.vocab.get
        longest = self._longest_piece
        pieces = []
        start = 0
        while start < len(word):
            for end in range(min(len(word), start + longest), start, -1):
                piece = get(word[start:end] if start == 0 else "##" + word[start:end])
                if piece is not None:
                    break
            else:
                return (self.unk_id,)
            pieces.append(piece)
            start = end
        return tuple(pieces)

    def id_to_token(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The tokens of `ids` (any sequence or 1-D array of ints)."""
        tokens = self._tokens
        return [tokens[i] for i in np.asarray(ids, dtype=np.int64).tolist()]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of tokens (KeyError names the first token not in the vocab)."""
        return [self.vocab[token] for token in tokens]
