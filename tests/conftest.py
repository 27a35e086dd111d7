"""Shared test fixtures: paths of the bundled data, and a local Cloud Storage server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# Before anything imports gcsfs: otherwise each of its calls waits on a 60 s timeout probing
# for hierarchical-namespace buckets that a local server does not have.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA_DIR = Path(__file__).parent / "data"
GCS_BUCKET = "bert-stack-tests"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """`tests/data`: the bundled real fixtures (see its README)."""
    return DATA_DIR


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
