"""pipeline.create_pretraining_data: the reader, the record writers, each Beam step, the whole job."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from contracts import hashing, metadata, schema
from pipeline import (
    beam_options,
    document_reader,
    example_encoding,
    group_files,
    pretraining_instances,
    record_files,
)
from pipeline import create_pretraining_data as job
from tests import pretraining_fixtures

VOCAB = str(pretraining_fixtures.VOCAB)
PROJECT_ROOT = Path(__file__).parent.parent

# google-research/bert's run_pretraining.py `input_fn_builder`, written out here on purpose
# (not taken from contracts.schema): the records must parse in its input pipeline unchanged.
MAX_SEQ_LENGTH, MAX_PREDICTIONS = 128, 20
GOOGLE_NAME_TO_FEATURES = {
    "input_ids": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "input_mask": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}
CLS, SEP, MASK = 101, 102, 103
# The shared job's flags: small buckets and byte ranges, so that the books make several of each.
JOB_FLAGS = dict(dupe_factor=2, num_shards=4, min_bucket_documents=16, split_bytes=256 << 10)


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizer import BertTokenizer

    return BertTokenizer(VOCAB)


@pytest.fixture(scope="module")
def book_shards(tmp_path_factory) -> list[Path]:
    return pretraining_fixtures.write_book_shards(tmp_path_factory.mktemp("text"))


def read_tfrecords(path: str, *, compression: str = "none") -> list[bytes]:
    """The records of a TFRecord file, through TensorFlow's reader (which checks the CRCs)."""
    dataset = tf.data.TFRecordDataset(
        path, compression_type="GZIP" if compression == "gzip" else ""
    )
    return [bytes(record) for record in dataset.as_numpy_iterator()]


def run_job(inputs, output_dir, *, beam_args=(), **config) -> dict:
    """Runs the whole job on the in-process runner; returns metadata.json."""
    pipeline = beam.Pipeline(options=beam_options.pipeline_options(list(beam_args)))
    job.build_pipeline(
        pipeline,
        job.CreatePretrainingDataConfig(
            input_file=inputs if isinstance(inputs, str) else ",".join(str(p) for p in inputs),
            output_dir=str(output_dir),
            vocab_file=VOCAB,
            **config,
        ),
    )
    pipeline.run().wait_until_finish()
    return metadata.read(str(output_dir))


def shard_files(output_dir) -> list[str]:
    return sorted(
        str(Path(output_dir) / name)
        for name in os.listdir(output_dir)
        if ".tfrecord" in name and not name.startswith(".")
    )


def parse_records(paths, *, compression="none") -> list[dict[str, np.ndarray]]:
    dataset = tf.data.TFRecordDataset(
        paths, compression_type="GZIP" if compression == "gzip" else ""
    )
    dataset = dataset.map(lambda r: tf.io.parse_single_example(r, GOOGLE_NAME_TO_FEATURES))
    return list(dataset.as_numpy_iterator())


# ---------------------------------------------------------------------------------------------
# The reader


READER_TEXT = (
    b"first doc line one.\nfirst doc line two.\n\n\n"
    b"second doc, after two blank lines.\n  \t \n"  # a whitespace-only line ends a document
    b"third doc \xff\xfe bad bytes.\n" + b"x" * 300 + b"\n"  # invalid UTF-8; a too-long line
    b"third doc goes on.\r\n\r\n"
    + b"".join(b"fourth doc, line %d: " % i + b"long " * 26 + b"\n" for i in range(4))
    + b"\n"
    b"fifth doc, no newline at the end"
)


def read_all(path: str, *, split_bytes: int, counts: Counter | None = None):
    size = os.path.getsize(path)
    ranges = document_reader.plan_ranges([path], [size], split_bytes=split_bytes)
    return [
        doc
        for byte_range in ranges
        for doc in document_reader.read_documents(
            byte_range, max_document_bytes=520, max_sentence_bytes=200, counts=counts
        )
    ]


def test_reader_documents_do_not_depend_on_range_size(tmp_path):
    path = tmp_path / "train-00000-of-00001.txt"
    path.write_bytes(READER_TEXT)
    counts = Counter()
    whole = read_all(str(path), split_bytes=1 << 20, counts=counts)
    assert [[s[:19] for s in d.sentences] for d in whole] == [
        ["first doc line one.", "first doc line two."],
        ["second doc, after t"],
        ["third doc \ufffd\ufffd bad by", "third doc goes on."],
        ["fourth doc, line 0:", "fourth doc, line 1:", "fourth doc, line 2:"],
        ["fourth doc, line 3:"],
        ["fifth doc, no newli"],
    ]
    # The too-long line is skipped, the CR stripped, the 600-byte document cut in two pieces.
    assert whole[2].sentences == ["third doc \ufffd\ufffd bad bytes.", "third doc goes on."]
    assert whole[3].doc_id.startswith("train-00000-of-00001.txt:")
    assert counts == Counter(lines_invalid_utf8=1, lines_too_long=1, documents_cut=1)
    # Ids are byte offsets of first lines: stable, unique.
    offsets = [int(d.doc_id.rsplit(":", 1)[1]) for d in whole]
    assert offsets[0] == 0 and READER_TEXT[offsets[1] :].startswith(b"second doc")
    assert READER_TEXT[offsets[3] :].startswith(b"fourth doc, line 0")  # after "\r\n" lines
    assert READER_TEXT[offsets[4] :].startswith(b"fourth doc, line 3")
    for split_bytes in (1, 2, 3, 7, 19, 20, 21, 64, 100, 333, len(READER_TEXT) - 1):
        assert read_all(str(path), split_bytes=split_bytes) == whole, split_bytes


def test_reader_names_tell_inputs_apart():
    names = document_reader.short_names(
        [
            "gs://b/data/wiki-shards/train-0.txt",
            "gs://b/data/books-shards/train-0.txt",
            "/x/eval.txt",
        ]
    )
    assert names == {
        "gs://b/data/wiki-shards/train-0.txt": "wiki-shards/train-0.txt",
        "gs://b/data/books-shards/train-0.txt": "books-shards/train-0.txt",
        "/x/eval.txt": "x/eval.txt",
    }
    assert (
        document_reader.short_names(["/a/train-0.txt", "/a/train-1.txt"])["/a/train-1.txt"]
        == "train-1.txt"
    )


# ---------------------------------------------------------------------------------------------
# The record files


def test_batch_encoding_equals_protobuf_serialization():
    rng = np.random.default_rng(0)
    rows = 64
    features = {
        "input_ids": rng.integers(0, 30522, (rows, 16)),
        "input_mask": rng.integers(0, 2, (rows, 16)),
        "segment_ids": rng.integers(0, 2, (rows, 16)),
        "masked_lm_positions": rng.integers(0, 600, (rows, 5)),
        "masked_lm_ids": rng.integers(0, 2**21, (rows, 5)),
        "masked_lm_weights": rng.random((rows, 5)).astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, (rows, 1)),
    }
    features["input_ids"][0] = 0
    features["input_ids"][1, :3] = [2**35, 2**62, 127]
    features["masked_lm_ids"][2, 0] = -1  # int64 protobuf: ten bytes
    encoded = example_encoding.serialize_batch(features)
    for row in range(rows):
        assert encoded[row] == schema.serialize({k: v[row] for k, v in features.items()}), row


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_shard_writer_is_read_by_tensorflow(tmp_path, compression):
    path = str(tmp_path / f"x.tfrecord{'.gz' if compression == 'gzip' else ''}")
    records = [bytes([i]) * i for i in range(200)]
    with record_files.TFRecordShardWriter(path, compression=compression) as writer:
        for record in records:
            writer.write(record)
    assert list(read_tfrecords(path, compression=compression)) == records
    data = Path(path).read_bytes()
    assert writer.sha256 == hashlib.sha256(data).hexdigest() and writer.bytes == len(data)
    assert writer.records == 200
    assert os.listdir(tmp_path) == [Path(path).name]  # no temporary file left
    # Same records, same bytes (no timestamp in the gzip header).
    again = str(tmp_path / "again")
    with record_files.TFRecordShardWriter(again, compression=compression) as other:
        for record in records:
            other.write(record)
    assert Path(again).read_bytes() == data


def test_shard_writer_leaves_nothing_on_error(tmp_path):
    path = str(tmp_path / "x.tfrecord")
    with pytest.raises(KeyError), record_files.TFRecordShardWriter(path) as writer:
        writer.write(b"abc")
        raise KeyError("boom")
    assert os.listdir(tmp_path) == []


def test_part_files_round_trip(tmp_path):
    path = str(tmp_path / "part")
    writer = record_files.PartWriter(path)
    records = [os.urandom(n) for n in (0, 1, 300, 70000, 5)]
    for record in records:
        writer.write(record)
    writer.close()
    reader = record_files.PartReader(path)
    assert [reader.next() for _ in records] == [record_files.frame_record(r) for r in records]
    assert list(read_tfrecords(path)) == records  # a part is a TFRecord file
    with pytest.raises(ValueError, match="truncated"):
        reader.next()
    reader.close()


# ---------------------------------------------------------------------------------------------
# Beam steps


@pytest.mark.parametrize("grouping", ["shuffle", "files"])
def test_read_and_tokenize_step(tmp_path, tokenizer, grouping):
    path = tmp_path / "train-00000-of-00001.txt"
    path.write_text("Hello world.\nSecond line.\n\n\u00a0\n\nThird doc here.\n", encoding="utf-8")
    ranges = document_reader.plan_ranges([str(path)], [path.stat().st_size], split_bytes=10)
    config = pretraining_instances.PretrainingDataConfig()
    bucket_dir = str(tmp_path / "buckets") if grouping == "files" else None

    def documents_of(element):
        bucket, item = element
        assert 0 <= bucket < 3
        if bucket_dir:  # a bucket's slice of a range file: read it back
            assert isinstance(item, group_files.Slice) and item.path.startswith(bucket_dir)
            yield from ((bucket, e) for e in group_files.read_slices([item]))
        else:
            yield bucket, item

    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        out = (
            pipeline
            | beam.Create(ranges)
            | beam.ParDo(
                job.ReadAndTokenize(tokenizer, config=config, num_buckets=3, bucket_dir=bucket_dir)
            ).with_outputs("counts", main="documents")
        )
        documents = (
            out.documents
            | beam.FlatMap(documents_of)
            | beam.Map(
                lambda b_e: (
                    b_e[1][0],
                    pretraining_instances.decode_document(b_e[1], vocab_size=30522).tokens.tolist(),
                    pretraining_instances.decode_document(
                        b_e[1], vocab_size=30522
                    ).sentence_lengths.tolist(),
                )
            )
        )
        hello = tokenizer.tokenize_to_ids(["Hello world.", "Second line.", "Third doc here."])
        assert_that(
            documents,
            equal_to(
                [
                    (
                        "train-00000-of-00001.txt:0",
                        [*hello[0].tolist(), *hello[1].tolist()],
                        [len(hello[0]), len(hello[1])],
                    ),
                    ("train-00000-of-00001.txt:31", hello[2].tolist(), [len(hello[2])]),
                ]
            ),
            label="documents",
        )
        totals = out.counts | beam.CombineGlobally(job._sum_counts)
        assert_that(
            totals | beam.Map(lambda c: (c["documents"], c["sentences"], c["unk_tokens"])),
            equal_to([(2, 3, 0)]),
            label="counts",
        )


def test_buckets_slots_and_sizes():
    config = pretraining_instances.PretrainingDataConfig()
    assert job.slot_offsets({3: 5, 0: 2, 7: 0, 1: 4}) == {0: 0, 1: 2, 3: 6, 7: 11}
    assert job.choose_num_buckets(10, 10_000, config=config) == 1
    assert job.choose_num_buckets(256 * 10, 10_000, config=config) == 10
    assert job.choose_num_buckets(10**7, 10**9, config=config) == 256
    assert job.choose_num_buckets(255, 10**6, config=config) == 1
    assert job.choose_num_buckets(3, 10**11, config=config) == 1491  # memory first
    # Buckets are a stable function of (seed, id), spread evenly.
    buckets = Counter(hashing.bucket_of("bucket", 1, f"f:{i}", num_buckets=8) for i in range(8000))
    assert set(buckets) == set(range(8)) and max(buckets.values()) < 1100


def test_merge_shard_step_interleaves_parts(tmp_path):
    parts = []
    for bucket, count in ((0, 30), (1, 0), (2, 50)):
        path = str(tmp_path / f"part-{bucket}")
        writer = record_files.PartWriter(path)
        for i in range(count):
            writer.write(f"{bucket}:{i}".encode())
        writer.close()
        parts.append((bucket, path if count else None, count))
    config = pretraining_instances.PretrainingDataConfig(num_shards=4)
    merge = job.MergeShard(config=config, output_dir=str(tmp_path / "out"))
    (result,) = list(merge.process((2, parts[::-1])))
    assert result["path"].endswith("train-00002-of-00004.tfrecord") and result["records"] == 80
    records = [r.decode() for r in read_tfrecords(result["path"])]
    assert sorted(records) == sorted([f"0:{i}" for i in range(30)] + [f"2:{i}" for i in range(50)])
    # The parts are interleaved, not concatenated, and each is shuffled (a part holds its
    # bucket's instances document by document).
    first_half = records[:40]
    assert 5 < sum(r.startswith("0:") for r in first_half) < 25
    assert [r for r in records if r.startswith("0:")] != [f"0:{i}" for i in range(30)]
    assert not os.path.exists(parts[0][1])  # parts are removed once merged


def test_buffered_shuffle_is_a_seeded_permutation_that_breaks_runs():
    items = list(range(10_000))
    shuffled = list(job.buffered_shuffle(items, capacity=1000, key=7))
    assert sorted(shuffled) == items
    assert shuffled == list(job.buffered_shuffle(iter(items), capacity=1000, key=7))
    assert shuffled != list(job.buffered_shuffle(items, capacity=1000, key=8))
    # Input neighbours (a document's consecutive instances) rarely stay neighbours.
    adjacent = sum(abs(a - b) == 1 for a, b in zip(shuffled[:-1], shuffled[1:], strict=True))
    assert adjacent < 50
    # Fewer items than the buffer: a uniform permutation of them all.
    small = list(job.buffered_shuffle(range(20), capacity=1000, key=1))
    assert sorted(small) == list(range(20)) and small != list(range(20))


# ---------------------------------------------------------------------------------------------
# The whole job


@pytest.fixture(scope="module")
def job_output(book_shards, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("records") / "train"
    record = run_job(book_shards, output_dir, **JOB_FLAGS)
    return output_dir, record


def test_records_parse_with_googles_feature_spec(job_output):
    output_dir, record = job_output
    names = [Path(p).name for p in shard_files(output_dir)]
    assert names == [f"train-0000{i}-of-00004.tfrecord" for i in range(4)]
    examples = parse_records(shard_files(output_dir))
    assert len(examples) == record["counts"]["instances"] > 1000
    example = examples[0]
    assert {k: v.shape for k, v in example.items()} == {
        k: tuple(v.shape) for k, v in GOOGLE_NAME_TO_FEATURES.items()
    }
    # Also with our schema module, as the trainer reads them.
    spec = schema.feature_spec(max_seq_length=128, max_predictions_per_seq=20)
    assert spec.keys() == GOOGLE_NAME_TO_FEATURES.keys()


def test_metadata_describes_the_output(job_output):
    output_dir, record = job_output
    assert record["command"] == "pipeline.create_pretraining_data"
    flags = record["flags"]
    assert (flags["max_seq_length"], flags["max_predictions_per_seq"]) == (128, 20)
    assert flags["do_lower_case"] is True and flags["vocab_file"] == VOCAB
    assert record["vocab_size"] == 30522
    assert record["vocab"]["sha256"] == hashlib.sha256(Path(VOCAB).read_bytes()).hexdigest()
    assert len(record["inputs"]) == 3
    # Shards: balanced to within one instance, each described by its true sha256.
    counts = [o["records"] for o in record["outputs"]]
    assert sum(counts) == record["counts"]["instances"] and max(counts) - min(counts) <= 1
    for output in record["outputs"]:
        data = (output_dir / output["path"]).read_bytes()
        assert output["sha256"] == hashlib.sha256(data).hexdigest()
        assert output["bytes"] == len(data)
    # No scratch folder left behind.
    assert sorted(os.listdir(output_dir)) == sorted(
        [o["path"] for o in record["outputs"]] + ["metadata.json"]
    )
    stats = record["statistics"]
    assert stats["masked_fraction"] == pytest.approx(0.15, abs=0.006)
    assert stats["random_next_fraction"] == pytest.approx(0.5, abs=0.05)
    assert stats["masked_as_mask_token_fraction"] == pytest.approx(0.8, abs=0.02)
    assert record["counts"]["documents"] > 30


def test_records_hold_the_input_text(job_output, book_shards, tokenizer):
    """A and B, with their masked tokens restored, are runs of the input documents: from the
    same document (B after A) for label 0, from two different documents for label 1."""
    output_dir, _ = job_output
    streams = []
    for shard in book_shards:
        for document in shard.read_text(encoding="utf-8").split("\n\n"):
            sentences = [s for s in document.split("\n") if s.strip()]
            if sentences:
                ids = np.concatenate(tokenizer.tokenize_to_ids(sentences))
                streams.append(" " + " ".join(map(str, ids.tolist())) + " ")

    def where(ids: np.ndarray) -> set[int]:
        needle = " " + " ".join(map(str, ids.tolist())) + " "
        return {i for i, stream in enumerate(streams) if needle in stream}

    examples = parse_records(shard_files(output_dir))
    labels = Counter()
    actions = Counter()
    for example in examples[:300]:
        ids = example["input_ids"].copy()
        length = int(example["input_mask"].sum())
        weights = example["masked_lm_weights"] > 0
        positions = example["masked_lm_positions"][weights]
        for position, original in zip(positions, example["masked_lm_ids"][weights], strict=True):
            actions[
                "mask"
                if ids[position] == MASK
                else "same"
                if ids[position] == original
                else "random"
            ] += 1
            ids[position] = original
        assert ids[0] == CLS and ids[length - 1] == SEP and not ids[length:].any()
        segment_ids = example["segment_ids"][:length]
        a_end = int(np.argmax(segment_ids))  # first position of B
        assert ids[a_end - 1] == SEP and (segment_ids[a_end:] == 1).all()
        tokens_a, tokens_b = ids[1 : a_end - 1], ids[a_end : length - 1]
        in_a, in_b = where(tokens_a), where(tokens_b)
        assert in_a and in_b
        label = int(example["next_sentence_labels"][0])
        labels[label] += 1
        if label == 0:
            assert in_a & in_b
        else:
            assert in_a != in_b or len(in_a) > 1
    assert labels[0] > 100 and labels[1] > 100
    assert actions["mask"] > 6 * actions["random"] and actions["random"] > 0


def test_reruns_give_the_same_bytes_through_either_grouping(job_output, book_shards, tmp_path):
    output_dir, record = job_output  # grouped through scratch files (the local default)
    again = run_job(book_shards, tmp_path / "again", **JOB_FLAGS, grouping="shuffle")
    assert record["counts"]["buckets"] > 1 and len(book_shards) > 1
    assert [o["sha256"] for o in again["outputs"]] == [o["sha256"] for o in record["outputs"]]
    for name in (o["path"] for o in record["outputs"]):
        assert (tmp_path / "again" / name).read_bytes() == (output_dir / name).read_bytes()


@pytest.mark.slow
def test_one_and_two_workers_give_the_same_bytes(job_output, book_shards, tmp_path):
    output_dir, record = job_output
    two = run_job(
        book_shards,
        tmp_path / "two",
        **JOB_FLAGS,
        beam_args=["--direct_num_workers=2"],
    )
    assert [o["sha256"] for o in two["outputs"]] == [o["sha256"] for o in record["outputs"]]


def test_gzip_and_prefix_and_stale_outputs(job_output, book_shards, tmp_path):
    output_dir, record = job_output
    out = tmp_path / "eval"
    out.mkdir()
    (out / "eval-00000-of-00009.tfrecord").write_bytes(b"stale")  # another --num_shards
    (out / "metadata.json").write_text("{}")
    (out / "keep.txt").write_text("not ours")
    gz = run_job(book_shards, out, **JOB_FLAGS, compression="gzip", output_prefix="eval")
    names = sorted(os.listdir(out))
    assert names == [f"eval-0000{i}-of-00004.tfrecord.gz" for i in range(4)] + [
        "keep.txt",
        "metadata.json",
    ]
    # The same instances as uncompressed, in the same order.
    for ours, plain in zip(sorted(names[:4]), (o["path"] for o in record["outputs"]), strict=True):
        assert list(read_tfrecords(str(out / ours), compression="gzip")) == list(
            read_tfrecords(str(output_dir / plain))
        )
    assert gz["flags"]["compression"] == "gzip"


def test_bad_input_is_counted_or_refused(book_shards, tmp_path):
    # Non-UTF-8 bytes and an empty shard: counted, the job runs.
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "train-00000-of-00002.txt").write_bytes(b"")
    text = book_shards[0].read_bytes()
    (odd / "train-00001-of-00002.txt").write_bytes(
        text[:20000] + b"caf\xe9 latin-1 here.\n" + text[20000:40000]
    )
    record = run_job(str(odd / "*.txt"), tmp_path / "odd-out", dupe_factor=1, num_shards=2)
    assert record["counts"]["lines_invalid_utf8"] == 1
    assert record["counts"]["instances"] > 50
    # Every input empty: refused before anything runs.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train-00000-of-00001.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="every input file is empty"):
        run_job(str(empty / "*.txt"), tmp_path / "x", num_shards=2)
    # An eval split that drew no document: extract_text's metadata.json beside it says why.
    (empty / "eval-00000-of-00001.txt").write_bytes(b"")
    metadata.write(
        str(empty),
        command="pipeline.extract_text",
        flags={"eval_fraction": 0.2},
        inputs=[],
        outputs=[],
        counts={"train_documents": 3, "eval_documents": 0},
    )
    with pytest.raises(
        ValueError, match=r"holds 3 train and 0 eval documents .*--eval_fraction=0.2.*raise"
    ):
        run_job(str(empty / "eval-*.txt"), tmp_path / "x", num_shards=2)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        run_job(str(tmp_path / "nothing-here-*.txt"), tmp_path / "x", num_shards=2)
    # A lower-case vocab without --do_lower_case: most capitalised words are [UNK].
    with pytest.raises(ValueError, match=r"\[UNK\].*pass --do_lower_case"):
        run_job(book_shards, tmp_path / "x", do_lower_case=False)
    assert not (tmp_path / "x" / "metadata.json").exists()


def test_cased_vocab_with_lower_casing_is_refused(tmp_path):
    from tokenizer import BertTokenizer

    tokens = Path(VOCAB).read_text(encoding="utf-8").split("\n")[:-1]
    cased = [t if t.startswith("[") else t.capitalize() for t in tokens[:2000]]
    cased = list(dict.fromkeys(cased))
    with pytest.raises(ValueError, match="looks like a cased vocab"):
        job.check_vocabulary(
            BertTokenizer.from_tokens(cased), ["Some text."], max_unk_fraction=0.05
        )


def test_accented_vocab_with_accent_stripping_is_refused():
    from tokenizer import BertTokenizer

    tokens = Path(VOCAB).read_text(encoding="utf-8").split("\n")[:-1][:2000]
    accented = tokens + [f"{t}é" for t in tokens[1000:1100] if t.isalpha()]
    with pytest.raises(ValueError, match=r"accents .* pass --nostrip_accents"):
        job.check_vocabulary(
            BertTokenizer.from_tokens(accented), ["Some text."], max_unk_fraction=0.05
        )
    kept = BertTokenizer.from_tokens(accented, strip_accents=False)
    assert job.check_vocabulary(kept, ["Some text."], max_unk_fraction=0.05) == 0.0


def test_text_without_spaces_between_words_is_refused_with_what_to_do(tokenizer):
    # Georgian words run together: a script the tokenizer does not split past 100 characters.
    phrase = "კატაარისპატარაშინაურიცხოველი" * 5
    run_together = [phrase + " " + phrase for _ in range(6)]
    with pytest.raises(ValueError, match=r"without spaces between words.*Split it into words"):
        job.check_vocabulary(tokenizer, run_together, max_unk_fraction=0.05)
    # Thai, whose phrases the tokenizer splits into pieces (tokenizer.wordpiece.too_long), and
    # Chinese and Japanese ideographs, words of their own: no such error (the vocab check
    # then says whether the vocab fits: this one is English, so [UNK]s are allowed here).
    thai_phrase = "แมวเป็นสัตว์เลี้ยงลูกด้วยนมขนาดเล็กที่อยู่กับมนุษย์มานานหลายพันปีแล้ว"
    thai = [thai_phrase * 3 + " " + thai_phrase * 2 for _ in range(4)]
    chinese = ["猫是一种小型食肉哺乳动物，与人类共同生活了数千年。" * 8 for _ in range(4)]
    for texts in (thai, chinese):
        assert job.check_vocabulary(tokenizer, texts, max_unk_fraction=1.0) >= 0.0


def test_read_and_tokenize_keeps_the_accent_setting(tokenizer):
    from tokenizer import BertTokenizer

    tokens = [*sorted(tokenizer.vocab, key=tokenizer.vocab.__getitem__), "café"]
    config = pretraining_instances.PretrainingDataConfig()
    # The same vocab twice: the per-process tokenizer cache must tell the settings apart.
    for strip_accents, pieces in ((True, ["cafe"]), (False, ["café"])):
        step = job.ReadAndTokenize(
            BertTokenizer.from_tokens(tokens, strip_accents=strip_accents),
            config=config,
            num_buckets=1,
        )
        step = pickle.loads(pickle.dumps(step))  # as Beam ships it to a worker
        step.setup()
        assert step._tokenizer.tokenize(["Café"]) == [pieces]


def test_command_line(book_shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.create_pretraining_data",
            f"--input_file={book_shards[0]},{book_shards[1]}",
            f"--output_dir={tmp_path / 'cli'}",
            f"--vocab_file={VOCAB}",
            "--dupe_factor=1",
            "--num_shards=2",
            "--max_seq_length=64",
            "--max_predictions_per_seq=10",
            "--do_whole_word_mask",
            "--random_seed=7",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "cli" / "metadata.json").read_text())
    assert record["flags"]["max_seq_length"] == 64 and record["flags"]["do_whole_word_mask"] is True
    assert record["flags"]["random_seed"] == 7
    assert "instances" in result.stderr  # the counters are logged
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.create_pretraining_data",
            f"--input_file={book_shards[0]}",
            f"--output_dir={tmp_path / 'bad'}",
            f"--vocab_file={VOCAB}",
            "--max_predictions_per_seq=5",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=300,
    )
    assert bad.returncode != 0 and "max_predictions_per_seq=5 is smaller" in bad.stderr


def test_gcs_input_and_output(book_shards, gcs_dir, tmp_path):
    for shard in book_shards[:2]:
        tf.io.gfile.copy(str(shard), f"{gcs_dir}/text/{shard.name}")
    output_dir = f"{gcs_dir}/records"
    record = run_job(
        f"{gcs_dir}/text/train-*.txt", output_dir, dupe_factor=1, num_shards=2, compression="gzip"
    )
    assert record == metadata.read(output_dir)
    names = sorted(tf.io.gfile.listdir(output_dir))
    assert names == [
        "metadata.json",
        "train-00000-of-00002.tfrecord.gz",
        "train-00001-of-00002.tfrecord.gz",
    ]
    examples = parse_records([f"{output_dir}/{n}" for n in names[1:]], compression="gzip")
    assert len(examples) == record["counts"]["instances"] > 100
    # Same ids as the same files read locally: the document ids do not depend on the folder.
    local = run_job(book_shards[:2], tmp_path, dupe_factor=1, num_shards=2, compression="gzip")
    assert [o["sha256"] for o in local["outputs"]] == [o["sha256"] for o in record["outputs"]]


def test_group_files_round_trip_and_refuse_a_damaged_slice(tmp_path):
    groups = {
        7: [("doc:0", b"\x01\x00\x02\x00", b"\x02\x00\x00\x00")],
        2: [("dóc:1", b"", b""), ("doc:2", b"\x05\x00", b"\x01\x00\x00\x00")],
    }
    path = str(tmp_path / "groups" / group_files.file_name("a.txt", 0))
    slices = dict(group_files.write_groups(path, groups, weights={2: 30}))
    assert sorted(slices) == [2, 7] and os.listdir(tmp_path / "groups") == [Path(path).name]
    assert slices[2].offset == 0 and slices[7].offset == slices[2].length  # key order
    assert (slices[2].items, slices[2].weight, slices[7].weight) == (2, 30, 0)
    for key, items in groups.items():
        assert list(group_files.read_slices([slices[key]])) == items
    Path(path).write_bytes(Path(path).read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        list(group_files.read_slices([slices[7]]))
    with pytest.raises(ValueError, match="holds 2 items, expected 3"):
        list(group_files.read_slices([slices[2]._replace(items=3)]))
    assert group_files.resolve("auto", on_dataflow=True) == "shuffle"
    assert group_files.resolve("auto", on_dataflow=False) == "files"
    with pytest.raises(ValueError, match="grouping='disk'"):
        group_files.resolve("disk", on_dataflow=False)


def test_warns_when_the_output_disk_is_short_of_space(tmp_path, monkeypatch, caplog):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(job.shutil, "disk_usage", lambda path: usage(10**12, 0, 10**9))
    with caplog.at_level(logging.WARNING):
        # 100 MB of text at dupe 10: ~1.75 GB expected, 1 GB free.
        need = job.warn_if_short_of_disk(str(tmp_path), 100 * 10**6, dupe_factor=10)
    assert 1.7e9 < need < 1.8e9
    assert f"{tmp_path}: 1.0 GB free" in caplog.text and "about 1.8 GB" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        job.warn_if_short_of_disk(str(tmp_path), 10**6, dupe_factor=10)
    assert not caplog.text  # 17.5 MB needed: enough room

    def no_local_disk(path):
        raise AssertionError("a gs:// output has no local disk to check")

    monkeypatch.setattr(job.shutil, "disk_usage", no_local_disk)
    job.warn_if_short_of_disk("gs://bucket/records", 10**12, dupe_factor=10)


# Thai words, run together into phrases as Thai is written (spaces between phrases only).
THAI_WORDS = [
    "แมว",
    "เป็น",
    "สัตว์",
    "เลี้ยง",
    "ลูก",
    "ด้วย",
    "นม",
    "ขนาด",
    "เล็ก",
    "ที่",
    "อยู่",
    "กับ",
    "มนุษย์",
    "มา",
    "นาน",
    "หลาย",
    "พัน",
    "ปี",
    "แล้ว",
    "และ",
    "ได้รับ",
    "ความนิยม",
    "มาก",
    "ที่สุด",
    "ชนิด",
    "หนึ่ง",
    "ของ",
    "โลก",
    "มี",
    "ประสาท",
    "สัมผัส",
    "ดี",
    "เยี่ยม",
    "โดยเฉพาะ",
    "การ",
    "ได้ยิน",
    "มองเห็น",
    "ใน",
    "มืด",
    "ซึ่ง",
    "ช่วย",
    "ให้",
    "มัน",
    "ล่า",
    "หนู",
    "ประเทศ",
    "ไทย",
    "ตั้ง",
    "ภูมิภาค",
    "เอเชีย",
    "พรมแดน",
    "ติด",
    "กรุงเทพมหานคร",
    "เมืองหลวง",
    "เมือง",
    "ใหญ่",
    "ประชากร",
    "ประมาณ",
    "ล้าน",
    "คน",
    "ภาษา",
    "ราชการ",
    "ใช้",
    "ทั่ว",
    "เศรษฐกิจ",
    "ส่งออก",
    "สินค้า",
    "เกษตร",
    "ท่องเที่ยว",
    "แม่น้ำ",
    "สาย",
    "หลัก",
    "ไหล",
    "ผ่าน",
    "ชาวบ้าน",
    "ริม",
    "น้ำ",
    "อาหาร",
    "ชื่อเสียง",
    "รสชาติ",
    "เปรี้ยว",
    "หวาน",
    "เค็ม",
    "เผ็ด",
    "จาน",
    "เดียวกัน",
    "ข้าว",
    "ครอบครัว",
    "ช้าง",
    "ประวัติศาสตร์",
    "วัฒนธรรม",
    "วัด",
    "พระ",
]


def test_thai_end_to_end_with_a_sentencepiece_vocab(tmp_path):
    # The way for a script without spaces between words: build_vocab --algorithm=sentencepiece
    # (--nostrip_accents: stripping would drop Thai's vowel and tone marks), then this stage
    # with the same flags, then the trainer's checks of the records.
    from pipeline import build_vocab
    from tokenizer import WordPieceTokenizer, basic_tokenization
    from tokenizer.wordpiece import MAX_CHARS_PER_WORD
    from trainer import input_pipeline

    rng = np.random.default_rng(0)

    def phrase() -> str:
        return "".join(rng.choice(THAI_WORDS, size=rng.integers(8, 31)))

    documents = [
        "\n".join(
            " ".join(phrase() for _ in range(rng.integers(1, 4))) for _ in range(rng.integers(3, 7))
        )
        for _ in range(60)
    ]
    shards = tmp_path / "text"
    shards.mkdir()
    (shards / "train-00000-of-00001.txt").write_text("\n\n".join(documents) + "\n", "utf-8")
    vocab_file = str(tmp_path / "vocab" / "vocab.txt")
    build_vocab.run(
        build_vocab.BuildVocabConfig(
            input=str(shards / "*.txt"),
            output=vocab_file,
            vocab_size=400,
            algorithm="sentencepiece",
            strip_accents=False,
        )
    )
    words = [
        w
        for d in documents
        for w in basic_tokenization.split_words(d, do_lower_case=True, strip_accents=False)
    ]
    long = sum(len(w) for w in words if len(w) > MAX_CHARS_PER_WORD)
    assert long > 0.5 * sum(map(len, words))  # most of the text: [UNK]s by Google's rule

    out = tmp_path / "records"
    pipeline = beam.Pipeline(options=beam_options.pipeline_options([]))
    job.build_pipeline(
        pipeline,
        job.CreatePretrainingDataConfig(
            input_file=str(shards / "*.txt"),
            output_dir=str(out),
            vocab_file=vocab_file,
            strip_accents=False,
            dupe_factor=1,
        ),
    )
    pipeline.run().wait_until_finish()
    record = metadata.read(str(out))
    assert metadata.tokenization(record)["strip_accents"] is False
    tokenizer = WordPieceTokenizer(vocab_file, strip_accents=False)
    examples = parse_records(shard_files(out))
    assert len(examples) > 50
    ids = np.concatenate([e["input_ids"][e["input_mask"] == 1] for e in examples])
    assert np.mean(ids == tokenizer.unk_id) < 0.005
    # The long phrases came out as pieces of the learned vocab, tone marks (here mai ek) kept.
    pieces = set(tokenizer.id_to_token(np.unique(ids)))
    assert any(len(p.removeprefix("##")) > 2 and "\u0e48" in p for p in pieces)
    files = input_pipeline.list_files(str(out / "*.tfrecord*"))
    input_pipeline.check_inputs(
        files, max_seq_length=128, max_predictions_per_seq=20, vocab_size=400
    )
