"""Masked-LM predictions for a batch of packed sequences, vectorised with numpy.

The rule is google-research/bert's `create_masked_lm_predictions`:

- the candidates are every real token except `[CLS]` and `[SEP]`; with whole-word masking a
  candidate is a word: a token plus the "##" continuation pieces that follow it;
- `num_to_predict = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob)))`, where
  `length` counts `[CLS]` and `[SEP]` too (as the reference does);
- candidates are visited in a random order; one is taken when it still fits in what is left of
  `num_to_predict` (a word that would overshoot is skipped, and later, shorter ones may fill in);
- each chosen token becomes `[MASK]` 80% of the time, a random token 10% and stays itself 10%.

What we fix: with whole-word masking the reference draws the 80/10/10 choice for every piece
of a word separately, so "phil ##har ##mon ##ic" could come out as "[MASK] ##har [MASK] xyz";
here the choice is made once per word (every piece of a chosen word is masked, or every piece
replaced by a random token, or every piece kept), as the whole-word-masking models intended.
The random replacement token is drawn uniformly from `random_token_ids` (by default every id
except [PAD] [CLS] [SEP] [MASK]; the reference draws from the whole vocab, specials included).

Randomness is counter-based: every draw is a hash of (the instance's 64-bit key, what is drawn,
position), so an instance's masks depend on its key alone, never on which other instances share
its batch or on the numpy version. A batch is a [batch, max_seq_length] matrix and every step is
a whole-matrix numpy operation; the only loop runs over the few tokens left in a row's budget
after the largest prefix of words that fits (at most the length of the longest word).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from contracts import hashing

# Draws are splitmix64 (contracts.hashing) of key + counter * golden gamma: consecutive counters
# give independent-looking uniform values.
_GOLDEN = hashing.GOLDEN_GAMMA
# Draws of one instance: counter = stream * _STREAM_STRIDE + position.
_STREAM_STRIDE = 1 << 32
STREAM_CANDIDATE_ORDER = 1
STREAM_ACTION = 2
STREAM_RANDOM_TOKEN = 3

# Masking actions, as stored in `MaskedBatch.actions`.
ACTION_NONE = 0
ACTION_MASK = 1  # replaced by [MASK] (80%)
ACTION_RANDOM = 2  # replaced by a random token (10%)
ACTION_KEEP = 3  # left as it was, still predicted (10%)


def uniform(keys: np.ndarray, *, stream: int, width: int) -> np.ndarray:
    """Uniform floats in [0, 1) drawn from per-row keys.

    Args:
      keys: uint64 [batch], one random key per row.
      stream: which draw (a small int); different streams of one key are independent.
      width: columns to draw.

    Returns:
      float64 [batch, width]; entry (i, j) depends on keys[i], stream and j only.
    """
    counters = np.arange(width, dtype=np.uint64) + np.uint64(stream * _STREAM_STRIDE + 1)
    mixed = hashing.splitmix64(
        np.asarray(keys, dtype=np.uint64)[:, None] + counters[None, :] * _GOLDEN
    )
    # The top 53 bits make an exactly representable double in [0, 1).
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def uniform_at(keys: np.ndarray, columns: np.ndarray, *, stream: int) -> np.ndarray:
    """Single draws of `uniform`: `uniform_at(keys[r], c)` equals `uniform(keys, ...)[r, c]`.

    Args:
      keys: uint64 [n], the row key of each draw.
      columns: int [n], the column of each draw.

    Returns:
      float64 [n].
    """
    counters = np.asarray(columns, dtype=np.uint64) + np.uint64(stream * _STREAM_STRIDE + 1)
    mixed = hashing.splitmix64(np.asarray(keys, dtype=np.uint64) + counters * _GOLDEN)
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def instance_keys(base_key: int, count: int) -> np.ndarray:
    """`count` independent uint64 keys derived from one 64-bit `base_key` (e.g. a hash of the
    seed, the document id and the dupe index), one per instance."""
    counters = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
    return hashing.splitmix64(np.uint64(base_key & 0xFFFFFFFFFFFFFFFF) + counters)


def num_to_predict(
    lengths: np.ndarray, *, masked_lm_prob: float, max_predictions_per_seq: int
) -> np.ndarray:
    """How many tokens each row masks: `min(max_pred, max(1, round(length * prob)))`.

    `np.rint` rounds halves to even, exactly as Python's `round` in the reference.

    Args:
      lengths: int [batch], real tokens per row ([CLS] and [SEP] included).

    Returns:
      int64 [batch].
    """
    target = np.rint(np.asarray(lengths, dtype=np.float64) * masked_lm_prob).astype(np.int64)
    return np.minimum(max_predictions_per_seq, np.maximum(1, target))


@dataclasses.dataclass(frozen=True)
class MaskedBatch:
    """The masked-LM features of a batch of `batch` rows.

    Attributes:
      input_ids: int32 [batch, max_seq_length], the inputs after masking.
      masked_lm_positions: int32 [batch, max_predictions_per_seq], ascending, 0-padded.
      masked_lm_ids: int32 [batch, max_predictions_per_seq], the original ids there, 0-padded.
      masked_lm_weights: float32 [batch, max_predictions_per_seq], 1.0 per real prediction.
      actions: int8 [batch, max_seq_length], ACTION_* per position (ACTION_NONE if not chosen).
    """

    input_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    actions: np.ndarray


def word_starts(
    input_ids: np.ndarray,
    candidates: np.ndarray,
    *,
    is_continuation: np.ndarray | None,
) -> np.ndarray:
    """Which candidate positions begin a maskable unit.

    Args:
      input_ids: int [batch, length].
      candidates: bool [batch, length], the maskable positions.
      is_continuation: bool [vocab_size] ("##" pieces), or None for per-token masking.

    Returns:
      bool [batch, length]. Without whole-word masking every candidate starts its own unit; with
      it, a "##" piece joins the unit before it unless that position is not a candidate (a
      piece right after [CLS]/[SEP] starts a unit: the reference would glue it to the word
      before the [SEP], across the segment boundary).
    """
    if is_continuation is None:
        return candidates.copy()
    previous_is_candidate = np.zeros_like(candidates)
    previous_is_candidate[:, 1:] = candidates[:, :-1]
    continuation = is_continuation[input_ids]
    return candidates & ~(continuation & previous_is_candidate)


def _select_words(
    word_lengths: np.ndarray, word_keys: np.ndarray, budgets: np.ndarray
) -> np.ndarray:
    """Greedy selection in random order with skips, as the reference does it.

    Args:
      word_lengths: int64 [batch, words], tokens per word (0 for unused slots).
      word_keys: float64 [batch, words], the random visiting order (unused slots +inf).
      budgets: int64 [batch], tokens to select per row.

    Returns:
      bool [batch, words]: the chosen words.
    """
    width = word_lengths.shape[1]
    order = np.argsort(word_keys, axis=1, kind="stable")
    lengths_in_order = np.take_along_axis(word_lengths, order, axis=1)
    real = lengths_in_order > 0
    cumulative = np.cumsum(lengths_in_order, axis=1)
    # The longest prefix that fits (lengths are positive, so the prefix is monotone).
    chosen_in_order = real & (cumulative <= budgets[:, None])
    taken = np.where(chosen_in_order, lengths_in_order, 0).sum(axis=1)
    left = budgets - taken
    # The reference then keeps visiting: a later word that fits in what is left is taken.
    # `left` only shrinks, so a word skipped once never fits later, and each round takes the
    # first fitting word after the last one taken; at most max(left) rounds.
    last = chosen_in_order.sum(axis=1) - 1
    columns = np.arange(width)[None, :]
    while True:
        eligible = (
            real
            & ~chosen_in_order
            & (columns > last[:, None])
            & (lengths_in_order <= left[:, None])
            & (left[:, None] > 0)
        )
        has = eligible.any(axis=1)
        if not has.any():
            break
        first = np.argmax(eligible, axis=1)
        rows = np.flatnonzero(has)
        chosen_in_order[rows, first[rows]] = True
        left[rows] -= lengths_in_order[rows, first[rows]]
        last[rows] = first[rows]
    chosen = np.zeros_like(chosen_in_order)
    np.put_along_axis(chosen, order, chosen_in_order, axis=1)
    return chosen


def _choose_tokens(
    candidates: np.ndarray, order_draws: np.ndarray, budgets: np.ndarray
) -> np.ndarray | None:
    """Per-token masking: the `budget` candidates with the smallest draws, found with one
    sort of the draws instead of an argsort. Returns None on a tie (never seen in practice:
    draws have 53 random bits), for the general path to decide."""
    width = candidates.shape[1]
    draws = np.where(candidates, order_draws, 2.0)
    kth = np.minimum(budgets, width) - 1
    threshold = np.sort(draws, axis=1)[np.arange(len(draws)), kth]
    chosen = candidates & (draws <= threshold[:, None])
    if (chosen.sum(axis=1) > budgets).any():
        return None
    return chosen


def _choose_words(
    input_ids: np.ndarray,
    candidates: np.ndarray,
    order_draws: np.ndarray,
    budgets: np.ndarray,
    is_continuation: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-word (or per-token) masking with the reference's skips.

    Returns:
      chosen: bool [batch, width]; unit_start: int64 [batch, width], the column where each
      position's unit (word) begins.
    """
    batch, width = input_ids.shape
    starts = word_starts(input_ids, candidates, is_continuation=is_continuation)
    unit = np.maximum(np.cumsum(starts, axis=1) - 1, 0)  # each position's unit, left to right
    rows = np.broadcast_to(np.arange(batch)[:, None], (batch, width))
    flat_unit = (rows * width + unit)[candidates]
    unit_lengths = np.bincount(flat_unit, minlength=batch * width).reshape(batch, width)
    # One random visiting key per unit: the draw at its first position.
    unit_keys = np.full((batch, width), np.inf)
    unit_keys[rows[starts], unit[starts]] = order_draws[starts]
    chosen_units = _select_words(unit_lengths, unit_keys, budgets)
    chosen = candidates & np.take_along_axis(chosen_units, unit, axis=1)
    start_column = np.zeros((batch, width), dtype=np.int64)
    start_column[rows[starts], unit[starts]] = np.broadcast_to(np.arange(width), (batch, width))[
        starts
    ]
    return chosen, np.take_along_axis(start_column, unit, axis=1)


def mask_batch(
    input_ids: np.ndarray,
    lengths: np.ndarray,
    keys: np.ndarray,
    *,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    cls_id: int,
    sep_id: int,
    mask_id: int,
    random_token_ids: np.ndarray,
    is_continuation: np.ndarray | None = None,
) -> MaskedBatch:
    """Chooses and applies the masked-LM predictions of a batch of packed sequences.

    Args:
      input_ids: int [batch, max_seq_length], `[CLS] A [SEP] B [SEP]` then padding.
      lengths: int [batch], real tokens per row.
      keys: uint64 [batch], each row's random key (see `instance_keys`).
      masked_lm_prob: fraction of tokens to predict (0.15).
      max_predictions_per_seq: the cap, and the width of the prediction features.
      cls_id, sep_id: never predicted.
      mask_id: the [MASK] id.
      random_token_ids: int [n], the ids a random replacement is drawn from (uniformly).
      is_continuation: bool [vocab_size] for whole-word masking; None masks single tokens.

    Returns:
      A MaskedBatch.
    """
    input_ids = np.asarray(input_ids)
    batch, width = input_ids.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.uint64)
    random_token_ids = np.asarray(random_token_ids, dtype=np.int32)
    candidates = (
        (np.arange(width)[None, :] < lengths[:, None])
        & (input_ids != cls_id)
        & (input_ids != sep_id)
    )
    budgets = num_to_predict(
        lengths, masked_lm_prob=masked_lm_prob, max_predictions_per_seq=max_predictions_per_seq
    )
    order_draws = uniform(keys, stream=STREAM_CANDIDATE_ORDER, width=width)
    chosen = None
    if is_continuation is None:
        chosen = _choose_tokens(candidates, order_draws, budgets)
    if chosen is None:
        chosen, unit_start = _choose_words(
            input_ids, candidates, order_draws, budgets, is_continuation
        )
    # The chosen positions, row by row, ascending (np.nonzero walks the matrix in row order).
    rows, columns = np.nonzero(chosen)
    start_columns = columns if is_continuation is None else unit_start[rows, columns]
    row_keys = keys[rows]
    # 80/10/10, decided once per unit (drawn at its first position), shared by its pieces.
    draw = uniform_at(row_keys, start_columns, stream=STREAM_ACTION)
    action = np.where(draw < 0.8, ACTION_MASK, np.where(draw < 0.9, ACTION_KEEP, ACTION_RANDOM))
    actions = np.zeros((batch, width), dtype=np.int8)
    actions[rows, columns] = action
    masked_ids = input_ids.astype(np.int32, copy=True)
    is_mask = action == ACTION_MASK
    masked_ids[rows[is_mask], columns[is_mask]] = mask_id
    is_random = action == ACTION_RANDOM
    if is_random.any():
        token_draws = uniform_at(
            row_keys[is_random], columns[is_random], stream=STREAM_RANDOM_TOKEN
        )
        picks = np.minimum(
            (token_draws * len(random_token_ids)).astype(np.int64), len(random_token_ids) - 1
        )
        masked_ids[rows[is_random], columns[is_random]] = random_token_ids[picks]

    per_row = np.bincount(rows, minlength=batch)
    slots = np.arange(len(rows)) - (np.cumsum(per_row) - per_row)[rows]
    predicted_positions = np.zeros((batch, max_predictions_per_seq), dtype=np.int32)
    predicted_ids = np.zeros((batch, max_predictions_per_seq), dtype=np.int32)
    predicted_positions[rows, slots] = columns
    predicted_ids[rows, slots] = input_ids[rows, columns]
    weights = (np.arange(max_predictions_per_seq)[None, :] < per_row[:, None]).astype(np.float32)
    return MaskedBatch(
        input_ids=masked_ids,
        masked_lm_positions=predicted_positions,
        masked_lm_ids=predicted_ids,
        masked_lm_weights=weights,
        actions=actions,
    )


def default_random_token_ids(vocab_size: int, *, excluded_ids: tuple[int, ...]) -> np.ndarray:
    """Every id in [0, vocab_size) except `excluded_ids`, int32 [n]."""
    keep = np.ones(vocab_size, dtype=bool)
    keep[list(excluded_ids)] = False
    return np.flatnonzero(keep).astype(np.int32)
