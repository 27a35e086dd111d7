"""Each stage's Dataflow job graph, built offline with the launcher's own Beam options.

`DataflowRunner` with `--dry_run=True` does everything a submission does up to the API call:
it applies Dataflow's transform overrides, checks the coders of every GroupByKey, packs the
project with `--setup_file` (a local `setup.py sdist`) and writes the job description — with no
network and no credentials. A stage that cannot be translated for Dataflow, or options the
launcher writes that Beam rejects, fail here instead of after a 5-minute worker start-up.

Every stage has the same shape (`pipeline.stage.Stage`): its flags come from its config class,
and `build_pipeline(pipeline, config)` builds it, so one loop drives them all. Two stages share
flag names (`--output_dir`, …), so each stage's graphs are built in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from launch import dataflow, gcloud

WIKI_DUMP = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"
VOCAB = "vocab/bert-base-uncased-vocab.txt"


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


# ---------------------------------------------------------------------------------------------
# The child process: builds the jobs of one stage module, prints what each job description holds.


def child_main(request: str) -> None:
    """Runs in a fresh process; prints, as JSON, for one stage module:

    - "flags": for each command line the launcher writes for this module, the flags of it
      that the stage's own absl flags know (parsed the way the stage's main() parses them);
    - "jobs": for each `(stage, spec)`, what its DataflowRunner --dry_run job description holds.
    """
    import importlib

    import apache_beam as beam
    from absl import flags
    from apache_beam.options.pipeline_options import SetupOptions, WorkerOptions
    from apache_beam.portability.api import beam_runner_api_pb2

    from pipeline import beam_options
    from pipeline import stage as stage_shape

    module, jobs = json.loads(request)
    stage_def = importlib.import_module(f"pipeline.{module}").STAGE
    stage_shape.define_flags(stage_def)
    config = launch_config()
    known_flags = []
    for launched in dataflow.plan(config):
        argv = list(launched.step.argv)
        if argv[argv.index("-m") + 1] != f"pipeline.{module}":
            continue
        leftover = beam_options.parse_flags([module, *argv[3:]])
        # What the stage's flags do not take goes to Beam, which parses it itself.
        assert all(arg.startswith("--") for arg in leftover[1:]), leftover
        known_flags.append(sorted({a.split("=")[0][2:] for a in argv[3:]} & set(flags.FLAGS)))
    described = {}
    for stage, spec in jobs:
        argv = dataflow.beam_options(config, dataflow.layout(config), stage)
        pipeline = beam.Pipeline(options=beam_options.pipeline_options([*argv, "--dry_run=True"]))
        stage_def.build_pipeline(pipeline, stage_def.config_class(**spec))
        result = pipeline.run()
        result.wait_until_finish()
        job = result.job
        workers = job.options.view_as(WorkerOptions)
        described[stage] = {
            "state": str(result.state),
            "name": job.proto.name,
            "labels": dict(job.proto.labels),
            "transforms": sorted(
                t.unique_name for t in job.proto_pipeline.components.transforms.values()
            ),
            "staged": sorted(
                beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    d.role_payload
                ).staged_name
                for env in job.proto_pipeline.components.environments.values()
                for d in env.dependencies
            ),
            "setup_file": job.options.view_as(SetupOptions).setup_file,
            "machine_type": workers.machine_type,
            "max_num_workers": workers.max_num_workers,
        }
    print("RESULT " + json.dumps({"flags": known_flags, "jobs": described}))


def dry_run_jobs(module: str, jobs: list) -> dict:
    code = "import sys; from tests.test_dataflow_graph import child_main; child_main(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps([module, jobs])],
        cwd=gcloud.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def check_stage_flags(known_flags: list, module: str) -> None:
    """Every flag the launcher writes for the stage is one the stage defines."""
    written = [
        sorted(a.split("=")[0][2:] for a in argv[3 : argv.index("--runner=DataflowRunner")])
        for argv in (s.step.argv for s in dataflow.plan(launch_config()))
        if argv[argv.index("-m") + 1] == f"pipeline.{module}"
    ]
    assert written and known_flags == written


def check_job(job: dict, *, stage: str, top_level: set[str]) -> None:
    """What every stage's job must hold: its name, label, transforms and the packed project."""
    assert job["state"] == "DONE"
    assert job["name"] == f"bert-20261124-120000-{stage}"
    assert job["labels"] == {"bert-stage": stage}
    assert top_level <= set(job["transforms"])
    # setup.py, packed by Beam as an sdist that every worker installs.
    assert "workflow.tar.gz" in job["staged"]
    assert job["setup_file"] == os.path.join(gcloud.PROJECT_ROOT, "setup.py")
    assert (job["machine_type"], job["max_num_workers"]) == ("n2-standard-4", 64)


def test_extract_text_graphs_and_flags(data_dir, tmp_path):
    result = dry_run_jobs(
        "extract_text",
        [
            (
                "extract-wiki",
                dict(
                    input=str(data_dir / WIKI_DUMP),
                    output_dir=str(tmp_path / "wiki"),
                    source="wikipedia",
                    num_shards=4,
                ),
            ),
            (
                "extract-books",
                dict(
                    input=str(data_dir / "books/*.txt"),
                    output_dir=str(tmp_path / "books"),
                    source="books",
                    num_shards=2,
                ),
            ),
        ],
    )
    check_stage_flags(result["flags"], "extract_text")
    jobs = result["jobs"]
    check_job(
        jobs["extract-wiki"], stage="extract-wiki", top_level={"ReadWikipedia", "WriteShards"}
    )
    check_job(jobs["extract-books"], stage="extract-books", top_level={"ReadBooks", "WriteShards"})
    # Nothing ran: above all, no metadata.json claiming a complete output.
    assert not (tmp_path / "wiki" / "metadata.json").exists()
    assert not (tmp_path / "books" / "metadata.json").exists()


def test_build_vocab_graph_and_flags(data_dir, tmp_path):
    result = dry_run_jobs(
        "build_vocab",
        [
            (
                "vocab",
                dict(
                    input=str(data_dir / "books" / "*.txt"),
                    output=str(tmp_path / "vocab" / "vocab.txt"),
                    vocab_size=30522,
                ),
            ),
        ],
    )
    check_stage_flags(result["flags"], "build_vocab")
    check_job(
        result["jobs"]["vocab"],
        stage="vocab",
        top_level={"CountWords", "LearnWordPiece", "WriteVocab"},
    )
    assert not (tmp_path / "vocab" / "vocab.txt").exists()


def test_create_pretraining_data_graph_and_flags(data_dir, tmp_path):
    # Book files stand in for text shards: the graph is built, nothing is read past a sample.
    result = dry_run_jobs(
        "create_pretraining_data",
        [
            (
                "records-train",
                dict(
                    vocab_file=str(data_dir / VOCAB),
                    input_file=str(data_dir / "books/*.txt"),
                    output_dir=str(tmp_path / "train"),
                    dupe_factor=10,
                    num_shards=16,
                ),
            ),
        ],
    )
    # The eval job differs only in flags (prefix, dupe factor), checked here for both jobs.
    check_stage_flags(result["flags"], "create_pretraining_data")
    check_job(
        result["jobs"]["records-train"],
        stage="records-train",
        top_level={"ReadAndTokenize", "GroupIntoBuckets", "WriteParts", "MergeShards"},
    )
    assert not (tmp_path / "train" / "metadata.json").exists()
