"""tf.data over the pretraining TFRecords (contracts/schema.py), sharded per host.

Training: files sharded by host (`tf.distribute.InputContext`), shuffled, read interleaved,
repeated, records shuffled, batched per replica with fixed shapes, parsed in batches, int64
cast to int32 (TPUs have no int64 matmul/gather path; int32 halves the host-to-device bytes),
prefetched. Evaluation: the same without shuffle and repeat.

Before the first step, `check_inputs` compares the records with the run's settings: the
`metadata.json` that create_pretraining_data writes beside them (max_seq_length,
max_predictions_per_seq, vocab_size), and the first records themselves (feature lengths, ids
below vocab_size), so a mismatch stops the run with a message naming the file, not with a shape
error deep inside the compiled step or silently wrong embeddings lookups on a TPU; and
`check_same_tokenization` stops a run whose train and eval records (or several train folders)
were made with different vocabs, lower-casing or accent stripping.
"""

from __future__ import annotations

import collections
import re

import numpy as np
import tensorflow as tf
from absl import logging

from contracts import batching, metadata, schema, storage

# Records read from the first file to check shapes and ids before training.
_RECORDS_CHECKED = 64


def list_files(patterns: str) -> list[str]:
    """The TFRecord files matched by comma-separated globs (local or gs://), sorted.

    Raises:
      FileNotFoundError: a pattern matches nothing (the message names it).
    """
    files = metadata.data_files(storage.expand_globs(patterns), patterns=patterns)
    if not files:
        raise FileNotFoundError(f"no TFRecord file matches {patterns!r}")
    return files


def _compression(path: str) -> str:
    return "GZIP" if path.endswith(".gz") else ""


def find_damaged_record(files: list[str]) -> tuple[str, int, str] | None:
    """The first record that TensorFlow's reader refuses, as (file, byte offset, its message).

    Run after a DataLossError: the error raised inside the compiled loop names no file. Each
    file is read with the same reader as training (CRCs checked), up to the damage.

    Returns:
      None when every file reads clean (the damage was transient, e.g. a network read).
    """
    for path in files:
        compressed = _compression(path) == "GZIP"
        offset = 0
        try:
            for record in tf.data.TFRecordDataset(path, compression_type=_compression(path)):
                offset += len(record.numpy()) + 16  # length, its CRC, data, its CRC
        except tf.errors.DataLossError as error:
            where = f"after {offset} bytes of records" if compressed else f"at byte {offset}"
            return path, offset, f"{where}: {_reason(error)}"
        # TensorFlow's reader takes a file cut inside a record's 12-byte header for a clean end.
        if not compressed and offset != storage.size(path):
            return path, offset, f"at byte {offset}: {storage.size(path) - offset} stray bytes"
    return None


def _reason(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its function-node prefix and op suffix."""
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:[^\]]*\]?$", "", message).replace("' failed with", ":").strip()


class DamagedRecordsError(ValueError):
    """An input TFRecord file is truncated or corrupt; the message says which and what to do."""


def damaged_records_error(
    files: list[str], *, error: tf.errors.DataLossError, step: int, checkpoint: str | None
) -> DamagedRecordsError:
    """The error to stop a run with when reading `files` raised `error` at `step`."""
    found = find_damaged_record(files)
    what = (
        f"{found[0]}: a truncated or corrupt TFRecord {found[2]}"
        if found
        else f"a read of the input records failed ({_reason(error)})"
    )
    kept = f"the last checkpoint, {checkpoint}, is kept" if checkpoint else "no checkpoint yet"
    return DamagedRecordsError(
        f"{what}; training stopped at step {step} and {kept} (a rerun resumes from it). "
        "Rebuild the file with python -m pipeline.create_pretraining_data (same flags), or "
        "leave it out of --input_file; its folder's metadata.json has each shard's sha256 to "
        "check the others against"
    )


def check_inputs(
    files: list[str],
    *,
    max_seq_length: int,
    max_predictions_per_seq: int,
    vocab_size: int,
) -> None:
    """Checks records against the run's shapes and vocab size before training.

    Reads each folder's metadata.json (when there is one: Google's script writes none) and the
    first records of the first file.

    Raises:
      ValueError: a mismatch; the message names the file, the value found and the setting.
    """
    folders = collections.OrderedDict((storage.dirname(f), None) for f in files)
    for folder in folders:
        record = metadata.read(folder)
        if record is None:
            continue
        where = storage.join(folder, metadata.FILENAME)
        flags = record.get("flags", {})
        expected = {
            "max_seq_length": (flags.get("max_seq_length"), max_seq_length),
            "max_predictions_per_seq": (
                flags.get("max_predictions_per_seq"),
                max_predictions_per_seq,
            ),
        }
        for name, (found, wanted) in expected.items():
            if found is not None and int(found) != wanted:
                raise ValueError(
                    f"{where}: the records were made with {name}={found}, "
                    f"but the trainer runs with --{name}={wanted}"
                )
        found_vocab = record.get("vocab_size")
        if found_vocab is not None and int(found_vocab) != vocab_size:
            raise ValueError(
                f"{where}: the records were made with a vocab of {found_vocab} entries, "
                f"but the model's vocab_size is {vocab_size} (check --bert_config_file / "
                "--vocab_size)"
            )
    _check_first_records(
        files[0],
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        vocab_size=vocab_size,
    )


def check_same_tokenization(files: list[str]) -> None:
    """Checks that every folder of records (train and eval) was tokenized alike: the same vocab
    (by sha256), do_lower_case and strip_accents, as their metadata.json files record them.
    Folders without one (Google's script writes none) are not compared.

    Raises:
      ValueError: two folders differ; the message names both metadata.json files and what
        differs.
    """
    first: tuple[str, dict] | None = None
    for folder in dict.fromkeys(storage.dirname(f) for f in files):
        record = metadata.read(folder)
        found = metadata.tokenization(record) if record else None
        if found is None:
            continue
        where = storage.join(folder, metadata.FILENAME)
        if first is None:
            first = (where, found)
            continue
        for name, value in found.items():
            if value != first[1][name]:
                raise ValueError(
                    f"{where} has {name}={value}, but {first[0]} has {name}={first[1][name]}: "
                    "the records were tokenized differently, so the same ids do not mean the "
                    "same text; remake one set with the other's vocab and flags"
                )


def _check_first_records(
    path: str, *, max_seq_length: int, max_predictions_per_seq: int, vocab_size: int
) -> None:
    lengths = schema.feature_lengths(
        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq
    )
    dataset = tf.data.TFRecordDataset(path, compression_type=_compression(path))
    try:
        for index, serialized in enumerate(dataset.take(_RECORDS_CHECKED)):
            example = tf.train.Example.FromString(serialized.numpy())
            features = example.features.feature
            for name, length in lengths.items():
                if name not in features:
                    raise ValueError(
                        f"{path}: record {index} has no feature {name!r}; is this a BERT "
                        "pretraining TFRecord file (contracts/schema.py)?"
                    )
                values = features[name]
                found = len(values.float_list.value) or len(values.int64_list.value)
                if found != length:
                    flag = (
                        "max_seq_length"
                        if name in schema.SEQUENCE_FEATURES
                        else "max_predictions_per_seq"
                    )
                    raise ValueError(
                        f"{path}: record {index} has {found} values of {name!r}, but "
                        f"--{flag}={lengths[name]} needs {length}; the records were made "
                        f"with another {flag}"
                    )
            for name in ("input_ids", "masked_lm_ids"):
                ids = np.asarray(features[name].int64_list.value)
                if ids.size and (ids.max() >= vocab_size or ids.min() < 0):
                    raise ValueError(
                        f"{path}: record {index} has {name} value {ids.max()} outside the "
                        f"model's vocab of {vocab_size}; the records were made with another "
                        "vocab"
                    )
    except tf.errors.DataLossError as error:
        raise ValueError(f"{path}: not a readable TFRecord file ({error.message})") from error


def _parse_batch(serialized: tf.Tensor, *, spec: dict) -> dict[str, tf.Tensor]:
    """[batch] serialized records -> dict of [batch, length] int32 / float32 tensors."""
    parsed = tf.io.parse_example(serialized, spec)
    return {
        name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
        for name, value in parsed.items()
    }


def make_dataset(
    files: list[str],
    *,
    batch_size: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    is_training: bool,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
    cycle_length: int = 8,
) -> tf.data.Dataset:
    """The dataset of one input pipeline (one host).

    Args:
      files: TFRecord paths (`.gz` ones are read as GZIP).
      batch_size: examples per batch (per replica under a strategy).
      max_seq_length, max_predictions_per_seq: the record shapes.
      is_training: shuffle and repeat forever; otherwise one ordered pass.
      input_context: this host's place among the input pipelines; files (or, with fewer files
        than hosts, records) are split so that each host reads a disjoint part.
      shuffle_buffer_size: records in the shuffle buffer (training).
      seed: seeds the file and record shuffles, so a run is repeatable.
      cycle_length: files read at once.

    Returns:
      Batches of {"input_ids", "input_mask", "segment_ids": int32 [batch, max_seq_length],
      "masked_lm_positions", "masked_lm_ids": int32 [batch, max_predictions_per_seq],
      "masked_lm_weights": float32 [batch, max_predictions_per_seq],
      "next_sentence_labels": int32 [batch, 1]}, every batch full (fixed shapes).
    """
    spec = schema.feature_spec(
        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq
    )
    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            dataset = dataset.shard(
                input_context.num_input_pipelines, input_context.input_pipeline_id
            )
        else:
            shard_records = True  # Fewer files than hosts: every host reads all, keeps 1/n.
    if is_training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()

    def read(path):
        compression = tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")
        return tf.data.TFRecordDataset(path, compression_type=compression)

    dataset = dataset.interleave(
        read,
        cycle_length=min(cycle_length, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        # Ordered, so that the same seed gives the same batches for any replica count.
        deterministic=True,
    )
    if shard_records:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if is_training and shuffle_buffer_size > 1:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(
        lambda serialized: _parse_batch(serialized, spec=spec),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    # Sharded above, by hand; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def distributed_dataset(
    strategy: tf.distribute.Strategy,
    files: list[str],
    *,
    global_batch_size: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    is_training: bool,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
):
    """`make_dataset` on every host through `distribute_datasets_from_function`: each replica
    gets global_batch_size / num_replicas examples per step.

    Raises:
      ValueError: the global batch does not split evenly over the replicas.
    """
    problem = batching.batch_split_error(
        train_batch_size=global_batch_size,
        eval_batch_size=None,
        do_eval=False,
        replicas=strategy.num_replicas_in_sync,
    )
    if problem:
        raise ValueError(problem)

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = input_context.get_per_replica_batch_size(global_batch_size)
        logging.info(
            "input pipeline %d of %d: %d files, %d examples per replica batch",
            input_context.input_pipeline_id,
            input_context.num_input_pipelines,
            len(files),
            per_replica,
        )
        return make_dataset(
            files,
            batch_size=per_replica,
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            is_training=is_training,
            input_context=input_context,
            shuffle_buffer_size=shuffle_buffer_size,
            seed=seed,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)
