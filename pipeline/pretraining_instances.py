"""Documents to masked-LM / next-sentence training instances: pure functions, no Beam.

The algorithm is google-research/bert's `create_pretraining_data.py`, on token ids instead of
token strings, with its known faults fixed (each marked FIX below):

1. Each pass (`dupe_factor` passes over the corpus) walks a document's sentences and cuts them
   into chunks of about `target_seq_length` tokens: `max_seq_length - 3` usually, a random
   length in [2, max_seq_length - 3] with probability `short_seq_prob`.
2. A chunk is split at a random sentence boundary into A and B. With probability 0.5 B is
   replaced by a run of sentences from a random other document ("random next", label 1), and
   the chunk's unused sentences are put back for the next chunk.
3. `truncate_seq_pair` trims the longer of A and B, one token at a time, from the front or the
   back at random, until `[CLS] A [SEP] B [SEP]` fits in `max_seq_length`.
4. `pipeline.masking` chooses the masked-LM predictions.

FIX (labels): the reference forces "random next" whenever a chunk has a single sentence (a
long sentence, or a document's last), which gives ~56% random labels instead of 50%. Here the
coin is always tossed; an "actually next" single-sentence chunk takes the document's next
sentence as B, or, at the document's end, becomes B after as many of the sentences before it
as the target length needs; a document of one sentence only can have no "actually next" pair,
and that instance is skipped (counted).
FIX (random B): the reference retries 10 times to avoid the current document and then takes it
anyway; here B is drawn from the other documents of the bucket, never the same one. A bucket
with a single document cannot give a random B: the instance is skipped (counted).
FIX (memory): the corpus is never held whole; a bucket of documents (grouped by a hash of their
ids, see `pipeline.create_pretraining_data`) is the pool random B segments come from.

Randomness: each (seed, document id, dupe index) seeds its own `random.Random` for the cuts and
labels, and a 64-bit key for the masks, so an instance never depends on which worker made it,
on the order documents arrive in, or on the other documents' instances.

A document here is its token ids, flat, plus its sentence lengths; a segment is a slice of it,
so A and B are (start, end) offsets and nothing is copied until the batch is packed.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from contracts import hashing, schema
from pipeline import masking


@dataclasses.dataclass(frozen=True)
class PretrainingDataConfig:
    """Everything that shapes the output of `pipeline.create_pretraining_data`.

    The first group are google-research/bert's flags with its defaults; the second are ours.
    """

    max_seq_length: int = 128  # tokens per instance: [CLS] A [SEP] B [SEP] + padding
    max_predictions_per_seq: int = 20  # masked-LM slots per instance (>= prob * length)
    masked_lm_prob: float = 0.15  # fraction of an instance's tokens predicted
    short_seq_prob: float = 0.1  # chance that a document pass aims at a shorter length
    dupe_factor: int = 10  # passes over the corpus, each with new cuts, pairs and masks
    do_lower_case: bool = True  # True for uncased vocabs
    # strip accents (ours, as Hugging Face's tokenizer has it); None: as do_lower_case (Google)
    strip_accents: bool | None = None
    do_whole_word_mask: bool = False  # mask whole words ("##" pieces with their word)
    random_seed: int = 12345  # every random draw derives from it and stable keys

    num_shards: int = 64  # output files, balanced to within one instance
    # "none" or "gzip" (.tfrecord.gz)
    compression: str = dataclasses.field(default="none", metadata={"enum": ("none", "gzip")})
    output_prefix: str = "train"  # shard names <prefix>-00000-of-00064.tfrecord
    # Buckets of documents: the pool a random B is drawn from, and the unit of work.
    min_bucket_documents: int = 256  # fewer buckets rather than buckets smaller than this
    max_bucket_bytes: int = 64 << 20  # text per bucket; one is held tokenized (~1/2 the bytes)
    parallel_buckets: int = 256  # how many buckets to aim for (when documents allow)
    # A bucket makes its instances document by document; each shard's records pass through a
    # seeded shuffle buffer of this many records (~1 KB each at 128 tokens) when merged.
    shuffle_buffer_records: int = 1 << 15
    # Reading.
    split_bytes: int = 16 << 20  # input files are read in byte ranges of this size
    max_document_bytes: int = 32 << 20  # longer documents are cut in pieces (counted)
    max_sentence_bytes: int = 1 << 20  # longer lines are skipped (counted): not sentences
    tokenize_batch_sentences: int = 4096  # lines per tokenizer call
    max_unk_fraction: float = 0.05  # an input sample with more [UNK] is an error
    instance_batch_size: int = 2048  # instances masked and serialized together

    def __post_init__(self) -> None:
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length={self.max_seq_length}: needs at least 5")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob={self.masked_lm_prob}: must be in (0, 1)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={self.short_seq_prob}: must be in [0, 1]")
        # The cap would silently lower the masked fraction on every full-length instance.
        needed = round(self.max_seq_length * self.masked_lm_prob)
        if self.max_predictions_per_seq < needed:
            raise ValueError(
                f"max_predictions_per_seq={self.max_predictions_per_seq} is smaller than "
                f"round(max_seq_length * masked_lm_prob) = {needed}: full-length instances "
                f"would mask {self.max_predictions_per_seq / self.max_seq_length:.3f} of their "
                f"tokens, not {self.masked_lm_prob}; raise it to at least {needed}"
            )
        for name in (
            "dupe_factor",
            "num_shards",
            "min_bucket_documents",
            "max_bucket_bytes",
            "parallel_buckets",
            "shuffle_buffer_records",
            "split_bytes",
            "max_document_bytes",
            "max_sentence_bytes",
            "tokenize_batch_sentences",
            "instance_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.compression not in ("none", "gzip"):
            raise ValueError(f"compression={self.compression!r}: must be 'none' or 'gzip'")
        if not self.output_prefix or "/" in self.output_prefix:
            raise ValueError(f"output_prefix={self.output_prefix!r}: must be a plain name")


class Document(NamedTuple):
    """One tokenized document.

    Attributes:
      doc_id: a stable, unique id (see `pipeline.create_pretraining_data`).
      tokens: int32 [num_tokens], every sentence's ids, concatenated.
      sentence_lengths: int32 [num_sentences], each >= 1.
    """

    doc_id: str
    tokens: np.ndarray
    sentence_lengths: np.ndarray


def token_dtype(vocab_size: int) -> type:
    """The narrowest unsigned type for ids below `vocab_size`: documents cross Beam's shuffle
    in it, at 2 bytes a token for BERT's vocabs."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def encode_document(document: Document, *, vocab_size: int) -> tuple[str, bytes, bytes]:
    """A document as plain (str, bytes, bytes), which Beam's coders move cheaply."""
    return (
        document.doc_id,
        np.asarray(document.tokens).astype(token_dtype(vocab_size)).tobytes(),
        np.asarray(document.sentence_lengths, dtype=np.int32).tobytes(),
    )


def decode_document(encoded: tuple[str, bytes, bytes], *, vocab_size: int) -> Document:
    doc_id, tokens, lengths = encoded
    return Document(
        doc_id,
        np.frombuffer(tokens, dtype=token_dtype(vocab_size)).astype(np.int32),
        np.frombuffer(lengths, dtype=np.int32),
    )


class Segment(NamedTuple):
    """One sentence pair before masking: token offsets into bucket documents.

    A is `documents[a_document].tokens[a_start:a_end]`, B likewise.
    """

    a_document: int
    a_start: int
    a_end: int
    b_document: int
    b_start: int
    b_end: int
    is_random_next: bool


def truncation_amounts(length_a: int, length_b: int, *, max_num_tokens: int) -> tuple[int, int]:
    """How many tokens the reference's `truncate_seq_pair` removes from A and from B.

    It removes one token at a time from the longer segment (B on a tie) until both fit; the
    amounts depend on the lengths only, so they are computed directly.
    """
    excess = length_a + length_b - max_num_tokens
    if excess <= 0:
        return 0, 0
    difference = abs(length_a - length_b)
    if excess <= difference:
        return (excess, 0) if length_a > length_b else (0, excess)
    # Trim the longer one down to the other, then alternate B, A, B, ... (B first: a tie).
    rest = excess - difference
    from_a = rest // 2 + (difference if length_a > length_b else 0)
    from_b = (rest + 1) // 2 + (difference if length_b > length_a else 0)
    return from_a, from_b


def _split_front_back(removed: int, rng: random.Random) -> int:
    """Of `removed` tokens, how many come off the front: each removal is a fair coin in the
    reference, so the count is Binomial(removed, 1/2), drawn here in one call."""
    return bin(rng.getrandbits(removed)).count("1") if removed else 0


def truncation(
    length_a: int, length_b: int, *, max_num_tokens: int, rng: random.Random
) -> tuple[int, int, int, int]:
    """Tokens to cut off (A's front, A's back, B's front, B's back), as the reference's
    `truncate_seq_pair` cuts them: the longer segment first, each token front or back at
    random (A's coins drawn before B's)."""
    from_a, from_b = truncation_amounts(length_a, length_b, max_num_tokens=max_num_tokens)
    front_a = _split_front_back(from_a, rng)
    front_b = _split_front_back(from_b, rng)
    return front_a, from_a - front_a, front_b, from_b - front_b


def truncate_seq_pair(
    tokens_a: np.ndarray, tokens_b: np.ndarray, *, max_num_tokens: int, rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """Trims A and B as the reference does (longer first, front or back at random).

    Args:
      tokens_a, tokens_b: int [length_a], [length_b].
      max_num_tokens: their longest total.
      rng: the source of the front/back coins.

    Returns:
      The trimmed views of `tokens_a` and `tokens_b`.
    """
    front_a, back_a, front_b, back_b = truncation(
        len(tokens_a), len(tokens_b), max_num_tokens=max_num_tokens, rng=rng
    )
    return (
        tokens_a[front_a : len(tokens_a) - back_a],
        tokens_b[front_b : len(tokens_b) - back_b],
    )


@dataclasses.dataclass
class SegmentCounts:
    """What `create_segments` did, for the statistics in metadata.json."""

    segments: int = 0
    random_next_segments: int = 0
    skipped_single_sentence_document: int = 0  # no "actually next" B exists
    skipped_no_other_document: int = 0  # no random B exists (bucket of one document)

    def add_to(self, counts: Counter) -> None:
        for field in dataclasses.fields(self):
            counts[field.name] += getattr(self, field.name)


def _plan_chunks(
    offsets: Sequence[int],
    *,
    can_draw_random: bool,
    max_num_tokens: int,
    short_seq_prob: float,
    rng: random.Random,
    counts: SegmentCounts,
) -> list[tuple[bool, int, int, int, int, int]]:
    """The structure of one pass over a document: where chunks end, where A ends, the labels.

    Only this document's sentence lengths are read, and `rng` is drawn from a fixed way for
    them, so the number of instances is known without looking at other documents.

    Returns:
      (is_random_next, a_start, a_end, b_start, b_end, target_b_length) in tokens, per chunk;
      for a random B, b_start = b_end = -1 (chosen later, from another document).
    """
    uniform = rng.random
    num_sentences = len(offsets) - 1
    # Usually fill the sequence; sometimes (short_seq_prob) aim shorter, to lessen the mismatch
    # with the short inputs of fine-tuning. A target, not a limit: chunks end at sentences.
    # (Integers are drawn as int(random() * n): like randint, three times faster; 53 random
    # bits make the bias negligible.)
    target = max_num_tokens
    if uniform() < short_seq_prob:
        target = 2 + int(uniform() * (max_num_tokens - 1))
    plan = []
    chunk_start = 0  # first sentence of the current chunk
    i = 0
    last = num_sentences - 1
    while i < num_sentences:
        if i == last or offsets[i + 1] - offsets[chunk_start] >= target:
            chunk_sentences = i - chunk_start + 1
            # How many of the chunk's sentences go to A.
            a_sentences = 1 + int(uniform() * (chunk_sentences - 1)) if chunk_sentences > 1 else 1
            a_start, a_end = offsets[chunk_start], offsets[chunk_start + a_sentences]
            if uniform() < 0.5:  # FIX: tossed for single sentences too
                if can_draw_random:
                    plan.append((True, a_start, a_end, -1, -1, target - (a_end - a_start)))
                else:
                    counts.skipped_no_other_document += 1
                # The chunk's sentences after A were not used: they start the next chunk.
                i -= chunk_sentences - a_sentences
            elif chunk_sentences > 1:
                plan.append((False, a_start, a_end, a_end, offsets[i + 1], 0))
            elif i < last:
                # FIX: a lone long sentence; its actual next sentence is B.
                i += 1
                plan.append((False, a_start, a_end, a_end, offsets[i + 1], 0))
            elif i >= 1:
                # FIX: a document's lone last sentence is B; A is the sentences before it, as
                # many as the target needs (so the instance is as full as a random-B one).
                first = i - 1
                while first > 0 and offsets[i + 1] - offsets[first] < target:
                    first -= 1
                plan.append((False, offsets[first], offsets[i], offsets[i], offsets[i + 1], 0))
            else:
                counts.skipped_single_sentence_document += 1
            chunk_start = i + 1
        i += 1
    return plan


def count_segments(
    sentence_offsets: Sequence[Sequence[int]],
    document_index: int,
    *,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
) -> int:
    """How many segments `create_segments` makes with the same arguments (structure only)."""
    return len(
        _plan_chunks(
            sentence_offsets[document_index],
            can_draw_random=len(sentence_offsets) > 1,
            max_num_tokens=max_seq_length - 3,
            short_seq_prob=short_seq_prob,
            rng=rng,
            counts=SegmentCounts(),
        )
    )


def create_segments(
    sentence_offsets: Sequence[Sequence[int]],
    document_index: int,
    *,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    counts: SegmentCounts | None = None,
) -> list[Segment]:
    """The sentence pairs of one pass over one document (the reference's
    `create_instances_from_document`, with the FIXes of the module docstring).

    The structure (chunks, A/B split, labels) is drawn first for the whole pass, then the
    content (which random B, truncation sides), so that `count_segments` can count the
    instances from the structure alone, without the other documents.

    Args:
      sentence_offsets: for every document of the bucket, its sentence boundaries in tokens:
        [0, end of sentence 0, end of sentence 1, ...] (length num_sentences + 1).
      document_index: the document to cut; the others are the pool for random B segments.
      max_seq_length: instance length, 3 of which are [CLS] [SEP] [SEP].
      short_seq_prob: chance of a random shorter target length for this pass.
      rng: seeded from (seed, document id, dupe index).
      counts: accumulates what happened, if given.

    Returns:
      The segments, in document order.
    """
    counts = counts if counts is not None else SegmentCounts()
    num_documents = len(sentence_offsets)
    max_num_tokens = max_seq_length - 3
    plan = _plan_chunks(
        sentence_offsets[document_index],
        can_draw_random=num_documents > 1,
        max_num_tokens=max_num_tokens,
        short_seq_prob=short_seq_prob,
        rng=rng,
        counts=counts,
    )
    uniform = rng.random
    segments: list[Segment] = []
    random_next = 0
    for is_random_next, a_start, a_end, b_start, b_end, target_b_length in plan:
        b_document = document_index
        if is_random_next:
            random_next += 1
            # FIX: uniform over the *other* documents of the bucket.
            b_document = int(uniform() * (num_documents - 1))
            if b_document >= document_index:
                b_document += 1
            b_offsets = sentence_offsets[b_document]
            b_last = len(b_offsets) - 2
            first = int(uniform() * (b_last + 1))
            last = first  # grow B a sentence at a time until it reaches its target
            b_start = b_offsets[first]
            while last < b_last and b_offsets[last + 1] - b_start < target_b_length:
                last += 1
            b_end = b_offsets[last + 1]
        length_a, length_b = a_end - a_start, b_end - b_start
        if length_a + length_b > max_num_tokens:
            front_a, back_a, front_b, back_b = truncation(
                length_a, length_b, max_num_tokens=max_num_tokens, rng=rng
            )
            a_start, a_end = a_start + front_a, a_end - back_a
            b_start, b_end = b_start + front_b, b_end - back_b
        segments.append(
            Segment(document_index, a_start, a_end, b_document, b_start, b_end, is_random_next)
        )
    counts.segments += len(segments)
    counts.random_next_segments += random_next
    return segments


def segment_rng(random_seed: int, doc_id: str, dupe: int) -> random.Random:
    """The generator of one document's cuts and pairs in one pass."""
    return random.Random(hashing.stable_hash64("segments", random_seed, doc_id, dupe))


def mask_key(random_seed: int, doc_id: str, dupe: int) -> int:
    """The 64-bit key the masks of one document's instances in one pass derive from."""
    return hashing.stable_hash64("masks", random_seed, doc_id, dupe)


def bucket_order(documents: Sequence[Document], *, random_seed: int) -> list[Document]:
    """A bucket's documents in a fixed pseudo-random order: sorted by a seeded hash of their
    ids, whatever order the shuffle delivered them in."""
    return sorted(
        documents, key=lambda d: (hashing.stable_hash64("order", random_seed, d.doc_id), d.doc_id)
    )


def _offsets(documents: Sequence[Document]) -> list[list[int]]:
    return [
        np.concatenate([[0], np.cumsum(d.sentence_lengths, dtype=np.int64)]).tolist()
        for d in documents
    ]


def bucket_segments(
    documents: Sequence[Document], *, config: PretrainingDataConfig, counts: Counter | None = None
) -> Iterator[tuple[int, int, list[Segment]]]:
    """Every pass over every document of a bucket, in the order instances are made.

    Args:
      documents: the bucket, already in `bucket_order`.
      config: the flags.
      counts: accumulates SegmentCounts fields, if given.

    Yields:
      (dupe index, document index, its segments), dupe-major like the reference.
    """
    sentence_offsets = _offsets(documents)
    segment_counts = SegmentCounts()
    for dupe in range(config.dupe_factor):
        for index, document in enumerate(documents):
            segments = create_segments(
                sentence_offsets,
                index,
                max_seq_length=config.max_seq_length,
                short_seq_prob=config.short_seq_prob,
                rng=segment_rng(config.random_seed, document.doc_id, dupe),
                counts=segment_counts,
            )
            yield dupe, index, segments
    if counts is not None:
        segment_counts.add_to(counts)


def count_bucket_instances(documents: Sequence[Document], *, config: PretrainingDataConfig) -> int:
    """How many instances `bucket_instances` will make from this bucket (structure only: no
    random B, no truncation, no masks)."""
    sentence_offsets = _offsets(documents)
    return sum(
        count_segments(
            sentence_offsets,
            index,
            max_seq_length=config.max_seq_length,
            short_seq_prob=config.short_seq_prob,
            rng=segment_rng(config.random_seed, document.doc_id, dupe),
        )
        for dupe in range(config.dupe_factor)
        for index, document in enumerate(documents)
    )


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What instance making needs from the tokenizer (plain arrays and ids, cheap to pickle)."""

    vocab_size: int
    cls_id: int
    sep_id: int
    mask_id: int
    random_token_ids: np.ndarray  # int32 [n]: what a "random token" replacement draws from
    is_continuation: np.ndarray  # bool [vocab_size]: "##" pieces

    @classmethod
    def from_tokenizer(cls, tokenizer) -> Vocabulary:
        """From a `tokenizer.BertTokenizer`."""
        return cls(
            vocab_size=tokenizer.vocab_size,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            mask_id=tokenizer.mask_id,
            random_token_ids=masking.default_random_token_ids(
                tokenizer.vocab_size,
                excluded_ids=(
                    tokenizer.pad_id,
                    tokenizer.cls_id,
                    tokenizer.sep_id,
                    tokenizer.mask_id,
                ),
            ),
            is_continuation=np.asarray(tokenizer.is_continuation, dtype=bool),
        )


@dataclasses.dataclass(frozen=True)
class InstanceBatch:
    """Finished instances, as the schema's features (padded), one row each.

    Attributes:
      input_ids, input_mask, segment_ids: int32 [batch, max_seq_length].
      masked_lm_positions, masked_lm_ids: int32 [batch, max_predictions_per_seq].
      masked_lm_weights: float32 [batch, max_predictions_per_seq].
      next_sentence_labels: int32 [batch, 1] (1 = B is random).
      actions: int8 [batch, max_seq_length], masking.ACTION_* per position.
    """

    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    next_sentence_labels: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def features(self, row: int) -> dict[str, np.ndarray]:
        """One instance's features by schema name."""
        return {name: getattr(self, name)[row] for name in schema.FEATURE_NAMES}

    def all_features(self) -> dict[str, np.ndarray]:
        """Every instance's features by schema name, [batch, length] each."""
        return {name: getattr(self, name) for name in schema.FEATURE_NAMES}

    def add_statistics(self, counts: Counter) -> None:
        """Adds this batch's token and masking counts to `counts`."""
        counts["instances"] += len(self)
        counts["sequence_slots"] += self.input_mask.size
        counts["real_tokens"] += int(self.input_mask.sum())
        counts["masked_tokens"] += int((self.actions != masking.ACTION_NONE).sum())
        counts["masked_as_mask_token"] += int((self.actions == masking.ACTION_MASK).sum())
        counts["masked_as_random_token"] += int((self.actions == masking.ACTION_RANDOM).sum())
        counts["masked_kept"] += int((self.actions == masking.ACTION_KEEP).sum())
        counts["random_next"] += int(self.next_sentence_labels.sum())


def pack_segments(
    documents: Sequence[Document],
    segments: Sequence[Segment],
    *,
    max_seq_length: int,
    cls_id: int,
    sep_id: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`[CLS] A [SEP] B [SEP]` rows, zero-padded.

    Returns:
      input_ids int32 [n, max_seq_length], segment_ids int32 [n, max_seq_length],
      lengths int64 [n], next_sentence_labels int32 [n, 1].
    """
    count = len(segments)
    input_ids = np.zeros((count, max_seq_length), dtype=np.int32)
    lengths = np.zeros(count, dtype=np.int64)
    a_lengths = np.zeros(count, dtype=np.int64)
    labels = np.zeros((count, 1), dtype=np.int32)
    for row, (a_doc, a_start, a_end, b_doc, b_start, b_end, is_random) in enumerate(segments):
        length_a = a_end - a_start
        length_b = b_end - b_start
        b_from = length_a + 2
        ids = input_ids[row]
        ids[0] = cls_id
        ids[1 : b_from - 1] = documents[a_doc].tokens[a_start:a_end]
        ids[b_from - 1] = sep_id
        ids[b_from : b_from + length_b] = documents[b_doc].tokens[b_start:b_end]
        ids[b_from + length_b] = sep_id
        lengths[row] = b_from + length_b + 1
        a_lengths[row] = b_from
        labels[row, 0] = is_random
    positions = np.arange(max_seq_length)[None, :]
    segment_ids = ((positions >= a_lengths[:, None]) & (positions < lengths[:, None])).astype(
        np.int32
    )
    return input_ids, segment_ids, lengths, labels


def make_instances(
    documents: Sequence[Document],
    segments: Sequence[Segment],
    keys: np.ndarray,
    *,
    config: PretrainingDataConfig,
    vocabulary: Vocabulary,
) -> InstanceBatch:
    """Packs and masks a batch of segments.

    Args:
      documents: the bucket the segments point into.
      segments: the batch.
      keys: uint64 [len(segments)], each instance's mask key.
      config: the flags.
      vocabulary: special ids and the masking tables.
    """
    input_ids, segment_ids, lengths, labels = pack_segments(
        documents,
        segments,
        max_seq_length=config.max_seq_length,
        cls_id=vocabulary.cls_id,
        sep_id=vocabulary.sep_id,
    )
    masked = masking.mask_batch(
        input_ids,
        lengths,
        keys,
        masked_lm_prob=config.masked_lm_prob,
        max_predictions_per_seq=config.max_predictions_per_seq,
        cls_id=vocabulary.cls_id,
        sep_id=vocabulary.sep_id,
        mask_id=vocabulary.mask_id,
        random_token_ids=vocabulary.random_token_ids,
        is_continuation=vocabulary.is_continuation if config.do_whole_word_mask else None,
    )
    input_mask = (np.arange(config.max_seq_length)[None, :] < lengths[:, None]).astype(np.int32)
    return InstanceBatch(
        input_ids=masked.input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        masked_lm_positions=masked.masked_lm_positions,
        masked_lm_ids=masked.masked_lm_ids,
        masked_lm_weights=masked.masked_lm_weights,
        next_sentence_labels=labels,
        actions=masked.actions,
    )


def bucket_instances(
    documents: Sequence[Document],
    *,
    config: PretrainingDataConfig,
    vocabulary: Vocabulary,
    counts: Counter | None = None,
) -> Iterator[InstanceBatch]:
    """All instances of a bucket, in batches of about `config.instance_batch_size`.

    Args:
      documents: the bucket, in `bucket_order`.
      config: the flags.
      vocabulary: special ids and masking tables.
      counts: accumulates segment counts, if given (batch statistics are the caller's).

    Yields:
      InstanceBatch, in the order of `bucket_segments`; the same documents and config always
      give the same batches.
    """
    pending: list[Segment] = []
    pending_keys: list[np.ndarray] = []
    for dupe, index, segments in bucket_segments(documents, config=config, counts=counts):
        if not segments:
            continue
        pending.extend(segments)
        base = mask_key(config.random_seed, documents[index].doc_id, dupe)
        pending_keys.append(masking.instance_keys(base, len(segments)))
        if len(pending) >= config.instance_batch_size:
            yield make_instances(
                documents,
                pending,
                np.concatenate(pending_keys),
                config=config,
                vocabulary=vocabulary,
            )
            pending, pending_keys = [], []
    if pending:
        yield make_instances(
            documents, pending, np.concatenate(pending_keys), config=config, vocabulary=vocabulary
        )
