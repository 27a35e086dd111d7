"""The trainer on a TPU VM's software as launch.tpu_pod installs it (tests/machine_envs.py):
TensorFlow 2.20, this project's wheel with --no-deps, the trainer's requirements; run from
outside the checkout, so nothing of the source tree or of the dev venv is on the path.

Checked: a few steps with checkpoints and --do_eval, a resume, the converters, and
--init_checkpoint from each format (this trainer's, Google's, Hugging Face's).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from launch import sample_data
from tests import machine_envs
from tests.conftest import skip_unless_ci

pytestmark = pytest.mark.slow  # ~2 min: six TensorFlow processes


@pytest.fixture(scope="module")
def tpu_vm_python() -> str:
    env_dir = machine_envs.tpu_vm_env_dir()
    python = env_dir / "bin" / "python"
    if not python.exists():
        skip_unless_ci(f"no TPU VM environment in {env_dir}: run make machine-envs")
    return str(python)


def run(python: str, module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [python, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_trainer_runs_resumes_and_initialises_on_the_tpu_vm_software(
    tpu_vm_python, data_dir, tmp_path
):
    records = str(data_dir / sample_data.GOOGLE_RECORDS)
    common = [
        f"--input_file={records}",
        f"--eval_input_file={records}",
        "--model_size=tiny",
        "--train_batch_size=8",
        "--eval_batch_size=8",
        "--max_eval_steps=2",
        "--steps_per_loop=3",
        "--save_checkpoints_steps=3",
        "--num_warmup_steps=1",
        "--learning_rate=1e-3",
    ]
    first = tmp_path / "first"
    done = run(
        tpu_vm_python,
        "trainer.run_pretraining",
        *common,
        f"--output_dir={first}",
        "--num_train_steps=6",
        "--do_eval",
        cwd=tmp_path,
    )
    assert (first / "ckpt-6.index").exists() and (first / "eval_results.txt").exists()
    shown = run(tpu_vm_python, "pip", "show", "tensorflow", "bert-pretraining-stack", cwd=tmp_path)
    assert "Version: 2.20." in shown.stdout and "Name: bert-pretraining-stack" in shown.stdout
    # The same command with more steps resumes from the last checkpoint.
    done = run(
        tpu_vm_python,
        "trainer.run_pretraining",
        *common,
        f"--output_dir={first}",
        "--num_train_steps=9",
        cwd=tmp_path,
    )
    assert "resumed from" in done.stderr and (first / "ckpt-9.index").exists()
    # The converters, then a new run initialised from each format.
    for output_format in ("google", "huggingface"):
        run(
            tpu_vm_python,
            "trainer.convert_checkpoint",
            f"--input={first}",
            f"--output={tmp_path / output_format}",
            f"--output_format={output_format}",
            cwd=tmp_path,
        )
    for source in (first, tmp_path / "google", tmp_path / "huggingface"):
        done = run(
            tpu_vm_python,
            "trainer.run_pretraining",
            *common,
            f"--output_dir={tmp_path / ('from-' + source.name)}",
            f"--init_checkpoint={source}",
            "--num_train_steps=3",
            cwd=tmp_path,
        )
        assert "initialised the model weights from" in done.stderr, source
