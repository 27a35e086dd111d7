"""trainer.input_pipeline: parsing, per-host sharding, gzip, and the checks before step 1."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import tensorflow as tf

from contracts import metadata, schema
from trainer import input_pipeline

SEQ, PREDS, VOCAB = 32, 5, 97


def write_records(
    path, count, *, seq=SEQ, preds=PREDS, vocab=VOCAB, seed=0, first_id=0, weight=1.0
):
    """Writes `count` valid pretraining records (contracts.schema) that a model can learn from.

    Segment A repeats a pattern of 3 tokens drawn from a skewed (Zipf-like) distribution;
    segment B continues it (next_sentence_labels 0) or repeats a new pattern (1, "random
    next"). So the masked-LM loss falls fast (token frequencies), then further (copying from
    3 positions away), and the next-sentence label is visible. `first_id` > 0 puts the record's
    index into input_ids[1] (after [CLS]) to trace records; `weight` is every prediction's
    masked_lm_weight.
    """
    rng = np.random.default_rng(seed)
    frequencies = 1.0 / np.arange(1, vocab - 5 + 1) ** 1.1
    frequencies /= frequencies.sum()
    options = tf.io.TFRecordOptions(compression_type="GZIP" if str(path).endswith(".gz") else "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for index in range(count):
            length = int(rng.integers(seq // 2, seq + 1))
            half = length // 2
            random_next = int(rng.integers(0, 2))
            patterns = rng.choice(vocab - 5, size=(2, 3), p=frequencies) + 5
            ids = np.tile(patterns[0], length // 3 + 1)[:length]
            if random_next:
                ids[half:] = np.tile(patterns[1], length // 3 + 1)[: length - half]
            ids[0], ids[-1] = 2, 3  # [CLS] ... [SEP]
            if first_id:
                ids[1] = first_id + index
            masked = np.sort(rng.choice(np.arange(2, length - 1), size=preds, replace=False))
            labels = ids[masked].copy()
            ids[masked] = 4  # [MASK]
            pad = seq - length
            features = {
                "input_ids": np.pad(ids, (0, pad)),
                "input_mask": np.pad(np.ones(length, np.int64), (0, pad)),
                "segment_ids": np.pad(
                    (np.arange(length) >= length // 2).astype(np.int64), (0, pad)
                ),
                "masked_lm_positions": masked,
                "masked_lm_ids": labels,
                "masked_lm_weights": np.full(preds, weight, np.float32),
                "next_sentence_labels": [random_next],
            }
            schema.check_lengths(features, max_seq_length=seq, max_predictions_per_seq=preds)
            writer.write(schema.serialize(features))


def write_metadata(folder, files, *, seq=SEQ, preds=PREDS, vocab=VOCAB):
    metadata.write(
        str(folder),
        command="pipeline.create_pretraining_data",
        flags={"max_seq_length": seq, "max_predictions_per_seq": preds},
        inputs=[],
        outputs=[str(f) for f in files],
        counts={},
        extra={"vocab_size": vocab},
    )


def test_batches_have_fixed_shapes_int32_and_the_records_values(tmp_path):
    path = tmp_path / "train-00000-of-00001.tfrecord"
    write_records(path, 10)
    dataset = input_pipeline.make_dataset(
        [str(path)],
        batch_size=4,
        max_seq_length=SEQ,
        max_predictions_per_seq=PREDS,
        is_training=False,
    )
    batches = list(dataset)
    assert len(batches) == 2  # 10 records, full batches of 4 only
    first = batches[0]
    assert first["input_ids"].dtype == tf.int32 and first["input_ids"].shape == (4, SEQ)
    assert first["masked_lm_weights"].dtype == tf.float32
    assert first["masked_lm_positions"].shape == (4, PREDS)
    assert first["next_sentence_labels"].shape == (4, 1)
    record = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(path)))).numpy())
    np.testing.assert_array_equal(
        first["input_ids"][0].numpy(), record.features.feature["input_ids"].int64_list.value
    )


def test_hosts_read_disjoint_files_and_gzip_is_read(tmp_path):
    files = []
    for shard in range(4):
        path = tmp_path / f"train-{shard:05d}-of-00004.tfrecord{'.gz' if shard % 2 else ''}"
        write_records(path, 6, seed=shard, first_id=1000 + 100 * shard)
        files.append(str(path))
    seen = []
    for host in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=host)
        dataset = input_pipeline.make_dataset(
            files,
            batch_size=2,
            max_seq_length=SEQ,
            max_predictions_per_seq=PREDS,
            is_training=False,
            input_context=context,
        )
        seen.append({int(i) for batch in dataset for i in batch["input_ids"][:, 1].numpy()})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {1000 + 100 * s + i for s in range(4) for i in range(6)}


def test_training_dataset_repeats_and_its_order_follows_the_seed(tmp_path):
    path = tmp_path / "train.tfrecord"
    write_records(path, 8, first_id=500)

    def first_ids(seed):
        dataset = input_pipeline.make_dataset(
            [str(path)],
            batch_size=4,
            max_seq_length=SEQ,
            max_predictions_per_seq=PREDS,
            is_training=True,
            shuffle_buffer_size=8,
            seed=seed,
        )
        return [int(i) for batch in dataset.take(6) for i in batch["input_ids"][:, 1].numpy()]

    ids = first_ids(1)
    assert len(ids) == 24 and set(ids) == set(range(500, 508))  # three passes
    assert ids == first_ids(1)
    assert ids != first_ids(2)


def test_metadata_mismatches_stop_before_training_with_the_file_named(tmp_path):
    path = tmp_path / "train.tfrecord"
    write_records(path, 4)
    write_metadata(tmp_path, [path])
    files = input_pipeline.list_files(str(tmp_path / "*"))
    assert files == [str(path)]  # metadata.json is not a record file
    check = dict(max_seq_length=SEQ, max_predictions_per_seq=PREDS, vocab_size=VOCAB)
    input_pipeline.check_inputs(files, **check)

    where = str(tmp_path / "metadata.json")
    with pytest.raises(ValueError, match=rf"{where}: .*max_seq_length=32, .*--max_seq_length=64"):
        input_pipeline.check_inputs(files, **{**check, "max_seq_length": 64})
    with pytest.raises(ValueError, match=r"max_predictions_per_seq=5, but .*=20"):
        input_pipeline.check_inputs(files, **{**check, "max_predictions_per_seq": 20})
    with pytest.raises(
        ValueError, match=r"vocab of 97 entries, but the model's vocab_size is 30522"
    ):
        input_pipeline.check_inputs(files, **{**check, "vocab_size": 30522})


def test_train_and_eval_records_tokenized_differently_are_refused(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncafé\n", encoding="utf-8")
    made = {}
    # Records from before --strip_accents existed (no such flag) follow do_lower_case.
    for name, flags in {
        "old": {"do_lower_case": True},
        "same": {"do_lower_case": True, "strip_accents": None},
        "kept": {"do_lower_case": True, "strip_accents": False},
        "google": None,  # Google's script writes no metadata.json: nothing to compare
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "r.tfrecord"
        write_records(path, 2)
        if flags is not None:
            metadata.write(
                str(folder),
                command="pipeline.create_pretraining_data",
                flags={"max_seq_length": SEQ, **flags},
                inputs=[],
                outputs=[str(path)],
                counts={},
                vocab_file=str(vocab_file),
            )
        made[name] = str(path)
    input_pipeline.check_same_tokenization([made["old"], made["same"], made["google"]])
    with pytest.raises(
        ValueError,
        match=rf"{tmp_path}/kept/metadata.json has strip_accents=False, but "
        rf"{tmp_path}/old/metadata.json has strip_accents=True",
    ):
        input_pipeline.check_same_tokenization([made["old"], made["google"], made["kept"]])
    vocab_file.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncafe\n", encoding="utf-8")
    metadata.write(
        str(tmp_path / "kept"),
        command="pipeline.create_pretraining_data",
        flags={"max_seq_length": SEQ, "do_lower_case": True},
        inputs=[],
        outputs=[made["kept"]],
        counts={},
        vocab_file=str(vocab_file),
    )
    with pytest.raises(ValueError, match=r"kept/metadata.json has vocab_sha256=.*tokenized"):
        input_pipeline.check_same_tokenization([made["old"], made["kept"]])


def test_records_without_metadata_are_checked_themselves(tmp_path):
    path = tmp_path / "google.tfrecord"
    write_records(path, 4)
    check = dict(max_seq_length=SEQ, max_predictions_per_seq=PREDS, vocab_size=VOCAB)
    with pytest.raises(
        ValueError,
        match=r"google\.tfrecord: record 0 has 32 values of 'input_ids', but --max_seq_length=128",
    ):
        input_pipeline.check_inputs([str(path)], **{**check, "max_seq_length": 128})
    with pytest.raises(ValueError, match=r"outside the model's vocab of 50"):
        input_pipeline.check_inputs([str(path)], **{**check, "vocab_size": 50})
    text = tmp_path / "notes.tfrecord"
    text.write_bytes(gzip.compress(b"not records"))
    with pytest.raises(ValueError, match=r"notes\.tfrecord: not a readable TFRecord file"):
        input_pipeline.check_inputs([str(text)], **check)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        input_pipeline.list_files(str(tmp_path / "missing-*.tfrecord"))
