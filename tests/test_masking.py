"""pipeline.masking: the reference's masked-LM rule, vectorised, with per-word 80/10/10."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import masking

CLS, SEP, MASK = 101, 102, 103
VOCAB_SIZE = 1000
RANDOM_IDS = masking.default_random_token_ids(VOCAB_SIZE, excluded_ids=(0, CLS, SEP, MASK))


def packed_rows(
    rng: np.random.Generator, count: int, width: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Random `[CLS] A [SEP] B [SEP]` rows of random lengths, zero-padded."""
    ids = np.zeros((count, width), dtype=np.int32)
    lengths = rng.integers(5, width + 1, size=count)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(200, VOCAB_SIZE, size=length)
        ids[row, 0] = CLS
        split = rng.integers(2, length - 2)
        ids[row, split] = SEP
        ids[row, length - 1] = SEP
    return ids, lengths


def mask(ids, lengths, keys, *, is_continuation=None, max_predictions=20, prob=0.15):
    return masking.mask_batch(
        ids,
        lengths,
        keys,
        masked_lm_prob=prob,
        max_predictions_per_seq=max_predictions,
        cls_id=CLS,
        sep_id=SEP,
        mask_id=MASK,
        random_token_ids=RANDOM_IDS,
        is_continuation=is_continuation,
    )


def test_uniform_is_in_range_and_depends_on_the_key_alone():
    keys = masking.instance_keys(12345, 64)
    draws = masking.uniform(keys, stream=1, width=128)
    assert draws.shape == (64, 128)
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.01
    # A row is the same alone or in any batch, and streams differ.
    np.testing.assert_array_equal(masking.uniform(keys[5:6], stream=1, width=128), draws[5:6])
    assert not np.array_equal(masking.uniform(keys, stream=2, width=128), draws)
    # Keys of one base are distinct, and another base gives other keys.
    assert len(set(keys.tolist())) == 64
    assert not set(keys.tolist()) & set(masking.instance_keys(12346, 64).tolist())


def test_num_to_predict_is_the_reference_formula():
    lengths = np.arange(1, 600)
    for prob, cap in ((0.15, 20), (0.15, 76), (0.2, 80), (0.1, 5)):
        expected = [min(cap, max(1, int(round(n * prob)))) for n in lengths.tolist()]
        got = masking.num_to_predict(lengths, masked_lm_prob=prob, max_predictions_per_seq=cap)
        assert got.tolist() == expected


def test_mask_batch_features_are_consistent():
    rng = np.random.default_rng(0)
    ids, lengths = packed_rows(rng, 300)
    keys = masking.instance_keys(7, len(ids))
    out = mask(ids, lengths, keys)
    budgets = masking.num_to_predict(lengths, masked_lm_prob=0.15, max_predictions_per_seq=20)
    for row in range(len(ids)):
        chosen = out.actions[row] != masking.ACTION_NONE
        count = int(chosen.sum())
        # Exactly the budget (every row has enough candidates), never [CLS]/[SEP]/padding.
        assert count == budgets[row]
        assert not chosen[lengths[row] :].any()
        assert not np.isin(ids[row][chosen], [CLS, SEP]).any()
        positions = out.masked_lm_positions[row, :count]
        assert (np.diff(positions) > 0).all()
        np.testing.assert_array_equal(positions, np.flatnonzero(chosen))
        np.testing.assert_array_equal(out.masked_lm_ids[row, :count], ids[row, positions])
        assert out.masked_lm_weights[row, :count].tolist() == [1.0] * count
        assert not out.masked_lm_positions[row, count:].any()
        assert not out.masked_lm_ids[row, count:].any()
        assert not out.masked_lm_weights[row, count:].any()
        # Inputs change only where chosen: [MASK], a random non-special token, or unchanged.
        np.testing.assert_array_equal(out.input_ids[row, ~chosen], ids[row, ~chosen])
        actions = out.actions[row]
        assert (out.input_ids[row, actions == masking.ACTION_MASK] == MASK).all()
        np.testing.assert_array_equal(
            out.input_ids[row, actions == masking.ACTION_KEEP],
            ids[row, actions == masking.ACTION_KEEP],
        )
        assert np.isin(out.input_ids[row, actions == masking.ACTION_RANDOM], RANDOM_IDS).all()


def test_rows_do_not_depend_on_their_batch():
    rng = np.random.default_rng(1)
    ids, lengths = packed_rows(rng, 40)
    keys = masking.instance_keys(99, len(ids))
    whole = mask(ids, lengths, keys)
    part = mask(ids[10:13], lengths[10:13], keys[10:13])
    np.testing.assert_array_equal(whole.input_ids[10:13], part.input_ids)
    np.testing.assert_array_equal(whole.masked_lm_positions[10:13], part.masked_lm_positions)
    # Another key masks differently.
    other = mask(ids[10:13], lengths[10:13], masking.instance_keys(100, 3))
    assert not np.array_equal(other.masked_lm_positions, part.masked_lm_positions)


def test_masked_fraction_and_80_10_10_split():
    rng = np.random.default_rng(2)
    ids = rng.integers(200, VOCAB_SIZE, size=(4000, 128)).astype(np.int32)
    ids[:, 0], ids[:, 60], ids[:, 127] = CLS, SEP, SEP
    out = mask(ids, np.full(4000, 128), masking.instance_keys(3, 4000))
    chosen = out.actions != masking.ACTION_NONE
    assert chosen.sum() == 4000 * 19  # round(128 * 0.15)
    total = chosen.sum()
    assert (out.actions == masking.ACTION_MASK).sum() / total == pytest.approx(0.8, abs=0.01)
    assert (out.actions == masking.ACTION_KEEP).sum() / total == pytest.approx(0.1, abs=0.01)
    assert (out.actions == masking.ACTION_RANDOM).sum() / total == pytest.approx(0.1, abs=0.01)
    # Every candidate position is as likely to be chosen.
    per_position = np.delete(chosen[:, 1:127], 59, axis=1).mean(axis=0)  # all but [SEP]s
    assert per_position.min() > 0.12 and per_position.max() < 0.18


def reference_selection(units: list[list[int]], order: list[int], budget: int) -> set[int]:
    """REFERENCE REPRODUCTION (for tests only) of google-research/bert's selection loop in
    `create_masked_lm_predictions`: visit candidate units in shuffled order, stop at the
    budget, skip a unit that would overshoot it."""
    chosen: list[int] = []
    for index in order:
        unit = units[index]
        if len(chosen) >= budget:
            break
        if len(chosen) + len(unit) > budget:
            continue
        chosen.extend(unit)
    return set(chosen)


def test_whole_word_selection_matches_the_reference_loop():
    rng = np.random.default_rng(4)
    is_continuation = np.zeros(VOCAB_SIZE, dtype=bool)
    is_continuation[600:] = True  # ids >= 600 are "##" pieces
    ids, lengths = packed_rows(rng, 500, width=64)
    keys = masking.instance_keys(5, len(ids))
    out = mask(ids, lengths, keys, is_continuation=is_continuation, max_predictions=12, prob=0.2)
    order_draws = masking.uniform(keys, stream=masking.STREAM_CANDIDATE_ORDER, width=64)
    budgets = masking.num_to_predict(lengths, masked_lm_prob=0.2, max_predictions_per_seq=12)
    for row in range(len(ids)):
        units: list[list[int]] = []
        for position in range(lengths[row]):
            token = ids[row, position]
            if token in (CLS, SEP):
                continue
            previous = ids[row, position - 1]
            if is_continuation[token] and units and previous not in (CLS, SEP):
                units[-1].append(position)
            else:
                units.append([position])
        order = sorted(range(len(units)), key=lambda u: order_draws[row, units[u][0]])
        expected = reference_selection(units, order, int(budgets[row]))
        chosen = np.flatnonzero(out.actions[row] != masking.ACTION_NONE)
        assert set(chosen.tolist()) == expected
        # FIX: one 80/10/10 choice per word, shared by all its pieces.
        for unit in units:
            actions = set(out.actions[row, unit].tolist())
            assert len(actions) == 1


def test_whole_word_does_not_glue_a_piece_across_sep():
    is_continuation = np.zeros(VOCAB_SIZE, dtype=bool)
    is_continuation[900] = True
    ids = np.array([[CLS, 300, 900, SEP, 900, 301, SEP, 0]])
    starts = masking.word_starts(
        ids, np.isin(ids, [CLS, SEP, 0], invert=True), is_continuation=is_continuation
    )
    # "300 ##x" is one word; "##x" right after [SEP] starts its own.
    assert starts.tolist() == [[False, True, False, False, True, True, False, False]]


def test_short_rows_and_small_caps():
    ids = np.array([[CLS, 500, SEP, 501, SEP, 0, 0, 0]], dtype=np.int32)
    out = mask(ids, np.array([5]), masking.instance_keys(1, 1), max_predictions=3)
    # round(5 * 0.15) = 1 prediction, among the two real tokens.
    assert out.masked_lm_weights.tolist() == [[1.0, 0.0, 0.0]]
    assert out.masked_lm_positions[0, 0] in (1, 3)
    # More slots than positions: the features still have max_predictions_per_seq columns.
    wide = mask(ids, np.array([5]), masking.instance_keys(1, 1), max_predictions=12, prob=0.9)
    assert wide.masked_lm_positions.shape == (1, 12)
    assert wide.masked_lm_weights.sum() == 2  # only two candidates exist
