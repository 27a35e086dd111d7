r"""Text shards to masked-LM / next-sentence TFRecords, in Beam.

    python -m pipeline.create_pretraining_data \
      --input_file='data/wiki-shards/train-*.txt,data/books-shards/train-*.txt' \
      --output_dir=data/records/train --vocab_file=data/vocab.txt \
      [--dupe_factor=10 --max_seq_length=128 --max_predictions_per_seq=20 --num_shards=64 \
       --compression=gzip --output_prefix=train --direct_num_workers=2 | --runner=DataflowRunner …]

The algorithm is google-research/bert's (see `pipeline.pretraining_instances` for what we
fixed); the records are its schema (`contracts.schema`); the output is
`<output_dir>/<prefix>-00000-of-00064.tfrecord[.gz]` and `metadata.json`, written last.

The Beam graph, and why it is shaped so:

1. ReadAndTokenize: input files are cut into byte ranges (`pipeline.document_reader`), each
   read by one worker, its sentences tokenized in large batches. Documents leave as compact
   (id, uint16 ids, sentence lengths).
2. Buckets: each document goes to a bucket chosen by a hash of (seed, its id). A bucket is the
   pool random "B" segments are drawn from and the unit of work: no worker ever holds more than
   one bucket, never the corpus. The number of buckets is chosen before the job runs, from
   the input size and the documents in a sample of it, so it is the same on every runner.
   On Dataflow documents reach their bucket through the shuffle (a GroupByKey); the local
   runner would hold that GroupByKey's input in memory, so there each range writes its
   documents to a scratch file, sorted by bucket, and only references to the slices cross the
   shuffle (`pipeline.group_files`; `--grouping`).
3. CountInstances: the cuts of each bucket are made once without masks, only to count its
   instances; their prefix sums give every instance a global slot, so that shards can be
   balanced to within one instance without a second shuffle of the data.
4. WriteParts: each bucket makes its instances (cuts, pairs, masks, serialization, all seeded
   from stable keys), sends each to shard `slot % num_shards` in a random permutation of its
   slots, and writes one part file per shard. Heavy data never crosses a shuffle again.
5. MergeShards: each shard interleaves its parts in a seeded random order, then passes the
   records through a seeded shuffle buffer (`shuffle_buffer_records`; a part holds its
   instances document by document, so without it neighbours would mostly share a document)
   into one TFRecord file, hashing it as it goes. Not a uniform shuffle of the shard: records
   move about the buffer's size; the trainer's own shuffle buffer mixes further.
6. WriteMetadata: once every shard is renamed into place, metadata.json (flags, inputs, counts,
   statistics, per-shard sha256), then the scratch folder is removed.

Same inputs, flags and seed: byte-identical shards, whatever the runner or worker count.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import shutil
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import apache_beam as beam
import numpy as np

from contracts import hashing, metadata, storage
from pipeline import (
    beam_options,
    document_reader,
    example_encoding,
    group_files,
    masking,
    pretraining_instances,
    progress,
    record_files,
    stage,
)
from pipeline.pretraining_instances import PretrainingDataConfig

COMMAND = "pipeline.create_pretraining_data"
_COUNTER_NAMESPACE = "create_pretraining_data"
# The vocabulary check tokenizes this much text from the start of the first input files.
_SAMPLE_BYTES = 256 << 10
_SAMPLE_FILES = 4
_MIN_SAMPLE_TOKENS = 500


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreatePretrainingDataConfig(PretrainingDataConfig):
    """Everything one run needs: the paths, and every setting that shapes the records
    (`PretrainingDataConfig`); logged at start, kept in metadata.json as its flags."""

    input_file: str  # comma-separated globs of text shards (local or gs://)
    output_dir: str  # where the TFRecord shards and metadata.json go (local or gs://)
    vocab_file: str  # the WordPiece vocab the text is tokenized with
    # How documents reach their bucket: "files" (scratch files beside the output, references
    # through the shuffle: the local runner's memory stays bounded), "shuffle" (Beam's
    # GroupByKey, which Dataflow's shuffle service spills to disk, but the local runner holds
    # in memory), "auto": shuffle on Dataflow, files elsewhere. The records are the same.
    grouping: str = dataclasses.field(default="auto", metadata={"enum": group_files.GROUPINGS})

    def __post_init__(self) -> None:
        super().__post_init__()
        group_files.resolve(self.grouping, on_dataflow=False)  # a ValueError names it


def shard_name(prefix: str, index: int, num_shards: int, *, compression: str) -> str:
    """`<prefix>-00003-of-00064.tfrecord`, `.tfrecord.gz` with gzip."""
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


def choose_num_buckets(
    estimated_documents: int, total_bytes: int, *, config: PretrainingDataConfig
) -> int:
    """How many buckets: enough that one fits in memory (`max_bucket_bytes` of text), as many
    as `parallel_buckets` for parallelism, but no fewer than `min_bucket_documents` documents
    per bucket unless memory needs it.

    It is chosen before the job runs (so that no step waits for a count of the whole corpus,
    which would hold it all on the local runner), from numbers that depend on the inputs only.
    """
    for_memory = -(-total_bytes // config.max_bucket_bytes)
    for_parallelism = min(
        config.parallel_buckets, estimated_documents // config.min_bucket_documents
    )
    return max(1, for_memory, for_parallelism)


def check_vocabulary(tokenizer, texts: Sequence[str], *, max_unk_fraction: float) -> float:
    """Stops a job whose vocab does not fit `--do_lower_case`, `--strip_accents` or the text,
    before it starts.

    Three signs: a vocab with capitals while the text is lower-cased, or with accents while
    accents are stripped (those tokens can never match), and a sample of the text that comes out mostly [UNK] (e.g. a lower-case vocab with
    --nodo_lower_case: every capitalised word is unknown).

    Args:
      tokenizer: a `tokenizer.WordPieceTokenizer` (or its subclass `BertTokenizer`).
      texts: sample sentences from the inputs.
      max_unk_fraction: the most [UNK] tolerated in the sample.

    Returns:
      The sample's [UNK] fraction (0.0 for a sample too small to judge).

    Raises:
      ValueError: naming the vocab, the flag and what was found.
    """
    plain = [t for t in tokenizer.vocab if not (t.startswith("[") and t.endswith("]"))]
    cased = sum(t != t.lower() for t in plain)
    if tokenizer.do_lower_case and cased > 0.01 * len(plain):
        raise ValueError(
            f"{tokenizer.source}: {cased} of {len(plain)} vocab tokens have capitals, but "
            "--do_lower_case lower-cases the text, so they can never match: this looks like a "
            "cased vocab; pass --nodo_lower_case, or use an uncased vocab"
        )
    accented = sum(_has_marks(t) for t in plain)
    if tokenizer.strip_accents and accented > 0.01 * len(plain):
        raise ValueError(
            f"{tokenizer.source}: {accented} of {len(plain)} vocab tokens have accents or other "
            "non-spacing marks, but the text has them stripped (--strip_accents, which follows "
            "--do_lower_case unless given), so they can never match: pass --nostrip_accents, "
            "or use a vocab learned with accents stripped"
        )
    _check_word_lengths(tokenizer.source, texts)
    ids = tokenizer.tokenize_to_ids(list(texts)) if texts else []
    total = sum(len(row) for row in ids)
    if total < _MIN_SAMPLE_TOKENS:
        return 0.0
    unknown = sum(int((row == tokenizer.unk_id).sum()) for row in ids)
    fraction = unknown / total
    if fraction > max_unk_fraction:
        hint = (
            "the vocab looks lower-case but --do_lower_case is off; pass --do_lower_case"
            if not tokenizer.do_lower_case and cased <= 0.01 * len(plain)
            else "is this the vocab made for this text?"
        )
        raise ValueError(
            f"{tokenizer.source}: {fraction:.1%} of the tokens of a sample of the input are "
            f"[UNK] (at most {max_unk_fraction:.0%} expected; {unknown} of {total}): {hint}"
        )
    return fraction


def _sample(paths: Sequence[str]) -> tuple[list[str], int, int]:
    """The first lines of the first inputs.

    Returns:
      (sentences, documents seen, bytes read): what the vocabulary check tokenizes, and the
      numbers the document count of the corpus is estimated from.
    """
    sentences: list[str] = []
    documents = read = 0
    for path in paths[:_SAMPLE_FILES]:
        with storage.open_file(path, "rb") as f:
            data = f.read(_SAMPLE_BYTES)
        read += len(data)
        lines = data.decode("utf-8", errors="replace").split("\n")
        if len(data) == _SAMPLE_BYTES:
            lines = lines[:-1]  # cut mid-line
        previous_blank = True
        for line in lines:
            text = line.strip()
            if text:
                sentences.append(text)
                documents += previous_blank
            previous_blank = not text
    return sentences, documents, read


# Disk the job fills beside its output, per byte of input text: records take ~1.7 bytes per
# text byte per --dupe_factor before compression (measured on Wikipedia text and books at
# max_seq_length 128; longer sequences make fewer, larger records, about the same bytes), and
# the scratch files ~0.5 (token ids). Part files are removed shard by shard as they merge.
_RECORD_BYTES_PER_TEXT_BYTE = 1.7
_SCRATCH_BYTES_PER_TEXT_BYTE = 0.5


def warn_if_short_of_disk(output_dir: str, text_bytes: int, *, dupe_factor: int) -> int:
    """Logs a warning when a local `output_dir`'s disk has less free space than the job is
    expected to write there (an estimate; a remote output is not checked).

    Returns:
      The estimate, in bytes.
    """
    need = int(
        text_bytes * (_SCRATCH_BYTES_PER_TEXT_BYTE + _RECORD_BYTES_PER_TEXT_BYTE * dupe_factor)
    )
    if storage.is_remote(output_dir):
        return need
    free = shutil.disk_usage(output_dir).free
    if free < need:
        logging.warning(
            "%s: %.1f GB free on its disk, and this job is expected to write about %.1f GB "
            "there (records before compression, ~%.1f bytes per text byte per --dupe_factor, "
            "and scratch files); it may run out of space: free some, or write elsewhere",
            output_dir,
            free / 1e9,
            need / 1e9,
            _RECORD_BYTES_PER_TEXT_BYTE,
        )
    return need


def _remove_stale_outputs(output_dir: str, *, prefix: str) -> None:
    """Removes a previous run's metadata.json (first: the set is no longer complete) and shards
    of this prefix, so that no old shard of another `--num_shards` survives beside new ones."""
    storage.remove(storage.join(output_dir, metadata.FILENAME))
    for name in storage.listdir(output_dir):
        if name.startswith(f"{prefix}-") and "-of-" in name and ".tfrecord" in name:
            logging.info("removing the previous run's %s", name)
            storage.remove(storage.join(output_dir, name))


def _count(name: str, value: int = 1) -> None:
    beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, name).inc(value)


def _sum_counts(dicts):  # Iterable[dict[str, int]] -> dict[str, int]; untyped for Beam
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def _check_word_lengths(source: str, texts: Sequence[str]) -> None:
    """Refuses text whose "words" are mostly longer than WordPiece takes (`too_long`): text
    written without spaces between words in a script the tokenizer does not know as such
    (`wordpiece.UNSPACED_SCRIPTS`: Thai, Lao, Myanmar, Khmer...), where BERT's basic
    tokenization sees a whole phrase as one word and WordPiece turns it into one [UNK]."""
    from tokenizer import basic_tokenization
    from tokenizer.wordpiece import MAX_CHARS_PER_WORD, too_long

    total = long = 0
    for text in texts:
        if text.isascii():
            total += len(text)
            continue
        for word in basic_tokenization.split_words(text, do_lower_case=False):
            total += len(word)
            long += len(word) if too_long(word) else 0
    if total >= _MIN_SAMPLE_TOKENS and long > 0.2 * total:
        raise ValueError(
            f"{source}: {long / total:.0%} of a sample of the input is in words of more than "
            f"{MAX_CHARS_PER_WORD} characters, which WordPiece turns into [UNK]: the text looks "
            "written without spaces between words, in a script other than those the tokenizer "
            "splits past that length (Thai, Lao, Myanmar, Khmer, Tai, Balinese, Javanese). "
            "Split it into words first (spaces between words) before build_vocab and this "
            "stage; Chinese and Japanese ideographs need nothing, they are split one by one"
        )


def _has_marks(token: str) -> bool:
    """Whether a vocab token holds a non-spacing mark (an accent, once decomposed)."""
    return not token.isascii() and any(
        unicodedata.category(c) == "Mn" for c in unicodedata.normalize("NFD", token)
    )


# Tokenizers built in this process, by vocab: Beam unpickles a DoFn once per stage and bundle
# processor, and a tokenizer's memo of the words it has split is worth keeping between them.
_TOKENIZERS: dict[tuple[int, bool, bool], object] = {}


class ReadAndTokenize(beam.DoFn):
    """Byte range -> (bucket, encoded tokenized document) for each of its documents or, with
    `bucket_dir`, the range's documents written to one scratch file there and (bucket,
    `group_files.Slice`) out; and one dict of counts per range on the "counts" tag."""

    def __init__(
        self,
        tokenizer,
        *,
        config: PretrainingDataConfig,
        num_buckets: int,
        bucket_dir: str | None = None,
        reading: progress.Progress | None = None,
    ):
        self._num_buckets = num_buckets
        self._bucket_dir = bucket_dir
        self._progress = reading or progress.Progress(COMMAND, "documents", enabled=False)
        # The vocab travels as its tokens; the tokenizer is rebuilt (once a process) in setup.
        self._tokens = tuple(sorted(tokenizer.vocab, key=tokenizer.vocab.__getitem__))
        self._normalization = {
            "do_lower_case": tokenizer.do_lower_case,
            "strip_accents": tokenizer.strip_accents,
        }
        self._config = config
        self._tokenizer = None

    def setup(self):
        from tokenizer import WordPieceTokenizer

        key = (hashing.stable_hash64(*self._tokens), *self._normalization.values())
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = WordPieceTokenizer.from_tokens(self._tokens, **self._normalization)
        self._tokenizer = _TOKENIZERS[key]

    def process(self, byte_range):
        counts: Counter = Counter()
        documents = document_reader.read_documents(
            byte_range,
            max_document_bytes=self._config.max_document_bytes,
            max_sentence_bytes=self._config.max_sentence_bytes,
            counts=counts,
        )
        tokenized = self._tokenized(documents, counts)
        keyed = (
            (
                hashing.bucket_of(
                    "bucket", self._config.random_seed, d[0], num_buckets=self._num_buckets
                ),
                d,
            )
            for d in tokenized
        )
        if self._bucket_dir is None:
            yield from keyed
        else:
            buckets: dict[int, list] = {}
            for bucket, document in keyed:
                buckets.setdefault(bucket, []).append(document)
            path = storage.join(
                self._bucket_dir, group_files.file_name(byte_range.path, byte_range.start)
            )
            yield from group_files.write_groups(path, buckets)
        # The batches reported their characters; the range's bytes make up the rest.
        reported = counts.pop("characters_reported", 0)
        self._progress.advance(bytes_done=max(0, byte_range.end - byte_range.start - reported))
        logging.info(
            "read %s [%d, %d): %d documents",
            byte_range.path,
            byte_range.start,
            byte_range.end,
            counts["documents"],
        )
        for name, value in counts.items():
            _count(name, value)
        yield beam.pvalue.TaggedOutput("counts", dict(counts))

    def _tokenized(self, documents: Iterable[document_reader.TextDocument], counts: Counter):
        batch: list[document_reader.TextDocument] = []
        batch_sentences = 0
        for document in documents:
            batch.append(document)
            batch_sentences += len(document.sentences)
            if batch_sentences >= self._config.tokenize_batch_sentences:
                yield from self._tokenize(batch, counts)
                batch, batch_sentences = [], 0
        if batch:
            yield from self._tokenize(batch, counts)

    def _tokenize(self, batch: list[document_reader.TextDocument], counts: Counter):
        tokenizer = self._tokenizer
        texts = [sentence for document in batch for sentence in document.sentences]
        characters = sum(len(text) + 1 for text in texts)
        counts["characters_reported"] += characters
        self._progress.advance(items=len(batch), bytes_done=characters)
        ids, lengths = tokenizer.tokenize_flat(texts)
        ends = np.cumsum(lengths)
        row = 0
        for document in batch:
            first, row = row, row + len(document.sentences)
            sentence_lengths = lengths[first:row]
            kept = sentence_lengths[sentence_lengths > 0]
            counts["lines_without_tokens"] += len(sentence_lengths) - len(kept)
            if not len(kept):
                counts["documents_without_tokens"] += 1
                continue
            tokens = ids[ends[first] - sentence_lengths[0] : ends[row - 1]]
            counts["documents"] += 1
            counts["sentences"] += len(kept)
            counts["tokens"] += len(tokens)
            counts["unk_tokens"] += int((tokens == tokenizer.unk_id).sum())
            yield pretraining_instances.encode_document(
                pretraining_instances.Document(document.doc_id, tokens, kept.astype(np.int32)),
                vocab_size=tokenizer.vocab_size,
            )


def _decode_bucket(grouped: Iterable, *, vocab_size: int, random_seed: int):
    """A bucket's documents in bucket order, from what its GroupByKey delivered: the documents
    themselves (encoded) or `group_files.Slice`s of the range files holding them.

    (Untyped: Beam would log every string annotation of a function it maps.)
    """
    grouped = list(grouped)
    if grouped and isinstance(grouped[0], group_files.Slice):
        grouped = group_files.read_slices(grouped)
    documents = [pretraining_instances.decode_document(e, vocab_size=vocab_size) for e in grouped]
    return pretraining_instances.bucket_order(documents, random_seed=random_seed)


class CountInstances(beam.DoFn):
    """(bucket, documents) -> (bucket, number of instances it will make)."""

    def __init__(self, *, config: PretrainingDataConfig, vocab_size: int):
        self._config = config
        self._vocab_size = vocab_size

    def process(self, element):
        bucket, encoded = element
        documents = _decode_bucket(
            encoded, vocab_size=self._vocab_size, random_seed=self._config.random_seed
        )
        yield bucket, pretraining_instances.count_bucket_instances(documents, config=self._config)


def slot_offsets(bucket_counts):  # dict[int, int] -> dict[int, int]
    """Each bucket's first global slot: prefix sums of the instance counts, in bucket order."""
    offsets, total = {}, 0
    for bucket in sorted(bucket_counts):
        offsets[bucket] = total
        total += bucket_counts[bucket]
    return offsets


class WriteParts(beam.DoFn):
    """(bucket, documents) -> its instances, serialized, in one part file per output shard.

    Outputs (shard, (bucket, part path or None, records)) for every shard, and a dict of
    counts on the "counts" tag.
    """

    def __init__(
        self,
        *,
        config: PretrainingDataConfig,
        vocabulary: pretraining_instances.Vocabulary,
        scratch_dir: str,
    ):
        self._config = config
        self._vocabulary = vocabulary
        self._scratch_dir = scratch_dir

    def process(self, element, offsets, bucket_counts):
        bucket, encoded = element
        config = self._config
        num_shards = config.num_shards
        documents = _decode_bucket(
            encoded, vocab_size=self._vocabulary.vocab_size, random_seed=config.random_seed
        )
        expected = bucket_counts[bucket]
        # A random bijection of this bucket's instances onto its slots; slot % num_shards is
        # the shard, so every shard gets a share of every bucket, balanced to within one.
        slot_draws = masking.uniform(
            np.array(
                [hashing.stable_hash64("slots", config.random_seed, bucket)],
                dtype=np.uint64,
            ),
            stream=0,
            width=expected,
        )[0]
        shards = (offsets[bucket] + np.argsort(slot_draws, kind="stable")) % num_shards
        storage.makedirs(self._scratch_dir)
        writers: dict[int, record_files.PartWriter] = {}
        counts: Counter = Counter()
        made = 0
        try:
            batches = pretraining_instances.bucket_instances(
                documents, config=config, vocabulary=self._vocabulary, counts=counts
            )
            for batch in batches:
                batch.add_statistics(counts)
                if made + len(batch) > expected:
                    raise RuntimeError(f"bucket {bucket}: more instances than counted")
                records = example_encoding.serialize_batch(batch.all_features())
                shard_of_row = shards[made : made + len(batch)].tolist()
                for shard, record in zip(shard_of_row, records, strict=True):
                    writer = writers.get(shard)
                    if writer is None:
                        path = storage.join(self._scratch_dir, f"part-{bucket:05d}-{shard:05d}")
                        writer = writers[shard] = record_files.PartWriter(path)
                    writer.write(record)
                made += len(batch)
            if made != expected:
                raise RuntimeError(f"bucket {bucket}: made {made} instances, counted {expected}")
            for writer in writers.values():
                writer.close()
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        logging.info("bucket %d: %d documents, %d instances", bucket, len(documents), made)
        _count("buckets")
        _count("instances", made)
        counts["buckets"] += 1
        for shard in range(num_shards):
            writer = writers.get(shard)
            yield shard, (bucket, writer.path if writer else None, writer.records if writer else 0)
        yield beam.pvalue.TaggedOutput("counts", dict(counts))


T = TypeVar("T")


def buffered_shuffle(items: Iterable[T], *, capacity: int, key: int) -> Iterator[T]:
    """`items` in a random order drawn from `key`, holding at most `capacity` of them.

    Like `tf.data.Dataset.shuffle`: the buffer fills, then each new item takes the place of a
    random one that leaves; the rest leave in random order. Neighbours in the output are
    `capacity` items apart in the input, on average. The draws come from `masking.uniform_at`
    (a counter-based hash), so the order is the same on every machine and numpy version.
    """
    buffer: list[T] = []
    drawn = 0

    def draws(count: int, *, modulo: int) -> list[int]:
        nonlocal drawn
        keys = np.full(count, key & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
        columns = np.arange(drawn, drawn + count, dtype=np.uint64)
        drawn += count
        return (masking.uniform_at(keys, columns, stream=0) * modulo).astype(np.int64).tolist()

    picks: list[int] = []
    for item in items:
        if len(buffer) < capacity:
            buffer.append(item)
            continue
        if not picks:
            picks = draws(8192, modulo=capacity)[::-1]
        index = picks.pop()
        yield buffer[index]
        buffer[index] = item
    # What is left, in a random order (sorted random keys: a uniform permutation).
    order = np.argsort(np.array(draws(len(buffer), modulo=1 << 53)), kind="stable")
    for index in order.tolist():
        yield buffer[index]


class MergeShard(beam.DoFn):
    """(shard, parts) -> the shard's TFRecord file; outputs its name, records, bytes, sha256."""

    def __init__(self, *, config: PretrainingDataConfig, output_dir: str):
        self._config = config
        self._output_dir = output_dir

    def process(self, element):
        shard, parts = element
        config = self._config
        parts = sorted((p for p in parts if p[2] > 0), key=lambda p: p[0])
        sizes = np.array([p[2] for p in parts], dtype=np.int64)
        # A uniformly random interleaving of the parts: part i appears sizes[i] times, in an
        # order drawn from (seed, shard). A part holds its bucket's instances in the order they
        # were made (document by document), so the records then go through a shuffle buffer.
        sources = np.repeat(np.arange(len(parts)), sizes)
        draws = masking.uniform(
            np.array(
                [hashing.stable_hash64("merge", config.random_seed, shard)],
                dtype=np.uint64,
            ),
            stream=0,
            width=len(sources),
        )[0]
        sources = sources[np.argsort(draws, kind="stable")]
        name = shard_name(
            config.output_prefix, shard, config.num_shards, compression=config.compression
        )
        path = storage.join(self._output_dir, name)
        readers = [record_files.PartReader(p[1]) for p in parts]
        try:
            with record_files.TFRecordShardWriter(path, compression=config.compression) as out:
                records = (readers[source].next() for source in sources.tolist())
                for record in buffered_shuffle(
                    records,
                    capacity=config.shuffle_buffer_records,
                    key=hashing.stable_hash64("shuffle", config.random_seed, shard),
                ):
                    out.write_framed(record)
        finally:
            for reader in readers:
                reader.close()
        for _, part_path, _ in parts:
            storage.remove(part_path)
        logging.info("wrote %s: %d instances", name, out.records)
        yield {"path": path, "records": out.records, "bytes": out.bytes, "sha256": out.sha256}


def statistics(counts: dict[str, int]) -> dict[str, float]:
    """The fractions the benchmark and metadata.json report, from the job's counts."""

    def ratio(numerator: str, denominator: str) -> float:
        return counts.get(numerator, 0) / counts[denominator] if counts.get(denominator) else 0.0

    return {
        "real_token_fraction": ratio("real_tokens", "sequence_slots"),
        "masked_fraction": ratio("masked_tokens", "real_tokens"),
        "masked_as_mask_token_fraction": ratio("masked_as_mask_token", "masked_tokens"),
        "masked_as_random_token_fraction": ratio("masked_as_random_token", "masked_tokens"),
        "masked_kept_fraction": ratio("masked_kept", "masked_tokens"),
        "random_next_fraction": ratio("random_next", "instances"),
        "unk_fraction": ratio("unk_tokens", "tokens"),
        "instances_per_document": ratio("instances", "documents"),
    }


def _finish(shards, counts, *, config, vocab_size, scratch_dir):
    """Checks the shards against the counts, removes the scratch folder; what metadata.json
    holds.

    (Untyped: Beam would log every string annotation of a function it maps.)

    Args:
      shards: list of {"path", "records", "bytes", "sha256"}, one per shard.
      counts: dict[str, int], the job's counts.

    Returns:
      stage.StageResult.
    """
    shards = sorted(shards, key=lambda s: s["path"])
    if not counts.get("documents"):
        raise ValueError(
            f"{config.input_file}: the input holds no documents (every line is blank, or no line "
            "has a token in the vocab)"
        )
    if len(shards) != config.num_shards:
        raise RuntimeError(f"wrote {len(shards)} shards, expected {config.num_shards}")
    written = sum(s["records"] for s in shards)
    if written != counts.get("instances", 0):
        raise RuntimeError(f"shards hold {written} instances, made {counts.get('instances')}")
    stats = statistics(counts)
    if stats["unk_fraction"] > config.max_unk_fraction:
        logging.warning(
            "%.1f%% of the input tokens are [UNK]: check --vocab_file and --do_lower_case",
            100 * stats["unk_fraction"],
        )
    empty = [storage.basename(s["path"]) for s in shards if s["records"] == 0]
    if empty:
        logging.warning(
            "%d of %d shards are empty: fewer instances (%d) than --num_shards",
            len(empty),
            len(shards),
            written,
        )
    storage.rmtree(scratch_dir)
    logging.info(
        "%s: %d instances in %d shards; masked %.4f, random next %.4f",
        config.output_dir,
        written,
        len(shards),
        stats["masked_fraction"],
        stats["random_next_fraction"],
    )
    return stage.StageResult(
        outputs=[],
        counts={key: counts[key] for key in sorted(counts)},
        extra={
            "vocab_size": vocab_size,
            "statistics": stats,
            # Hashed while written: reading every shard back would double the job's I/O.
            "outputs": [
                {
                    "path": storage.basename(s["path"]),
                    "bytes": s["bytes"],
                    "records": s["records"],
                    "sha256": s["sha256"],
                }
                for s in shards
            ],
        },
    )


def _empty_hint(inputs: Sequence[str]) -> str:
    """Why text shards are empty, from extract_text's metadata.json beside them: most often a
    small corpus whose eval split drew no document at --eval_fraction."""
    hints = []
    for folder in dict.fromkeys(storage.dirname(path) for path in inputs):
        record = metadata.read(folder) or {}
        if record.get("command") != "pipeline.extract_text":
            continue
        counts, flags = record.get("counts", {}), record.get("flags", {})
        hints.append(
            f"{folder} holds {counts.get('train_documents', 0)} train and "
            f"{counts.get('eval_documents', 0)} eval documents "
            f"(extract_text --eval_fraction={flags.get('eval_fraction')})"
        )
    if not hints:
        return ""
    return (
        f" ({'; '.join(hints)}: a small corpus's eval split can draw no document; raise "
        "--eval_fraction, or give more input)"
    )


def build_pipeline(
    pipeline: beam.Pipeline, config: CreatePretrainingDataConfig
) -> beam.PCollection:
    """Adds the whole job to `pipeline`.

    Checks what can be checked before anything runs (inputs exist and are not all empty, the
    vocab loads and fits the text and `do_lower_case`), and removes a previous run's
    metadata.json and shards of the same prefix from `output_dir`.

    Args:
      pipeline: the Beam pipeline (a TestPipeline in tests).
      config: the paths (input_file, output_dir, vocab_file) and every setting.

    Returns:
      A PCollection holding one element, the metadata.json record, once everything is written.

    Raises:
      FileNotFoundError: a pattern matches nothing, or the vocab file is missing.
      ValueError: every input is empty; the vocab does not fit the text or `do_lower_case`.
    """
    # Google's tokenization in plain Python: neither this process nor the workers load
    # TensorFlow (0.7 GB and ~10 s of start-up each; see tokenizer.wordpiece).
    from tokenizer import WordPieceTokenizer

    output_dir, vocab_file = config.output_dir, config.vocab_file
    inputs = metadata.data_files(
        storage.expand_globs(config.input_file), patterns=config.input_file
    )
    sizes = [storage.size(path) for path in inputs]
    if not any(sizes):
        raise ValueError(f"every input file is empty: {', '.join(inputs)}{_empty_hint(inputs)}")
    for path, size in zip(inputs, sizes, strict=True):
        if not size:
            logging.warning("input %s is empty", path)
    tokenizer = WordPieceTokenizer(
        vocab_file, do_lower_case=config.do_lower_case, strip_accents=config.strip_accents
    )
    sample, sample_documents, sample_bytes = _sample(
        [p for p, s in zip(inputs, sizes, strict=True) if s]
    )
    check_vocabulary(tokenizer, sample, max_unk_fraction=config.max_unk_fraction)
    total_bytes = sum(sizes)
    estimated_documents = total_bytes * max(1, sample_documents) // max(1, sample_bytes)
    num_buckets = choose_num_buckets(estimated_documents, total_bytes, config=config)
    vocabulary = pretraining_instances.Vocabulary.from_tokenizer(tokenizer)
    storage.makedirs(output_dir)
    _remove_stale_outputs(output_dir, prefix=config.output_prefix)
    warn_if_short_of_disk(output_dir, total_bytes, dupe_factor=config.dupe_factor)
    scratch_dir = storage.join(output_dir, f".tmp-{config.output_prefix}-{uuid.uuid4().hex}")
    # Several local workers: ranges small enough for about four per worker (the documents, and
    # so the records, do not depend on where the ranges are cut).
    split_bytes = beam_options.local_range_bytes(
        config.split_bytes, total_bytes, workers=beam_options.local_workers(pipeline)
    )
    ranges = document_reader.plan_ranges(inputs, sizes, split_bytes=split_bytes)
    grouping = group_files.resolve(
        config.grouping, on_dataflow=beam_options.runs_on_dataflow(pipeline)
    )
    logging.info(
        "%s: %d input files (%d bytes) in %d ranges, ~%d documents in %d buckets (grouped "
        "through %s) -> %s; %s",
        COMMAND,
        len(inputs),
        total_bytes,
        len(ranges),
        estimated_documents,
        num_buckets,
        "scratch files" if grouping == "files" else "the shuffle",
        output_dir,
        config,
    )

    read = (
        pipeline
        | "Ranges" >> beam.Create(ranges)
        | "SpreadRanges" >> beam.Reshuffle()
        | "ReadAndTokenize"
        >> beam.ParDo(
            ReadAndTokenize(
                tokenizer,
                config=config,
                num_buckets=num_buckets,
                bucket_dir=storage.join(scratch_dir, "buckets") if grouping == "files" else None,
                reading=progress.Progress(
                    COMMAND,
                    "documents",
                    total_bytes=total_bytes,
                    workers=beam_options.local_workers(pipeline),
                ),
            )
        ).with_outputs("counts", main="documents")
    )
    buckets = read.documents | "GroupIntoBuckets" >> beam.GroupByKey()
    bucket_counts = (
        buckets
        | "CountInstances"
        >> beam.ParDo(CountInstances(config=config, vocab_size=vocabulary.vocab_size))
        | "CollectCounts" >> beam.combiners.ToDict()
    )
    offsets = bucket_counts | "SlotOffsets" >> beam.Map(slot_offsets)
    parts = buckets | "WriteParts" >> beam.ParDo(
        WriteParts(config=config, vocabulary=vocabulary, scratch_dir=scratch_dir),
        offsets=beam.pvalue.AsSingleton(offsets),
        bucket_counts=beam.pvalue.AsSingleton(bucket_counts),
    ).with_outputs("counts", main="parts")
    counts = (
        (read.counts, parts.counts)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(_sum_counts)
    )
    return (
        parts.parts
        | "GroupParts" >> beam.GroupByKey()
        | "MergeShards" >> beam.ParDo(MergeShard(config=config, output_dir=output_dir))
        | "CollectShards" >> beam.combiners.ToList()
        | "Finish"
        >> beam.Map(
            _finish,
            counts=beam.pvalue.AsSingleton(counts),
            config=config,
            vocab_size=vocabulary.vocab_size,
            scratch_dir=scratch_dir,
        )
        | "WriteMetadata"
        >> stage.WriteMetadata(
            command=COMMAND,
            config=config,
            output_dir=output_dir,
            inputs=inputs,
            vocab_file=vocab_file,
        )
    )


STAGE = stage.Stage(
    command=COMMAND,
    config_class=CreatePretrainingDataConfig,
    build_pipeline=build_pipeline,
    output_dir=operator.attrgetter("output_dir"),
)


if __name__ == "__main__":
    stage.run_as_program(STAGE)
