"""The trainer on the training machines' software as the launchers install it
(tests/machine_envs.py): a TPU VM (TensorFlow 2.20, this project's wheel with --no-deps, the
trainer's requirements with tensorflow-text for that TensorFlow) and a GPU VM (the launcher's
`tensorflow[and-cuda]` install); run from outside the checkout, so nothing of the source tree
or of the dev venv is on the path.

Checked on both: a few steps with checkpoints and --do_eval, fine-tuning with --do_eval, the
serving export, and the export answering in a process of that machine. On the TPU VM (TensorFlow
2.20, unlike the dev env) also a resume, the converters and every --init_checkpoint format.
And the data chain on a Dataflow worker's software (tests/machine_envs.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from launch import sample_data
from tests import machine_envs
from tests.conftest import skip_unless_ci, write_sentiment_task

pytestmark = pytest.mark.slow  # ~2 min per machine: TensorFlow processes


MACHINES = {"tpu-vm": machine_envs.tpu_vm_env_dir, "gpu-vm": machine_envs.gpu_vm_env_dir}


@pytest.fixture(params=sorted(MACHINES), scope="module")
def machine(request) -> tuple[str, str]:
    env_dir = MACHINES[request.param]()
    python = env_dir / "bin" / "python"
    if not python.exists():
        skip_unless_ci(f"no {request.param} environment in {env_dir}: run make machine-envs")
    return request.param, str(python)


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


_SERVE = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf, tensorflow_text  # noqa: F401 - registers the tokenizer's ops
    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    out = serve(text=tf.constant(["a truly wonderful film", "dull and tedious"]))
    print(json.dumps({"label": [x.decode() for x in out["label"].numpy()],
                      "probabilities": out["probabilities"].numpy().tolist(),
                      "tensorflow": tf.__version__}))
    """
)


def test_the_trainer_trains_converts_fine_tunes_and_exports_on_the_machine_software(
    machine, data_dir, tmp_path
):
    name, python = machine
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
    run(
        python,
        "trainer.run_pretraining",
        *common,
        f"--output_dir={first}",
        "--num_train_steps=6",
        "--do_eval",
        cwd=tmp_path,
    )
    assert (first / "ckpt-6.index").exists() and (first / "eval_results.txt").exists()
    shown = run(python, "pip", "show", "tensorflow", "bert-pretraining-stack", cwd=tmp_path)
    assert "Name: bert-pretraining-stack" in shown.stdout
    if name == "tpu-vm":
        assert "Version: 2.20." in shown.stdout
        # The same command with more steps resumes from the last checkpoint.
        done = run(
            python,
            "trainer.run_pretraining",
            *common,
            f"--output_dir={first}",
            "--num_train_steps=9",
            cwd=tmp_path,
        )
        assert "resumed from" in done.stderr and (first / "ckpt-9.index").exists()
    # The converters, then a new run initialised from each format (on the TPU VM: the GPU VM
    # runs the same TensorFlow as the dev env, where the main suite tests them).
    formats = ("google", "huggingface") if name == "tpu-vm" else ()
    for output_format in formats:
        run(
            python,
            "trainer.convert_checkpoint",
            f"--input={first}",
            f"--output={tmp_path / output_format}",
            f"--output_format={output_format}",
            cwd=tmp_path,
        )
    sources = [tmp_path / f for f in formats] + ([first] if name == "tpu-vm" else [])
    for source in sources:
        done = run(
            python,
            "trainer.run_pretraining",
            *common,
            f"--output_dir={tmp_path / ('from-' + source.name)}",
            f"--init_checkpoint={source}",
            "--num_train_steps=3",
            cwd=tmp_path,
        )
        assert "initialised the model weights from" in done.stderr, source

    # Fine-tuning (tensorflow-text's tokenizer) from the pretrained checkpoint, then the export
    # with tokenization in the graph, answering in a plain TensorFlow process of the machine.
    task = write_sentiment_task(tmp_path / "task")
    run(
        python,
        "trainer.run_classifier",
        "--task_name=SST-2",
        f"--data_dir={task}",
        f"--init_checkpoint={first}",
        f"--vocab_file={data_dir / sample_data.UNCASED_VOCAB}",
        "--max_seq_length=16",
        "--train_batch_size=8",
        "--num_train_epochs=1",
        "--do_train",
        "--do_eval",
        f"--output_dir={tmp_path / 'classifier'}",
        cwd=tmp_path,
    )
    results = json.loads((tmp_path / "classifier" / "eval_results.json").read_text())
    assert results, "fine-tuning wrote no eval results"
    run(
        python,
        "trainer.export_classifier",
        f"--model_dir={tmp_path / 'classifier'}",
        f"--output={tmp_path / 'exported'}",
        cwd=tmp_path,
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    served = subprocess.run(
        [python, "-c", _SERVE, str(tmp_path / "exported")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert set(answer["label"]) <= {"0", "1"} and len(answer["probabilities"]) == 2
    assert all(abs(sum(p) - 1) < 1e-4 for p in answer["probabilities"])


def test_the_data_stages_run_on_the_dataflow_worker_software(data_dir, tmp_path):
    """Every stage of the data chain, with the command lines launch.dataflow sends (DirectRunner
    here), in a Dataflow worker's environment: Beam's SDK-container software plus the package
    Beam's stager builds from setup.py, nothing of the checkout."""
    from contracts import metadata
    from launch import chain

    python = machine_envs.dataflow_worker_env_dir() / "bin" / "python"
    if not python.exists():
        skip_unless_ci(f"no Dataflow worker environment in {python.parent.parent}")
    data = chain.DataChain(
        # Eight articles, half held out: a small corpus's eval split must not come out empty.
        wiki_input=f"{data_dir / sample_data.WIKI_TABLES},{data_dir / sample_data.TINYWIKI}",
        books_input=str(data_dir / "books" / "pg11-alice-in-wonderland.txt"),
        output_root=str(tmp_path / "out"),
        wiki_num_shards=1,
        books_num_shards=1,
        wiki_eval_fraction=0.5,
        vocab_size=600,
        dupe_factor=1,
        train_record_shards=1,
        eval_record_shards=1,
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for stage in chain.stages(data):
        done = subprocess.run(
            stage.argv(python=str(python)),
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (stage.name, done.stderr[-3000:])
    worker_beam = subprocess.run(
        [str(python), "-c", "import apache_beam; print(apache_beam.__version__)"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for records in (data.train_records, data.eval_records):
        written = metadata.read(records)
        assert written and written["counts"]["instances"] > 0, records
        assert written["versions"]["apache-beam"] == worker_beam, written["versions"]
