"""Image-level detection metrics (numpy only): ROC AUC, thresholds, precision/recall."""

from __future__ import annotations

from typing import Any

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan if one class is missing."""
    y = np.asarray(labels) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    # average ranks over ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold (score >= threshold flags) that flags at most ``max_fpr``
    of the negatives."""
    y = np.asarray(labels) > 0.5
    neg = np.sort(np.asarray(scores, dtype=np.float64)[~y])[::-1]
    if len(neg) == 0:
        return 0.5
    allowed = int(np.floor(max_fpr * len(neg)))  # negatives that may be flagged
    # just above the (allowed+1)-th highest negative
    return float(np.nextafter(neg[allowed], np.inf)) if allowed < len(neg) else 0.0


def wilson_ci(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a share of ``k`` in ``n``:
    how far a recall or a flagged share measured on few images may be from the
    true one. (nan, nan) when n is 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def precision_recall(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    y = np.asarray(labels) > 0.5
    flag = np.asarray(scores) >= threshold
    tp = int((flag & y).sum())
    fp = int((flag & ~y).sum())
    fn = int((~flag & y).sum())
    tn = int((~flag & ~y).sum())
    return {
        "threshold": float(threshold),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "recall_ci95": wilson_ci(tp, tp + fn),
        "fpr_ci95": wilson_ci(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
