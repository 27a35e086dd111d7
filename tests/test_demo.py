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
        "fine-tune pretrained",
        "fine-tune random",
    ]
    vocab_flag = "--output=out/vocab/vocab.txt"
    assert vocab_flag in commands["learn vocab"]
    for stage in ("train records", "eval records"):
        assert "--vocab_file=out/vocab/vocab.txt" in commands[stage]
    train = commands["train BERT"]
    assert "--input_file=out/records/train/*.tfrecord" in train
    assert "--eval_input_file=out/records/eval/*.tfrecord" in train
    assert "--do_eval" in train
    pretrained, random = commands["fine-tune pretrained"], commands["fine-tune random"]
    assert "--init_checkpoint=out/model" in pretrained
    assert not any(flag.startswith("--init_checkpoint") for flag in random)
    for command in (pretrained, random):
        assert "--vocab_file=out/vocab/vocab.txt" in command
        assert "--bert_config_file=out/model/bert_config.json" in command
    # Everything but the start and the output folder is the same for both runs.
    differs = set(pretrained) ^ set(random)
    assert differs == {
        "--init_checkpoint=out/model",
        "--output_dir=out/finetune/pretrained",
        "--output_dir=out/finetune/random",
    }
    no_finetune = dict(demo.stage_commands(demo.DemoConfig(output_dir="out", finetune_data="")))
    assert "fine-tune random" not in no_finetune


def test_finetune_verdict_says_plainly_whether_pretraining_helped():
    def result(accuracy):
        return {"task": "SST-2", "examples": 872, "accuracy": accuracy}

    ahead = "\n".join(demo.finetune_verdict(result(0.84), result(0.78)))
    assert "pretrained 0.8400, random init 0.7800" in ahead
    assert "pretraining helped: +6.0 points" in ahead
    # 872 examples at ~0.8: two standard errors of the difference are ~3.9 points.
    close = "\n".join(demo.finetune_verdict(result(0.791), result(0.786)))
    assert "ahead by +0.5 points, within the noise of 872 dev examples (±3.9)" in close
    behind = "\n".join(demo.finetune_verdict(result(0.75), result(0.78)))
    assert "pretraining did NOT help here (-3.0 points)" in behind
    assert "not run" in demo.finetune_verdict(None, None)[0]


def test_read_eval_results(tmp_path):
    path = tmp_path / "eval_results.txt"
    path.write_text("global_step = 40\nmasked_lm_accuracy = 0.25\nnote = text\n")
    assert demo.read_eval_results(path) == {"global_step": 40.0, "masked_lm_accuracy": 0.25}


@pytest.mark.slow
def test_demo_chain_on_a_small_slice(tmp_path, data_dir, fixtures_dir):
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
            f"--finetune_data={fixtures_dir / 'glue' / 'SST-2'}",
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
    # Both fine-tuning runs, on the hand-written SST-2 fixture, side by side in the summary.
    for name in ("pretrained", "random"):
        record = json.loads((out / "finetune" / name / "eval_results.json").read_text())
        assert record["task"] == "SST-2" and record["examples"] == 2
    assert "SST-2 dev accuracy (2 examples): pretrained" in completed.stdout
    assert any(
        verdict in completed.stdout
        for verdict in ("pretraining helped", "within the noise", "did NOT help")
    )
