"""launch.dataflow: flag checks, the five Dataflow commands, resuming, and the --dry_run CLI."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

import pytest

from launch import dataflow, gcloud

ROOT = gcloud.PROJECT_ROOT
BUCKET = "gs://my-bert-bucket"
DUMP = "gs://my-bert-bucket/dumps/enwiki-20261101-pages-articles-multistream.xml.bz2"
BOOKS = "gs://my-bert-bucket/books/*.txt"


def make_config(**overrides) -> dataflow.DataflowConfig:
    values = dict(
        project="my-project-1",
        region="us-central1",
        bucket=BUCKET,
        dump=DUMP,
        books=BOOKS,
        run_id="20261124-120000",
    )
    values.update(overrides)
    return dataflow.check(dataflow.DataflowConfig(**values))


def flags_of(argv) -> dict[str, str]:
    """`--name=value` arguments as a dict (a bare `--name` reads as "true")."""
    return dict(
        (arg[2:].split("=", 1) if "=" in arg else (arg[2:], "true"))
        for arg in argv
        if arg.startswith("--")
    )


def test_plan_runs_the_five_stages_in_order_with_complete_commands():
    stages = dataflow.plan(make_config())

    assert [s.name for s in stages] == [
        "extract-wiki",
        "extract-books",
        "vocab",
        "records-train",
        "records-eval",
    ]
    modules = [s.step.argv[s.step.argv.index("-m") + 1] for s in stages]
    assert modules == [
        "pipeline.extract_text",
        "pipeline.extract_text",
        "pipeline.build_vocab",
        "pipeline.create_pretraining_data",
        "pipeline.create_pretraining_data",
    ]
    job_names = set()
    for stage in stages:
        # The stage runs in a subprocess of this very Python.
        assert stage.step.argv[0] == sys.executable
        options = flags_of(stage.step.argv)
        assert options["runner"] == "DataflowRunner"
        assert options["project"] == "my-project-1"
        assert options["region"] == "us-central1"
        assert options["setup_file"] == os.path.join(ROOT, "setup.py")
        assert options["temp_location"].startswith(f"{BUCKET}/bert/tmp/")
        assert options["staging_location"].startswith(f"{BUCKET}/bert/tmp/")
        assert options["machine_type"] == "n2-standard-4"
        assert options["max_num_workers"] == "64"
        assert options["disk_size_gb"] == "50"
        assert options["job_name"] == f"bert-20261124-120000-{stage.name}"
        job_names.add(options["job_name"])
    assert len(job_names) == 5

    wiki, books, vocab, train, eval_ = (flags_of(s.step.argv) for s in stages)
    assert (wiki["input"], wiki["source"]) == (DUMP, "wikipedia")
    assert wiki["output_dir"] == f"{BUCKET}/bert/shards/wiki"
    assert (books["input"], books["source"]) == (BOOKS, "books")
    assert books["output_dir"] == f"{BUCKET}/bert/shards/books"
    train_text = f"{BUCKET}/bert/shards/wiki/train-*.txt,{BUCKET}/bert/shards/books/train-*.txt"
    assert vocab["input"] == train_text
    assert vocab["output"] == f"{BUCKET}/bert/vocab/vocab.txt"
    assert vocab["vocab_size"] == "30522"
    assert train["input_file"] == train_text
    assert train["output_dir"] == f"{BUCKET}/bert/records/train"
    assert "output_prefix" not in train
    assert train["dupe_factor"] == "10"
    assert eval_["input_file"] == train_text.replace("train-", "eval-")
    assert eval_["output_dir"] == f"{BUCKET}/bert/records/eval"
    assert eval_["output_prefix"] == "eval"
    assert eval_["dupe_factor"] == "1"
    for records in (train, eval_):
        assert records["vocab_file"] == vocab["output"]
        # The records are tokenized the way the vocab was built.
        assert records["do_lower_case"] == vocab["do_lower_case"] == "true"
        assert "strip_accents" not in records and "strip_accents" not in vocab  # follows it
        assert (records["max_seq_length"], records["max_predictions_per_seq"]) == ("128", "20")
    assert [s.done_marker for s in stages] == [
        f"{BUCKET}/bert/shards/wiki/metadata.json",
        f"{BUCKET}/bert/shards/books/metadata.json",
        f"{BUCKET}/bert/vocab/metadata.json",
        f"{BUCKET}/bert/records/train/metadata.json",
        f"{BUCKET}/bert/records/eval/metadata.json",
    ]


def test_plan_without_books_and_with_overrides():
    config = make_config(
        books=None,
        bucket=BUCKET + "/team/",
        output_folder="run2",
        do_lower_case=False,
        strip_accents=True,
        machine_type="n2-highmem-8",
        sdk_container_image="us-docker.pkg.dev/p/r/bert-worker:1",
        beam_args=("--subnetwork=regions/us-central1/subnetworks/s", "--no_use_public_ips"),
        create_pretraining_data_args=("--compression=gzip",),
    )
    stages = dataflow.plan(config)

    assert [s.name for s in stages] == ["extract-wiki", "vocab", "records-train", "records-eval"]
    assert not any("books" in arg for s in stages for arg in s.step.argv)
    vocab, train = flags_of(stages[1].step.argv), flags_of(stages[2].step.argv)
    assert vocab["input"] == f"{BUCKET}/team/run2/shards/wiki/train-*.txt"
    assert vocab["do_lower_case"] == train["do_lower_case"] == "false"
    assert vocab["strip_accents"] == train["strip_accents"] == "true"
    for stage in stages:
        argv = stage.step.argv
        options = flags_of(argv)
        assert options["machine_type"] == "n2-highmem-8"
        # A prebuilt worker image replaces the setup file.
        assert options["sdk_container_image"] == "us-docker.pkg.dev/p/r/bert-worker:1"
        assert "setup_file" not in options
        assert "--no_use_public_ips" in argv
        assert ("--compression=gzip" in argv) == stage.name.startswith("records")


def test_beam_parses_the_dataflow_options_of_every_stage():
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    for stage in dataflow.plan(make_config()):
        argv = list(stage.step.argv[3:])
        options = PipelineOptions(argv)
        cloud = options.view_as(GoogleCloudOptions)
        assert options.view_as(StandardOptions).runner == "DataflowRunner"
        assert (cloud.project, cloud.region) == ("my-project-1", "us-central1")
        assert cloud.job_name.endswith(stage.name)
        assert cloud.labels == [f"bert-stage={stage.name}"]
        workers = options.view_as(WorkerOptions)
        assert (workers.machine_type, workers.max_num_workers) == ("n2-standard-4", 64)
        assert workers.autoscaling_algorithm == "THROUGHPUT_BASED"
        assert options.view_as(SetupOptions).setup_file == os.path.join(ROOT, "setup.py")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(bucket=None), "--bucket is required"),
        (dict(bucket="/data/bert"), "--bucket='/data/bert' must be a gs:// path"),
        (dict(bucket="gs://A_Bucket"), "not a valid Cloud Storage bucket name"),
        (dict(dump="enwiki.xml.bz2"), "--dump='enwiki.xml.bz2' must be a gs:// path"),
        (dict(dump=f"{DUMP},/tmp/more.xml"), "--dump='/tmp/more.xml' must be a gs:// path"),
        (dict(books="books/*.txt"), "--books='books/*.txt' must be a gs:// path"),
        (dict(project=""), "--project is required"),
        (dict(project="My Project"), "is not a Google Cloud project ID"),
        (dict(region=""), "--region is required"),
        (dict(region="us-central1-a"), "that is a zone"),
        (dict(machine_type="big"), "--machine_type='big' is not a Compute Engine machine type"),
        (dict(disk_size_gb=10), "at least 25 GB"),
        (dict(max_seq_length=512), "--max_predictions_per_seq=20 is below"),
        (
            dict(create_pretraining_data_args=("--masked_lm_prob=0.2",)),
            "below round(masked_lm_prob x max_seq_length) = round(0.2 x 128)",
        ),
        (dict(max_num_workers=0), "--max_num_workers=0 must be a positive integer"),
        (dict(output_folder="a b"), "--output_folder='a b'"),
        (dict(run_id="Run_1"), "--job_prefix/--run_id"),
        (dict(beam_args=("us-east1",)), "'us-east1' is not a flag"),
        (dict(setup_file="/nonexistent/setup.py"), "setup file /nonexistent/setup.py not found"),
    ],
)
def test_bad_flags_are_refused_before_anything_runs(overrides, message):
    with pytest.raises(gcloud.LaunchError) as caught:
        make_config(**overrides)
    assert message in str(caught.value)


def test_max_predictions_rule_is_the_stage_own():
    # create_pretraining_data accepts round(0.15 x 128) = 19 slots; so does the launcher.
    assert make_config(max_predictions_per_seq=19).max_predictions_per_seq == 19
    with pytest.raises(gcloud.LaunchError):
        make_config(max_predictions_per_seq=18)


def test_stage_flags_are_checked_against_the_stage_and_beam():
    stage_flags = {
        "pipeline.extract_text": {
            "input",
            "source",
            "output_dir",
            "num_shards",
            "min_article_chars",
            "use_multistream_index",
        },
        "pipeline.build_vocab": {"input", "output", "vocab_size", "do_lower_case"},
        "pipeline.create_pretraining_data": {
            "input_file",
            "output_dir",
            "vocab_file",
            "do_lower_case",
            "do_whole_word_mask",
            "max_seq_length",
            "max_predictions_per_seq",
            "dupe_factor",
            "num_shards",
            "output_prefix",
            "compression",
        },
    }
    good = make_config(
        extract_text_args=("--min_article_chars=100", "--nouse_multistream_index"),
        # A Beam option for one stage only is fine too.
        create_pretraining_data_args=("--compression=gzip", "--machine_type=n2-highmem-8"),
    )
    dataflow.check_stage_arguments(dataflow.plan(good), flag_names=stage_flags.__getitem__)

    typo = make_config(extract_text_args=("--min_article_char=100",))
    with pytest.raises(
        gcloud.LaunchError,
        match=(r"extract-wiki: --min_article_char: neither pipeline.extract_text nor Beam"),
    ):
        dataflow.check_stage_arguments(dataflow.plan(typo), flag_names=stage_flags.__getitem__)
    # A stage without the flag the launcher needs (here the eval job's --output_prefix).
    cpd = "pipeline.create_pretraining_data"
    older = {**stage_flags, cpd: stage_flags[cpd] - {"output_prefix"}}
    with pytest.raises(gcloud.LaunchError, match=r"^records-eval: --output_prefix: neither"):
        dataflow.check_stage_arguments(dataflow.plan(good), flag_names=older.__getitem__)


def test_program_flag_names_reads_a_program_s_helpxml():
    names = gcloud.program_flag_names("launch.dataflow")
    assert {"project", "region", "bucket", "dump", "dry_run"} <= names


class FakeRunner:
    """Stands in for subprocess.run: records each command, fails the named stages."""

    def __init__(self, fail: set[str] = frozenset()):
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv, **kwargs):
        self.commands.append(argv)
        stage = flags_of(argv)["job_name"].removeprefix("bert-20261124-120000-")
        failed = stage in self.fail
        return subprocess.CompletedProcess(argv, 1 if failed else 0, "", "")


def test_execute_resumes_after_the_last_complete_stage():
    stages = dataflow.plan(make_config())
    complete = {stages[0].done_marker, stages[1].done_marker, stages[3].done_marker}
    runner = FakeRunner()

    ran = dataflow.execute(stages, exists=complete.__contains__, runner=runner)

    # The vocab is missing: it runs, and so does every stage after it, complete or not
    # (the train records were made with the old vocab).
    assert ran == ["vocab", "records-train", "records-eval"]
    assert [flags_of(c)["job_name"] for c in runner.commands] == [
        f"bert-20261124-120000-{name}" for name in ran
    ]
    assert dataflow.execute(
        stages, skip_done=False, exists=complete.__contains__, runner=FakeRunner()
    ) == [s.name for s in stages]


def test_execute_stops_at_the_first_failed_stage():
    stages = dataflow.plan(make_config())
    runner = FakeRunner(fail={"extract-books"})

    with pytest.raises(gcloud.StepFailed) as caught:
        dataflow.execute(stages, exists=lambda path: False, runner=runner)

    assert caught.value.returncode == 1
    assert "extract_text --source=books" in str(caught.value)
    assert len(runner.commands) == 2  # wiki, books; nothing after the failure


def test_resume_and_input_checks_on_gcs(gcs_dir):
    from contracts import storage

    bucket_root = gcs_dir
    storage.atomic_write(f"{bucket_root}/dumps/enwiki-pages-articles.xml.bz2", b"BZh9")
    config = make_config(
        bucket=bucket_root, dump=f"{bucket_root}/dumps/enwiki-*.xml.bz2", books=None
    )
    assert dataflow.check_inputs(config) == {
        "--dump": [f"{bucket_root}/dumps/enwiki-pages-articles.xml.bz2"]
    }
    missing = dataclasses.replace(config, books=f"{bucket_root}/books/*.txt")
    with pytest.raises(gcloud.LaunchError, match=r"--books: no file matches .*/books/\*\.txt"):
        dataflow.check_inputs(missing)

    # A previous run finished extract_text: its metadata.json is on the bucket.
    storage.atomic_write(f"{bucket_root}/bert/shards/wiki/metadata.json", "{}")
    runner = FakeRunner()
    ran = dataflow.execute(dataflow.plan(config), runner=runner)
    assert ran == ["vocab", "records-train", "records-eval"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launch.dataflow", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_dry_run_prints_every_command_and_runs_nothing():
    result = run_cli(
        "--project=my-project-1",
        "--region=europe-west4",
        f"--bucket={BUCKET}",
        f"--dump={DUMP}",
        f"--books={BOOKS}",
        "--max_num_workers=10",
        "--dry_run",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert lines[0] == f"cd {shlex.quote(ROOT)}"
    commands = [shlex.split(line) for line in lines[1:]]
    assert len(commands) == 5
    for argv in commands:
        assert argv[:2] == [sys.executable, "-m"]
        options = flags_of(argv)
        assert options["region"] == "europe-west4"
        assert options["max_num_workers"] == "10"
        assert options["setup_file"] == os.path.join(ROOT, "setup.py")
    assert flags_of(commands[1])["input"] == BOOKS  # the quoted glob survives the round trip
    assert "5 Dataflow jobs" in result.stdout


def test_cli_refuses_a_local_dump_with_one_clear_line():
    result = run_cli(
        "--project=my-project-1",
        "--region=us-central1",
        f"--bucket={BUCKET}",
        "--dump=/data/enwiki.xml.bz2",
        "--dry_run",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "launch.dataflow: error: --dump='/data/enwiki.xml.bz2' must be a gs:// path (the "
        "Wikipedia dump): the cloud workers cannot read files on this machine; copy it "
        "first, e.g. `gcloud storage cp FILE gs://BUCKET/...`"
    )
