"""What the launchers share: checks of cloud names and paths, and printing or running commands.

Every launcher works the same way: it checks all its flags first (a bad value stops it before
anything starts or costs money), builds a list of `Step`s — complete argument vectors, never shell
strings pasted together — and then either prints them (`--dry_run`, copy-pasteable with
`shlex.join`) or runs them one after the other, stopping at the first failure.

Nothing here imports TensorFlow or Beam, so a dry run starts in well under a second.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TextIO, TypeVar

from absl import flags

from contracts import batching, config_flags

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Google Cloud's naming rules, as documented for projects, regions, zones and resource names.
# A project ID is 6-30 characters; "domain.com:name" is the legacy domain-scoped form.
_PROJECT_RE = re.compile(r"^(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
# TPU nodes, VM instances and Dataflow jobs: lowercase letters, digits and hyphens, starting
# with a letter, not ending with a hyphen, at most 63 characters.
_RESOURCE_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# A bucket name: 3-63 characters of lowercase letters, digits, '-', '_' and '.'.
_BUCKET_RE = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")


class LaunchError(ValueError):
    """A flag value that cannot work; the message names the flag and says what to pass."""


class StepFailed(RuntimeError):
    """A command of the plan exited with an error."""

    def __init__(self, step: Step, returncode: int):
        super().__init__(f"{step.description}: command exited with status {returncode}")
        self.step = step
        self.returncode = returncode


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a launch plan.

    Attributes:
      description: what the command does, printed above it.
      argv: the complete command, program first.
      env: extra environment variables, printed as `NAME=value` before the command.
      unless: a check command; the step is skipped when it succeeds (printed as
        `unless >/dev/null 2>&1 || argv`). The launchers run the check themselves.
    """

    description: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    unless: tuple[str, ...] = ()

    def command_line(self) -> str:
        """The command as one copy-pasteable shell line."""
        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.env]
        line = " ".join([*assignments, shlex.join(self.argv)])
        if self.unless:
            line = f"{shlex.join(self.unless)} >/dev/null 2>&1 || {line}"
        return line


# ---------------------------------------------------------------------------------------------
# Checks. Each returns the value it checked (normalised where that helps) or raises LaunchError.


def check_project(project: str | None, *, flag: str = "--project") -> str:
    if not project:
        raise LaunchError(f"{flag} is required: the Google Cloud project ID to run in")
    if not _PROJECT_RE.match(project):
        raise LaunchError(
            f"{flag}={project!r} is not a Google Cloud project ID (6-30 lowercase letters, "
            "digits and hyphens, starting with a letter); pass the ID, not the display name"
        )
    return project


def check_region(region: str | None, *, flag: str = "--region") -> str:
    if not region:
        raise LaunchError(f"{flag} is required: a Google Cloud region such as us-central1")
    if not _REGION_RE.match(region):
        hint = " (that is a zone; drop the last '-x')" if _ZONE_RE.match(region) else ""
        raise LaunchError(
            f"{flag}={region!r} is not a Google Cloud region such as us-central1{hint}"
        )
    return region


def check_zone(zone: str | None, *, flag: str = "--zone") -> str:
    if not zone:
        raise LaunchError(f"{flag} is required: a Google Cloud zone such as us-central1-a")
    if not _ZONE_RE.match(zone):
        hint = (
            " (that is a region; add the zone letter, e.g. '-a')" if _REGION_RE.match(zone) else ""
        )
        raise LaunchError(f"{flag}={zone!r} is not a Google Cloud zone such as us-central1-a{hint}")
    return zone


def check_resource_name(name: str | None, *, flag: str, what: str) -> str:
    if not name:
        raise LaunchError(f"{flag} is required: the {what}'s name")
    if not _RESOURCE_NAME_RE.match(name):
        raise LaunchError(
            f"{flag}={name!r} is not a valid {what} name: use 1-63 lowercase letters, digits "
            "and hyphens, starting with a letter and not ending with a hyphen"
        )
    return name


def check_gcs_path(path: str | None, *, flag: str, what: str) -> str:
    """Checks that `path` is a `gs://bucket/...` URL: cloud workers cannot read local files.

    Returns:
      The path without a trailing slash.
    """
    if not path:
        raise LaunchError(f"{flag} is required: {what} (a gs:// path)")
    if not path.startswith("gs://"):
        raise LaunchError(
            f"{flag}={path!r} must be a gs:// path ({what}): the cloud workers cannot read files "
            "on this machine; copy it first, e.g. `gcloud storage cp FILE gs://BUCKET/...`"
        )
    bucket = path[len("gs://") :].split("/", 1)[0]
    if not _BUCKET_RE.match(bucket):
        raise LaunchError(f"{flag}={path!r}: {bucket!r} is not a valid Cloud Storage bucket name")
    return path.rstrip("/")


def check_gcs_patterns(patterns: str | None, *, flag: str, what: str) -> str:
    """Checks every comma-separated pattern of a flag with `check_gcs_path`."""
    if not patterns or not patterns.strip(","):
        raise LaunchError(f"{flag} is required: {what} (gs:// paths or globs)")
    parts = [p.strip() for p in patterns.split(",") if p.strip()]
    return ",".join(check_gcs_path(p, flag=flag, what=what) for p in parts)


def check_positive(value: int, *, flag: str) -> int:
    if value is None or value < 1:
        raise LaunchError(f"{flag}={value} must be a positive integer")
    return value


# ---------------------------------------------------------------------------------------------
# Pass-through flags (absl style: --name=value, --name value, --name, --noname).


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of `--name` in a list of absl-style arguments (the last one wins), else None.

    A boolean given as `--name` reads as "true" and `--noname` as "false".
    """
    value = None
    for i, arg in enumerate(args):
        if arg in (f"--{name}", f"-{name}"):
            following = args[i + 1] if i + 1 < len(args) else None
            value = following if following is not None and not following.startswith("-") else "true"
        elif arg.startswith((f"--{name}=", f"-{name}=")):
            value = arg.split("=", 1)[1]
        elif arg in (f"--no{name}", f"-no{name}"):
            value = "false"
    return value


def check_flag_arguments(args: Sequence[str], *, what: str) -> None:
    """Checks that `args` are flags (a bare word may only be the value of the flag before it)."""
    for i, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        previous = args[i - 1] if i > 0 else ""
        if not (previous.startswith("-") and "=" not in previous):
            raise LaunchError(f"{what}: {arg!r} is not a flag; write flags as --name=value")


def program_flag_names(module: str, *, python: str = sys.executable) -> set[str]:
    """The flags `python -m <module>` accepts, from absl's `--helpxml`.

    In a subprocess: our programs define their absl flags when run (some when imported, with
    names shared between programs), and importing one may load TensorFlow.

    Raises:
      LaunchError: the module does not start.
    """
    result = subprocess.run(
        [python, "-m", module, "--helpxml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        root = xml.etree.ElementTree.fromstring(result.stdout)
    except xml.etree.ElementTree.ParseError as error:
        raise LaunchError(
            f"cannot list the flags of {module}: {result.stderr.strip()[-2000:]}"
        ) from error
    return {name.text for name in root.iter("name") if name.text}


def is_known_flag(arg: str, names: set[str]) -> bool:
    """Whether an absl-style argument (`--name=v`, `--name`, `--noname`) names one of `names`.

    A bare value (the `v` of `--name v`) counts as known: it belongs to the flag before it.
    """
    if not arg.startswith("-"):
        return True
    name = arg.lstrip("-").split("=", 1)[0]
    return name in names or (name.startswith("no") and name[2:] in names)


# ---------------------------------------------------------------------------------------------
# The trainer's flags, passed through by the TPU and GPU launchers.


@dataclasses.dataclass(frozen=True)
class TrainerProgram:
    """A trainer program the TPU and GPU launchers can start (`--program`)."""

    module: str  # what `python3 -m` runs on the machine
    required: tuple[str, ...]  # flags it cannot run without
    # Its flags that name files the remote machines read or write, and what they hold: only
    # Cloud Storage is visible to every host of a slice, and survives the machine's deletion.
    gcs_flags: dict[str, str]
    # Its flags that make it evaluate (so --eval_batch_size must split over the replicas), with
    # their defaults; and the default of --eval_batch_size.
    eval_flags: dict[str, bool]
    default_eval_batch_size: int


TRAINER_PROGRAMS = {
    "run_pretraining": TrainerProgram(
        "trainer.run_pretraining",
        required=("input_file", "output_dir"),
        gcs_flags={
            "input_file": "the training records",
            "eval_input_file": "the eval records",
            "output_dir": "checkpoints and TensorBoard logs",
            "init_checkpoint": "the initial checkpoint",
            "bert_config_file": "the BERT config",
        },
        eval_flags={"do_eval": False},
        default_eval_batch_size=batching.DEFAULT_EVAL_BATCH_SIZE,
    ),
    "run_classifier": TrainerProgram(
        "trainer.run_classifier",
        required=("task_name", "data_dir", "output_dir"),
        gcs_flags={
            "data_dir": "the task's files",
            "output_dir": "checkpoints, eval results and predictions",
            "init_checkpoint": "the pretrained checkpoint",
            "bert_config_file": "the BERT config",
            "vocab_file": "the vocab",
        },
        eval_flags={"do_eval": False, "do_predict": False},
        default_eval_batch_size=batching.DEFAULT_CLASSIFIER_EVAL_BATCH_SIZE,
    ),
    "distill": TrainerProgram(
        "trainer.distill",
        required=("teacher_dir", "output_dir"),
        gcs_flags={
            "teacher_dir": "the fine-tuned teacher",
            "output_dir": "the student's run folder",
            "data_dir": "the task's files",
            "student_init_checkpoint": "the student's checkpoint",
            "student_config_file": "the student's BERT config",
        },
        eval_flags={"do_eval": True, "do_predict": False},
        default_eval_batch_size=batching.DEFAULT_CLASSIFIER_EVAL_BATCH_SIZE,
    ),
}


def default_log_file(program: str) -> str:
    """Where a launched program logs, under the home folder of the machine that runs it."""
    return "bert_pretraining.log" if program == "run_pretraining" else f"bert_{program}.log"


def trainer_program(name: str) -> TrainerProgram:
    """The program a launcher's `--program` names.

    Raises:
      LaunchError: not one of TRAINER_PROGRAMS.
    """
    if name not in TRAINER_PROGRAMS:
        raise LaunchError(f"--program={name!r}: one of {', '.join(TRAINER_PROGRAMS)}")
    return TRAINER_PROGRAMS[name]


def check_trainer_flag_names(
    args: Sequence[str], *, program: str = "run_pretraining", names: set[str] | None = None
) -> None:
    """Checks that every flag passed through is one the trainer program defines.

    The trainer would stop on an unknown flag too — but on the remote machine, after it was
    created and set up.

    Args:
      args: the flags after `--`.
      program: a key of TRAINER_PROGRAMS.
      names: the program's flag names; by default read from the program (`--helpxml`).

    Raises:
      LaunchError: a flag the program does not define; the message names it.
    """
    module = trainer_program(program).module
    if names is None:
        names = program_flag_names(module)
    unknown = [arg for arg in args if not is_known_flag(arg, names)]
    if unknown:
        raise LaunchError(
            f"trainer flags (after --): {module} has no flag "
            f"{', '.join(a.split('=', 1)[0] for a in unknown)}"
        )


def check_trainer_args(
    args: Sequence[str],
    *,
    program: str = "run_pretraining",
    strategies: Sequence[str],
    replicas: int,
    hardware: str,
) -> None:
    """Checks the flags a launcher passes through to a trainer program.

    Args:
      args: the flags after `--`.
      program: a key of TRAINER_PROGRAMS.
      strategies: the `--strategy` values that can run on this hardware.
      replicas: devices the global batch is split across.
      hardware: e.g. "v3-32", for messages.

    Raises:
      LaunchError: a local path where gs:// is needed, a missing flag the program requires,
        a --tpu or --strategy the launcher sets itself or that cannot run here, or a global
        batch size that does not divide across the replicas.
    """
    trainer = trainer_program(program)
    what = "trainer flags (after --)"
    check_flag_arguments(args, what=what)
    for name in trainer.required:
        if flag_value(args, name) is None:
            where = trainer.gcs_flags.get(name)
            raise LaunchError(
                f"{what}: --{name} is required by {trainer.module}"
                + (f" (gs:// {where})" if where else "")
            )
    for name, description in trainer.gcs_flags.items():
        value = flag_value(args, name)
        if value is not None:
            check_gcs_patterns(value, flag=f"trainer flag --{name}", what=description)
    if flag_value(args, "tpu") is not None:
        raise LaunchError(f"{what}: leave out --tpu; the launcher sets what {hardware} needs")
    strategy = flag_value(args, "strategy")
    if strategy is not None and strategy not in strategies:
        raise LaunchError(
            f"{what}: --strategy={strategy} cannot run on {hardware}; "
            f"use one of {', '.join(strategies)}"
        )
    batches = {}
    for name in ("train_batch_size", "eval_batch_size", "gradient_accumulation_steps"):
        value = flag_value(args, name)
        if value is not None and not value.isdigit():
            raise LaunchError(f"{what}: --{name}={value} is not a positive whole number")
        batches[name] = None if value is None else int(value)
    evaluates = any(
        (flag_value(args, name) or str(default)).lower() in ("true", "1")
        for name, default in trainer.eval_flags.items()
    )
    problem = batching.batch_split_error(
        train_batch_size=batches["train_batch_size"],
        eval_batch_size=batches["eval_batch_size"] or trainer.default_eval_batch_size,
        do_eval=evaluates,
        replicas=replicas,
        gradient_accumulation_steps=batches["gradient_accumulation_steps"] or 1,
    )
    if problem:
        raise LaunchError(f"{what}: {problem}, the {replicas} replicas of {hardware}")


# ---------------------------------------------------------------------------------------------
# Printing and running.


def define_launcher_flags(config_class: type) -> None:
    """A trainer launcher's flags: one per field of its config (`contracts.config_flags`), and
    --dry_run."""
    config_flags.define_flags(config_class)
    flags.DEFINE_boolean("dry_run", False, "Print the gcloud commands, run nothing.")


def exit_with_error(program: str, error: Exception | str) -> NoReturn:
    """Stops the launcher with a one-line message on stderr and exit status 2.

    absl's UsageError would print the whole flag list first and bury the message.
    """
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(2)


def print_plan(
    steps: Iterable[Step],
    *,
    header: Sequence[str] = (),
    cwd: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Prints the plan as a shell script: comments, then one complete command per step.

    Args:
      steps: the commands, in order.
      header: comment lines printed first.
      cwd: when given, a `cd` to it comes first (the commands expect to run there).
      out: where to print; stdout by default.
    """
    out = out or sys.stdout
    for line in header:
        print(f"# {line}", file=out)
    if cwd:
        print(f"cd {shlex.quote(cwd)}", file=out)
    for number, step in enumerate(steps, 1):
        print(f"\n# {number}. {step.description}", file=out)
        print(step.command_line(), file=out)
    out.flush()


def run_step(
    step: Step,
    *,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    cwd: str | None = None,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Runs one step, logging it and how long it took.

    Args:
      step: the command.
      runner: `subprocess.run` or a stand-in with its signature (tests).
      cwd: the working folder; the project root by default, so `python -m pipeline.…` finds
        the package whether or not it is installed.
      capture: capture stdout/stderr as text instead of letting them through.
      check: raise StepFailed on a non-zero exit status.

    Returns:
      The finished process.
    """
    logging.info("%s\n  $ %s", step.description, step.command_line())
    env = dict(os.environ, **dict(step.env)) if step.env else None
    started = time.monotonic()
    result = runner(
        list(step.argv),
        cwd=cwd or PROJECT_ROOT,
        env=env,
        capture_output=capture,
        text=True,
        check=False,
    )
    logging.info(
        "%s: exit status %d after %.0f s",
        step.description,
        result.returncode,
        time.monotonic() - started,
    )
    if check and result.returncode != 0:
        if capture and result.stderr:
            logging.error("%s", result.stderr.strip())
        raise StepFailed(step, result.returncode)
    return result


# ---------------------------------------------------------------------------------------------
# This project as a package: what the TPU and GPU launchers install on the remote machines.


def _setup_cfg(root: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    path = os.path.join(root, "setup.cfg")
    if not parser.read(path):
        raise LaunchError(f"cannot read {path}: run the launcher from a checkout of the project")
    return parser


def package_name_and_version(root: str = PROJECT_ROOT) -> tuple[str, str]:
    """The project's distribution name and version, from its setup.cfg."""
    metadata = _setup_cfg(root)["metadata"]
    return metadata["name"], metadata["version"]


def wheel_filename(root: str = PROJECT_ROOT) -> str:
    """The file name `pip wheel` gives this project (pure Python, any platform)."""
    name, version = package_name_and_version(root)
    # PEP 427: runs of '-', '_', '.' in the name become one '_'.
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}-py3-none-any.whl"


def build_wheel_step(*, root: str = PROJECT_ROOT, dist_dir: str) -> Step:
    """Builds this project's wheel locally (no network: no build isolation, no dependencies)."""
    return Step(
        "build this project's wheel",
        (
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            dist_dir,
            root,
        ),
    )


def trainer_packages(*, root: str = PROJECT_ROOT) -> tuple[str, ...]:
    """The distributions the trainer imports besides TensorFlow: setup.cfg's
    `[bert_stack] trainer_requires`, declared once. The rest of install_requires (Beam,
    wikiextractor, …) serves the data pipeline, which runs on Dataflow, not on the training
    machines."""
    return tuple(_setup_cfg(root)["bert_stack"]["trainer_requires"].split())


# Distributions with native ops compiled against one TensorFlow minor version, which require
# exactly that `tensorflow` distribution.
TENSORFLOW_BUILT = ("tensorflow-text",)


def trainer_requirements_beside(
    tf_version: str, *, root: str = PROJECT_ROOT
) -> tuple[list[str], list[str]]:
    """The trainer's requirements for a machine whose TensorFlow the image ships (a TPU VM).

    Returns (requirements, built_against_tensorflow): the first from setup.cfg as they are; the
    second pinned to the image's TensorFlow minor version (`tensorflow-text==2.20.*`), to be
    installed with --no-deps. A plain `pip install tensorflow-text>=2.20,<2.22` there takes
    the newest one (2.21), whose `tensorflow==2.21` requirement pulls the CPU wheel over the
    image's TPU build; and tensorflow-text's ops load only into the TensorFlow they were built
    for.
    """
    names = trainer_packages(root=root)
    plain = [n for n in names if n not in TENSORFLOW_BUILT]
    built = pinned_to_tensorflow([n for n in names if n in TENSORFLOW_BUILT], tf_version)
    return requirements(plain, root=root), built


def pinned_to_tensorflow(names: Iterable[str], tf_version: str) -> list[str]:
    """Requirements of packages released in step with TensorFlow, pinned to its minor version:
    ["tensorflow-text"], "2.20.0" -> ["tensorflow-text==2.20.*"]."""
    major_minor = ".".join(tf_version.split(".")[:2])
    return [f"{name}=={major_minor}.*" for name in names]


def requirements(names: Iterable[str], *, root: str = PROJECT_ROOT) -> list[str]:
    """The `install_requires` lines of setup.cfg for the given distribution names.

    The launchers install some dependencies one by one (see tpu_pod.py for why); reading their
    version ranges from setup.cfg keeps the two from drifting apart.

    Raises:
      LaunchError: a name is not in install_requires.
    """
    lines = _setup_cfg(root)["options"]["install_requires"].splitlines()
    specs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower()
            specs[name] = line
    missing = [n for n in names if n.lower() not in specs]
    if missing:
        raise LaunchError(f"setup.cfg install_requires lacks {', '.join(missing)}")
    return [specs[n.lower()] for n in names]


Launch = TypeVar("Launch")


def run_trainer_launch(
    program: str,
    *,
    config: object,
    dry_run: bool,
    make_plan: Callable[[str], Launch],
    dry_run_header: Callable[[Launch], str],
    execute: Callable[[Launch], None],
    print_next_steps: Callable[[Launch], None],
) -> None:
    """The part of a trainer launcher's main() that the TPU and GPU launchers share: plan (the
    wheel goes to a temporary folder, or `build/wheel` in a dry run), then print the plan or
    check the trainer's flags against the program and execute it, then print what to do next.

    Args:
      program: the launcher's name, for messages.
      config: the checked launcher config (logged).
      make_plan: dist_dir -> the launch plan (with `.steps`).
      dry_run_header: the plan -> the first line of the dry-run listing.
      execute, print_next_steps: the launcher's own.
    """
    with tempfile.TemporaryDirectory(prefix="bert-wheel-") as dist_dir:
        launch = make_plan("build/wheel" if dry_run else dist_dir)
        if dry_run:
            print_plan(
                launch.steps,
                header=[dry_run_header(launch), "Nothing was run."],
                cwd=PROJECT_ROOT,
            )
            print_next_steps(launch)
            return
        logging.info("%s config: %s", program, config)
        try:
            check_trainer_flag_names(config.trainer_args, program=config.program)
            execute(launch)
        except LaunchError as error:
            exit_with_error(program, error)
        except StepFailed as error:
            logging.error("%s", error)
            sys.exit(error.returncode or 1)
    print_next_steps(launch)
