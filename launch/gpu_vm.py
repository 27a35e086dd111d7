r"""Trains BERT on one Compute Engine VM with GPUs (MirroredStrategy), creating it if needed.

    python -m launch.gpu_vm --vm=bert-gpu --zone=us-central1-a --project=my-project \
        [--machine_type=a2-highgpu-8g] [--dry_run] -- \
        --input_file='gs://my-bucket/bert/records/train/*' \
        --output_dir=gs://my-bucket/bert/runs/base-gpu --model_size=base \
        --train_batch_size=256 --mixed_precision=bf16

The GPU counterpart of launch.tpu_pod, with the same steps: `gcloud compute instances
describe`, then `create` when the VM does not exist (a Deep Learning VM image that installs
the NVIDIA driver on first boot), this project's wheel copied over and installed with
`tensorflow[and-cuda]`, and `python3 -m trainer.run_pretraining --strategy=mirrored …` started
in the background once `nvidia-smi` answers. `--dry_run` prints the commands.
`--program=run_classifier` (or `distill`) starts that trainer program instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence

from absl import flags

from contracts import command_line, config_flags
from launch import gcloud

# GPUs per machine type where the type fixes them (accelerator-optimized families).
_G2_GPUS = {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}


@dataclasses.dataclass(frozen=True)
class GpuVmConfig:
    """Everything the GPU launch needs; built from flags by `main`, checked by `check`."""

    vm: str  # Compute Engine instance name.
    zone: str  # A zone that has the GPU, e.g. us-central1-a.
    project: str  # Google Cloud project ID.
    # Flags for the trainer program, passed through (what follows `--`).
    trainer_args: tuple[str, ...] = dataclasses.field(default=(), metadata={"flag": False})
    # What to start: run_pretraining, run_classifier (fine-tuning) or distill (trainer/)
    program: str = dataclasses.field(
        default="run_pretraining", metadata={"enum": tuple(gcloud.TRAINER_PROGRAMS)}
    )
    # g2-standard-48: 4 NVIDIA L4 (24 GB, bf16), widely available; a2-highgpu-8g (8 A100)
    # or a3-highgpu-8g (8 H100) for BERT-base/large at full speed.
    machine_type: str = "g2-standard-48"
    accelerator: str | None = None  # N1 only: e.g. type=nvidia-tesla-v100,count=8.
    # A Deep Learning VM image: CUDA driver installed on first boot, Python 3.10.
    image_family: str = "common-cu129-ubuntu-2204-nvidia-580"
    image_project: str = "deeplearning-platform-release"  # Project of the image family.
    boot_disk_gb: int = 200  # TensorFlow + CUDA wheels take ~10 GB; checkpoints go to gs://.
    spot: bool = False  # Spot VM: much cheaper, may be stopped (the trainer resumes).
    package: str | None = None  # pip spec to install instead of a wheel of this checkout.
    create: bool = True  # Create the VM when it does not exist (else stop with an error).
    foreground: bool = False  # Stream the trainer's output here instead of detaching.
    # On the VM, relative to the home folder; "": bert_pretraining.log for
    # run_pretraining, bert_<program>.log for the others.
    log_file: str = ""

    def __post_init__(self):
        if not self.log_file:
            object.__setattr__(self, "log_file", gcloud.default_log_file(self.program))


def gpu_count(config: GpuVmConfig) -> int:
    """GPUs of the machine, from its type (A2/A3/A4/G2) or from --accelerator (N1).

    Raises:
      gcloud.LaunchError: a machine type without GPUs, or N1 without --accelerator.
    """
    machine = config.machine_type
    if re.fullmatch(r"a[2-4]-[a-z]+gpu-(\d+)g(-[a-z0-9]+)?", machine):
        if config.accelerator:
            raise gcloud.LaunchError(
                f"--accelerator: {machine} comes with its GPUs attached; leave it out"
            )
        return int(re.search(r"-(\d+)g", machine).group(1))
    g2 = re.fullmatch(r"g2-standard-(\d+)", machine)
    if g2 and int(g2.group(1)) in _G2_GPUS:
        if config.accelerator:
            raise gcloud.LaunchError(
                f"--accelerator: {machine} comes with its GPUs attached; leave it out"
            )
        return _G2_GPUS[int(g2.group(1))]
    if re.fullmatch(r"n1-[a-z]+-\d+", machine):
        match = re.fullmatch(r"type=(nvidia-[-a-z0-9]+),count=(\d+)", config.accelerator or "")
        if not match:
            raise gcloud.LaunchError(
                f"--machine_type={machine} has no GPUs of its own: pass "
                "--accelerator=type=nvidia-tesla-v100,count=8 (or t4, p100, …)"
            )
        return int(match.group(2))
    raise gcloud.LaunchError(
        f"--machine_type={machine!r} is not a GPU machine type: use a2-highgpu-Ng, "
        "a3-highgpu-Ng, g2-standard-N, or n1-… with --accelerator"
    )


def check(config: GpuVmConfig) -> tuple[GpuVmConfig, int]:
    """Checks every setting, and the trainer flags, before anything starts.

    Returns:
      The config and the number of GPUs.

    Raises:
      gcloud.LaunchError: a setting that cannot work; the message names the flag.
    """
    gcloud.check_resource_name(config.vm, flag="--vm", what="VM")
    gcloud.check_zone(config.zone)
    gcloud.check_project(config.project)
    gpus = gpu_count(config)
    gcloud.check_positive(config.boot_disk_gb, flag="--boot_disk_gb")
    gcloud.check_trainer_args(
        config.trainer_args,
        program=config.program,
        strategies=("mirrored", "one_device", "auto"),
        replicas=gpus,
        hardware=f"a {config.machine_type} ({gpus} GPUs)",
    )
    return config, gpus


def _gcloud(verb: str, config: GpuVmConfig, *args: str, group: str = "instances") -> tuple:
    prefix = ("gcloud", "compute", group, verb) if group else ("gcloud", "compute", verb)
    return (*prefix, *args, f"--zone={config.zone}", f"--project={config.project}")


def install_command(package: str, requirements: Sequence[str]) -> str:
    """Installs the project with TensorFlow's CUDA wheels (`tensorflow[and-cuda]`)."""
    return "; ".join(
        [
            "set -e",
            "python3 -m pip install --quiet --no-deps --force-reinstall " + shlex.quote(package),
            "python3 -m pip install --quiet " + shlex.join(requirements),
        ]
    )


def train_command(config: GpuVmConfig) -> str:
    """Waits for the NVIDIA driver (installed on first boot), then starts the trainer."""
    trainer = [
        "python3",
        "-m",
        gcloud.trainer_program(config.program).module,
        "--strategy=mirrored",
        *config.trainer_args,
    ]
    wait = (
        "for i in $(seq 60); do nvidia-smi > /dev/null 2>&1 && break; sleep 10; done; "
        "nvidia-smi --query-gpu=name,memory.total --format=csv"
    )
    log = shlex.quote(config.log_file)
    if config.foreground:
        return f"cd ~; {wait}; set -o pipefail; {shlex.join(trainer)} 2>&1 | tee {log}"
    return (
        f"cd ~; {wait}; nohup {shlex.join(trainer)} > {log} 2>&1 < /dev/null & "
        f"echo started trainer, pid $!, log ~/{config.log_file}"
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    config: GpuVmConfig
    gpus: int
    steps: tuple[gcloud.Step, ...]
    describe: gcloud.Step
    follow_log: gcloud.Step
    delete: gcloud.Step
    output_dir: str


def plan(config: GpuVmConfig, gpus: int, *, dist_dir: str) -> Plan:
    """The commands of a checked launch, in order."""
    describe = gcloud.Step(
        f"look up VM {config.vm}",
        _gcloud("describe", config, config.vm, "--format=value(status,machineType.basename())"),
    )
    create_args = [
        config.vm,
        f"--machine-type={config.machine_type}",
        f"--image-family={config.image_family}",
        f"--image-project={config.image_project}",
        f"--boot-disk-size={config.boot_disk_gb}GB",
        # GPU VMs cannot live-migrate.
        "--maintenance-policy=TERMINATE",
        "--metadata=install-nvidia-driver=True",
        # Read and write gs:// with the VM's service account.
        "--scopes=cloud-platform",
    ]
    if config.accelerator:
        create_args.append(f"--accelerator={config.accelerator}")
    if config.spot:
        create_args += ["--provisioning-model=SPOT", "--instance-termination-action=STOP"]
    steps = [
        gcloud.Step(
            f"create VM {config.vm} ({config.machine_type}, {gpus} GPU) unless it exists",
            _gcloud("create", config, *create_args),
            unless=describe.argv,
        )
    ]
    if config.package:
        package = config.package
    else:
        wheel = gcloud.wheel_filename()
        steps.append(gcloud.build_wheel_step(dist_dir=dist_dir))
        steps.append(
            gcloud.Step(
                "copy the wheel to the VM",
                _gcloud(
                    "scp",
                    config,
                    os.path.join(dist_dir, wheel),
                    f"{config.vm}:{wheel}",
                    group="",
                ),
            )
        )
        package = wheel
    tensorflow = gcloud.requirements(["tensorflow"])[0].replace(
        "tensorflow", "tensorflow[and-cuda]", 1
    )
    requirements = [tensorflow, *gcloud.requirements(gcloud.trainer_packages())]
    steps.append(
        gcloud.Step(
            "install the project and TensorFlow with CUDA on the VM",
            _gcloud(
                "ssh",
                config,
                config.vm,
                f"--command={install_command(package, requirements)}",
                group="",
            ),
        )
    )
    steps.append(
        gcloud.Step(
            f"start the trainer on the VM ({gpus} GPUs, MirroredStrategy)",
            _gcloud("ssh", config, config.vm, f"--command={train_command(config)}", group=""),
        )
    )
    return Plan(
        config=config,
        gpus=gpus,
        steps=tuple(steps),
        describe=describe,
        follow_log=gcloud.Step(
            "follow the trainer's log",
            _gcloud(
                "ssh",
                config,
                config.vm,
                f"--command=tail -n 100 -f {shlex.quote(config.log_file)}",
                group="",
            ),
        ),
        delete=gcloud.Step(
            "delete the VM (billing stops; outputs on gs:// stay)",
            _gcloud("delete", config, config.vm, "--quiet"),
        ),
        output_dir=gcloud.flag_value(config.trainer_args, "output_dir") or "",
    )


def execute(plan_: Plan, *, runner: Callable = subprocess.run) -> None:
    """Runs the plan: creates the VM if needed, installs, starts the trainer.

    Raises:
      gcloud.LaunchError: the VM exists but is stopped or of another machine type.
      gcloud.StepFailed: a command failed.
    """
    config = plan_.config
    result = gcloud.run_step(plan_.describe, runner=runner, capture=True, check=False)
    create, *rest = plan_.steps
    if result.returncode != 0:
        message = (result.stderr or "").strip()
        if "not found" not in message.lower():
            raise gcloud.LaunchError(f"cannot look up VM {config.vm}: {message}")
        if not config.create:
            raise gcloud.LaunchError(f"VM {config.vm} does not exist (and --nocreate)")
        gcloud.run_step(create, runner=runner)
    else:
        fields = (result.stdout or "").split()
        status = fields[0] if fields else ""
        machine = fields[1] if len(fields) > 1 else ""
        if machine and machine != config.machine_type:
            raise gcloud.LaunchError(
                f"VM {config.vm} exists as {machine}, not {config.machine_type}; "
                "pass --machine_type to match it, or another --vm name"
            )
        if status and status != "RUNNING":
            raise gcloud.LaunchError(
                f"VM {config.vm} is {status}: start it with `gcloud compute instances start "
                f"{config.vm} --zone={config.zone} --project={config.project}` and run again"
            )
    for step in rest:
        gcloud.run_step(step, runner=runner)


def print_next_steps(plan_: Plan) -> None:
    print(
        "\n".join(
            [
                "",
                f"# Follow the log: {plan_.follow_log.command_line()}",
                "# TensorBoard, from any machine logged in with "
                "`gcloud auth application-default login`:",
                f"#   tensorboard --logdir={shlex.quote(plan_.output_dir)}",
                "# Delete the VM when training is done, or it keeps costing money:",
                f"#   {plan_.delete.command_line()}",
            ]
        )
    )


# ---------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str]) -> None:
    program = "launch.gpu_vm"
    try:
        config, gpus = check(
            config_flags.config_from_flags(GpuVmConfig, trainer_args=tuple(argv[1:]))
        )
    except gcloud.LaunchError as error:
        gcloud.exit_with_error(program, error)
    gcloud.run_trainer_launch(
        program,
        config=config,
        dry_run=flags.FLAGS.dry_run,
        make_plan=lambda dist_dir: plan(config, gpus, dist_dir=dist_dir),
        dry_run_header=lambda _: (
            f"launch.gpu_vm dry run: {config.machine_type}, {gpus} GPU(s), MirroredStrategy"
        ),
        execute=execute,
        print_next_steps=print_next_steps,
    )


if __name__ == "__main__":
    gcloud.define_launcher_flags(GpuVmConfig)
    command_line.run(main, program="launch.gpu_vm")
