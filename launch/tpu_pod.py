r"""Trains BERT on a Cloud TPU VM or TPU pod slice, creating it when it does not exist.

    python -m launch.tpu_pod --tpu=pod-v3-32 --zone=europe-west4-a --project=my-project \
        [--dry_run] -- \
        --input_file='gs://my-bucket/bert/records/train/*' \
        --eval_input_file='gs://my-bucket/bert/records/eval/*' \
        --output_dir=gs://my-bucket/bert/runs/base --model_size=base \
        --train_batch_size=256 --num_train_steps=1000000 --mixed_precision=bf16

What it runs, in order (`--dry_run` prints these commands and runs nothing):

  1. `gcloud compute tpus tpu-vm describe`, then `create` when the TPU does not exist: the
     accelerator type comes from the name (`pod-v3-32` → v3-32) or `--accelerator_type`, the
     runtime is TensorFlow's own TPU image for our TensorFlow (`tpu-vm-tf-2.20.0-pjrt`, or
     `…-pod-pjrt` for a slice of several hosts).
  2. Builds this project's wheel here and copies it to every worker (`--worker=all`), or takes
     `--package` (e.g. a git URL) instead.
  3. Installs it on every worker with `--no-deps`, plus the few pure-Python packages the
     trainer needs: the TPU image's own TensorFlow must stay (see `install_command`).
  4. Starts `python3 -m trainer.run_pretraining --strategy=tpu --tpu=…` in the background:
     on a single-host TPU on its one worker with `--tpu=local`; on a pod slice on worker 0
     only with `--tpu=<name>`, since TensorFlow drives a multi-host slice from one client
     that reaches the other hosts' TPU runtime itself (Google's own TF-on-TPU tests do the
     same: `TPU_LOAD_LIBRARY=0`, one client).
  5. Prints how to follow the log, watch TensorBoard and delete the TPU.

Everything after `--` goes to the trainer unchanged; the launcher checks that the paths the
TPU workers read and write are on gs:// and that the batch divides across the replicas.
`--program=run_classifier` (or `distill`) starts that trainer program instead, the same way,
checked against its own flags (gcloud.TRAINER_PROGRAMS).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence

from absl import flags

from contracts import command_line, config_flags
from launch import gcloud

# The newest TensorFlow that Cloud TPU ships (tensorflow-tpu 2.20.0; there is no 2.21 yet).
DEFAULT_TF_VERSION = "2.20.0"
LIBTPU_TF_RELEASES = "https://storage.googleapis.com/libtpu-tf-releases/index.html"

# Accelerator types by TPU generation: the sizes Cloud TPU offers (v2/v3, v5e, v6e) or the
# rule they follow (v4, v5p: a multiple of 8 TensorCores). `cores_per_replica`: v4 and v5p
# chips are "megacore", one TensorFlow device a chip for two TensorCores in the name.
_GENERATIONS = {
    "v2": dict(sizes={8, 32, 128, 256, 512}, cores_per_replica=1, per_host=8),
    "v3": dict(sizes={8, 32, 64, 128, 256, 512, 1024, 2048}, cores_per_replica=1, per_host=8),
    "v4": dict(sizes=None, cores_per_replica=2, per_host=8),
    "v5p": dict(sizes=None, cores_per_replica=2, per_host=8),
    "v5litepod": dict(sizes={1, 4, 8, 16, 32, 64, 128, 256}, cores_per_replica=1, per_host=8),
    "v6e": dict(sizes={1, 4, 8, 16, 32, 64, 128, 256}, cores_per_replica=1, per_host=8),
}
_ACCELERATOR_RE = re.compile(r"(v2|v3|v4|v5p|v5litepod|v5e|v6e)-(\d+)")


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """A Cloud TPU accelerator type such as v3-32."""

    generation: str  # v2, v3, v4, v5p, v5litepod or v6e.
    size: int  # The number in the name: TensorCores (v2-v5p) or chips (v5e, v6e).

    @property
    def name(self) -> str:
        return f"{self.generation}-{self.size}"

    @property
    def multi_host(self) -> bool:
        """A pod slice of several TPU VMs (hosts), as opposed to one TPU VM."""
        return self.size > _GENERATIONS[self.generation]["per_host"]

    @property
    def replicas(self) -> int:
        """TPU devices TensorFlow sees, so TPUStrategy's number of replicas."""
        return max(1, self.size // _GENERATIONS[self.generation]["cores_per_replica"])


def parse_accelerator(text: str, *, flag: str = "--accelerator_type") -> Accelerator:
    """Parses and checks an accelerator type.

    Raises:
      gcloud.LaunchError: an unknown generation or a size Cloud TPU does not offer.
    """
    match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", text or "")
    if not match:
        raise gcloud.LaunchError(
            f"{flag}={text!r} is not a TPU accelerator type such as v3-8, v4-32 or v5litepod-16"
        )
    generation, size = match.group(1), int(match.group(2))
    if generation == "v5e":
        raise gcloud.LaunchError(f"{flag}={text!r}: Cloud TPU calls v5e 'v5litepod-{size}'")
    if generation not in _GENERATIONS:
        raise gcloud.LaunchError(
            f"{flag}={text!r}: unknown TPU generation {generation!r}; "
            f"known: {', '.join(_GENERATIONS)}"
        )
    sizes = _GENERATIONS[generation]["sizes"]
    if (sizes is not None and size not in sizes) or (sizes is None and size % 8):
        offered = ", ".join(str(s) for s in sorted(sizes)) if sizes else "multiples of 8"
        raise gcloud.LaunchError(f"{flag}={text!r}: {generation} comes in sizes {offered}")
    return Accelerator(generation, size)


def accelerator_from_name(tpu: str) -> str | None:
    """The accelerator type written in a TPU name (`pod-v3-32` → `v3-32`), or None."""
    match = _ACCELERATOR_RE.search(tpu)
    return match.group(0) if match else None


def runtime_version(accelerator: Accelerator, tf_version: str) -> str:
    """TensorFlow's TPU VM image for a TF version: `tpu-vm-tf-X.Y.Z[-pod]-pjrt`.

    The `-pod` images run TensorFlow's TPU server on every host of a slice, which a
    multi-host slice needs; `-pjrt` picks the PJRT device API (TF 2.15+).
    """
    return f"tpu-vm-tf-{tf_version}{'-pod' if accelerator.multi_host else ''}-pjrt"


@dataclasses.dataclass(frozen=True)
class TpuPodConfig:
    """Everything the TPU launch needs; built from flags by `main`, checked by `check`."""

    tpu: str  # TPU node name; also where the accelerator type is read from.
    zone: str  # A zone that offers that accelerator type, e.g. europe-west4-a for v3.
    project: str  # Google Cloud project ID.
    # Flags for the trainer program, passed through (what follows `--`).
    trainer_args: tuple[str, ...] = dataclasses.field(default=(), metadata={"flag": False})
    # What to start: run_pretraining, run_classifier (fine-tuning) or distill (trainer/)
    program: str = dataclasses.field(
        default="run_pretraining", metadata={"enum": tuple(gcloud.TRAINER_PROGRAMS)}
    )
    accelerator_type: str | None = None  # Default: read from the TPU name.
    tf_version: str = DEFAULT_TF_VERSION  # Picks the runtime image.
    runtime_version: str | None = None  # TPU software version; default from tf_version.
    spot: bool = False  # Spot TPU: ~60-70% cheaper, may be preempted (the trainer resumes).
    network: str | None = None  # VPC network; default: gcloud's ("default").
    package: str | None = None  # pip spec to install instead of a wheel of this checkout.
    create: bool = True  # Create the TPU when it does not exist (else stop with an error).
    foreground: bool = False  # Stream the trainer's output here instead of detaching.
    # On worker 0, relative to the home folder; "": bert_pretraining.log for
    # run_pretraining, bert_<program>.log for the others.
    log_file: str = ""

    def __post_init__(self):
        if not self.log_file:
            object.__setattr__(self, "log_file", gcloud.default_log_file(self.program))


@dataclasses.dataclass(frozen=True)
class Plan:
    config: TpuPodConfig
    accelerator: Accelerator
    runtime: str
    steps: tuple[gcloud.Step, ...]
    describe: gcloud.Step
    follow_log: gcloud.Step
    delete: gcloud.Step
    output_dir: str


def check(config: TpuPodConfig) -> tuple[TpuPodConfig, Accelerator]:
    """Checks every setting, and the trainer flags, before anything starts.

    Returns:
      The config (with the accelerator type and runtime filled in) and the accelerator.

    Raises:
      gcloud.LaunchError: a setting that cannot work; the message names the flag.
    """
    gcloud.check_resource_name(config.tpu, flag="--tpu", what="TPU")
    gcloud.check_zone(config.zone)
    gcloud.check_project(config.project)
    accelerator_type = config.accelerator_type or accelerator_from_name(config.tpu)
    if not accelerator_type:
        raise gcloud.LaunchError(
            f"--tpu={config.tpu!r} does not say which TPU it is; pass --accelerator_type "
            "(e.g. v3-8, v4-32) or put it in the name (e.g. --tpu=bert-v3-32)"
        )
    accelerator = parse_accelerator(accelerator_type)
    if not re.fullmatch(r"\d+\.\d+\.\d+", config.tf_version):
        raise gcloud.LaunchError(f"--tf_version={config.tf_version!r}: write it as 2.20.0")
    runtime = config.runtime_version or runtime_version(accelerator, config.tf_version)
    if not re.fullmatch(r"[a-z0-9][-a-z0-9.]*", runtime):
        raise gcloud.LaunchError(f"--runtime_version={runtime!r} is not a TPU software version")
    if accelerator.multi_host and not re.fullmatch(r"tpu-vm-tf-.*-pod(-.*)?", runtime):
        # The one TensorFlow client on worker 0 needs TensorFlow's TPU server on every host,
        # which only the -pod images run.
        raise gcloud.LaunchError(
            f"--runtime_version={runtime}: a {accelerator.name} has several hosts and needs "
            f"a TensorFlow pod image such as {runtime_version(accelerator, config.tf_version)}"
        )
    gcloud.check_trainer_args(
        config.trainer_args,
        program=config.program,
        strategies=("tpu", "auto"),
        replicas=accelerator.replicas,
        hardware=f"a {accelerator.name}",
    )
    return (
        dataclasses.replace(config, accelerator_type=accelerator.name, runtime_version=runtime),
        accelerator,
    )


def _gcloud_tpu(verb: str, config: TpuPodConfig, *args: str) -> tuple[str, ...]:
    return (
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        verb,
        *args,
        f"--zone={config.zone}",
        f"--project={config.project}",
    )


def install_command(config: TpuPodConfig, package: str) -> str:
    """The shell command that installs the project on one TPU worker.

    `--no-deps`, then the trainer's few pure-Python dependencies, then tensorflow-text for the
    image's TensorFlow with `--no-deps` (gcloud.trainer_requirements_beside): a plain
    `pip install` of the project would pull the CPU `tensorflow` wheel (install_requires) over
    the TPU image's own TensorFlow build, and the TPU would vanish from TensorFlow's view.
    """
    requirements, built = gcloud.trainer_requirements_beside(config.tf_version)
    commands = ["set -e"]
    if not config.runtime_version.startswith("tpu-vm-tf-"):
        # A base image without TensorFlow: take Google's TPU build and its libtpu.
        commands.append(
            f"python3 -m pip install --quiet tensorflow-tpu=={config.tf_version}"
            f" -f {LIBTPU_TF_RELEASES}"
        )
    commands.append(
        "python3 -m pip install --quiet --no-deps --force-reinstall " + shlex.quote(package)
    )
    commands.append("python3 -m pip install --quiet " + shlex.join(requirements))
    commands.append("python3 -m pip install --quiet --no-deps " + shlex.join(built))
    return "; ".join(commands)


def train_command(config: TpuPodConfig, accelerator: Accelerator) -> str:
    """The shell command that starts the trainer on the worker(s) that run it."""
    env = []
    if accelerator.multi_host:
        # One TensorFlow client (worker 0) for the whole slice: it must not claim the local
        # TPU itself, and finds the other hosts through the TPU's name.
        env += [("TPU_NAME", config.tpu), ("TPU_LOAD_LIBRARY", "0")]
        tpu_flag = config.tpu
    else:
        if config.runtime_version.startswith("tpu-vm-tf-"):
            # The PJRT images ship libtpu at /lib/libtpu.so as a pluggable device.
            env += [
                ("NEXT_PLUGGABLE_DEVICE_USE_C_API", "true"),
                ("TF_PLUGGABLE_DEVICE_LIBRARY_PATH", "/lib/libtpu.so"),
            ]
        tpu_flag = "local"
    trainer = [
        "python3",
        "-m",
        gcloud.trainer_program(config.program).module,
        f"--tpu={tpu_flag}",
        "--strategy=tpu",
        # After ours, so that a --strategy=auto of the user's (checked) takes effect.
        *config.trainer_args,
    ]
    exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in env)
    log = shlex.quote(config.log_file)
    if config.foreground:
        return f"cd ~; {exports}set -o pipefail; {shlex.join(trainer)} 2>&1 | tee {log}"
    # nohup + all three streams redirected: the run outlives this ssh session.
    return (
        f"cd ~; {exports}nohup {shlex.join(trainer)} > {log} 2>&1 < /dev/null & "
        f"echo started trainer, pid $!, log ~/{config.log_file}"
    )


def plan(config: TpuPodConfig, accelerator: Accelerator, *, dist_dir: str) -> Plan:
    """The commands of a checked launch, in order."""
    steps = []
    describe = gcloud.Step(
        f"look up TPU {config.tpu}",
        _gcloud_tpu("describe", config, config.tpu, "--format=value(state,acceleratorType)"),
    )
    create_args = [
        config.tpu,
        f"--accelerator-type={accelerator.name}",
        f"--version={config.runtime_version}",
    ]
    if config.spot:
        create_args.append("--spot")
    if config.network:
        create_args.append(f"--network={config.network}")
    steps.append(
        gcloud.Step(
            f"create TPU {config.tpu} ({accelerator.name}, {config.runtime_version}) unless it exists",
            _gcloud_tpu("create", config, *create_args),
            unless=describe.argv,
        )
    )
    if config.package:
        package = config.package
    else:
        wheel = gcloud.wheel_filename()
        steps.append(gcloud.build_wheel_step(dist_dir=dist_dir))
        steps.append(
            gcloud.Step(
                "copy the wheel to every TPU worker",
                _gcloud_tpu(
                    "scp",
                    config,
                    os.path.join(dist_dir, wheel),
                    f"{config.tpu}:{wheel}",
                    "--worker=all",
                ),
            )
        )
        package = wheel
    steps.append(
        gcloud.Step(
            "install the project on every TPU worker",
            _gcloud_tpu(
                "ssh",
                config,
                config.tpu,
                "--worker=all",
                f"--command={install_command(config, package)}",
            ),
        )
    )
    # A pod slice runs one TensorFlow client, on worker 0 (see the module docstring).
    workers = "0" if accelerator.multi_host else "all"
    steps.append(
        gcloud.Step(
            "start the trainer " + ("on worker 0" if accelerator.multi_host else "on the TPU VM"),
            _gcloud_tpu(
                "ssh",
                config,
                config.tpu,
                f"--worker={workers}",
                f"--command={train_command(config, accelerator)}",
            ),
        )
    )
    follow_log = gcloud.Step(
        "follow the trainer's log",
        _gcloud_tpu(
            "ssh",
            config,
            config.tpu,
            "--worker=0",
            f"--command=tail -n 100 -f {shlex.quote(config.log_file)}",
        ),
    )
    delete = gcloud.Step(
        "delete the TPU (billing stops; outputs on gs:// stay)",
        _gcloud_tpu("delete", config, config.tpu, "--quiet"),
    )
    return Plan(
        config=config,
        accelerator=accelerator,
        runtime=config.runtime_version,
        steps=tuple(steps),
        describe=describe,
        follow_log=follow_log,
        delete=delete,
        output_dir=gcloud.flag_value(config.trainer_args, "output_dir") or "",
    )


def print_next_steps(plan_: Plan) -> None:
    """Tells the user how to follow the run, watch TensorBoard and delete the TPU."""
    print(
        "\n".join(
            [
                "",
                f"# Follow the log (worker 0): {plan_.follow_log.command_line()}",
                "# TensorBoard, from any machine logged in with "
                "`gcloud auth application-default login`:",
                f"#   tensorboard --logdir={shlex.quote(plan_.output_dir)}",
                "# Delete the TPU when training is done, or it keeps costing money:",
                f"#   {plan_.delete.command_line()}",
            ]
        )
    )


def _describe(plan_: Plan, runner: Callable) -> tuple[str, str] | None:
    """Runs `describe`: (state, accelerator type) of an existing TPU, or None if there is none.

    Raises:
      gcloud.LaunchError: describe failed for another reason than "not found".
    """
    result = gcloud.run_step(plan_.describe, runner=runner, capture=True, check=False)
    if result.returncode == 0:
        fields = (result.stdout or "").split()
        return (fields[0] if fields else "", fields[1] if len(fields) > 1 else "")
    message = (result.stderr or "").strip()
    if "NOT_FOUND" in message or "not found" in message.lower():
        return None
    raise gcloud.LaunchError(f"cannot look up TPU {plan_.config.tpu}: {message}")


def _check_runtime_offered(plan_: Plan, runner: Callable) -> None:
    config = plan_.config
    listing = gcloud.Step(
        f"list the TPU software versions of {config.zone}",
        _gcloud_tpu("versions", config, "list", "--format=value(version)"),
    )
    result = gcloud.run_step(listing, runner=runner, capture=True, check=False)
    versions = (result.stdout or "").split()
    if result.returncode != 0 or not versions:
        logging.warning("could not list TPU versions; trying %s anyway", config.runtime_version)
        return
    if config.runtime_version not in versions:
        tensorflow = sorted(v for v in versions if v.startswith("tpu-vm-tf-"))
        raise gcloud.LaunchError(
            f"TPU software version {config.runtime_version} is not offered in {config.zone}; "
            f"TensorFlow ones there: {', '.join(tensorflow) or 'none'}. Pass "
            "--runtime_version (or --tf_version), or another --zone"
        )


def execute(plan_: Plan, *, runner: Callable = subprocess.run) -> None:
    """Runs the plan: creates the TPU if needed, installs, starts the trainer.

    Raises:
      gcloud.LaunchError: the TPU exists in a state or shape that cannot run this launch.
      gcloud.StepFailed: a command failed.
    """
    config = plan_.config
    found = _describe(plan_, runner)
    create, *rest = plan_.steps
    if found is None:
        if not config.create:
            raise gcloud.LaunchError(f"TPU {config.tpu} does not exist (and --nocreate)")
        _check_runtime_offered(plan_, runner)
        gcloud.run_step(create, runner=runner)
    else:
        state, accelerator_type = found
        logging.info("TPU %s exists: %s, %s", config.tpu, state, accelerator_type)
        if accelerator_type and accelerator_type != plan_.accelerator.name:
            raise gcloud.LaunchError(
                f"TPU {config.tpu} exists as {accelerator_type}, not {plan_.accelerator.name}; "
                "pass --accelerator_type to match it, or another --tpu name"
            )
        if state and state != "READY":
            raise gcloud.LaunchError(
                f"TPU {config.tpu} is {state}, not READY; a preempted TPU cannot restart: "
                f"delete it ({plan_.delete.command_line()}) and run this again"
            )
    for step in rest:
        gcloud.run_step(step, runner=runner)


# ---------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str]) -> None:
    program = "launch.tpu_pod"
    try:
        config, accelerator = check(
            config_flags.config_from_flags(TpuPodConfig, trainer_args=tuple(argv[1:]))
        )
    except gcloud.LaunchError as error:
        gcloud.exit_with_error(program, error)
    kind = "pod slice, trainer on worker 0" if accelerator.multi_host else "one VM"
    gcloud.run_trainer_launch(
        program,
        config=config,
        dry_run=flags.FLAGS.dry_run,
        make_plan=lambda dist_dir: plan(config, accelerator, dist_dir=dist_dir),
        dry_run_header=lambda launch: (
            f"launch.tpu_pod dry run: {accelerator.name} ({kind}, {accelerator.replicas} "
            f"replicas), runtime {launch.runtime}"
        ),
        execute=execute,
        print_next_steps=print_next_steps,
    )


if __name__ == "__main__":
    gcloud.define_launcher_flags(TpuPodConfig)
    command_line.run(main, program="launch.tpu_pod")
