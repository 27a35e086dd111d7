"""pipeline.pretraining_instances: the reference's cuts and pairs on ids, with its faults fixed."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from pipeline import masking
from pipeline import pretraining_instances as pi
from tests import google_reference_pretraining as reference
from tests import pretraining_fixtures

CLS, SEP, MASK = 101, 102, 103


@pytest.fixture(scope="module")
def book_sentences() -> list[list[np.ndarray]]:
    """The bundled books as tokenized documents (lists of sentences of ids)."""
    from tokenizer import BertTokenizer

    tokenizer = BertTokenizer(str(pretraining_fixtures.VOCAB))
    documents = [
        doc
        for book in pretraining_fixtures.real_books()
        for doc in pretraining_fixtures.book_documents(book)
    ]
    flat = tokenizer.tokenize_to_ids([s for doc in documents for s in doc])
    out, row = [], 0
    for doc in documents:
        sentences = [ids for ids in flat[row : row + len(doc)] if len(ids)]
        row += len(doc)
        out.append(sentences)
    return out


def as_documents(sentences_per_doc: list[list[np.ndarray]]) -> list[pi.Document]:
    return [
        pi.Document(
            f"doc:{index}",
            np.concatenate(sentences).astype(np.int32),
            np.array([len(s) for s in sentences], dtype=np.int32),
        )
        for index, sentences in enumerate(sentences_per_doc)
    ]


def offsets_of(documents: list[pi.Document]) -> list[list[int]]:
    return [[0, *np.cumsum(d.sentence_lengths).tolist()] for d in documents]


def synthetic_documents(seed: int, count: int) -> list[pi.Document]:
    """Documents whose sentences are runs of distinct ids (doc * 10000 + position), so a
    segment's ids tell where it came from."""
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        lengths = [
            rng.choice([rng.randint(1, 30), rng.randint(30, 200)])
            for _ in range(rng.randint(1, 25))
        ]
        tokens = np.arange(sum(lengths), dtype=np.int32) + 1000 + index * 10000
        documents.append(pi.Document(f"doc:{index}", tokens, np.array(lengths, dtype=np.int32)))
    return documents


def test_truncation_amounts_match_the_reference_loop():
    rng = random.Random(0)
    for length_a in range(1, 30):
        for length_b in range(1, 30):
            for max_num_tokens in (2, 3, 7, 20, 40, 125):
                a, b = list(range(length_a)), list(range(length_b))
                reference.truncate_seq_pair(a, b, max_num_tokens, rng)
                removed = pi.truncation_amounts(length_a, length_b, max_num_tokens=max_num_tokens)
                assert removed == (length_a - len(a), length_b - len(b))


def test_truncate_seq_pair_trims_front_and_back_at_random():
    rng = random.Random(1)
    tokens_a, tokens_b = np.arange(100), np.arange(100, 130)
    fronts = 0
    for _ in range(400):
        a, b = pi.truncate_seq_pair(tokens_a, tokens_b, max_num_tokens=60, rng=rng)
        assert (len(a), len(b)) == (30, 30)  # the longer one trimmed down first
        np.testing.assert_array_equal(a, np.arange(a[0], a[0] + 30))  # a contiguous slice
        np.testing.assert_array_equal(b, tokens_b)
        fronts += int(a[0])
    assert fronts / (400 * 70) == pytest.approx(0.5, abs=0.02)


def check_segment(segment: pi.Segment, documents, *, max_seq_length: int) -> None:
    a_doc, a_start, a_end, b_doc, b_start, b_end, is_random = segment
    assert a_end > a_start and b_end > b_start
    assert (a_end - a_start) + (b_end - b_start) <= max_seq_length - 3
    assert a_start >= 0 and a_end <= len(documents[a_doc].tokens)
    assert b_start >= 0 and b_end <= len(documents[b_doc].tokens)
    if is_random:
        assert b_doc != a_doc  # FIX: never from the same document
    else:
        assert b_doc == a_doc and b_start >= a_end - 0  # B comes after A in the document


def test_segments_keep_the_reference_invariants():
    documents = synthetic_documents(0, 40)
    offsets = offsets_of(documents)
    counts = pi.SegmentCounts()
    for index in range(len(documents)):
        for seq in (128, 20):
            rng = random.Random(index)
            for segment in pi.create_segments(
                offsets, index, max_seq_length=seq, short_seq_prob=0.1, rng=rng, counts=counts
            ):
                check_segment(segment, documents, max_seq_length=seq)
    assert counts.segments > 500


def test_actual_next_b_continues_a():
    # Sentences of 25 tokens and a target of 100: chunks of exactly four sentences, never
    # truncated, so an "actually next" B starts where A ends, at a sentence boundary.
    documents = [
        pi.Document(f"d{i}", np.arange(500, dtype=np.int32) + 1000 * i, np.full(20, 25, np.int32))
        for i in range(5)
    ]
    offsets = offsets_of(documents)
    actual = 0
    for seed in range(50):
        for segment in pi.create_segments(
            offsets, 0, max_seq_length=103, short_seq_prob=0.0, rng=random.Random(seed)
        ):
            assert segment.a_start % 25 == 0 and segment.a_end % 25 == 0
            if not segment.is_random_next:
                actual += 1
                assert segment.b_start == segment.a_end and segment.b_end % 25 == 0
    assert actual > 100


def test_random_next_is_balanced_where_the_reference_is_skewed(book_sentences):
    ours, theirs = Counter(), Counter()
    documents = as_documents(book_sentences)
    offsets = offsets_of(documents)
    lists = [[s.tolist() for s in doc] for doc in book_sentences]
    for dupe in range(3):
        for index in range(len(documents)):
            for segment in pi.create_segments(
                offsets,
                index,
                max_seq_length=128,
                short_seq_prob=0.1,
                rng=random.Random(f"{dupe}:{index}"),
            ):
                ours["instances"] += 1
                ours["random"] += segment.is_random_next
                ours["tokens"] += segment.a_end - segment.a_start + segment.b_end - segment.b_start
            for tokens_a, tokens_b, is_random in reference.create_pairs_from_document(
                lists, index, 128, 0.1, random.Random(f"{dupe}:{index}")
            ):
                theirs["instances"] += 1
                theirs["random"] += is_random
                theirs["tokens"] += len(tokens_a) + len(tokens_b)
    # The reference forces "random" on single-sentence chunks (here ~6% above one half) ...
    assert theirs["random"] / theirs["instances"] > 0.53
    # ... ours tosses the coin for every chunk, and loses no more than a few instances.
    assert ours["random"] / ours["instances"] == pytest.approx(0.5, abs=0.02)
    assert 0.95 < ours["instances"] / theirs["instances"] < 1.05
    # At least as full: real tokens per instance.
    ours_fill = ours["tokens"] / ours["instances"]
    assert ours_fill >= theirs["tokens"] / theirs["instances"]


def test_single_sentence_document_and_bucket_of_one():
    lonely = pi.Document("only", np.arange(50, dtype=np.int32), np.array([50], dtype=np.int32))
    other = pi.Document("other", np.arange(40, dtype=np.int32), np.array([20, 20], dtype=np.int32))
    counts = pi.SegmentCounts()
    labels = []
    for seed in range(200):
        segments = pi.create_segments(
            offsets_of([lonely, other]),
            0,
            max_seq_length=64,
            short_seq_prob=0.0,
            rng=random.Random(seed),
            counts=counts,
        )
        labels.extend(s.is_random_next for s in segments)
    # One sentence: no "actually next" exists; those draws are skipped, not turned random.
    assert set(labels) == {True}
    assert counts.skipped_single_sentence_document == 200 - len(labels)
    assert 70 < len(labels) < 130
    # A bucket of one document: no random B exists; those draws are skipped.
    counts = pi.SegmentCounts()
    segments = []
    for seed in range(100):
        segments += pi.create_segments(
            offsets_of([other]),
            0,
            max_seq_length=64,
            short_seq_prob=0.0,
            rng=random.Random(seed),
            counts=counts,
        )
    assert not any(s.is_random_next for s in segments)
    assert counts.skipped_no_other_document > 20
    assert counts.segments == len(segments) > 20


def test_pack_segments_layout():
    documents = [
        pi.Document("a", np.array([11, 12, 13, 14], np.int32), np.array([2, 2], np.int32)),
        pi.Document("b", np.array([21, 22, 23], np.int32), np.array([3], np.int32)),
    ]
    segments = [pi.Segment(0, 0, 2, 0, 2, 4, False), pi.Segment(0, 1, 2, 1, 0, 3, True)]
    ids, segment_ids, lengths, labels = pi.pack_segments(
        documents, segments, max_seq_length=10, cls_id=CLS, sep_id=SEP
    )
    assert ids.tolist() == [
        [CLS, 11, 12, SEP, 13, 14, SEP, 0, 0, 0],
        [CLS, 12, SEP, 21, 22, 23, SEP, 0, 0, 0],
    ]
    assert segment_ids.tolist() == [[0, 0, 0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]]
    assert lengths.tolist() == [7, 7]
    assert labels.tolist() == [[0], [1]]


def test_document_encoding_round_trip():
    document = pi.Document("x:1", np.array([0, 5, 30521], np.int32), np.array([1, 2], np.int32))
    encoded = pi.encode_document(document, vocab_size=30522)
    assert isinstance(encoded[1], bytes) and len(encoded[1]) == 6  # 2 bytes a token
    decoded = pi.decode_document(encoded, vocab_size=30522)
    assert decoded.doc_id == "x:1"
    np.testing.assert_array_equal(decoded.tokens, document.tokens)
    np.testing.assert_array_equal(decoded.sentence_lengths, document.sentence_lengths)
    big = pi.decode_document(
        pi.encode_document(document._replace(tokens=np.array([70000, 1, 2])), vocab_size=100000),
        vocab_size=100000,
    )
    assert big.tokens.tolist() == [70000, 1, 2]


def test_config_rejects_what_would_skew_the_output():
    with pytest.raises(ValueError, match=r"max_predictions_per_seq=10 is smaller than .* 19"):
        pi.PretrainingDataConfig(max_predictions_per_seq=10)
    with pytest.raises(ValueError, match="compression"):
        pi.PretrainingDataConfig(compression="zip")
    with pytest.raises(ValueError, match="max_seq_length"):
        pi.PretrainingDataConfig(max_seq_length=4)
    pi.PretrainingDataConfig(max_seq_length=512, max_predictions_per_seq=77)


def vocabulary() -> pi.Vocabulary:
    is_continuation = np.zeros(40000, dtype=bool)
    is_continuation[30000:] = True
    return pi.Vocabulary(
        vocab_size=40000,
        cls_id=CLS,
        sep_id=SEP,
        mask_id=MASK,
        random_token_ids=masking.default_random_token_ids(40000, excluded_ids=(0, CLS, SEP, MASK)),
        is_continuation=is_continuation,
    )


def test_bucket_instances_do_not_depend_on_arrival_order():
    config = pi.PretrainingDataConfig(dupe_factor=2, instance_batch_size=64)
    documents = synthetic_documents(3, 12)
    first = list(
        pi.bucket_instances(
            pi.bucket_order(documents, random_seed=1), config=config, vocabulary=vocabulary()
        )
    )
    shuffled = documents[::-1]
    second = list(
        pi.bucket_instances(
            pi.bucket_order(shuffled, random_seed=1), config=config, vocabulary=vocabulary()
        )
    )
    assert len(first) == len(second) > 1
    for a, b in zip(first, second, strict=True):
        for name, values in a.all_features().items():
            np.testing.assert_array_equal(values, b.all_features()[name], err_msg=name)
    # The count pass agrees with what is made.
    total = sum(len(b) for b in first)
    assert total == pi.count_bucket_instances(
        pi.bucket_order(documents, random_seed=1), config=config
    )
    # Another seed, other instances.
    other = pi.PretrainingDataConfig(dupe_factor=2, instance_batch_size=64, random_seed=7)
    third = list(
        pi.bucket_instances(
            pi.bucket_order(documents, random_seed=7), config=other, vocabulary=vocabulary()
        )
    )
    assert not np.array_equal(third[0].input_ids, first[0].input_ids[: len(third[0])])


def test_bucket_statistics_on_books(book_sentences):
    config = pi.PretrainingDataConfig(dupe_factor=3)
    documents = pi.bucket_order(as_documents(book_sentences), random_seed=config.random_seed)
    counts = Counter()
    for batch in pi.bucket_instances(
        documents, config=config, vocabulary=vocabulary(), counts=counts
    ):
        batch.add_statistics(counts)
        # Every row: [CLS] first, two [SEP]s, mask covers the real tokens.
        assert (batch.input_mask.sum(axis=1) >= 5).all()
        lengths = batch.input_mask.sum(axis=1)
        rows = np.arange(len(batch))
        assert batch.masked_lm_positions[batch.masked_lm_weights > 0].min() > 0  # never [CLS]
        assert (batch.input_ids[rows, lengths - 1] == SEP).all()
    assert counts["instances"] == counts["segments"]
    assert counts["masked_tokens"] / counts["real_tokens"] == pytest.approx(0.15, abs=0.006)
    assert counts["masked_as_mask_token"] / counts["masked_tokens"] == pytest.approx(0.8, abs=0.02)
    assert counts["random_next"] / counts["instances"] == pytest.approx(0.5, abs=0.03)
    assert counts["real_tokens"] / counts["sequence_slots"] > 0.85
