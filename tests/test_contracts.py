"""The ground floor: stable hashes, line reading and path helpers (storage on gs:// is in
test_storage.py)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np
import pytest
from absl import flags as absl_flags

from contracts import batching, config_flags, hashing, lines, storage


def test_stable_hash64_is_a_fixed_function_of_its_parts():
    # The values are part of the outputs' contract: a change re-seeds or re-splits every output.
    assert hashing.stable_hash64("x") == int.from_bytes(
        hashlib.blake2b(b"x", digest_size=8).digest(), "little"
    )
    assert hashing.stable_hash64("segments", 12345, "a.txt:0", 0) == int.from_bytes(
        hashlib.blake2b(b"segments\x1f12345\x1fa.txt:0\x1f0", digest_size=8).digest(), "little"
    )
    assert hashing.stable_hash64(
        "split", "enwiki:12", separator="\x00", algorithm="sha256", byteorder="big"
    ) == int.from_bytes(hashlib.sha256(b"split\x00enwiki:12").digest()[:8], "big")
    assert hashing.stable_hash64("a", 1) != hashing.stable_hash64("a", 2)
    with pytest.raises(ValueError, match="algorithm='md5'"):
        hashing.stable_hash64("x", algorithm="md5")


def test_bucket_of_spreads_keys_evenly_and_stably():
    counts = np.bincount([hashing.bucket_of("k", i, num_buckets=8) for i in range(8000)])
    assert len(counts) == 8 and counts.max() < 1100
    assert hashing.bucket_of("k", 5, num_buckets=8) == hashing.stable_hash64("k", 5) % 8


def test_splitmix64_matches_the_reference_sequence():
    # The reference generator (Vigna's splitmix64.c) seeded with 0 starts with these outputs:
    # state += golden gamma, then the finalizer.
    states = np.arange(1, 4, dtype=np.uint64) * hashing.GOLDEN_GAMMA
    assert [int(v) for v in hashing.splitmix64(states)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


def test_read_lines_repairs_and_reports_invalid_utf8(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"first\r\nbad \xff byte\n\nlast without end")
    assert list(lines.read_lines(str(path), chunk_bytes=4)) == [
        ("first", True),
        ("bad \ufffd byte", False),
        ("", True),
        ("last without end", True),
    ]


def test_read_lines_names_the_file_it_cannot_read(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(OSError, match=f"cannot read text shard {missing}"):
        list(lines.read_lines(str(missing), what="text shard"))


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("a.txt", "."),
        ("out/a.txt", "out"),
        ("out/sub/", "out"),
        ("/a.txt", "/"),
        ("gs://bucket/x/vocab.txt", "gs://bucket/x"),
        ("gs://bucket/x/", "gs://bucket"),
        ("gs://bucket", "gs://bucket"),
    ],
)
def test_dirname_of_local_and_remote_paths(path, folder):
    assert storage.dirname(path) == folder


def test_temporary_path_is_hidden_beside_the_target():
    first, second = (
        storage.temporary_path("gs://b/x/a.txt"),
        storage.temporary_path("gs://b/x/a.txt"),
    )
    assert first.startswith("gs://b/x/.a.txt.tmp-") and first != second


@dataclasses.dataclass(frozen=True)
class _ExampleConfig:
    input: str  # where to read
    count: int = 3  # how many
    # how much of it, as a share
    share: float = 0.5
    verbose: bool = False  # say more
    name: str | None = None  # who
    extra: tuple[str, ...] = ()  # more flags
    mode: str = dataclasses.field(default="fast", metadata={"enum": ("fast", "slow")})  # speed
    derived: int = dataclasses.field(default=0, metadata={"flag": False})


def test_flags_come_from_the_config_fields_with_their_defaults_and_comments():
    values = absl_flags.FlagValues()
    config_flags.define_flags(_ExampleConfig, flag_values=values)
    assert values["count"].default == 3 and values["count"].help == "how many"
    assert values["share"].help == "how much of it, as a share"
    assert values["mode"].help == "<fast|slow>: speed" and "derived" not in values
    with pytest.raises(absl_flags.IllegalFlagValueError):
        values(["prog"])  # --input has no default: required
    values(["prog", "--input=x", "--verbose", "--extra=--a=1 --b='c d'", "--mode=slow"])
    config = config_flags.config_from_flags(_ExampleConfig, flag_values=values, derived=7)
    assert config == _ExampleConfig(
        input="x", verbose=True, extra=("--a=1", "--b=c d"), mode="slow", derived=7
    )


def test_a_field_without_a_comment_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        count: int = 3

    with pytest.raises(ValueError, match="Undocumented.count: no comment"):
        config_flags.define_flags(Undocumented, flag_values=absl_flags.FlagValues())


def test_batch_split_rule_of_the_trainer_and_the_launchers():
    check = functools.partial(batching.batch_split_error, replicas=32, eval_batch_size=None)
    assert check(train_batch_size=256, do_eval=False) is None
    assert "use a multiple of 32" in check(train_batch_size=100, do_eval=False)
    # The default eval batch (8) does not split over 32: an error only when the run evaluates.
    assert check(train_batch_size=256, do_eval=True).startswith("eval_batch_size 8 ")
    assert batching.batch_split_error(
        train_batch_size=60,
        eval_batch_size=3,
        do_eval=False,
        replicas=2,
        gradient_accumulation_steps=4,
    ) == (
        "train_batch_size 60 does not split into 2 replica(s) x 4 micro-batches: use a "
        "multiple of 8"
    )
