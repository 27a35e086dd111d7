"""pipeline.stage: the one shape of every Beam stage (run, metadata last, clean-up, flags)."""

from __future__ import annotations

import dataclasses
import operator

import apache_beam as beam
import pytest
from absl import flags

from contracts import config_flags, metadata, storage
from pipeline import (
    beam_options,
    build_vocab,
    create_pretraining_data,
    extract_text,
    progress,
    stage,
)

STAGES = (extract_text.STAGE, build_vocab.STAGE, create_pretraining_data.STAGE)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    output_dir: str  # where the toy writes
    fail: bool = False  # fail after the temporary file is written


def _write(value, *, config):
    path = storage.join(config.output_dir, "out.txt")
    with open(storage.temporary_path(path), "w") as scratch:  # what a crash leaves behind
        scratch.write("partial")
    if config.fail:
        raise ValueError("the toy failed")
    storage.atomic_write(path, str(value))
    return stage.StageResult(outputs=[path], counts={"values": 1}, extra={})


def _build(pipeline, config):
    storage.makedirs(config.output_dir)
    return (
        pipeline
        | beam.Create([42])
        | beam.Map(_write, config=config)
        | stage.WriteMetadata(command="toy", config=config, output_dir=config.output_dir, inputs=[])
    )


TOY = stage.Stage("toy", ToyConfig, _build, operator.attrgetter("output_dir"))


def test_a_run_writes_metadata_last_and_a_failed_run_leaves_no_temporaries(tmp_path):
    done = ToyConfig(output_dir=str(tmp_path / "ok"))
    counters = stage.run(TOY, done)
    record = metadata.read(done.output_dir)
    assert record["counts"] == {"values": 1} and record["flags"] == dataclasses.asdict(done)
    assert record["outputs"][0]["path"] == "out.txt" and counters == {}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kept.txt").write_text("an earlier output")
    (tmp_path / "bad" / ".tmp-train-1234").mkdir()  # a scratch folder
    with pytest.raises(ValueError, match="the toy failed"):
        stage.run(TOY, ToyConfig(output_dir=str(tmp_path / "bad"), fail=True))
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["kept.txt"]


def test_remove_temporaries_takes_only_our_temporary_names(tmp_path):
    for name in (".out.txt.tmp-0a1b", ".tmp-eval-ffff", ".hidden", "train-0.txt", "x.tmp-1"):
        (tmp_path / name).write_text("x")
    removed = stage.remove_temporaries(str(tmp_path))
    assert sorted(storage.basename(p) for p in removed) == [".out.txt.tmp-0a1b", ".tmp-eval-ffff"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "train-0.txt", "x.tmp-1"]


@pytest.mark.parametrize("stage_def", STAGES, ids=lambda s: s.command)
def test_every_stage_has_the_shape_and_its_flags_come_from_its_config(stage_def):
    values = flags.FlagValues()
    config_flags.define_flags(stage_def.config_class, flag_values=values)
    fields = {f.name for f in config_flags.flag_fields(stage_def.config_class)}
    assert set(values) == fields
    for field in dataclasses.fields(stage_def.config_class):
        if field.default is not dataclasses.MISSING and field.name in values:
            assert values[field.name].default == field.default, field.name
    assert stage_def.config_class.__dataclass_params__.frozen


def test_progress_lines_say_what_was_read_how_fast_and_the_time_left(caplog):
    line = progress.Progress("stage", "pages", total_bytes=4_000_000).describe(
        1200, 1_000_000, seconds=10
    )
    assert line == (
        "stage: 1,200 pages (120/s); 1.0 MB of 4.0 MB of input (25%, 100.0 kB/s); ~30 s left"
    )
    # Each of two worker processes sees half the input: the whole is estimated from its share.
    two = progress.Progress("stage", "pages", total_bytes=4_000_000, workers=2)
    assert two.describe(1200, 1_000_000, seconds=10).endswith(
        "this worker of 2: 1.0 MB of 4.0 MB of input (50%, 100.0 kB/s); ~10 s left"
    )
    assert progress.Progress("s", "lines").describe(5, 0, seconds=1) == "s: 5 lines (5/s)"
    # Lines come at most every `every_seconds`, counted over every DoFn instance of a process.
    progress.reset()
    with caplog.at_level("INFO"):
        first = progress.Progress("stage", "pages", total_bytes=100, every_seconds=0.0)
        first.advance(items=3, bytes_done=10)
        progress.Progress("stage", "pages", total_bytes=100, every_seconds=0.0).advance(items=2)
        progress.Progress("stage", "pages", every_seconds=3600).advance(items=1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage:")]
    assert [line.split(" (")[0] for line in lines] == ["stage: 3 pages", "stage: 5 pages"]


def test_progress_is_off_with_noprogress_and_on_dataflow(tmp_path, caplog):
    assert beam_options.is_dataflow(["--runner=DataflowRunner", "--project=p"])
    assert not beam_options.is_dataflow(["--direct_num_workers=2"])
    progress.configure(enabled=False)
    try:
        quiet = progress.Progress("quiet", "pages", every_seconds=0.0)
    finally:
        progress.configure(enabled=True)
    with caplog.at_level("INFO"):
        quiet.advance(items=1)
        stage.run(TOY, ToyConfig(output_dir=str(tmp_path / "ok")), show_progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("quiet:") for m in messages)
    # The end of a run: its outputs and wall time.
    assert any(
        m.startswith(f"toy: wrote 1 output file(s), 0.0 kB, and metadata.json to {tmp_path}/ok in ")
        for m in messages
    ), messages
    assert progress.Progress("after", "pages").enabled  # stage.run turns it back on


def test_local_workers_get_about_four_read_ranges_each():
    mib = 1 << 20
    # One worker, or a dump already cut in enough ranges: the configured size.
    assert beam_options.local_range_bytes(16 * mib, 40 * mib, workers=1) == 16 * mib
    assert beam_options.local_range_bytes(16 * mib, 1000 * mib, workers=2) == 16 * mib
    # A 40 MiB dump and two workers: 5 MiB ranges (eight of them), never under 1 MiB.
    assert beam_options.local_range_bytes(16 * mib, 40 * mib, workers=2) == 5 * mib
    assert beam_options.local_range_bytes(16 * mib, 3 * mib, workers=2) == mib
