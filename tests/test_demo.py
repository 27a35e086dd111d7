"""`make demo`'s chain, on a smaller slice: raw dump and a book to a trained BERT-tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch import demo

ROOT = Path(__file__).resolve().parent.parent


def test_stage_commands_chain_outputs_to_inputs():
    config = demo.DemoConfig(output_dir="out")
    commands = dict(demo.stage_commands(config))
    assert list(commands) == [
        "extract wikipedia",
        "extract books",
        "learn vocab",
        "train records",
        "eval records",
        "train BERT",
    ]
    vocab_flag = "--output=out/vocab/vocab.txt"
    assert vocab_flag in commands["learn vocab"]
    for stage in ("train records", "eval records"):
        assert "--vocab_file=out/vocab/vocab.txt" in commands[stage]
    train = commands["train BERT"]
    assert "--input_file=out/records/train/*.tfrecord" in train
    assert "--eval_input_file=out/records/eval/*.tfrecord" in train
    assert "--do_eval" in train


def test_read_eval_results(tmp_path):
    path = tmp_path / "eval_results.txt"
    path.write_text("global_step = 40\nmasked_lm_accuracy = 0.25\nnote = text\n")
    assert demo.read_eval_results(path) == {"global_step": 40.0, "masked_lm_accuracy": 0.25}


@pytest.mark.slow
def test_demo_chain_on_a_small_slice(tmp_path, data_dir):
    out = tmp_path / "demo"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.demo",
            f"--output_dir={out}",
            f"--books_input={data_dir / 'books' / 'pg11-alice-in-wonderland.txt'}",
            "--num_train_steps=20",
            "--vocab_size=2000",
            "--dupe_factor=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    for folder in ("shards/wiki", "shards/books", "records/train", "records/eval"):
        assert (out / folder / "metadata.json").exists(), folder
    vocab = (out / "vocab" / "vocab.txt").read_text().splitlines()
    assert len(vocab) == 2000
    books = json.loads((out / "shards" / "books" / "metadata.json").read_text())
    assert books["counts"]["documents"] == 1

    results = demo.read_eval_results(out / "model" / "eval_results.txt")
    assert 0.0 <= results["masked_lm_accuracy"] <= 1.0
    assert 0.0 <= results["next_sentence_accuracy"] <= 1.0
    assert (out / "curves.png").stat().st_size > 10_000
    assert "Demo finished." in completed.stdout
    assert "masked_lm_accuracy" in completed.stdout
