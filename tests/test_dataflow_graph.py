"""Each stage's Dataflow job graph, built offline with the launcher's own Beam options.

`DataflowRunner` with `--dry_run=True` does everything a submission does up to the API call:
it applies Dataflow's transform overrides, checks the coders of every GroupByKey, packs the
project with `--setup_file` (a local `setup.py sdist`) and writes the job description — with no
network and no credentials. A stage that cannot be translated for Dataflow, or options the
launcher writes that Beam rejects, fail here instead of after a 5-minute worker start-up.
"""

from __future__ import annotations

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import SetupOptions, WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2

from launch import dataflow
from pipeline import beam_options

WIKI_DUMP = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"


@pytest.fixture(scope="module")
def launch_config() -> dataflow.DataflowConfig:
    return dataflow.check(
        dataflow.DataflowConfig(
            project="my-project-1",
            region="us-central1",
            bucket="gs://my-bert-bucket",
            dump="gs://my-bert-bucket/dumps/enwiki.xml.bz2",
            books="gs://my-bert-bucket/books/*.txt",
            run_id="20261124-120000",
        )
    )


def dry_run(launch_config, stage: str, build, **build_kwargs) -> beam.runners.runner.PipelineResult:
    """Builds one stage on DataflowRunner with the launcher's options plus --dry_run=True."""
    argv = dataflow.beam_options(launch_config, dataflow.layout(launch_config), stage)
    pipeline = beam.Pipeline(options=beam_options.pipeline_options([*argv, "--dry_run=True"]))
    build(pipeline, **build_kwargs)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def check_job(result, *, stage: str, top_level: set[str]) -> None:
    """What every stage's job must hold: its name, label, transforms and the packed project."""
    job = result.job
    assert job.proto.name == f"bert-20261124-120000-{stage}"
    assert dict(job.proto.labels) == {"bert-stage": stage}
    transforms = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert top_level <= transforms
    staged = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
        for env in job.proto_pipeline.components.environments.values()
        for d in env.dependencies
    }
    # setup.py, packed by Beam as an sdist that every worker installs.
    assert "workflow.tar.gz" in staged
    assert job.options.view_as(SetupOptions).setup_file.endswith("setup.py")
    workers = job.options.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n2-standard-4", 64)


@pytest.mark.parametrize(
    ("stage", "source", "inputs", "reader"),
    [
        ("extract-wiki", "wikipedia", WIKI_DUMP, "ReadWikipedia"),
        ("extract-books", "books", "books/*.txt", "ReadBooks"),
    ],
)
def test_extract_text_graph(launch_config, data_dir, tmp_path, stage, source, inputs, reader):
    from pipeline import extract_text

    config = extract_text.ExtractTextConfig(
        input=str(data_dir / inputs),
        output_dir=str(tmp_path / "shards"),
        source=source,
        num_shards=4,
    )
    result = dry_run(launch_config, stage, extract_text.build_pipeline, config=config)

    check_job(result, stage=stage, top_level={reader, "WriteShards"})
    # Nothing ran: no shard, and above all no metadata.json claiming a complete output.
    assert not os.path.exists(tmp_path / "shards" / "metadata.json")
