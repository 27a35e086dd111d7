"""trainer.glue (the task table, readers, submission files) and trainer.glue_metrics.

Each task's reader runs on a hand-written fixture in that task's exact layout
(tests/data/glue/<task>/), SST-2's also on the real GLUE files of the data folder.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainer import glue, glue_metrics

# Per task: (train rows, dev rows per dev file, test rows per test file, first train example).
EXPECTED = {
    "CoLA": (3, [2], [2], ("The gardener watered the roses before noon.", None, "1")),
    "SST-2": (2, [2], [2], ("a warm , funny and clever little film . ", None, "1")),
    "MRPC": (
        2,
        [1],
        [1],
        (
            'The council approved the " green belt " plan on Monday .',
            'On Monday the council backed the " green belt " plan .',
            "1",
        ),
    ),
    "STS-B": (
        2,
        [1],
        [1],
        ("A dog is running on the beach.", "A dog runs along the beach.", "4.800"),
    ),
    "QQP": (
        2,
        [1],
        [1],
        ("How do I learn to bake bread?", "What is the best way to learn bread baking?", "1"),
    ),
    "MNLI": (
        2,
        [1, 1],
        [1, 1, 1],
        ("The train left the station at dawn.", "The passengers were asleep.", "neutral"),
    ),
    "QNLI": (
        2,
        [1],
        [1],
        ("What color is the flag?", "The flag is red with a white star.", "entailment"),
    ),
    "RTE": (
        2,
        [1],
        [1],
        (
            "The company hired fifty new workers in June.",
            "The company fired workers in June.",
            "not_entailment",
        ),
    ),
    "WNLI": (
        2,
        [1],
        [1],
        (
            "The trophy did not fit in the box because it was too big.",
            "The trophy was too big.",
            "1",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(glue.TASKS))
def test_each_task_reads_its_own_layout(name, fixtures_dir):
    task = glue.task_by_name(name.lower())
    folder = fixtures_dir / "glue" / name
    train_rows, dev_rows, test_rows, first = EXPECTED[name]
    train = glue.read_examples(task, str(folder / "train.tsv"), split="train")
    assert len(train) == train_rows and train[0][1:] == first
    assert [
        len(glue.read_examples(task, str(folder / f), split="dev")) for f in task.dev_files
    ] == (dev_rows)
    # MNLI's AX diagnostic is where GLUE's download script puts it: glue/diagnostic/.
    tests = [
        glue.read_examples(task, glue.locate(str(folder), f), split="test") for f in task.test_files
    ]
    assert [len(t) for t in tests] == test_rows
    assert all(e.label is None and e.guid == "0" for t in tests for e in t[:1])
    assert len(task.submission_files) == len(task.test_files)


def test_the_diagnostic_is_found_in_the_task_folder_first_then_in_glues_own(tmp_path):
    mnli = tmp_path / "glue_data" / "MNLI"
    mnli.mkdir(parents=True)
    assert glue.locate(str(mnli), "diagnostic.tsv") is None
    assert glue.locate(str(mnli), "test_matched.tsv") is None
    (tmp_path / "glue_data" / "diagnostic").mkdir()
    beside = tmp_path / "glue_data" / "diagnostic" / "diagnostic.tsv"
    beside.write_text("index\tsentence1\tsentence2\n")
    assert glue.locate(str(mnli), "diagnostic.tsv") == str(beside)
    (mnli / "diagnostic.tsv").write_text("index\tsentence1\tsentence2\n")
    assert glue.locate(str(mnli), "diagnostic.tsv") == str(mnli / "diagnostic.tsv")
    # Only the diagnostic lives outside its task's folder.
    (tmp_path / "glue_data" / "diagnostic" / "test_matched.tsv").write_text("index\n")
    assert glue.locate(str(mnli), "test_matched.tsv") is None


def test_quotes_inside_fields_and_a_byte_order_mark_are_kept_as_text(fixtures_dir):
    sst = glue.read_examples(
        glue.TASKS["SST-2"], str(fixtures_dir / "glue/SST-2/train.tsv"), split="train"
    )
    assert sst[1].text_a == 'the " thrilling " finale is a long nap . '  # quoting off
    cola = glue.read_examples(
        glue.TASKS["CoLA"], str(fixtures_dir / "glue/CoLA/train.tsv"), split="train"
    )
    assert cola[2].text_a == 'She called it "a fine mess" and smiled.'


def test_the_real_sst2_files(data_dir):
    task = glue.TASKS["SST-2"]
    folder = data_dir / "glue" / "SST-2"
    train = glue.read_examples(task, str(folder / "train.tsv"), split="train")
    dev = glue.read_examples(task, str(folder / "dev.tsv"), split="dev")
    test = glue.read_examples(task, str(folder / "test.tsv"), split="test")
    assert (len(train), len(dev), len(test)) == (67_349, 872, 1_821)
    assert {e.label for e in train} == {"0", "1"} and test[-1].guid == "1820"


def test_a_malformed_row_or_an_unknown_label_names_the_file_and_line(tmp_path):
    task = glue.TASKS["RTE"]
    path = tmp_path / "train.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta b\n")
    with pytest.raises(glue.DataError, match=rf"{path}: line 3: 2 fields, .* at least 4"):
        glue.read_examples(task, str(path), split="train")
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(glue.DataError, match=rf"{path}: line 2: label 'maybe' is not one of"):
        glue.read_examples(task, str(path), split="train")
    path.write_text("index\tquestion\tsentence\tlabel\n")
    with pytest.raises(glue.DataError, match="no column 'sentence1'"):
        glue.read_examples(task, str(path), split="train")
    path.write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\thigh\n")
    with pytest.raises(glue.DataError, match="line 2: score 'high' is not a number"):
        glue.read_examples(glue.TASKS["STS-B"], str(path), split="train")
    with pytest.raises(FileNotFoundError, match="no such file"):
        glue.read_examples(task, str(tmp_path / "dev.tsv"), split="dev")
    with pytest.raises(ValueError, match="not one of CoLA, SST-2"):
        glue.task_by_name("SST-5")


def test_a_custom_task_s_predictions_are_indexed_by_a_column_or_the_line(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("review_id\ttext\nr-17\tfine\nr-4\tawful\n")
    columns = dict(text_a="text", text_b=None, label="label", labels=("0", "1"), extension=".tsv")
    by_line = glue.read_examples(glue.custom_task(**columns), str(path), split="test")
    assert [e.guid for e in by_line] == ["2", "3"]
    by_id = glue.custom_task(**columns, index="review_id")
    assert [e.guid for e in glue.read_examples(by_id, str(path), split="test")] == ["r-17", "r-4"]
    with pytest.raises(glue.DataError, match="no column 'id' for the index"):
        glue.read_examples(glue.custom_task(**columns, index="id"), str(path), split="test")


def test_a_custom_csv_task(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('review,stars,source\n"Great, really great",good,web\nAwful,bad,web\n')
    labels = glue.labels_of(str(path), column="stars")
    task = glue.custom_task(
        text_a="review", text_b=None, label="stars", labels=labels, extension=".csv"
    )
    examples = glue.read_examples(task, str(path), split="train")
    assert labels == ["bad", "good"]
    assert examples[0] == glue.Example("2", "Great, really great", None, "good")  # CSV-quoted


def test_submission_file_format(tmp_path):
    path = tmp_path / "MNLI-m.tsv"
    glue.write_submission(str(path), ["0", "1"], ["entailment", "neutral"])
    assert path.read_text() == "index\tprediction\n0\tentailment\n1\tneutral\n"


def test_metrics_against_known_values():
    labels, predictions = ["1", "0", "1", "1"], ["1", "1", "1", "0"]
    assert glue_metrics.accuracy(labels, predictions) == 0.5
    assert glue_metrics.f1(labels, predictions) == pytest.approx(2 / 3)
    # tp=2 tn=0 fp=1 fn=1: (0 - 1) / sqrt(3 * 3 * 1 * 1)
    assert glue_metrics.matthews_corrcoef(labels, predictions) == pytest.approx(-1 / 3)
    assert glue_metrics.matthews_corrcoef(["1", "1"], ["1", "1"]) == 0.0  # a degenerate table
    x, y = [1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 4.0, 4.5]
    assert glue_metrics.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    # Ties share their average rank: ranks [1, 2.5, 2.5, 4] and [1, 3, 2, 4] -> 4.5 / sqrt(22.5)
    assert glue_metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / 22.5**0.5)
    assert glue_metrics.compute("f1_accuracy", labels, predictions) == {
        "accuracy": 0.5,
        "f1": pytest.approx(2 / 3),
    }
    with pytest.raises(ValueError, match="unknown metric"):
        glue_metrics.compute("bleu", labels, predictions)
