"""Binary-classifier metrics with numpy only: ROC AUC (ties counted half), precision/recall/F1, base-rate accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np


def roc_auc(labels: Any, scores: Any) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting 1/2; None with one class only."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="stable")
    sorted_scores = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average rank (1-based) for every run of equal scores
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = starts + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy of `score >= threshold`, plus AUC and counts."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    predicted = s >= threshold
    tp = int((predicted & y).sum())
    fp = int((predicted & ~y).sum())
    fn = int((~predicted & y).sum())
    tn = int((~predicted & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "documents": len(y),
        "positives": int(y.sum()),
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "auc": roc_auc(y, s),
    }


def agreement_at_base_rate(labels: Any, scores: Any) -> dict[str, Any]:
    """How well scores agree with human keep/drop labels when the classifier keeps as many as the humans did.

    The threshold is the score of the k-th best document, k = number of human keeps; ties at the threshold are
    all kept, so `predicted_keep_rate` can exceed `base_rate` slightly. Also reports AUC (threshold-free).
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    k = int(y.sum())
    if k == 0 or k == len(y):
        threshold = None
        predicted = np.full(len(y), k > 0)
    else:
        threshold: float | None = float(np.sort(s)[::-1][k - 1])
        predicted = s >= threshold
    return {
        "documents": len(y),
        "base_rate": k / len(y) if len(y) else 0.0,
        "threshold": threshold,
        "predicted_keep_rate": float(predicted.mean()) if len(y) else 0.0,
        "accuracy": float((predicted == y).mean()) if len(y) else 0.0,
        "auc": roc_auc(y, s),
    }
