"""launch.tpu_pod: accelerator types, flag checks, the gcloud commands, and the --dry_run CLI."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from launch import gcloud, tpu_pod

ROOT = gcloud.PROJECT_ROOT
TRAINER_ARGS = (
    "--input_file=gs://my-bert-bucket/bert/records/train/*",
    "--eval_input_file=gs://my-bert-bucket/bert/records/eval/*",
    "--output_dir=gs://my-bert-bucket/bert/runs/base",
    "--model_size=base",
    "--train_batch_size=256",
    "--num_train_steps=1000000",
    "--mixed_precision=bf16",
)


def make_plan(**overrides) -> tpu_pod.Plan:
    values = dict(
        tpu="pod-v3-32", zone="europe-west4-a", project="my-project-1", trainer_args=TRAINER_ARGS
    )
    values.update(overrides)
    config, accelerator = tpu_pod.check(tpu_pod.TpuPodConfig(**values))
    return tpu_pod.plan(config, accelerator, dist_dir="/tmp/wheels")


def remote_command(step: gcloud.Step) -> str:
    return next(a for a in step.argv if a.startswith("--command=")).removeprefix("--command=")


@pytest.mark.parametrize(
    ("text", "multi_host", "replicas"),
    [
        ("v2-8", False, 8),
        ("v3-8", False, 8),
        ("v3-32", True, 32),
        ("v4-8", False, 4),  # megacore: one TensorFlow device a chip
        ("v4-32", True, 16),
        ("v5p-16", True, 8),
        ("v5litepod-8", False, 8),
        ("v5litepod-16", True, 16),
        ("v6e-1", False, 1),
        ("v6e-64", True, 64),
    ],
)
def test_accelerator_types(text, multi_host, replicas):
    accelerator = tpu_pod.parse_accelerator(text)
    assert accelerator.name == text
    assert accelerator.multi_host is multi_host
    assert accelerator.replicas == replicas


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v7-8", "unknown TPU generation 'v7'"),
        ("v3-16", "v3 comes in sizes 8, 32, 64"),
        ("v4-12", "v4 comes in sizes multiples of 8"),
        ("v5e-8", "Cloud TPU calls v5e 'v5litepod-8'"),
        ("tpu-8", "is not a TPU accelerator type"),
    ],
)
def test_unknown_accelerator_types_are_refused(text, message):
    with pytest.raises(gcloud.LaunchError) as caught:
        tpu_pod.parse_accelerator(text)
    assert message in str(caught.value)


def test_accelerator_type_and_runtime_come_from_the_name_and_tf_version():
    assert tpu_pod.accelerator_from_name("pod-v3-32") == "v3-32"
    assert tpu_pod.accelerator_from_name("bert-v5litepod-16-spot") == "v5litepod-16"
    assert tpu_pod.accelerator_from_name("my-tpu") is None
    pod = tpu_pod.parse_accelerator("v3-32")
    single = tpu_pod.parse_accelerator("v3-8")
    assert tpu_pod.runtime_version(pod, "2.20.0") == "tpu-vm-tf-2.20.0-pod-pjrt"
    assert tpu_pod.runtime_version(single, "2.20.0") == "tpu-vm-tf-2.20.0-pjrt"


def test_pod_slice_plan_is_complete():
    plan = make_plan()
    create, build, scp, install, train = plan.steps
    for step in (create, scp, install, train, plan.delete, plan.follow_log):
        assert step.argv[:4] == ("gcloud", "compute", "tpus", "tpu-vm")
        assert "--zone=europe-west4-a" in step.argv
        assert "--project=my-project-1" in step.argv
        assert "pod-v3-32" in " ".join(step.argv)

    assert create.argv[4:6] == ("create", "pod-v3-32")
    assert "--accelerator-type=v3-32" in create.argv
    assert "--version=tpu-vm-tf-2.20.0-pod-pjrt" in create.argv
    assert create.unless[4:6] == ("describe", "pod-v3-32")
    assert create.command_line().startswith("gcloud compute tpus tpu-vm describe pod-v3-32")
    assert " >/dev/null 2>&1 || gcloud compute tpus tpu-vm create pod-v3-32 " in (
        create.command_line()
    )

    wheel = gcloud.wheel_filename()
    assert build.argv[:4] == (sys.executable, "-m", "pip", "wheel")
    assert build.argv[-1] == ROOT
    assert scp.argv[5:7] == (f"/tmp/wheels/{wheel}", f"pod-v3-32:{wheel}")
    assert "--worker=all" in scp.argv

    assert "--worker=all" in install.argv
    install_line = remote_command(install)
    # Our package without its dependencies: the TPU image's TensorFlow must stay.
    assert f"pip install --quiet --no-deps --force-reinstall {wheel}" in install_line
    plain, built = gcloud.trainer_requirements_beside("2.20.0")
    for requirement in plain:
        assert requirement in install_line
    # tensorflow-text for the image's TensorFlow, without the `tensorflow` it requires.
    assert built == ["tensorflow-text==2.20.*"]
    assert install_line.endswith("pip install --quiet --no-deps 'tensorflow-text==2.20.*'")
    assert "tensorflow" not in install_line.replace("tensorboard", "").replace(built[0], "")

    # A pod slice: one TensorFlow client, on worker 0, reaching the slice by its name.
    assert "--worker=0" in train.argv
    train_line = remote_command(train)
    assert "export TPU_NAME=pod-v3-32; export TPU_LOAD_LIBRARY=0;" in train_line
    trainer = train_line.split("nohup ", 1)[1].split(" > ", 1)[0].split()
    assert trainer[:5] == [
        "python3",
        "-m",
        "trainer.run_pretraining",
        "--tpu=pod-v3-32",
        "--strategy=tpu",
    ]
    # The trainer flags pass through unchanged, in order (globs quoted for the remote shell).
    assert [arg.strip("'") for arg in trainer[5:]] == list(TRAINER_ARGS)
    assert "> bert_pretraining.log 2>&1 < /dev/null &" in train_line

    assert plan.delete.argv[4:6] == ("delete", "pod-v3-32")
    assert plan.output_dir == "gs://my-bert-bucket/bert/runs/base"


def test_single_host_plan_runs_on_the_vm_itself():
    plan = make_plan(tpu="bert-small", accelerator_type="v4-8", spot=True, network="tpu-net")
    create, *_, train = plan.steps
    assert "--accelerator-type=v4-8" in create.argv
    assert "--version=tpu-vm-tf-2.20.0-pjrt" in create.argv
    assert "--spot" in create.argv and "--network=tpu-net" in create.argv
    assert "--worker=all" in train.argv
    train_line = remote_command(train)
    assert "--tpu=local" in train_line
    assert "TPU_LOAD_LIBRARY" not in train_line
    assert "TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so" in train_line


def test_package_spec_and_base_runtime():
    plan = make_plan(
        tpu="bert-v3-8",
        package="git+https://github.com/example/bert-stack@v0.1.0",
        runtime_version="tpu-ubuntu2204-base",
        foreground=True,
    )
    # No local wheel: nothing to build or copy.
    assert [s.argv[4] for s in plan.steps] == ["create", "ssh", "ssh"]
    assert "--version=tpu-ubuntu2204-base" in plan.steps[0].argv
    install_line = remote_command(plan.steps[1])
    # A base image has no TensorFlow: Google's TPU build comes first.
    assert "tensorflow-tpu==2.20.0 -f https://storage.googleapis.com/libtpu-tf-releases" in (
        install_line
    )
    assert "--no-deps --force-reinstall git+https://github.com/example/bert-stack@v0.1.0" in (
        install_line
    )
    train_line = remote_command(plan.steps[2])
    assert "| tee bert_pretraining.log" in train_line and "nohup" not in train_line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(zone=None), "--zone is required"),
        (dict(zone="europe-west4"), "that is a region"),
        (dict(project=None), "--project is required"),
        (dict(tpu="Pod_V3"), "--tpu='Pod_V3' is not a valid TPU name"),
        (dict(tpu="my-tpu"), "pass --accelerator_type"),
        (dict(accelerator_type="v9-8"), "unknown TPU generation 'v9'"),
        (dict(tf_version="2.20"), "--tf_version='2.20'"),
        (
            dict(runtime_version="tpu-vm-tf-2.20.0-pjrt"),
            "needs a TensorFlow pod image such as tpu-vm-tf",
        ),
        (
            dict(trainer_args=("--input_file=/data/records/*", "--output_dir=gs://bkt/run")),
            "trainer flag --input_file='/data/records/*' must be a gs:// path",
        ),
        (
            dict(trainer_args=("--input_file=gs://bkt/r/*", "--output_dir=./run")),
            "trainer flag --output_dir='./run' must be a gs:// path",
        ),
        (dict(trainer_args=("--input_file=gs://bkt/r/*",)), "--output_dir is required"),
        (dict(trainer_args=(*TRAINER_ARGS, "--tpu=other")), "leave out --tpu"),
        (
            dict(trainer_args=(*TRAINER_ARGS, "--strategy=mirrored")),
            "--strategy=mirrored cannot run on a v3-32",
        ),
        (
            dict(trainer_args=(*TRAINER_ARGS, "--train_batch_size=100")),
            "train_batch_size 100 does not split into 32 replica(s): use a multiple of 32",
        ),
        (
            dict(trainer_args=(*TRAINER_ARGS, "--do_eval")),
            "eval_batch_size 8 does not split over 32 replica(s): use a multiple of 32, the 32 "
            "replicas of a v3-32",
        ),
        (dict(trainer_args=(*TRAINER_ARGS, "base")), "'base' is not a flag"),
    ],
)
def test_bad_flags_are_refused_before_anything_runs(overrides, message):
    with pytest.raises(gcloud.LaunchError) as caught:
        make_plan(**overrides)
    assert message in str(caught.value)


def test_eval_batch_is_checked_only_when_the_trainer_evaluates():
    # 3 does not split over the pod's 32 replicas, but nothing evaluates: the plan is made.
    for extra in (("--eval_batch_size=3",), ("--do_eval", "--eval_batch_size=64")):
        plan = make_plan(trainer_args=(*TRAINER_ARGS, *extra))
        assert all(flag in remote_command(plan.steps[-1]) for flag in extra)
    with pytest.raises(gcloud.LaunchError, match="eval_batch_size"):
        make_plan(trainer_args=(*TRAINER_ARGS, "--do_eval", "--eval_batch_size=3"))


class FakeGcloud:
    """Stands in for subprocess.run on gcloud: a TPU that exists or not, versions offered."""

    def __init__(self, *, existing: str | None, versions=("tpu-vm-tf-2.20.0-pod-pjrt",)):
        self.existing = existing  # describe's output, or None for "not found"
        self.versions = versions
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        verb = argv[4] if argv[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] else argv[3]
        if verb == "describe":
            if self.existing is None:
                return subprocess.CompletedProcess(
                    argv,
                    1,
                    "",
                    "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: "
                    "Resource 'projects/p/locations/z/nodes/pod-v3-32' was not found",
                )
            return subprocess.CompletedProcess(argv, 0, self.existing, "")
        if verb == "versions":
            return subprocess.CompletedProcess(argv, 0, "\n".join(self.versions), "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def verbs(self) -> list[str]:
        return [c[4] if c[0] == "gcloud" else "build" for c in self.calls]


def test_execute_creates_a_missing_tpu_then_installs_and_trains():
    fake = FakeGcloud(existing=None)
    tpu_pod.execute(make_plan(), runner=fake)
    assert fake.verbs() == ["describe", "versions", "create", "build", "scp", "ssh", "ssh"]


def test_execute_reuses_a_ready_tpu():
    fake = FakeGcloud(existing="READY\tv3-32\n")
    tpu_pod.execute(make_plan(), runner=fake)
    assert fake.verbs() == ["describe", "build", "scp", "ssh", "ssh"]


@pytest.mark.parametrize(
    ("existing", "versions", "overrides", "message"),
    [
        ("READY\tv3-8\n", (), {}, "exists as v3-8, not v3-32"),
        ("PREEMPTED\tv3-32\n", (), {}, "is PREEMPTED, not READY"),
        (
            None,
            ("tpu-vm-tf-2.18.0-pod-pjrt", "tpu-ubuntu2204-base"),
            {},
            "not offered in europe-west4-a; TensorFlow ones there: tpu-vm-tf-2.18.0-pod-pjrt",
        ),
        (None, (), dict(create=False), "does not exist (and --nocreate)"),
    ],
)
def test_execute_stops_before_installing_on_a_tpu_it_cannot_use(
    existing, versions, overrides, message
):
    fake = FakeGcloud(existing=existing, versions=versions)
    with pytest.raises(gcloud.LaunchError) as caught:
        tpu_pod.execute(make_plan(**overrides), runner=fake)
    assert message in str(caught.value)
    assert "ssh" not in fake.verbs() and "create" not in fake.verbs()


def test_trainer_defines_every_flag_the_launchers_pass():
    names = gcloud.program_flag_names("trainer.run_pretraining")
    # What the TPU plan adds, and the flags of this file's (and the docs') example.
    gcloud.check_trainer_flag_names(["--tpu=local", "--strategy=tpu", *TRAINER_ARGS], names=names)
    with pytest.raises(gcloud.LaunchError, match="has no flag --num_train_step, --nodo_evaluate"):
        gcloud.check_trainer_flag_names(
            [*TRAINER_ARGS, "--num_train_step=10", "--nodo_evaluate", "--do_eval"], names=names
        )


FINETUNE_ARGS = (
    "--task_name=MNLI",
    "--data_dir=gs://my-bert-bucket/glue/MNLI",
    "--init_checkpoint=gs://my-bert-bucket/bert/runs/base",
    "--output_dir=gs://my-bert-bucket/bert/runs/mnli",
    "--do_train",
    "--do_eval",
    "--do_predict",
    "--train_batch_size=64",
    "--learning_rate=3e-5",
)


def test_fine_tuning_on_a_tpu_starts_run_classifier_with_its_flags():
    plan = make_plan(tpu="bert-v3-8", program="run_classifier", trainer_args=FINETUNE_ARGS)
    train_line = remote_command(plan.steps[-1])
    trainer = train_line.split("nohup ", 1)[1].split(" > ", 1)[0].split()
    assert trainer[:5] == [
        "python3",
        "-m",
        "trainer.run_classifier",
        "--tpu=local",
        "--strategy=tpu",
    ]
    assert trainer[5:] == list(FINETUNE_ARGS)
    assert "> bert_run_classifier.log 2>&1" in train_line
    assert "--command=tail -n 100 -f bert_run_classifier.log" in plan.follow_log.argv
    assert plan.output_dir == "gs://my-bert-bucket/bert/runs/mnli"
    # Both batches must split over the replicas: evaluation and prediction run on them too.
    # Unnamed, the eval batch is run_classifier's default, 32: it splits over a v4-32's 16.
    make_plan(tpu="bert-v4-32", program="run_classifier", trainer_args=FINETUNE_ARGS)
    for extra, message in (
        ("--train_batch_size=100", "train_batch_size 100 does not split into 8"),
        ("--eval_batch_size=100", "eval_batch_size 100 does not split over 8"),
    ):
        with pytest.raises(gcloud.LaunchError, match=message):
            make_plan(
                tpu="bert-v3-8", program="run_classifier", trainer_args=(*FINETUNE_ARGS, extra)
            )
    # distill evaluates unless told not to; run_classifier only when asked.
    distill = ("--teacher_dir=gs://my-bert-bucket/t", "--output_dir=gs://my-bert-bucket/s")
    with pytest.raises(gcloud.LaunchError, match="eval_batch_size 4 does not split over 8"):
        make_plan(
            tpu="bert-v3-8", program="distill", trainer_args=(*distill, "--eval_batch_size=4")
        )
    make_plan(
        tpu="bert-v3-8",
        program="distill",
        trainer_args=(*distill, "--eval_batch_size=4", "--nodo_eval"),
    )


@pytest.mark.parametrize(
    ("program", "args", "message"),
    [
        (
            "run_classifier",
            tuple(a for a in FINETUNE_ARGS if not a.startswith("--task_name")),
            "--task_name is required by trainer.run_classifier",
        ),
        (
            "run_classifier",
            (*FINETUNE_ARGS, "--data_dir=glue/MNLI"),
            "trainer flag --data_dir='glue/MNLI' must be a gs:// path",
        ),
        (
            "run_classifier",
            (*FINETUNE_ARGS, "--vocab_file=vocab.txt"),
            "trainer flag --vocab_file='vocab.txt' must be a gs:// path",
        ),
        (
            "distill",
            ("--output_dir=gs://b/student", "--student_layers=3"),
            "--teacher_dir is required by trainer.distill (gs:// the fine-tuned teacher)",
        ),
        (
            "distill",
            ("--teacher_dir=runs/mnli", "--output_dir=gs://b/student"),
            "trainer flag --teacher_dir='runs/mnli' must be a gs:// path",
        ),
    ],
)
def test_each_program_s_own_flags_are_checked(program, args, message):
    with pytest.raises(gcloud.LaunchError) as caught:
        make_plan(tpu="bert-v3-8", program=program, trainer_args=args)
    assert message in str(caught.value)


def test_fine_tuning_programs_define_every_flag_the_launchers_pass():
    names = gcloud.program_flag_names("trainer.run_classifier")
    gcloud.check_trainer_flag_names(
        ["--tpu=local", "--strategy=tpu", *FINETUNE_ARGS], program="run_classifier", names=names
    )
    with pytest.raises(gcloud.LaunchError, match="trainer.run_classifier has no flag --input_file"):
        gcloud.check_trainer_flag_names(
            [*FINETUNE_ARGS, "--input_file=gs://b/r"], program="run_classifier", names=names
        )
    distill_args = ["--teacher_dir=gs://b/mnli", "--output_dir=gs://b/s", "--student_layers=3"]
    gcloud.check_trainer_flag_names(
        ["--tpu=local", "--strategy=tpu", *distill_args],
        program="distill",
        names=gcloud.program_flag_names("trainer.distill"),
    )
    with pytest.raises(gcloud.LaunchError, match="--program='finetune': one of run_pretraining"):
        gcloud.check_trainer_flag_names(FINETUNE_ARGS, program="finetune", names=names)


def test_wheel_build_step_makes_the_wheel_the_plan_copies(tmp_path):
    step = gcloud.build_wheel_step(dist_dir=str(tmp_path))
    gcloud.run_step(step, capture=True)
    wheel = tmp_path / gcloud.wheel_filename()
    assert wheel.is_file()
    names = zipfile.ZipFile(wheel).namelist()
    assert "launch/tpu_pod.py" in names and "trainer/__init__.py" in names


def test_cli_dry_run_prints_the_gcloud_commands():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.tpu_pod",
            "--tpu=pod-v3-32",
            "--zone=europe-west4-a",
            "--project=my-project-1",
            "--dry_run",
            "--",
            *TRAINER_ARGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    commands = [line for line in out.splitlines() if line.startswith(("gcloud", sys.executable))]
    assert len(commands) == 5
    for command in commands:
        if command.startswith("gcloud"):
            assert "--zone=europe-west4-a --project=my-project-1" in command
    assert "--version=tpu-vm-tf-2.20.0-pod-pjrt" in commands[0]
    assert "--tpu=pod-v3-32 --strategy=tpu" in commands[4]
    for arg in TRAINER_ARGS:
        assert arg.split("=", 1)[1] in commands[4]
    assert "tensorboard --logdir=gs://my-bert-bucket/bert/runs/base" in out
    assert "gcloud compute tpus tpu-vm delete pod-v3-32 --quiet" in out


def test_cli_refuses_an_unknown_accelerator_type():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.tpu_pod",
            "--tpu=bert",
            "--accelerator_type=v3-16",
            "--zone=europe-west4-a",
            "--project=my-project-1",
            "--dry_run",
            "--",
            *TRAINER_ARGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "launch.tpu_pod: error: --accelerator_type='v3-16': v3 comes in sizes" in result.stderr
