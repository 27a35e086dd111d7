"""The thin edge between our absl entry points and Beam's pipeline options.

Each job's `main()` defines its own absl flags; every argument absl does not know
(`--runner=DataflowRunner --project=… --region=… --temp_location=gs://…`, `--direct_num_workers`)
passes through unchanged to Beam, as docs/design.md promises.

Why not Beam's default runner: in Beam 2.6x+ `DirectRunner` hands pipelines it deems supported
to the Prism runner, which first downloads a Go binary from GitHub: that fails or hangs on a
machine without internet (CI, air-gapped clusters). Our default is the portable in-process
`FnApiRunner`, which honours `--direct_num_workers` and `--direct_running_mode`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from absl import flags
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

DEFAULT_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`flags_parser` for `absl.app.run`: parses our flags, returns the rest (argv[0] first)."""
    return flags.FLAGS(list(argv), known_only=True)


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the arguments absl left over, with our defaults filled in.

    - no `--runner`: the in-process FnApiRunner (see the module docstring);
    - `--runner=DataflowRunner` and no `--setup_file`/`--sdk_container_image`: this project's
      `setup.py`, so the workers get the same package.
    """
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    runner_name = str(standard.runner)
    if "Dataflow" in runner_name:
        setup = options.view_as(SetupOptions)
        worker_options = options.get_all_options()
        if not setup.setup_file and not worker_options.get("sdk_container_image"):
            setup.setup_file = os.path.join(_PROJECT_ROOT, "setup.py")
    direct = options.view_as(DirectOptions)
    if (
        direct.direct_num_workers
        and direct.direct_num_workers > 1
        and not _explicit_mode(beam_args)
    ):
        # Several in-process workers share the GIL; separate processes really run in parallel.
        direct.direct_running_mode = "multi_processing"
    return options


def is_dataflow(beam_args: Sequence[str]) -> bool:
    """Whether the options run the job on Dataflow."""
    return _names_dataflow(PipelineOptions(list(beam_args)))


def runs_on_dataflow(pipeline: beam.Pipeline) -> bool:
    """Whether `pipeline` is set to run on Dataflow."""
    return _names_dataflow(pipeline.options)


def _names_dataflow(options: PipelineOptions) -> bool:
    return "Dataflow" in str(options.view_as(StandardOptions).runner)


def local_workers(pipeline: beam.Pipeline) -> int:
    """The local runner's worker count (--direct_num_workers; 1 when unset)."""
    return max(1, pipeline.options.view_as(DirectOptions).direct_num_workers or 1)


def local_range_bytes(range_bytes: int, total_bytes: int, *, workers: int) -> int:
    """The read range size for `workers` local processes: at most `range_bytes`, and small
    enough for about four ranges per worker (at least 1 MiB each), so that a dump of a few
    ranges does not leave workers idle. Ranges do not change the output: documents are placed
    by their ids."""
    if workers > 1:
        range_bytes = min(range_bytes, max(1 << 20, total_bytes // (4 * workers)))
    return max(1, range_bytes)


def _explicit_mode(beam_args: Sequence[str]) -> bool:
    return any(arg.startswith("--direct_running_mode") for arg in beam_args)


def run(
    build: Callable[..., Any],
    beam_args: Sequence[str],
    **build_kwargs: Any,
) -> beam.runners.runner.PipelineResult:
    """Builds the pipeline with `build(pipeline, **build_kwargs)`, runs it and waits.

    Returns:
      The finished pipeline's result (for its counters).
    """
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, **build_kwargs)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """Committed counter values of a finished pipeline, by counter name (summed over steps)."""
    totals: dict[str, int] = {}
    query = result.metrics().query()
    for counter in query["counters"]:
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def log_counters(job: str, totals: dict[str, int]) -> None:
    """Logs one line per counter, sorted by name."""
    logging.info("%s finished:", job)
    for name in sorted(totals):
        logging.info("  %-40s %12d", name, totals[name])
