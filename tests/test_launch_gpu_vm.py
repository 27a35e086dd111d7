"""launch.gpu_vm: GPU machine types, flag checks, the gcloud commands, the --dry_run CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from launch import gcloud, gpu_vm

TRAINER_ARGS = (
    "--input_file=gs://my-bert-bucket/bert/records/train/*",
    "--output_dir=gs://my-bert-bucket/bert/runs/base-gpu",
    "--train_batch_size=256",
)


def make_plan(**overrides) -> gpu_vm.Plan:
    values = dict(
        vm="bert-gpu", zone="us-central1-a", project="my-project-1", trainer_args=TRAINER_ARGS
    )
    values.update(overrides)
    config, gpus = gpu_vm.check(gpu_vm.GpuVmConfig(**values))
    return gpu_vm.plan(config, gpus, dist_dir="/tmp/wheels")


@pytest.mark.parametrize(
    ("machine_type", "accelerator", "gpus"),
    [
        ("g2-standard-48", None, 4),
        ("g2-standard-8", None, 1),
        ("a2-highgpu-8g", None, 8),
        ("a2-ultragpu-2g", None, 2),
        ("a3-highgpu-8g", None, 8),
        ("n1-standard-16", "type=nvidia-tesla-v100,count=4", 4),
    ],
)
def test_gpu_count(machine_type, accelerator, gpus):
    config = gpu_vm.GpuVmConfig(
        vm="v", zone="z", project="p", machine_type=machine_type, accelerator=accelerator
    )
    assert gpu_vm.gpu_count(config) == gpus


def test_plan_is_complete():
    plan = make_plan(machine_type="a2-highgpu-8g", spot=True)
    create, build, scp, install, train = plan.steps
    for step in (create, scp, install, train, plan.delete):
        assert step.argv[0] == "gcloud"
        assert "--zone=us-central1-a" in step.argv and "--project=my-project-1" in step.argv
    assert create.argv[2:5] == ("instances", "create", "bert-gpu")
    assert "--machine-type=a2-highgpu-8g" in create.argv
    assert "--metadata=install-nvidia-driver=True" in create.argv
    assert "--provisioning-model=SPOT" in create.argv
    assert create.unless[2:4] == ("instances", "describe")
    assert scp.argv[2] == "scp" and scp.argv[-3].startswith("bert-gpu:")
    install_line = next(a for a in install.argv if a.startswith("--command="))
    assert "'tensorflow[and-cuda]>=2.20,<2.22'" in install_line
    assert "--no-deps --force-reinstall" in install_line
    train_line = next(a for a in train.argv if a.startswith("--command="))
    assert "nvidia-smi" in train_line
    assert (
        "python3 -m trainer.run_pretraining --strategy=mirrored "
        "'--input_file=gs://my-bert-bucket/bert/records/train/*' "
        "--output_dir=gs://my-bert-bucket/bert/runs/base-gpu --train_batch_size=256"
    ) in train_line


def test_distillation_on_a_gpu_vm_starts_trainer_distill():
    args = (
        "--teacher_dir=gs://my-bert-bucket/runs/sst2",
        "--output_dir=gs://my-bert-bucket/runs/sst2-3l",
        "--student_layers=3",
        "--train_batch_size=64",
    )
    plan = make_plan(program="distill", trainer_args=args)
    train_line = next(a for a in plan.steps[-1].argv if a.startswith("--command="))
    assert "python3 -m trainer.distill --strategy=mirrored " + " ".join(args) in train_line
    assert "> bert_distill.log 2>&1" in train_line
    assert plan.output_dir == "gs://my-bert-bucket/runs/sst2-3l"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(machine_type="n2-standard-8"), "is not a GPU machine type"),
        (dict(machine_type="n1-standard-8"), "pass --accelerator=type=nvidia-tesla-v100"),
        (dict(accelerator="type=nvidia-l4,count=4"), "comes with its GPUs attached"),
        (dict(zone="us-central1"), "that is a region"),
        (dict(trainer_args=(*TRAINER_ARGS, "--strategy=tpu")), "--strategy=tpu cannot run"),
        (dict(trainer_args=(*TRAINER_ARGS, "--train_batch_size=30")), "use a multiple of 4"),
        (
            dict(trainer_args=("--input_file=records/*", "--output_dir=gs://bkt/run")),
            "trainer flag --input_file='records/*' must be a gs:// path",
        ),
    ],
)
def test_bad_flags_are_refused(overrides, message):
    with pytest.raises(gcloud.LaunchError) as caught:
        make_plan(**overrides)
    assert message in str(caught.value)


def test_execute_stops_on_a_stopped_vm():
    calls = []

    def fake(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "TERMINATED\tg2-standard-48\n", "")

    with pytest.raises(gcloud.LaunchError, match="is TERMINATED: start it with"):
        gpu_vm.execute(make_plan(), runner=fake)
    assert len(calls) == 1


def test_cli_dry_run():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.gpu_vm",
            "--vm=bert-gpu",
            "--zone=us-central1-a",
            "--project=my-project-1",
            "--dry_run",
            "--",
            *TRAINER_ARGS,
        ],
        cwd=gcloud.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "gcloud compute instances create bert-gpu --machine-type=g2-standard-48" in (
        result.stdout
    )
    assert "gcloud compute instances delete bert-gpu --quiet" in result.stdout
