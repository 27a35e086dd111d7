"""`metadata.json`, written beside every output set, last: a folder that has it is complete.

What it holds (docs/design.md): the command and its flags, the input paths with their sizes, the vocab
file's sha256, counts, the package versions, and a sha256 per output shard. The trainer reads it
to check the record shapes and the vocab size before its first step.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from typing import Any

from contracts import storage

FILENAME = "metadata.json"
_PACKAGES = (
    "bert-pretraining-stack",
    "tensorflow",
    "tensorflow-text",
    "apache-beam",
    "wikiextractor",
    "sentencepiece",
    "numpy",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the outputs."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def describe_files(paths: Sequence[str], *, with_sha256: bool = False) -> list[dict[str, Any]]:
    """One `{"path", "bytes"[, "sha256"]}` entry per file."""
    entries = []
    for path in paths:
        entry: dict[str, Any] = {"path": path, "bytes": storage.size(path)}
        if with_sha256:
            entry["sha256"] = storage.sha256(path)
        entries.append(entry)
    return entries


def write(
    output_dir: str,
    *,
    command: str,
    flags: Mapping[str, Any],
    inputs: Sequence[str],
    outputs: Sequence[str],
    counts: Mapping[str, int | float],
    vocab_file: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes `<output_dir>/metadata.json` atomically and returns what it wrote.

    Call it only after every output shard is closed: its presence marks the set complete.

    Args:
      output_dir: the folder of the output set (local or gs://).
      command: the module that made the outputs, e.g. "pipeline.extract_text".
      flags: the command's flags, JSON-serialisable.
      inputs: the input files read.
      outputs: the output shards written; each gets its size and sha256.
      counts: named counts (documents, sentences, instances, ...).
      vocab_file: the vocab used, if any; its path and sha256 are recorded.
      extra: anything else worth keeping (statistics, config).
    """
    record: dict[str, Any] = {
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "flags": dict(flags),
        "inputs": describe_files(inputs),
        "counts": dict(counts),
        "outputs": [
            {**entry, "path": storage.basename(entry["path"])}
            for entry in describe_files(outputs, with_sha256=True)
        ],
        "versions": package_versions(),
    }
    if vocab_file:
        record["vocab"] = {"path": vocab_file, "sha256": storage.sha256(vocab_file)}
    if extra:
        record.update(extra)
    storage.atomic_write(
        storage.join(output_dir, FILENAME), json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
    return record


def read(output_dir: str) -> dict[str, Any] | None:
    """Reads `<output_dir>/metadata.json`; None when the folder has none."""
    path = storage.join(output_dir, FILENAME)
    if not storage.exists(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def tokenization(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """How an output set's text was tokenized, from its metadata record: the vocab's sha256,
    do_lower_case and strip_accents (its None resolved: as do_lower_case, Google's rule, which
    also holds for sets made before the flag existed). None for a set made without a vocab."""
    flags = record.get("flags", {})
    if "do_lower_case" not in flags or "vocab" not in record:
        return None
    do_lower_case = bool(flags["do_lower_case"])
    strip_accents = flags.get("strip_accents")
    return {
        "vocab_sha256": record["vocab"].get("sha256"),
        "do_lower_case": do_lower_case,
        "strip_accents": do_lower_case if strip_accents is None else bool(strip_accents),
    }


def data_files(paths: Sequence[str], *, patterns: str | Sequence[str]) -> list[str]:
    """`paths` without the metadata.json files a glob such as `shards/wiki/*` also matches: they
    describe an output set, they are not part of its data.

    Raises:
      FileNotFoundError: nothing but metadata.json matched `patterns`.
    """
    files = [path for path in paths if storage.basename(path) != FILENAME]
    if paths and not files:
        raise FileNotFoundError(f"{patterns!r} matches only {FILENAME}, no data file")
    return files
