r"""Runs the three data stages on Google Cloud Dataflow, one after the other.

    python -m launch.dataflow --project=my-project --region=us-central1 \
        --bucket=gs://my-bucket \
        --dump=gs://my-bucket/dumps/enwiki-latest-pages-articles-multistream.xml.bz2 \
        [--books='gs://my-bucket/books/*.txt'] [--dry_run]

runs, each waiting for the one before (each is `python -m <stage>` in a subprocess of this
Python, with the usual Beam options for Dataflow):

  1. pipeline.extract_text --source=wikipedia      → <bucket>/bert/shards/wiki/
  2. pipeline.extract_text --source=books          → <bucket>/bert/shards/books/   (--books only)
  3. pipeline.build_vocab (train shards only)      → <bucket>/bert/vocab/vocab.txt
  4. pipeline.create_pretraining_data (train-*.txt)→ <bucket>/bert/records/train/
  5. pipeline.create_pretraining_data (eval-*.txt) → <bucket>/bert/records/eval/ (--output_prefix=eval)

Workers get this project through `--setup_file=<checkout>/setup.py`. A stage whose output is
already complete (its metadata.json, written last, exists) is skipped, so after a failure
the same command resumes where it stopped; once a stage has run, every later stage runs again.
`--dry_run` prints every command, complete and copy-pasteable, and runs nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence

from absl import flags

from contracts import command_line, storage
from launch import chain, gcloud


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
    """Everything the Dataflow launch needs; built from flags by `main`, checked by `check`."""

    project: str  # Google Cloud project ID that runs and pays for the jobs.
    region: str  # Dataflow region, e.g. us-central1; put the bucket in the same one.
    bucket: str  # gs://bucket (or gs://bucket/prefix): all outputs go under it.
    dump: str  # Comma-separated gs:// globs of the Wikipedia pages-articles dump.
    books: str | None = None  # Comma-separated gs:// globs of .txt books, one book a file.
    output_folder: str = "bert"  # Folder under the bucket for shards, vocab, records, tmp.
    run_id: str = ""  # Names the jobs <job_prefix>-<run_id>-<stage>; default: UTC time.
    job_prefix: str = "bert"  # Start of every Dataflow job name.
    # n2-standard-4: 4 vCPUs, 16 GB. Each vCPU runs one Python SDK process with TensorFlow
    # loaded (~1 GB), so 4 GB a vCPU leaves room for bz2 blocks and tokenizer batches.
    machine_type: str = "n2-standard-4"
    max_num_workers: int = 64  # Autoscaling ceiling per job (64 x 4 = 256 vCPUs).
    # 50 GB: the default 25 GB boot disk is tight once TensorFlow and the container are on it.
    disk_size_gb: int = 50
    wiki_shards: int = 512  # Text shards for English Wikipedia (~20 GB of text: ~40 MB each).
    books_shards: int = 32  # Text shards for the books.
    vocab_size: int = 30522  # BERT's own vocab size.
    do_lower_case: bool = True  # Uncased vocab and records (bert-base-uncased style).
    strip_accents: bool | None = None  # Strip accents; None: as do_lower_case (Google's rule).
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    dupe_factor: int = 10  # Masks drawn per train document (google-research/bert's default).
    eval_dupe_factor: int = 1  # One mask per eval document is enough to measure accuracy.
    do_whole_word_mask: bool = False
    train_record_shards: int = 1024  # ~250 MB each for Wikipedia at seq 128, dupe 10.
    eval_record_shards: int = 8
    setup_file: str = os.path.join(gcloud.PROJECT_ROOT, "setup.py")  # Ships the package.
    sdk_container_image: str | None = None  # A prebuilt worker image instead of setup.py.
    beam_args: tuple[str, ...] = ()  # Extra Beam options for every job (network, SA, …).
    extract_text_args: tuple[str, ...] = ()  # Extra flags for both extract_text jobs.
    build_vocab_args: tuple[str, ...] = ()  # Extra flags for build_vocab.
    create_pretraining_data_args: tuple[str, ...] = ()  # Extra flags for both record jobs.
    python: str = sys.executable  # The Python that runs each stage (this one).


@dataclasses.dataclass(frozen=True)
class Stage:
    """One Dataflow job of the plan.

    Attributes:
      name: short name, also the end of the Dataflow job name.
      step: the command that runs it.
      done_marker: the file whose presence means the stage's output is complete (each stage
        writes its metadata.json last).
    """

    name: str
    step: gcloud.Step
    done_marker: str


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each output goes, under <bucket>/<output_folder>."""

    root: str
    wiki_shards: str
    books_shards: str
    vocab_file: str
    train_records: str
    eval_records: str
    temp: str
    staging: str


def layout(config: DataflowConfig) -> Layout:
    root = f"{config.bucket.rstrip('/')}/{config.output_folder.strip('/')}"
    return Layout(
        root=root,
        wiki_shards=f"{root}/shards/wiki",
        books_shards=f"{root}/shards/books",
        vocab_file=f"{root}/vocab/vocab.txt",
        train_records=f"{root}/records/train",
        eval_records=f"{root}/records/eval",
        temp=f"{root}/tmp/dataflow-temp",
        staging=f"{root}/tmp/dataflow-staging",
    )


def check(config: DataflowConfig) -> DataflowConfig:
    """Checks every setting before anything starts.

    Returns:
      The config with its gs:// paths normalised (no trailing slash).

    Raises:
      gcloud.LaunchError: a setting that cannot work; the message names the flag.
    """
    gcloud.check_project(config.project)
    gcloud.check_region(config.region)
    bucket = gcloud.check_gcs_path(config.bucket, flag="--bucket", what="where outputs go")
    dump = gcloud.check_gcs_patterns(config.dump, flag="--dump", what="the Wikipedia dump")
    books = None
    if config.books:
        books = gcloud.check_gcs_patterns(config.books, flag="--books", what="the book files")
    if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", config.output_folder.strip("/")):
        raise gcloud.LaunchError(
            f"--output_folder={config.output_folder!r}: use a plain folder name such as 'bert'"
        )
    run_id = config.run_id or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    # Dataflow job names follow the resource-name rule (at most 63 characters); check the
    # name with the longest stage suffix ("records-train", as long as "extract-books").
    gcloud.check_resource_name(
        f"{config.job_prefix}-{run_id}-records-train",
        flag="--job_prefix/--run_id",
        what="Dataflow job",
    )
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", config.machine_type):
        raise gcloud.LaunchError(
            f"--machine_type={config.machine_type!r} is not a Compute Engine machine type "
            "such as n2-standard-4"
        )
    for flag in (
        "max_num_workers",
        "disk_size_gb",
        "wiki_shards",
        "books_shards",
        "vocab_size",
        "max_seq_length",
        "max_predictions_per_seq",
        "dupe_factor",
        "eval_dupe_factor",
        "train_record_shards",
        "eval_record_shards",
    ):
        gcloud.check_positive(getattr(config, flag), flag=f"--{flag}")
    masked_lm_prob = float(
        gcloud.flag_value(config.create_pretraining_data_args, "masked_lm_prob") or 0.15
    )
    # create_pretraining_data refuses it with the same rule, but only after hours of extraction.
    if config.max_predictions_per_seq < round(masked_lm_prob * config.max_seq_length):
        raise gcloud.LaunchError(
            f"--max_predictions_per_seq={config.max_predictions_per_seq} is below "
            f"round(masked_lm_prob x max_seq_length) = round({masked_lm_prob} x "
            f"{config.max_seq_length}): "
            "raise it, or fewer tokens than masked_lm_prob would be masked"
        )
    if config.disk_size_gb < 25:
        raise gcloud.LaunchError(
            f"--disk_size_gb={config.disk_size_gb}: Dataflow workers need at least 25 GB"
        )
    if not config.sdk_container_image and not os.path.isfile(config.setup_file):
        raise gcloud.LaunchError(
            f"setup file {config.setup_file} not found: run from a checkout of the project"
        )
    for flag in (
        "beam_args",
        "extract_text_args",
        "build_vocab_args",
        "create_pretraining_data_args",
    ):
        gcloud.check_flag_arguments(getattr(config, flag), what=f"--{flag}")
    return dataclasses.replace(config, bucket=bucket, dump=dump, books=books, run_id=run_id)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def beam_options(config: DataflowConfig, paths: Layout, job: str) -> list[str]:
    """The Beam pipeline options that send one stage to Dataflow."""
    options = [
        "--runner=DataflowRunner",
        f"--project={config.project}",
        f"--region={config.region}",
        f"--job_name={config.job_prefix}-{config.run_id}-{job}",
        f"--temp_location={paths.temp}",
        f"--staging_location={paths.staging}",
        f"--machine_type={config.machine_type}",
        f"--max_num_workers={config.max_num_workers}",
        "--autoscaling_algorithm=THROUGHPUT_BASED",
        f"--disk_size_gb={config.disk_size_gb}",
        # Labels let the billing report split the cost by stage.
        f"--labels=bert-stage={job}",
    ]
    if config.sdk_container_image:
        options.append(f"--sdk_container_image={config.sdk_container_image}")
    else:
        options.append(f"--setup_file={config.setup_file}")
    return options + list(config.beam_args)


def data_chain(config: DataflowConfig) -> chain.DataChain:
    """The launch's data stages: launch.chain's, with Dataflow's settings."""
    return chain.DataChain(
        wiki_input=config.dump,
        books_input=config.books or "",
        output_root=layout(config).root,
        wiki_num_shards=config.wiki_shards,
        books_num_shards=config.books_shards,
        vocab_size=config.vocab_size,
        do_lower_case=config.do_lower_case,
        strip_accents=config.strip_accents,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        dupe_factor=config.dupe_factor,
        eval_dupe_factor=config.eval_dupe_factor,
        do_whole_word_mask=config.do_whole_word_mask,
        train_record_shards=config.train_record_shards,
        eval_record_shards=config.eval_record_shards,
        extract_text_args=config.extract_text_args,
        build_vocab_args=config.build_vocab_args,
        create_pretraining_data_args=config.create_pretraining_data_args,
    )


_DESCRIPTIONS = {
    "extract-wiki": "extract_text --source=wikipedia -> {}",
    "extract-books": "extract_text --source=books -> {}",
    "vocab": "build_vocab -> {}",
    "records-train": "create_pretraining_data (train) -> {}",
    "records-eval": "create_pretraining_data (eval) -> {}",
}


def plan(config: DataflowConfig) -> list[Stage]:
    """The stages to run, in order, for a checked config.

    Returns:
      One `Stage` per Dataflow job: extract (wiki, then books when given), vocab, train
      records, eval records; each launch.chain's command with Dataflow's Beam options.
    """
    paths = layout(config)
    data = data_chain(config)
    stages = []
    for stage in chain.stages(data):
        output = data.vocab_file if stage.name == "vocab" else stage.output_dir
        argv = stage.argv(python=config.python, extra=beam_options(config, paths, stage.name))
        step = gcloud.Step(_DESCRIPTIONS[stage.name].format(output), tuple(argv))
        stages.append(Stage(stage.name, step, stage.done_marker))
    return stages


def print_dry_run(config: DataflowConfig, stages: Sequence[Stage]) -> None:
    paths = layout(config)
    gcloud.print_plan(
        [s.step for s in stages],
        header=[
            f"launch.dataflow dry run: {len(stages)} Dataflow jobs, outputs under {paths.root}",
            "Nothing was run. Run the commands below in order, each after the last finished.",
        ],
        cwd=gcloud.PROJECT_ROOT,
    )


def check_credentials() -> None:
    """Checks that Beam will find Google Cloud credentials (application default ones).

    Raises:
      gcloud.LaunchError: none found; the message says how to get them.
    """
    # Imported here so that --help and --dry_run stay fast.
    import google.auth
    import google.auth.exceptions

    try:
        google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise gcloud.LaunchError(
            "no Google Cloud credentials for Beam: run `gcloud auth application-default login`"
            f" ({error})"
        ) from error


def check_inputs(config: DataflowConfig) -> dict[str, list[str]]:
    """Checks that every --dump and --books pattern matches files, before the first job.

    Returns:
      The matching files, by flag.

    Raises:
      gcloud.LaunchError: a pattern matches nothing; the message names it.
    """
    found = {}
    for flag, patterns in (("--dump", config.dump), ("--books", config.books)):
        if not patterns:
            continue
        try:
            files = storage.expand_globs(patterns)
        except (FileNotFoundError, ValueError) as error:
            raise gcloud.LaunchError(f"{flag}: {error}") from error
        logging.info("%s: %d file(s), first %s", flag, len(files), files[0])
        found[flag] = files
    return found


def unknown_to_beam(args: Sequence[str]) -> list[str]:
    """The names of `args` that no Beam pipeline option defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(args))
    beam_logger = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_logger.level
    # Beam logs "Discarding unparseable args"; we raise instead.
    beam_logger.setLevel(logging.ERROR)
    try:
        known = set(options.get_all_options())
        everything = set(options.get_all_options(retain_unknown_options=True))
    finally:
        beam_logger.setLevel(level)
    return sorted(everything - known)


def check_stage_arguments(
    stages: Sequence[Stage], *, flag_names: Callable[[str], set[str]] = gcloud.program_flag_names
) -> None:
    """Checks that each command's flags are the stage's own or Beam's.

    What neither takes would be dropped with a mere warning in the job's log (a typo in
    `--extract_text_args`, say), after the stages before it have run for hours.

    Raises:
      gcloud.LaunchError: a flag neither the stage nor Beam defines; the message names it.
    """
    names_by_module: dict[str, set[str]] = {}
    for stage in stages:
        argv = stage.step.argv
        module = argv[argv.index("-m") + 1]
        if module not in names_by_module:
            names_by_module[module] = flag_names(module)
        own = names_by_module[module]
        rest = [arg for arg in argv[argv.index("-m") + 2 :] if not gcloud.is_known_flag(arg, own)]
        unknown = unknown_to_beam(rest)
        if unknown:
            raise gcloud.LaunchError(
                f"{stage.name}: {', '.join('--' + n for n in unknown)}: neither {module} "
                "nor Beam has such a flag"
            )


def execute(
    stages: Sequence[Stage],
    *,
    skip_done: bool = True,
    exists: Callable[[str], bool] | None = None,
    runner: Callable | None = None,
) -> list[str]:
    """Runs the stages in order, each waiting for the last; stops at the first failure.

    Args:
      stages: from `plan`.
      skip_done: skip a stage whose done marker exists, until one stage has run (after that
        every later stage runs, since its inputs changed).
      exists: checks a path (`storage.exists` by default).
      runner: `subprocess.run` or a stand-in (tests).

    Returns:
      The names of the stages that ran.

    Raises:
      gcloud.StepFailed: a stage exited with an error.
    """
    if exists is None:
        exists = storage.exists
    run_kwargs = {"runner": runner} if runner else {}
    ran = []
    started = time.monotonic()
    for number, stage in enumerate(stages, 1):
        if skip_done and not ran and exists(stage.done_marker):
            logging.info(
                "[%d/%d] %s: skipped, %s exists (pass --noskip_done to rebuild)",
                number,
                len(stages),
                stage.name,
                stage.done_marker,
            )
            continue
        logging.info("[%d/%d] %s: starting", number, len(stages), stage.name)
        gcloud.run_step(stage.step, **run_kwargs)
        ran.append(stage.name)
        logging.info(
            "[%d/%d] %s: done, %.1f min since launch",
            number,
            len(stages),
            stage.name,
            (time.monotonic() - started) / 60,
        )
    return ran


# ---------------------------------------------------------------------------------------------
# Command line.

_DEFAULTS = DataflowConfig(project="", region="", bucket="", dump="")


def define_flags() -> None:
    """Defines the command-line flags.

    Called only when the module runs as a program, so that importing it (tests, other
    launchers) leaves absl's global flags alone.
    """
    flags.DEFINE_string("project", None, "Google Cloud project ID that runs and pays for the jobs.")
    flags.DEFINE_string("region", None, "Dataflow region, e.g. us-central1 (same as the bucket's).")
    flags.DEFINE_string("bucket", None, "gs://bucket[/prefix]: every output goes under it.")
    flags.DEFINE_string("dump", None, "gs:// path or glob(s) of the Wikipedia pages-articles dump.")
    flags.DEFINE_string("books", None, "gs:// glob(s) of book .txt files, one book a file.")
    flags.DEFINE_string("output_folder", _DEFAULTS.output_folder, "Folder under --bucket.")
    flags.DEFINE_string("run_id", "", "Names the jobs <job_prefix>-<run_id>-<stage>; default: now.")
    flags.DEFINE_string("job_prefix", _DEFAULTS.job_prefix, "Start of every Dataflow job name.")
    flags.DEFINE_string("machine_type", _DEFAULTS.machine_type, "Dataflow worker machine type.")
    flags.DEFINE_integer(
        "max_num_workers", _DEFAULTS.max_num_workers, "Autoscaling ceiling per job."
    )
    flags.DEFINE_integer("disk_size_gb", _DEFAULTS.disk_size_gb, "Boot disk per worker, GB.")
    flags.DEFINE_integer("wiki_shards", _DEFAULTS.wiki_shards, "Text shards for Wikipedia.")
    flags.DEFINE_integer("books_shards", _DEFAULTS.books_shards, "Text shards for the books.")
    flags.DEFINE_integer("vocab_size", _DEFAULTS.vocab_size, "WordPiece vocab size.")
    flags.DEFINE_boolean("do_lower_case", _DEFAULTS.do_lower_case, "Uncased vocab and records.")
    flags.DEFINE_boolean(
        "strip_accents", _DEFAULTS.strip_accents, "Strip accents; default: as --do_lower_case."
    )
    flags.DEFINE_integer("max_seq_length", _DEFAULTS.max_seq_length, "Tokens per instance.")
    flags.DEFINE_integer(
        "max_predictions_per_seq", _DEFAULTS.max_predictions_per_seq, "Masked tokens per instance."
    )
    flags.DEFINE_integer("dupe_factor", _DEFAULTS.dupe_factor, "Masks drawn per train document.")
    flags.DEFINE_integer("eval_dupe_factor", _DEFAULTS.eval_dupe_factor, "Same, for eval.")
    flags.DEFINE_boolean("do_whole_word_mask", _DEFAULTS.do_whole_word_mask, "Whole-word masking.")
    flags.DEFINE_integer("train_record_shards", _DEFAULTS.train_record_shards, "Train TFRecords.")
    flags.DEFINE_integer("eval_record_shards", _DEFAULTS.eval_record_shards, "Eval TFRecords.")
    flags.DEFINE_string(
        "sdk_container_image", None, "Prebuilt Dataflow worker image (instead of --setup_file)."
    )
    flags.DEFINE_string(
        "beam_args",
        "",
        "Extra Beam options for every job, e.g. '--subnetwork=… --no_use_public_ips'.",
    )
    flags.DEFINE_string("extract_text_args", "", "Extra flags for extract_text.")
    flags.DEFINE_string("build_vocab_args", "", "Extra flags for build_vocab.")
    flags.DEFINE_string("create_pretraining_data_args", "", "Extra flags for both record jobs.")
    flags.DEFINE_boolean("skip_done", True, "Skip stages whose output is already complete.")
    flags.DEFINE_boolean("dry_run", False, "Print the commands, run nothing.")


def config_from_flags(values: flags.FlagValues) -> DataflowConfig:
    return DataflowConfig(
        project=values.project,
        region=values.region,
        bucket=values.bucket,
        dump=values.dump,
        books=values.books,
        output_folder=values.output_folder,
        run_id=values.run_id,
        job_prefix=values.job_prefix,
        machine_type=values.machine_type,
        max_num_workers=values.max_num_workers,
        disk_size_gb=values.disk_size_gb,
        wiki_shards=values.wiki_shards,
        books_shards=values.books_shards,
        vocab_size=values.vocab_size,
        do_lower_case=values.do_lower_case,
        strip_accents=values.strip_accents,
        max_seq_length=values.max_seq_length,
        max_predictions_per_seq=values.max_predictions_per_seq,
        dupe_factor=values.dupe_factor,
        eval_dupe_factor=values.eval_dupe_factor,
        do_whole_word_mask=values.do_whole_word_mask,
        train_record_shards=values.train_record_shards,
        eval_record_shards=values.eval_record_shards,
        sdk_container_image=values.sdk_container_image,
        beam_args=tuple(shlex.split(values.beam_args)),
        extract_text_args=tuple(shlex.split(values.extract_text_args)),
        build_vocab_args=tuple(shlex.split(values.build_vocab_args)),
        create_pretraining_data_args=tuple(shlex.split(values.create_pretraining_data_args)),
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        gcloud.exit_with_error("launch.dataflow", f"unexpected arguments: {shlex.join(argv[1:])}")
    values = flags.FLAGS
    try:
        config = check(config_from_flags(values))
    except gcloud.LaunchError as error:
        gcloud.exit_with_error("launch.dataflow", error)
    stages = plan(config)
    if values.dry_run:
        print_dry_run(config, stages)
        return
    logging.info("launch.dataflow config: %s", config)
    try:
        check_credentials()
        check_inputs(config)
        check_stage_arguments(stages)
        ran = execute(stages, skip_done=values.skip_done)
    except gcloud.LaunchError as error:
        gcloud.exit_with_error("launch.dataflow", error)
    except gcloud.StepFailed as error:
        logging.error(
            "%s. Finished stages keep their outputs: rerun the same command to resume.", error
        )
        sys.exit(error.returncode or 1)
    paths = layout(config)
    logging.info(
        "All done (%d stage(s) ran). Train records: %s/*  Eval records: %s/*  Vocab: %s",
        len(ran),
        paths.train_records,
        paths.eval_records,
        paths.vocab_file,
    )


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="launch.dataflow")
