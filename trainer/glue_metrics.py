"""GLUE's official metrics, as named floats (the keys of eval_results.json).

accuracy; F1 of the positive class "1" with accuracy (MRPC, QQP); Matthews correlation (CoLA);
Pearson and Spearman correlation (STS-B). Plain numpy, the definitions GLUE's own scorer and
scikit-learn / scipy use (Spearman: Pearson of the ranks, ties given their average rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(labels: Sequence, predictions: Sequence) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions)) if len(labels) else 0.0


def f1(labels: Sequence, predictions: Sequence, *, positive="1") -> float:
    """F1 of the positive class; 0.0 when it is never predicted nor present."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    true_positive = np.sum((predictions == positive) & (labels == positive))
    predicted, actual = np.sum(predictions == positive), np.sum(labels == positive)
    if not predicted or not actual or not true_positive:
        return 0.0
    precision, recall = true_positive / predicted, true_positive / actual
    return float(2 * precision * recall / (precision + recall))


def matthews_corrcoef(labels: Sequence, predictions: Sequence, *, positive="1") -> float:
    """Matthews correlation of a binary task; 0.0 when a row or column of the table is empty."""
    labels = np.asarray(labels) == positive
    predictions = np.asarray(predictions) == positive
    tp = float(np.sum(labels & predictions))
    tn = float(np.sum(~labels & ~predictions))
    fp = float(np.sum(~labels & predictions))
    fn = float(np.sum(labels & ~predictions))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))


def compute(metric: str, labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """The task's metrics by name.

    Args:
      metric: a `trainer.glue.Task.metric`.
      labels, predictions: label names (classification) or floats (regression).
    """
    if metric == "accuracy":
        return {"accuracy": accuracy(labels, predictions)}
    if metric == "f1_accuracy":
        return {"accuracy": accuracy(labels, predictions), "f1": f1(labels, predictions)}
    if metric == "matthews":
        return {"matthews_corrcoef": matthews_corrcoef(labels, predictions)}
    if metric == "pearson_spearman":
        return {"pearson": pearson(labels, predictions), "spearman": spearman(labels, predictions)}
    raise ValueError(f"unknown metric {metric!r}")
