"""The software of a TPU VM as `launch.tpu_pod` sets one up, rebuilt on this machine.

    .venv/bin/python -m tests.machine_envs [--root=.venv-machines]     (make machine-envs)

A Cloud TPU VM image ships TensorFlow (`tpu-vm-tf-2.20.0-pjrt`: tensorflow-tpu 2.20); the
launcher then installs this project's wheel with --no-deps and the trainer's few requirements.
Here: a virtual environment with the CPU wheel of the same TensorFlow version as the image's,
then this project's wheel built by the launcher's own build step, then the launcher's own
install command, taken from the plan `launch.tpu_pod` makes (not a copy of it) and run with the
environment's `python3` first on PATH. tests/test_machine_envs.py then runs the trainer there,
from outside the checkout.

The TensorFlow part is cached (it is rebuilt only when the TensorFlow version changes); the
project is reinstalled every time, as the launcher does (`--force-reinstall`). Needs PyPI.
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


def _install_command(dist_dir: str) -> str:
    """The install step of the plan launch.tpu_pod makes for a single-host v3-8."""
    from launch import gcloud, tpu_pod

    config, accelerator = tpu_pod.check(
        tpu_pod.TpuPodConfig(
            tpu="test-v3-8",
            zone="europe-west4-a",
            project="my-project-1",
            trainer_args=(
                "--input_file=gs://my-bucket/records/*",
                "--output_dir=gs://my-bucket/run",
            ),
        )
    )
    plan = tpu_pod.plan(config, accelerator, dist_dir=dist_dir)
    build = next(s for s in plan.steps if s.argv == gcloud.build_wheel_step(dist_dir=dist_dir).argv)
    subprocess.run(build.argv, check=True, capture_output=True)
    install = next(s for s in plan.steps if s.description.startswith("install the project"))
    return next(a for a in install.argv if a.startswith("--command=")).removeprefix("--command=")


def build_tpu_vm_env(root: Path = DEFAULT_ROOT, *, log=print) -> Path:
    """Builds (or refreshes) the TPU VM environment; returns its folder."""
    from launch import tpu_pod

    env_dir = tpu_vm_env_dir(root)
    stamp = env_dir / "tensorflow.json"
    wanted = {"tensorflow": tpu_pod.DEFAULT_TF_VERSION}
    if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
        if env_dir.exists():
            shutil.rmtree(env_dir)
        log(f"machine envs: creating {env_dir} with tensorflow=={wanted['tensorflow']} (CPU)")
        venv.create(env_dir, with_pip=True)
        pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, f"tensorflow=={wanted['tensorflow']}"], check=True)
        stamp.write_text(json.dumps(wanted))
    with tempfile.TemporaryDirectory(prefix="bert-wheel-") as dist_dir:
        command = _install_command(dist_dir)
        log(f"machine envs: the launcher's install command, in {env_dir}: {command}")
        environment = dict(os.environ, PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}")
        environment.pop("PYTHONPATH", None)
        subprocess.run(["bash", "-c", command], cwd=dist_dir, env=environment, check=True)
    return env_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    env_dir = build_tpu_vm_env(args.root)
    print(f"machine envs: ready: {env_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
