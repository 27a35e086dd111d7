"""contracts.storage on local paths and gs://, and every GCS client against the local server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from contracts import storage


@pytest.fixture(params=["local", "gcs"])
def folder(request, tmp_path):
    """The same storage tests run on a local folder and on the local GCS server."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("gcs_dir")


def test_expand_globs_sorts_merges_and_deduplicates(folder):
    for name in ("b-1.txt", "a-2.txt", "a-1.txt", "c.dat"):
        storage.atomic_write(storage.join(folder, name), name)
    paths = storage.expand_globs(
        f"{storage.join(folder, 'a-*.txt')}, {storage.join(folder, '*-1.txt')}"
    )
    assert [storage.basename(p) for p in paths] == ["a-1.txt", "a-2.txt", "b-1.txt"]


def test_expand_globs_names_the_pattern_that_matches_nothing(folder):
    storage.atomic_write(storage.join(folder, "a.txt"), "x")
    missing = storage.join(folder, "nothing-*.txt")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        storage.expand_globs([storage.join(folder, "a.txt"), missing])
    with pytest.raises(ValueError, match="no input"):
        storage.expand_globs(" , ")


def test_atomic_write_leaves_only_the_target(folder):
    target = storage.join(folder, "sub", "out.txt")
    storage.atomic_write(target, "héllo\n")
    assert storage.read_text(target) == "héllo\n"
    assert storage.listdir(storage.join(folder, "sub")) == ["out.txt"]
    assert storage.sha256(target) == hashlib.sha256("héllo\n".encode()).hexdigest()
    assert storage.size(target) == len("héllo\n".encode())


def test_atomic_write_of_nothing_still_creates_the_file(folder):
    # tf.io.gfile creates no file until the first write; an empty shard must still exist.
    target = storage.join(folder, "empty.txt")
    storage.atomic_write(target, b"")
    assert storage.exists(target)
    assert storage.size(target) == 0


def test_atomic_open_on_error_leaves_nothing(folder):
    target = storage.join(folder, "out.bin")
    with pytest.raises(RuntimeError), storage.atomic_open(target) as f:
        f.write(b"partial")
        raise RuntimeError("worker died")
    assert not storage.exists(target)
    assert storage.listdir(folder) == []


def test_tensorflow_records_and_checkpoints_on_gcs(gcs_dir):
    path = f"{gcs_dir}/records/a.tfrecord"
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            writer.write(f"record {i}".encode())
    read = [r.numpy().decode() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{gcs_dir}/*/*"))]
    assert read == ["record 0", "record 1", "record 2"]

    variable = tf.Variable(np.arange(4, dtype=np.float32))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=variable), f"{gcs_dir}/ckpt", max_to_keep=2
    )
    saved = manager.save(checkpoint_number=7)
    variable.assign(tf.zeros(4))
    tf.train.Checkpoint(v=variable).restore(saved).assert_consumed()
    assert variable.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert tf.train.latest_checkpoint(f"{gcs_dir}/ckpt").endswith("ckpt-7")


def test_python_clients_see_what_tensorflow_wrote(gcs_dir, gcs_bucket):
    import gcsfs
    from google.cloud import storage as cloud_storage

    storage.atomic_write(f"{gcs_dir}/from-tf.txt", "written by tf.io.gfile")
    prefix = gcs_dir[len(f"gs://{gcs_bucket}/") :]

    filesystem = gcsfs.GCSFileSystem()
    assert filesystem.cat(f"{gcs_bucket}/{prefix}/from-tf.txt") == b"written by tf.io.gfile"
    filesystem.pipe(f"{gcs_bucket}/{prefix}/from-gcsfs.txt", b"written by gcsfs")

    client = cloud_storage.Client()
    blob = client.bucket(gcs_bucket).blob(f"{prefix}/from-gcsfs.txt")
    assert blob.download_as_bytes() == b"written by gcsfs"
    client.bucket(gcs_bucket).blob(f"{prefix}/from-client.txt").upload_from_string(b"client")

    assert storage.read_text(f"{gcs_dir}/from-client.txt") == "client"


def test_beam_filesystem_and_pipeline_on_gcs(gcs_dir):
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(f"{gcs_dir}/beam/a.txt") as f:
        f.write(b"beam")
    # rename = copy + delete through the JSON batch endpoint, which the proxy splits.
    FileSystems.rename([f"{gcs_dir}/beam/a.txt"], [f"{gcs_dir}/beam/b.txt"])
    assert storage.read_text(f"{gcs_dir}/beam/b.txt") == "beam"
    assert not storage.exists(f"{gcs_dir}/beam/a.txt")

    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create(["x", "y", "z"])
            | beam.io.WriteToText(f"{gcs_dir}/out/part", num_shards=2)
        )
    written = storage.expand_globs(f"{gcs_dir}/out/part-*")
    lines = sorted(line for p in written for line in storage.read_text(p).split())
    assert len(written) == 2
    assert lines == ["x", "y", "z"]
