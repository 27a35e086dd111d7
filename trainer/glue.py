"""GLUE's nine tasks and users' own labelled text: one table, one reader, one submission writer.

Each task is a row of `TASKS` (as Hugging Face's run_glue.py keeps `task_to_keys`, not a class
per task as google-research/bert's run_classifier.py does): its files, which columns hold the
texts and the label, its label names and its official metric. The files are read as GLUE
distributes them, with their quirks:

- tab-separated, but not CSV-quoted: a `"` inside a sentence is a character (quoting off);
- a UTF-8 byte-order mark may start a file;
- train and dev have a header row naming the columns (CoLA's have none: fixed positions); test
  files have another header (an `index` column, no label);
- MNLI has dev_matched / dev_mismatched and test_matched / test_mismatched; the AX diagnostic
  (`diagnostic.tsv`) is predicted with the MNLI model, and GLUE's download script keeps it in a
  folder of its own beside the tasks' (`glue_data/diagnostic/diagnostic.tsv`).

A row with too few columns, or a label outside the task's labels, is an error that names the
file and the line: nothing is dropped silently. Users' own data (`custom`): a TSV or CSV with a
header, text and label columns named by flags, labels taken from the train file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from typing import NamedTuple

from contracts import storage


class Example(NamedTuple):
    """One row: `guid` names it (the test file's index for predictions); `label` is None in a
    test split, a label name (classification) or a string number (STS-B)."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | None


@dataclasses.dataclass(frozen=True)
class Columns:
    """Where a split's fields are: header names, or 0-based positions for a file without one."""

    text_a: str | int
    text_b: str | int | None = None
    label: str | int | None = None
    index: str | int | None = None  # the row id a submission uses (test files)
    header: bool = True


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of the table."""

    name: str  # as GLUE names it, e.g. "SST-2"
    labels: tuple[str, ...]  # label names in the files; () for regression
    metric: str  # "accuracy", "f1_accuracy", "matthews", "pearson_spearman"
    train: Columns
    test: Columns
    dev_files: tuple[str, ...] = ("dev.tsv",)
    test_files: tuple[str, ...] = ("test.tsv",)
    # Submission file name per test file.
    submission_files: tuple[str, ...] = ()

    @property
    def is_regression(self) -> bool:
        return not self.labels


_PAIR_TEST = Columns("sentence1", "sentence2", index="index")
TASKS = {
    task.name: task
    for task in (
        Task(
            "CoLA",
            ("0", "1"),
            "matthews",
            Columns(3, label=1, header=False),
            Columns("sentence", index="index"),
            submission_files=("CoLA.tsv",),
        ),
        Task(
            "SST-2",
            ("0", "1"),
            "accuracy",
            Columns("sentence", label="label"),
            Columns("sentence", index="index"),
            submission_files=("SST-2.tsv",),
        ),
        Task(
            "MRPC",
            ("0", "1"),
            "f1_accuracy",
            Columns("#1 String", "#2 String", label="Quality"),
            Columns("#1 String", "#2 String", index="index"),
            submission_files=("MRPC.tsv",),
        ),
        Task(
            "STS-B",
            (),
            "pearson_spearman",
            Columns("sentence1", "sentence2", label="score"),
            _PAIR_TEST,
            submission_files=("STS-B.tsv",),
        ),
        Task(
            "QQP",
            ("0", "1"),
            "f1_accuracy",
            Columns("question1", "question2", label="is_duplicate"),
            Columns("question1", "question2", index="id"),
            submission_files=("QQP.tsv",),
        ),
        Task(
            "MNLI",
            ("contradiction", "entailment", "neutral"),
            "accuracy",
            Columns("sentence1", "sentence2", label="gold_label"),
            _PAIR_TEST,
            dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
            test_files=("test_matched.tsv", "test_mismatched.tsv", "diagnostic.tsv"),
            submission_files=("MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"),
        ),
        Task(
            "QNLI",
            ("entailment", "not_entailment"),
            "accuracy",
            Columns("question", "sentence", label="label"),
            Columns("question", "sentence", index="index"),
            submission_files=("QNLI.tsv",),
        ),
        Task(
            "RTE",
            ("entailment", "not_entailment"),
            "accuracy",
            Columns("sentence1", "sentence2", label="label"),
            _PAIR_TEST,
            submission_files=("RTE.tsv",),
        ),
        Task(
            "WNLI",
            ("0", "1"),
            "accuracy",
            Columns("sentence1", "sentence2", label="label"),
            _PAIR_TEST,
            submission_files=("WNLI.tsv",),
        ),
    )
}


class DataError(ValueError):
    """A task file that cannot be read as the task's layout; the message names file and line."""


def task_by_name(name: str) -> Task:
    """The task, by GLUE's name in any case ("sst-2", "SST-2")."""
    for task in TASKS.values():
        if task.name.lower() == name.lower():
            return task
    raise ValueError(f"--task_name={name!r}: not one of {', '.join(TASKS)} (or custom)")


def custom_task(
    *,
    text_a: str,
    text_b: str | None,
    label: str,
    labels: Sequence[str],
    extension: str,
    index: str | None = None,
) -> Task:
    """A task over users' own files (train, dev, test with that extension, a header row).
    `index`: the test file's column that names each row in the predictions; None: its line
    number."""
    columns = Columns(text_a, text_b, label=label)
    return Task(
        "custom",
        tuple(labels),
        "accuracy",
        columns,
        dataclasses.replace(columns, label=None, index=index),
        dev_files=(f"dev{extension}",),
        test_files=(f"test{extension}",),
        submission_files=("predictions.tsv",),
    )


def _rows(path: str) -> list[list[str]]:
    text = storage.read_bytes(path).decode("utf-8-sig")  # GLUE files may start with a BOM
    delimiter = "," if path.endswith(".csv") else "\t"
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE  # GLUE: quoting off
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting))


def read_examples(task: Task, path: str, *, split: str) -> list[Example]:
    """The examples of one file of `task` ("train", "dev" or "test" layout).

    Raises:
      DataError: a missing column or field, an unknown label; the message names file and line.
      FileNotFoundError: no such file.
    """
    if not storage.exists(path):
        raise FileNotFoundError(f"{path}: no such file (task {task.name}, {split} split)")
    columns = task.test if split == "test" else task.train
    rows = _rows(path)
    if columns.header:
        if not rows:
            raise DataError(f"{path}: empty file, expected a header row")
        header, body, first_line = rows[0], rows[1:], 2
    else:
        header, body, first_line = [], rows, 1

    def position(field: str, column: str | int | None) -> int | None:
        if column is None or isinstance(column, int):
            return column
        if column not in header:
            raise DataError(
                f"{path}: line 1: no column {column!r} for the {field} ({task.name} {split}); "
                f"the header has {header}"
            )
        return header.index(column)

    a, b = position("text", columns.text_a), position("second text", columns.text_b)
    label = position("label", columns.label) if split != "test" else None
    index = position("index", columns.index) if split == "test" else None
    needed = max(p for p in (a, b, label, index) if p is not None)
    examples = []
    for line_number, row in enumerate(body, start=first_line):
        if not row or row == [""]:
            continue  # a trailing blank line
        if len(row) <= needed:
            raise DataError(
                f"{path}: line {line_number}: {len(row)} fields, the {task.name} {split} layout "
                f"needs at least {needed + 1} (a tab inside a field, or a cut line?)"
            )
        value = row[label].strip() if label is not None else None
        if value is not None:
            if task.is_regression:
                try:
                    float(value)
                except ValueError:
                    raise DataError(
                        f"{path}: line {line_number}: score {value!r} is not a number"
                    ) from None
            elif value not in task.labels:
                raise DataError(
                    f"{path}: line {line_number}: label {value!r} is not one of "
                    f"{', '.join(task.labels)}"
                )
        guid = row[index].strip() if index is not None else str(line_number)
        examples.append(Example(guid, row[a], row[b] if b is not None else None, value))
    return examples


# Test files that GLUE's download script (download_glue_data.py) keeps outside the task's folder,
# and the folder beside it where they are: the AX diagnostic is glue_data/diagnostic/diagnostic.tsv,
# not glue_data/MNLI/diagnostic.tsv.
_SIBLING_FOLDERS = {"diagnostic.tsv": "diagnostic"}


def locate(data_dir: str, file_name: str) -> str | None:
    """Where a task's file is: in `data_dir`, else (the AX diagnostic) in GLUE's own folder for
    it beside `data_dir`; None when in neither."""
    places = [storage.join(data_dir, file_name)]
    if file_name in _SIBLING_FOLDERS:
        parent = storage.dirname(data_dir)
        places.append(storage.join(parent, _SIBLING_FOLDERS[file_name], file_name))
    return next((path for path in places if storage.exists(path)), None)


def labels_of(path: str, *, column: str) -> list[str]:
    """The sorted distinct labels of a custom task's train file."""
    rows = _rows(path)
    if not rows or column not in rows[0]:
        raise DataError(f"{path}: line 1: no column {column!r} in the header {rows[:1]}")
    where = rows[0].index(column)
    return sorted({row[where].strip() for row in rows[1:] if len(row) > where})


def write_submission(path: str, guids: Sequence[str], predictions: Sequence[str]) -> None:
    """A GLUE submission file: a header `index\\tprediction`, then one row per test example."""
    lines = ["index\tprediction", *(f"{g}\t{p}" for g, p in zip(guids, predictions, strict=True))]
    storage.atomic_write(path, "\n".join(lines) + "\n")
