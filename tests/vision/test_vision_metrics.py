"""Image-level metrics used by training and evaluation, against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vision.metrics import precision_recall, roc_auc, threshold_at_fpr, wilson_ci


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


def test_wilson_interval_known_values() -> None:
    # textbook values: 5 of 10 -> 0.237..0.763; 0 of 10 -> 0..0.278; 10 of 10 -> 0.722..1
    assert wilson_ci(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_ci(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_ci(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson_ci(6, 119)  # 5.0 % flagged of 119 negatives: anywhere from 2 % to 11 %
    assert lo < 0.025 and hi > 0.10
    assert all(math.isnan(v) for v in wilson_ci(0, 0))


def test_precision_recall_carries_the_intervals() -> None:
    m = precision_recall(
        np.array([1, 1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.7, 0.6, 0.1]), 0.5
    )
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 1)
    assert m["recall_ci95"] == pytest.approx(wilson_ci(3, 4))
    assert m["fpr_ci95"] == pytest.approx(wilson_ci(1, 2))


def test_operating_point_never_flags_a_featureless_frame() -> None:
    from vision.evaluate import operating_point

    y = np.array([1] * 10 + [0] * 40)
    s = np.concatenate([np.linspace(0.5, 0.9, 10), np.linspace(0.0, 0.3, 40)])
    real = np.ones(50, bool)
    share = operating_point(y, s, real, blank_max=0.0, max_fpr=0.05)
    assert share == threshold_at_fpr(y, s, 0.05)  # the share rule alone: flags 2 of 40
    floor = operating_point(y, s, real, blank_max=0.45, max_fpr=0.05)
    assert floor > 0.45 and floor == pytest.approx(0.45)  # just above the blank, no further
    assert not (s[y == 0] >= floor).any()


def test_operating_point_holds_the_share_for_the_real_images_alone() -> None:
    from vision.evaluate import operating_point

    # 20 real negatives and 20 easy featureless ones: 5 % of all 40 would allow two real
    # negatives through (10 % of the real ones); counted alone, one
    y = np.array([1] * 5 + [0] * 40)
    s = np.concatenate([np.full(5, 0.9), np.linspace(0.2, 0.8, 20), np.zeros(20)])
    real = np.array([True] * 25 + [False] * 20)
    thr = operating_point(y, s, real, blank_max=0.0, max_fpr=0.05)
    assert (s[:25][y[:25] == 0] >= thr).sum() == 1


def test_room_points_flag_at_most_the_share_of_rooms_as_fire_or_smoke() -> None:
    from vision.evaluate import room_points

    # 50 ordinary rooms, 2 %: at most one may be flagged, as fire or as smoke
    rooms = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.1]] + [[0.05, 0.05]] * 47)
    fires = np.array([0.95, 0.85, 0.5])
    smokes = np.array([0.9, 0.7])
    tf, ts = room_points(rooms, fires, smokes, (0.3, 0.2), 0.02)
    assert int(((rooms[:, 0] >= tf) | (rooms[:, 1] >= ts)).sum()) <= 1
    # the fire room is the one let through: it keeps every fire, smoke loses one
    assert tf == 0.3 and 0.8 < ts < 0.9
    # never below the lower bounds (the 4 % rule and the featureless floor)
    tf, ts = room_points(rooms[3:], fires, smokes, (0.6, 0.95), 0.02)
    assert (tf, ts) == (0.6, 0.95)
