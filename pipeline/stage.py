"""One shape for every Beam stage: a config, a pipeline, metadata.json last, one way to run.

A stage module (extract_text, build_vocab, create_pretraining_data) holds its domain steps and
declares itself with a `Stage`:

- `config_class`: a frozen dataclass with every setting of one run, paths included, each
  default commented once; the command-line flags are derived from it
  (`contracts.config_flags`), so a default is written in one place;
- `build_pipeline(pipeline, config)`: adds the whole job to a pipeline (tests pass a
  TestPipeline) and returns the PCollection of its metadata record, which the stage makes with
  `WriteMetadata`, the one transform that writes metadata.json, after every output is in place;
- `output_dir(config)`: the folder of its output set.

`run` runs one, `run_as_program` is a stage's `__main__`. They give every stage the same
start-up line, the same counter summary at the end, the same handling of an expected error (one
line, exit status 1: `contracts.command_line`) and the same clean-up of a failed run: the
temporary files and scratch folders it left (our temporary names, `.<name>.tmp-<hex>` and
`.tmp-<…>`, `contracts.storage.temporary_path`) are removed, finished outputs of earlier runs
are left alone, and no metadata.json claims the folder complete.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from absl import flags

from contracts import command_line, config_flags, metadata, storage
from pipeline import beam_options, progress

_TEMPORARY_NAME = re.compile(r"^\.(?:.+\.)?tmp-")


class StageResult(NamedTuple):
    """What a stage made, for its metadata.json.

    Attributes:
      outputs: output files whose size and sha256 metadata.json records (read back).
      counts: named counts (documents, instances, ...).
      extra: more top-level entries (statistics, per-shard details; an "outputs" entry here
        replaces the one built from `outputs`, for shards hashed while written).
    """

    outputs: list[str]
    counts: dict[str, int | float]
    extra: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Stage:
    """A Beam stage: its command, its config and how to build its pipeline (module docstring)."""

    command: str  # "pipeline.extract_text"
    config_class: type
    build_pipeline: Callable[[beam.Pipeline, Any], beam.PCollection]
    output_dir: Callable[[Any], str]


def _write_metadata(
    result, *, command, config, output_dir, inputs, vocab_file
):  # untyped: Beam logs every string annotation of a mapped function
    record = metadata.write(
        output_dir,
        command=command,
        flags=dataclasses.asdict(config),
        inputs=list(inputs),
        outputs=list(result.outputs),
        counts=dict(result.counts),
        vocab_file=vocab_file,
        extra=dict(result.extra),
    )
    logging.info("wrote %s", storage.join(output_dir, metadata.FILENAME))
    return record


class WriteMetadata(beam.PTransform):
    """One `StageResult` in, metadata.json written beside the outputs (last), its record out.

    Apply it to a PCollection that exists only once every output is written (e.g. a Map over
    side inputs of all the shards), so that its presence marks the set complete.
    """

    def __init__(
        self,
        *,
        command: str,
        config: Any,
        output_dir: str,
        inputs: Sequence[str],
        vocab_file: str | None = None,
    ):
        super().__init__()
        self._kwargs = dict(
            command=command,
            config=config,
            output_dir=output_dir,
            inputs=list(inputs),
            vocab_file=vocab_file,
        )

    def expand(self, results: beam.PCollection) -> beam.PCollection:
        return results | "Write" >> beam.Map(_write_metadata, **self._kwargs)


def remove_temporaries(folder: str) -> list[str]:
    """Removes the temporary files and scratch folders a run left in `folder`; returns them."""
    removed = []
    for name in storage.listdir(folder):
        if _TEMPORARY_NAME.match(name):
            path = storage.join(folder, name)
            if storage.isdir(path):
                storage.rmtree(path)
            else:
                storage.remove(path)
            removed.append(path)
    return removed


def run(
    stage: Stage, config: Any, beam_args: Sequence[str] = (), *, show_progress: bool = True
) -> dict[str, int]:
    """Runs `stage` with `config` on the runner `beam_args` choose; returns its counters.

    `show_progress`: progress lines while it reads (pipeline/progress.py), on local runners
    only. At the end: the counters by name, the outputs written and the wall time. A run that
    fails leaves no temporary file or scratch folder behind, and its error goes on.
    """
    logging.info("%s: %s", stage.command, config)
    started = time.monotonic()
    progress.reset()
    progress.configure(enabled=show_progress and not beam_options.is_dataflow(beam_args))
    try:
        result = beam_options.run(stage.build_pipeline, beam_args, config=config)
    except BaseException:
        for path in remove_temporaries(stage.output_dir(config)):
            logging.info("removed %s, left by the failed run", path)
        raise
    finally:
        progress.configure(enabled=True)
    totals = beam_options.counters(result)
    beam_options.log_counters(stage.command, totals)
    output_dir = stage.output_dir(config)
    written = (metadata.read(output_dir) or {}).get("outputs", [])
    logging.info(
        "%s: wrote %d output file(s), %s, and metadata.json to %s in %.1f s",
        stage.command,
        len(written),
        progress.human_size(sum(entry.get("bytes", 0) for entry in written)),
        output_dir,
        time.monotonic() - started,
    )
    return totals


def define_flags(stage: Stage, *, defaults: Mapping[str, Any] | None = None) -> None:
    """The stage's flags, from its config's fields (`contracts.config_flags`), and
    --[no]progress."""
    config_flags.define_flags(stage.config_class, defaults=dict(defaults or {}))
    flags.DEFINE_bool(
        "progress",
        True,
        "A progress line every few seconds while reading (local runners; Dataflow's console "
        "shows the counters instead).",
    )


def run_as_program(stage: Stage) -> None:
    """A stage's `__main__`: flags from its config, Beam options passed through to Beam."""

    def main(argv: Sequence[str]) -> None:
        run(
            stage,
            config_flags.config_from_flags(stage.config_class),
            argv[1:],
            show_progress=flags.FLAGS.progress,
        )

    define_flags(stage)
    command_line.run(main, program=stage.command, flags_parser=beam_options.parse_flags)
