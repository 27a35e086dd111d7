"""The software of the training machines as the launchers set them up, rebuilt on this machine;
and this project's test environment on the TPU images' TensorFlow.

    .venv/bin/python -m tests.machine_envs [--root=.venv-machines]     (make machine-envs)

- `tpu-vm-tf-2.20.0`: a Cloud TPU VM image ships TensorFlow (`tpu-vm-tf-2.20.0-pjrt`:
  tensorflow-tpu 2.20); `launch.tpu_pod` then installs this project's wheel with --no-deps and
  the trainer's requirements. Here: a virtual environment with the CPU wheel of the image's
  TensorFlow version, this project's wheel built by the launcher's own build step, then the
  launcher's own install command, taken from the plan it makes (not a copy of it) and run with
  the environment's `python3` first on PATH.
- `gpu-vm`: a Deep Learning VM image ships no TensorFlow; `launch.gpu_vm`'s install command
  brings `tensorflow[and-cuda]` (the CUDA libraries as wheels, ~3 GB), the wheel and the
  trainer's requirements. Here: an empty virtual environment, then that command. (The image's
  Python is 3.10; this one's is the machine's.)
- `dataflow-worker`: a Dataflow worker starts from Beam's SDK container for the launching Beam
  version (`apache/beam_python3.11_sdk:<version>`: that Beam with its `gcp` extra) and pip
  installs the package Beam stages for `--setup_file` (launch.dataflow passes setup.py). Here:
  a virtual environment with `apache-beam[gcp]` of this machine's Beam version, then the sdist
  built by Beam's own stager, installed with its dependencies as the worker's boot does.
- `dev-tf-2.20.0`: the project with its dev extra as in `.venv`, but TensorFlow and
  tensorflow-text of the TPU images' version, where `make test` runs the trainer tests again.

tests/test_machine_envs.py runs the trainer in the first two and the data stages in the third,
from outside the checkout.
TensorFlow is cached (an environment is rebuilt only when its TensorFlow changes); the project
is reinstalled every time, as the launchers do (`--force-reinstall`). Needs PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = ROOT / ".venv-machines"


def tpu_vm_env_dir(root: Path = DEFAULT_ROOT) -> Path:
    from launch import tpu_pod

    return root / f"tpu-vm-tf-{tpu_pod.DEFAULT_TF_VERSION}"


def gpu_vm_env_dir(root: Path = DEFAULT_ROOT) -> Path:
    return root / "gpu-vm"


def dataflow_worker_env_dir(root: Path = DEFAULT_ROOT) -> Path:
    return root / "dataflow-worker"


def dev_env_dir(root: Path = DEFAULT_ROOT) -> Path:
    from launch import tpu_pod

    return root / f"dev-tf-{tpu_pod.DEFAULT_TF_VERSION}"


_TRAINER_ARGS = ("--input_file=gs://my-bucket/records/*", "--output_dir=gs://my-bucket/run")


def _install_command(steps, dist_dir: str) -> str:
    """Builds the wheel as the plan's build step does; returns the plan's install command."""
    from launch import gcloud

    build = next(s for s in steps if s.argv == gcloud.build_wheel_step(dist_dir=dist_dir).argv)
    subprocess.run(build.argv, check=True, capture_output=True)
    install = next(s for s in steps if s.description.startswith("install the project"))
    return next(a for a in install.argv if a.startswith("--command=")).removeprefix("--command=")


def tpu_vm_install_command(dist_dir: str) -> str:
    """The install step of the plan launch.tpu_pod makes for a single-host v3-8."""
    from launch import tpu_pod

    config, accelerator = tpu_pod.check(
        tpu_pod.TpuPodConfig(
            tpu="test-v3-8",
            zone="europe-west4-a",
            project="my-project-1",
            trainer_args=_TRAINER_ARGS,
        )
    )
    return _install_command(tpu_pod.plan(config, accelerator, dist_dir=dist_dir).steps, dist_dir)


def gpu_vm_install_command(dist_dir: str) -> str:
    """The install step of the plan launch.gpu_vm makes for its default machine."""
    from launch import gpu_vm

    config, gpus = gpu_vm.check(
        gpu_vm.GpuVmConfig(
            vm="test-gpu", zone="us-central1-a", project="my-project-1", trainer_args=_TRAINER_ARGS
        )
    )
    return _install_command(gpu_vm.plan(config, gpus, dist_dir=dist_dir).steps, dist_dir)


def _fresh_env(env_dir: Path, wanted: dict, *, log) -> list[str] | None:
    """Creates env_dir unless its stamp says it holds `wanted`; returns its pip command when
    it was (re)created, None when the cached one is kept."""
    stamp = env_dir / "environment.json"
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return None
    if env_dir.exists():
        shutil.rmtree(env_dir)
    log(f"machine envs: creating {env_dir} with {wanted}")
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    return pip


def _run_launcher_command(env_dir: Path, install_command, *, log) -> None:
    with tempfile.TemporaryDirectory(prefix="bert-wheel-") as dist_dir:
        command = install_command(dist_dir)
        log(f"machine envs: the launcher's install command, in {env_dir}: {command}")
        environment = dict(os.environ, PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}")
        environment.pop("PYTHONPATH", None)
        subprocess.run(["bash", "-c", command], cwd=dist_dir, env=environment, check=True)


def build_tpu_vm_env(root: Path = DEFAULT_ROOT, *, log=print) -> Path:
    """Builds (or refreshes) the TPU VM environment; returns its folder."""
    from launch import tpu_pod

    env_dir = tpu_vm_env_dir(root)
    wanted = {"tensorflow": tpu_pod.DEFAULT_TF_VERSION}
    pip = _fresh_env(env_dir, wanted, log=log)
    if pip:
        # What the image ships, before the launcher's command runs.
        subprocess.run([*pip, f"tensorflow=={wanted['tensorflow']}"], check=True)
        (env_dir / "environment.json").write_text(json.dumps(wanted))
    _run_launcher_command(env_dir, tpu_vm_install_command, log=log)
    return env_dir


def build_gpu_vm_env(root: Path = DEFAULT_ROOT, *, log=print) -> Path:
    """Builds (or refreshes) the GPU VM environment; returns its folder. The launcher's command
    installs TensorFlow itself; pip keeps what already satisfies it on a rerun."""
    from launch import gcloud

    env_dir = gpu_vm_env_dir(root)
    wanted = {"tensorflow": gcloud.requirements(["tensorflow"])[0]}
    if _fresh_env(env_dir, wanted, log=log):
        (env_dir / "environment.json").write_text(json.dumps(wanted))
    _run_launcher_command(env_dir, gpu_vm_install_command, log=log)
    return env_dir


def build_dataflow_worker_env(root: Path = DEFAULT_ROOT, *, log=print) -> Path:
    """Builds (or refreshes) the Dataflow worker environment; returns its folder."""
    import apache_beam
    from apache_beam.runners.portability.stager import Stager

    env_dir = dataflow_worker_env_dir(root)
    wanted = {"apache-beam": apache_beam.__version__}
    pip = _fresh_env(env_dir, wanted, log=log)
    if pip:
        # The SDK container's Beam (Dataflow picks the container of the launching version).
        subprocess.run([*pip, f"apache-beam[gcp]=={apache_beam.__version__}"], check=True)
        (env_dir / "environment.json").write_text(json.dumps(wanted))
    with tempfile.TemporaryDirectory(prefix="bert-sdist-") as dist_dir:
        # Beam's own build of what it stages for --setup_file (private, but it is exactly the
        # code a Dataflow launch runs: `python -m build --sdist` when `build` is installed, else
        # `setup.py sdist`), so a file missing from the sdist shows up here.
        sdist = Stager._build_setup_package(str(ROOT / "setup.py"), dist_dir)
        log(f"machine envs: installing Beam's staged package {os.path.basename(sdist)}")
        python = str(env_dir / "bin" / "python")
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", sdist],
            check=True,
        )
        subprocess.run([python, "-m", "pip", "install", "--quiet", sdist], check=True)
    return env_dir


def build_dev_env(root: Path = DEFAULT_ROOT, *, log=print) -> Path:
    """The project's dev environment with the TPU images' TensorFlow (and the tensorflow-text
    and TensorBoard built for it), for running the trainer tests on that version."""
    from launch import gcloud, tpu_pod

    env_dir = dev_env_dir(root)
    pins = [
        f"tensorflow=={tpu_pod.DEFAULT_TF_VERSION}",
        *gcloud.pinned_to_tensorflow(
            (*gcloud.TENSORFLOW_BUILT, "tensorboard"), tpu_pod.DEFAULT_TF_VERSION
        ),
    ]
    wanted = {"pins": pins, "setup.cfg": (ROOT / "setup.cfg").read_text()}
    pip = _fresh_env(env_dir, wanted, log=log)
    if pip:
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
            constraints.write("\n".join(pins) + "\n")
            constraints.flush()
            subprocess.run(
                [*pip, "-c", constraints.name, "-e", f"{ROOT}[dev]"],
                check=True,
                env=dict(os.environ, PYTHONWARNINGS="ignore::UserWarning"),
            )
        (env_dir / "environment.json").write_text(json.dumps(wanted))
    return env_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument(
        "--print_python",
        choices=("tpu-vm", "gpu-vm", "dataflow-worker", "dev"),
        help="print the python of that environment (built or not) and exit",
    )
    args = parser.parse_args()
    if args.print_python:
        env_dir = {
            "tpu-vm": tpu_vm_env_dir,
            "gpu-vm": gpu_vm_env_dir,
            "dataflow-worker": dataflow_worker_env_dir,
            "dev": dev_env_dir,
        }[args.print_python](args.root)
        print(env_dir / "bin" / "python")
        return
    for build in (build_tpu_vm_env, build_gpu_vm_env, build_dataflow_worker_env, build_dev_env):
        env_dir = build(args.root)
        print(f"machine envs: ready: {env_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
