"""Image-level metrics used by training and evaluation, against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vision.metrics import precision_recall, roc_auc, threshold_at_fpr


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 8, 60) / 8  # many ties
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))


def test_auc_edges() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_threshold_flags_at_most_the_allowed_share_of_negatives() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(100), np.ones(20)]
    s = rng.random(120)
    thr = threshold_at_fpr(y, s, 0.05)
    m = precision_recall(y, s, thr)
    assert m["fp"] <= 5
    # the next lower negative score would flag one more than allowed
    neg = np.sort(s[y == 0])[::-1]
    assert neg[5] < thr <= np.nextafter(neg[5], 1.0)
    assert m["tp"] + m["fn"] == 20 and m["fp"] + m["tn"] == 100
