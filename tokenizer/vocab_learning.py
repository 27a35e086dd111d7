"""WordPiece vocab learning from word counts: tensorflow-text's learner, made fast.

tensorflow-text's `wordpiece_tokenizer_learner_lib.learn` (used by `bert_vocab_from_dataset`)
does a binary search over a count threshold; for each threshold it runs a few iterations that
count candidate tokens and keep those counted at least `threshold` times. It is written as
nested Python loops over every substring of every word, which takes minutes to hours on a real
corpus. `learn` here returns the same vocab, token for token (a test compares the two), by
using what the original's counting amounts to:

  In each iteration the original counts every prefix of `word[start:]` for each allowed start
  (every position in iteration 0; the starts of the word's pieces under the previous vocab
  afterwards), then walks the tokens from longest to shortest, keeping a token if its count
  reaches the threshold and subtracting its count from all of its prefixes. After that
  subtraction a token's count is exactly the weight of the starts whose *whole* remainder
  `word[start:]` is that token. So a token survives iff `sum(count(word) for each (word, start)
  with word[start:] == token) >= threshold`, with "##" in front when start > 0.

That makes each iteration one weighted count over (word, start) pairs, done here with numpy:
every suffix of every word gets an integer id once (via a 128-bit hash of its characters, so
equal suffixes share an id), iteration 0's counts are the same for every threshold and are
computed once, and the piece starts of later iterations come from tensorflow-text's C++
`FastWordpieceTokenizer` (greedy longest match, the same rule as the original's
`get_split_indices`).

On top of the original, `learn_exact_size` returns exactly `vocab_size` tokens: the original
stops its search anywhere within `slack_ratio` (5%) *below* the requested size.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from contracts import command_line, hashing

# A FastWordpieceTokenizer needs an unknown token; words never contain spaces, so this one can
# never match part of a word (the learner's vocab always holds every character anyway).
_UNKNOWN_SENTINEL = "[ unknown ]"
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclasses.dataclass(frozen=True)
class LearnParams:
    """tensorflow-text's `learn()` keyword arguments, with its defaults."""

    upper_thresh: int | None = (
        10_000_000  # upper end of the threshold search (clipped to max count)
    )
    lower_thresh: int | None = 10  # lower end of the threshold search (raised to min count)
    num_iterations: int = 4  # counting rounds per threshold
    max_input_tokens: int | None = 5_000_000  # most frequent words kept; None: all
    max_token_length: int = 50  # longer words are ignored
    max_unique_chars: int = 1000  # alphabet size; words with rarer characters are ignored
    slack_ratio: float = 0.05  # a vocab within this fraction below vocab_size ends the search
    joiner: str = "##"  # prefix of pieces that continue a word


# --- Input selection: tensorflow-text's get_search_threshs / get_input_words / get_allowed_chars /
# filter_input_words, split so that a Beam job can run them over a corpus-sized count table. ----


def search_bounds(min_count: int, max_count: int, params: LearnParams) -> tuple[int, int]:
    """The threshold search range (lower, upper) from the smallest and largest word count."""
    upper = max_count if params.upper_thresh is None else min(max_count, params.upper_thresh)
    lower = min_count if params.lower_thresh is None else max(min_count, params.lower_thresh)
    return lower, upper


def is_candidate_word(word: str, *, reserved_tokens: Iterable[str], params: LearnParams) -> bool:
    """Words the learner looks at: not too long and not a reserved token."""
    return len(word) <= params.max_token_length and word not in reserved_tokens


def allowed_characters(char_counts: Mapping[str, int], params: LearnParams) -> set[str]:
    """The `max_unique_chars` most frequent characters (ties: by character)."""
    ranked = sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))
    return {char for char, _ in ranked[: params.max_unique_chars]}


def rank_words(word_counts: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Most frequent first; ties by word, so the result never depends on input order."""
    return sorted(word_counts, key=lambda item: (-item[1], item[0]))


def select_words(
    word_counts: Iterable[tuple[str, int]],
    *,
    reserved_tokens: Sequence[str],
    params: LearnParams,
) -> tuple[list[tuple[str, int]], tuple[int, int]]:
    """All of the input selection in memory.

    Returns:
      The (word, count) pairs the learner uses, most frequent first, and the search bounds.
    """
    word_counts = list(word_counts)
    if not word_counts:
        raise ValueError("no words to learn a vocab from: the corpus is empty")
    counts = [count for _, count in word_counts]
    bounds = search_bounds(min(counts), max(counts), params)
    reserved = set(reserved_tokens)
    candidates = [
        (w, c)
        for w, c in word_counts
        if is_candidate_word(w, reserved_tokens=reserved, params=params)
    ]
    char_counts: dict[str, int] = {}
    for word, count in candidates:
        for char in word:
            char_counts[char] = char_counts.get(char, 0) + count
    allowed = allowed_characters(char_counts, params)
    selected = rank_words((w, c) for w, c in candidates if all(ch in allowed for ch in w))
    if params.max_input_tokens not in (None, -1):
        selected = selected[: params.max_input_tokens]
    return selected, bounds


# --- The learner ------------------------------------------------------------------------------


class _SuffixTable:
    """Every suffix of every word, as integer ids shared by equal token strings.

    Arrays over all character positions p of the concatenated words (shape [num_positions]):
    `suffix_id[p]` is the id of the token `word[start:]` (with the joiner when start > 0).
    """

    def __init__(self, words: Sequence[str], counts: np.ndarray, *, joiner: str):
        tf = command_line.import_tensorflow_quietly()

        self.words = list(words)
        self.counts = counts
        self.joiner = joiner
        num_words = len(self.words)
        joined = "".join(self.words)
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter((len(w) for w in self.words), dtype=np.int64, count=num_words)
        word_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.word_of = np.repeat(np.arange(num_words, dtype=np.int64), lengths)
        self.start_in_word = np.arange(len(codes), dtype=np.int64) - word_start[self.word_of]
        distance_to_end = lengths[self.word_of] - 1 - self.start_in_word

        # Two independent 64-bit hashes of each suffix, built from the word's end backwards.
        by_distance = np.argsort(distance_to_end, kind="stable")
        level_ends = np.searchsorted(
            distance_to_end[by_distance], np.arange(int(lengths.max(initial=0))), side="right"
        )
        hashes = []
        for seed in (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)):
            suffix_hash = np.zeros(len(codes), dtype=np.uint64)
            for distance, level_end in enumerate(level_ends):
                positions = by_distance[(level_ends[distance - 1] if distance else 0) : level_end]
                following = (
                    suffix_hash[positions + 1] if distance else np.full(len(positions), seed)
                )
                suffix_hash[positions] = hashing.splitmix64(
                    following * np.uint64(31) + codes[positions] + seed
                )
            # "##ing" (a word's continuation) and "ing" (a whole word) are different tokens.
            continues = (self.start_in_word > 0).astype(np.uint64)
            hashes.append(hashing.splitmix64(suffix_hash ^ (continues * seed)))
        keys = np.ascontiguousarray(np.stack(hashes, axis=1)).view(np.dtype((np.void, 16)))[:, 0]
        _, self.first_position, self.suffix_id = np.unique(
            keys, return_index=True, return_inverse=True
        )
        self.suffix_id = self.suffix_id.reshape(-1)
        self.num_suffixes = len(self.first_position)

        # Byte offsets (what FastWordpieceTokenizer reports) to character positions.
        utf8 = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
        self.char_of_byte = np.cumsum((utf8 & 0xC0) != 0x80) - 1
        bytes_per_char = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
        byte_lengths = np.bincount(self.word_of, weights=bytes_per_char, minlength=num_words)
        self.word_byte_start = np.concatenate([[0], np.cumsum(byte_lengths.astype(np.int64))[:-1]])
        self.words_tensor = tf.constant(self.words, dtype=tf.string)
        self._tokens: dict[int, str] = {}

    def token(self, suffix: int) -> str:
        """The token string of a suffix id (memoised: the search asks for the same ones often)."""
        token = self._tokens.get(suffix)
        if token is None:
            position = self.first_position[suffix]
            word = self.words[self.word_of[position]]
            start = int(self.start_in_word[position])
            token = word if start == 0 else self.joiner + word[start:]
            self._tokens[suffix] = token
        return token

    def counts_at(self, positions: np.ndarray, word_index: np.ndarray) -> np.ndarray:
        """Summed word counts per suffix id over (position, word) pairs: int64 [num_suffixes]."""
        weights = self.counts[word_index].astype(np.float64)  # exact below 2**53
        total = np.bincount(self.suffix_id[positions], weights=weights, minlength=self.num_suffixes)
        return np.rint(total).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class LearnedVocab:
    tokens: list[str]  # reserved tokens, single characters, then pieces by count
    threshold: int  # the count threshold the tokens were learned with


class WordpieceLearner:
    """tensorflow-text's WordPiece learner over one fixed set of (word, count) pairs.

    Args:
      word_counts: the selected words (see `select_words`), most frequent first.
      reserved_tokens: tokens placed first in the vocab (for BERT, `vocab.special_prefix()`).
      params: the learner's parameters.
    """

    def __init__(
        self,
        word_counts: Sequence[tuple[str, int]],
        *,
        reserved_tokens: Sequence[str],
        params: LearnParams = LearnParams(),
    ):
        if not word_counts:
            raise ValueError("no words to learn a vocab from")
        self.params = params
        self.reserved_tokens = list(reserved_tokens)
        words = [word for word, _ in word_counts]
        counts = np.array([count for _, count in word_counts], dtype=np.int64)
        self._table = _SuffixTable(words, counts, joiner=params.joiner)
        self.chars = sorted({char for word in words for char in word})
        self._char_tokens = [*self.chars, *(params.joiner + char for char in self.chars)]
        # Iteration 0 counts every start of every word: the same for every threshold.
        all_positions = np.arange(len(self._table.word_of))
        self._first_counts = self._table.counts_at(all_positions, self._table.word_of)
        self._cache: dict[int, list[str]] = {}

    def learn_with_threshold(self, threshold: int) -> list[str]:
        """tensorflow-text's `learn_with_thresh`: the vocab whose pieces reach `threshold`."""
        if threshold in self._cache:
            return self._cache[threshold]
        table = self._table
        counts = self._first_counts
        for _ in range(1, self.params.num_iterations):
            kept = np.flatnonzero(counts >= threshold)
            counts = self._count_piece_starts(self._current_tokens(kept))
        kept = np.flatnonzero(counts >= threshold)
        scored = {table.token(s): int(counts[s]) for s in kept.tolist()}
        for token in self._char_tokens:
            scored.setdefault(token, 1)
        ranked = sorted(scored.items(), key=lambda item: (-item[1], item[0]))
        vocab = list(dict.fromkeys([*self.reserved_tokens, *self.chars, *(t for t, _ in ranked)]))
        self._cache[threshold] = vocab
        return vocab

    def _current_tokens(self, kept: np.ndarray) -> list[str]:
        tokens = [self._table.token(s) for s in kept.tolist()]
        return list(dict.fromkeys([*tokens, *self._char_tokens]))

    def _count_piece_starts(self, tokens: list[str]) -> np.ndarray:
        """Counts, per suffix id, the word count of each piece start under `tokens`."""
        tf = command_line.import_tensorflow_quietly()
        import tensorflow_text as tf_text

        table = self._table
        tokenizer = tf_text.FastWordpieceTokenizer(
            vocab=[_UNKNOWN_SENTINEL, *tokens],
            suffix_indicator=self.params.joiner,
            unknown_token=_UNKNOWN_SENTINEL,
            max_bytes_per_word=8 * max(self.params.max_token_length, 1),
            token_out_type=tf.int32,
            no_pretokenization=True,
        )
        pieces, starts, _ = tokenizer.tokenize_with_offsets(table.words_tensor)
        word_index = starts.value_rowids().numpy()
        start_bytes = starts.flat_values.numpy().astype(np.int64)
        # A word the vocab cannot spell is skipped, as in the original (it cannot happen while
        # every character and its "##" form are in the vocab).
        unknown_words = np.unique(word_index[pieces.flat_values.numpy() == 0])
        if len(unknown_words):
            keep = ~np.isin(word_index, unknown_words)
            word_index, start_bytes = word_index[keep], start_bytes[keep]
        positions = table.char_of_byte[table.word_byte_start[word_index] + start_bytes]
        return table.counts_at(positions, word_index)

    def learn(self, vocab_size: int, *, bounds: tuple[int, int]) -> LearnedVocab:
        """tensorflow-text's `learn_binary_search` between `bounds` (lower, upper)."""
        lower, upper = bounds
        slack_count = max(self.params.slack_ratio * vocab_size, 0)
        while True:
            threshold = (upper + lower) // 2
            vocab = self.learn_with_threshold(threshold)
            logging.info("threshold %d: %d tokens", threshold, len(vocab))
            within_slack = len(vocab) <= vocab_size and vocab_size - len(vocab) <= slack_count
            if within_slack or lower >= upper or threshold <= 1:
                return LearnedVocab(vocab, threshold)
            if len(vocab) > vocab_size:
                lower = threshold + 1
            else:
                upper = threshold - 1

    def learn_exact_size(self, vocab_size: int, *, bounds: tuple[int, int]) -> LearnedVocab:
        """`learn`, then made exactly `vocab_size` tokens long.

        Short (the search stops up to `slack_ratio` below the size): the most frequent pieces of
        the vocab of the highest lower threshold that has enough are appended. Long (the search
        ran out of range): the least frequent pieces are dropped, never a single character or
        its "##" form, so every word the learner saw can still be spelled.

        Raises:
          ValueError: the corpus cannot give `vocab_size` tokens even at threshold 1, or the
            reserved tokens and characters alone exceed it.
        """
        learned = self.learn(vocab_size, bounds=bounds)
        tokens = learned.tokens
        if len(tokens) > vocab_size:
            return LearnedVocab(self._cut(tokens, vocab_size), learned.threshold)
        if len(tokens) == vocab_size:
            return learned
        richer = self._richer_vocab(vocab_size, below=learned.threshold)
        present = set(tokens)
        extra = [t for t in richer if t not in present][: vocab_size - len(tokens)]
        logging.info(
            "threshold %d gave %d tokens; added the %d most frequent new pieces of a lower "
            "threshold to make %d",
            learned.threshold,
            len(tokens),
            len(extra),
            vocab_size,
        )
        return LearnedVocab([*tokens, *extra], learned.threshold)

    def _richer_vocab(self, vocab_size: int, *, below: int) -> list[str]:
        """The vocab of the highest threshold under `below` with at least `vocab_size` tokens."""
        lower, upper = 1, below - 1
        best = None
        # The next threshold down usually suffices (the search ended just above the size).
        if upper >= 1:
            vocab = self.learn_with_threshold(upper)
            if len(vocab) >= vocab_size:
                return vocab
            upper -= 1
        while lower <= upper:
            threshold = (lower + upper) // 2
            vocab = self.learn_with_threshold(threshold)
            if len(vocab) >= vocab_size:
                best, lower = vocab, threshold + 1
            else:
                upper = threshold - 1
        if best is None:
            most = len(self.learn_with_threshold(1))
            raise ValueError(
                f"the corpus is too small for vocab_size {vocab_size}: it yields at most {most} "
                "tokens; use a smaller vocab_size or more text"
            )
        return best

    def _cut(self, tokens: list[str], vocab_size: int) -> list[str]:
        essential = set(self.reserved_tokens) | set(self._char_tokens)
        num_optional = vocab_size - sum(token in essential for token in tokens)
        if num_optional < 0:
            raise ValueError(
                f"vocab_size {vocab_size} cannot hold the {len(self.reserved_tokens)} reserved "
                f"tokens and the {len(self._char_tokens)} character tokens of this corpus; "
                "lower max_unique_chars or raise vocab_size"
            )
        kept, optional = [], 0
        for token in tokens:
            if token in essential:
                kept.append(token)
            elif optional < num_optional:
                kept.append(token)
                optional += 1
        return kept


def learn(
    word_counts: Mapping[str, int] | Iterable[tuple[str, int]],
    vocab_size: int,
    reserved_tokens: Sequence[str],
    *,
    params: LearnParams = LearnParams(),
    exact_size: bool = False,
) -> list[str]:
    """The vocab tensorflow-text's `learn(word_counts, vocab_size, reserved_tokens)` returns.

    Args:
      word_counts: word -> count, or (word, count) pairs (words as BERT's basic tokenizer
        splits them).
      vocab_size: the number of tokens wanted, reserved tokens included.
      reserved_tokens: tokens placed first.
      params: tensorflow-text's learner parameters.
      exact_size: return exactly `vocab_size` tokens (see `learn_exact_size`).

    Returns:
      The tokens: reserved tokens, single characters, then learned pieces by count.
    """
    pairs = word_counts.items() if isinstance(word_counts, Mapping) else word_counts
    selected, bounds = select_words(pairs, reserved_tokens=reserved_tokens, params=params)
    learner = WordpieceLearner(selected, reserved_tokens=reserved_tokens, params=params)
    if exact_size:
        return learner.learn_exact_size(vocab_size, bounds=bounds).tokens
    return learner.learn(vocab_size, bounds=bounds).tokens
