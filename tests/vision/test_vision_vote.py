"""The video confirmation vote on synthetic score sequences (2 frames/s)."""

from __future__ import annotations

import itertools

import pytest

from agent.events import Region, VideoClass
from vision.vote import Vote, VoteEvent, VoteEventKind, VoteParams

FIRE, SMOKE = VideoClass.FIRE, VideoClass.SMOKE
DT_S = 0.5


def box(
    score: float, x: int = 100, y: int = 100, w: int = 80, h: int = 60, cls: VideoClass = FIRE
) -> Region:
    return Region(x=x, y=y, w=w, h=h, score=score, cls=cls)


def play(vote: Vote, frames: list[list[Region]], t0: float = 0.0) -> list[VoteEvent]:
    events = []
    for i, regions in enumerate(frames):
        ev = vote.update(t0 + i * DT_S, regions)
        if ev is not None:
            events.append(ev)
    return events


def params(**kw: float) -> VoteParams:
    base: dict[str, float] = {
        "threshold": 0.6,
        "window_frames": 6,
        "min_fraction": 0.5,
        "hold_ratio": 0.7,
    }
    base.update(kw)
    return VoteParams(**base)  # type: ignore[arg-type]


def test_steady_fire_starts_after_half_the_window_then_ends() -> None:
    v = Vote(FIRE, params())
    frames = [[box(0.9)]] * 10 + [[]] * 8
    events = play(v, frames)
    assert [e.kind for e in events] == [VoteEventKind.START, VoteEventKind.END]
    start, end = events
    assert start.t_s == pytest.approx(2 * DT_S)  # third frame: need = ceil(0.5 * 6) = 3
    assert start.score == pytest.approx(0.9)
    assert start.region == Region(x=100, y=100, w=80, h=60, score=0.9, cls=FIRE)
    # ends when fewer than ceil(3 / 2) = 2 of the last 6 frames are candidates
    assert end.t_s == pytest.approx((10 + 4) * DT_S)
    assert not v.active


def test_single_spurious_frame_never_starts() -> None:
    v = Vote(FIRE, params())
    frames = [[]] * 5 + [[box(0.99)]] + [[]] * 10
    assert play(v, frames) == []


def test_two_isolated_frames_in_the_window_are_not_enough() -> None:
    v = Vote(FIRE, params())
    frames = [[], [box(0.95)], [], [], [box(0.95)], [], [], []]
    assert play(v, frames) == []


def test_flicker_in_place_confirms_and_holds() -> None:
    # a flame that the detector sees every other frame: 3 of 6 is enough
    v = Vote(FIRE, params())
    frames = [[box(0.85)], []] * 12
    events = play(v, frames)
    assert [e.kind for e in events] == [VoteEventKind.START]
    assert v.active


def test_flicker_in_different_places_does_not_start() -> None:
    # reflections jumping around the frame: hits never overlap each other
    v = Vote(FIRE, params())
    spots = [box(0.9, x=x) for x in (0, 200, 400, 600, 800, 1000, 1200)]
    frames = [[s] for s in spots] * 2
    assert play(v, frames) == []


def test_mean_score_below_threshold_does_not_start() -> None:
    # every frame above the low threshold (0.42) but the mean under 0.6
    v = Vote(FIRE, params())
    assert play(v, [[box(0.5)]] * 20) == []


def test_hysteresis_keeps_an_ongoing_detection_at_lower_scores() -> None:
    v = Vote(FIRE, params())
    frames = [[box(0.9)]] * 4 + [[box(0.45)]] * 20  # 0.45 >= low 0.42, < start 0.6
    events = play(v, frames)
    assert [e.kind for e in events] == [VoteEventKind.START]
    assert v.active
    # and the same low scores would not have started one
    fresh = Vote(FIRE, params())
    assert play(fresh, [[box(0.45)]] * 20) == []


def test_slow_growth_confirms_then_updates_on_growth_at_most_every_interval() -> None:
    v = Vote(SMOKE, params(update_interval_s=5.0))
    frames = []
    for i in range(60):  # 30 s: a smoke plume growing from 40 px and a weak score
        score = min(0.95, 0.3 + 0.02 * i)
        size = 40 + 6 * i
        frames.append([box(score, x=300, y=300, w=size, h=size, cls=SMOKE)])
    events = play(v, frames)
    kinds = [e.kind for e in events]
    assert kinds[0] is VoteEventKind.START
    assert VoteEventKind.END not in kinds
    start = events[0]
    # not before the mean of the overlapping candidates reaches 0.6
    assert start.score >= 0.6
    assert start.t_s >= 10 * DT_S
    updates = events[1:]
    assert len(updates) >= 2
    assert all(e.kind is VoteEventKind.UPDATE for e in updates)
    times = [start.t_s] + [e.t_s for e in updates]
    assert all(b - a >= 5.0 for a, b in itertools.pairwise(times))
    areas = [e.region.area for e in events if e.region is not None]
    assert areas == sorted(areas) and areas[-1] > areas[0]


def test_a_grown_region_is_reported_again_held_or_not() -> None:
    """The engine counts growth only when two consecutive reports hold it, so a
    region reported grown over START is reported again at the next interval,
    whatever its size then; one that is back to its START size is not again."""
    v = Vote(FIRE, params(update_interval_s=5.0))
    small, big = box(0.8, w=80, h=60), box(0.8, w=120, h=90)  # 2.25x the area
    # START on the small region, 6 s later a grown one for 4 s (the window's
    # median from 7.5 s to 11 s), then back to the small one for good
    events = play(v, [[small]] * 12 + [[big]] * 8 + [[small]] * 40)
    kinds = [e.kind for e in events]
    assert kinds == [VoteEventKind.START, VoteEventKind.UPDATE, VoteEventKind.UPDATE]
    start, grown, again = events
    assert start.region is not None and grown.region is not None and again.region is not None
    assert grown.region.area == big.area
    assert again.region.area == small.area  # reported back: the growth did not hold
    assert again.t_s - grown.t_s == pytest.approx(5.0)


def test_no_update_when_nothing_grows() -> None:
    v = Vote(FIRE, params(update_interval_s=1.0))
    events = play(v, [[box(0.8)]] * 40)
    assert [e.kind for e in events] == [VoteEventKind.START]


def test_min_region_area_ignores_small_regions() -> None:
    v = Vote(FIRE, params(min_region_area_px=80 * 60 + 1))
    assert play(v, [[box(0.95)]] * 20) == []
    v2 = Vote(FIRE, params(min_region_area_px=80 * 60))
    assert [e.kind for e in play(v2, [[box(0.95)]] * 20)] == [VoteEventKind.START]


def test_other_class_regions_are_ignored() -> None:
    v = Vote(FIRE, params())
    assert play(v, [[box(0.95, cls=SMOKE)]] * 20) == []


def test_restart_needs_fresh_evidence_after_an_end() -> None:
    v = Vote(FIRE, params())
    events = play(v, [[box(0.9)]] * 6 + [[]] * 6 + [[box(0.9)]] * 2)
    assert [e.kind for e in events] == [VoteEventKind.START, VoteEventKind.END]
    ev = v.update(100.0, [box(0.9)])
    assert ev is not None and ev.kind is VoteEventKind.START


def test_same_input_same_output() -> None:
    seq = [[box(0.9)] if i % 3 else [] for i in range(30)]
    a = play(Vote(FIRE, params()), seq)
    b = play(Vote(FIRE, params()), seq)
    assert a == b


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"window_frames": 0},
        {"min_fraction": 0.0},
        {"hold_ratio": 1.2},
    ],
)
def test_bad_parameters_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        params(**bad)


def test_region_is_the_typical_one_not_the_box_of_a_jittering_window() -> None:
    """Noise at the threshold makes a region jitter; the box around all of them
    would "grow" (issue 16). The event carries the median-area region."""
    v = Vote(SMOKE, params(update_interval_s=1.0))
    jitter = [box(0.9, x=100 + 30 * (i % 3), w=80, h=60, cls=SMOKE) for i in range(40)]
    events = play(v, [[r] for r in jitter])
    assert [e.kind for e in events] == [VoteEventKind.START]
    assert events[0].region is not None and events[0].region.area == 80 * 60


def test_small_region_starts_only_once_it_has_grown() -> None:
    small = 50 * 50
    steady = [[box(0.95, w=40, h=40)]] * 30  # a candle: flickers in place, same size
    assert play(Vote(FIRE, params(small_area_px=small)), steady) == []
    assert [e.kind for e in play(Vote(FIRE, params()), steady)] == [VoteEventKind.START]
    growing = [[box(0.95, w=30 + 3 * i, h=30 + 3 * i)] for i in range(30)]
    events = play(Vote(FIRE, params(small_area_px=small)), growing)
    assert events and events[0].kind is VoteEventKind.START
    # not while it is small: it grew past the small size (or 1.5x its first window)
    assert events[0].region is not None and events[0].region.area > small


def test_end_steady_quiets_the_place_until_it_grows_or_goes() -> None:
    v = Vote(SMOKE, params())
    wall = [box(0.9, cls=SMOKE)]
    assert [e.kind for e in play(v, [wall] * 6)] == [VoteEventKind.START]
    ev = v.end_steady(10.0)
    assert ev is not None and ev.kind is VoteEventKind.END and not v.active
    assert play(v, [wall] * 20, t0=11.0) == []  # the same wall starts nothing
    bigger = [box(0.9, w=160, h=60, cls=SMOKE)]  # 2x: it grew
    assert [e.kind for e in play(v, [bigger] * 6, t0=30.0)] == [VoteEventKind.START]
    # a place without any region for 4 windows is forgotten
    v2 = Vote(SMOKE, params())
    play(v2, [wall] * 6)
    v2.end_steady(3.0)
    events = play(v2, [[]] * 24 + [wall] * 6, t0=4.0)
    assert [e.kind for e in events] == [VoteEventKind.START]


def test_latest_region_is_the_detections_own_not_a_quiet_places() -> None:
    """The steady rule measures a detection on the region its vote took from the
    latest frame. A place ended as steady may still hold the frame's best region
    of the class (a big one, changed by a person walking past); the detection
    elsewhere is the small one."""
    v = Vote(SMOKE, params())
    wall = box(0.95, x=300, y=0, w=200, h=150, cls=SMOKE)
    play(v, [[wall]] * 6)
    v.end_steady(3.0)
    wisp = box(0.8, x=50, y=300, w=46, h=34, cls=SMOKE)
    events = play(v, [[wall, wisp]] * 6, t0=4.0)
    assert [e.kind for e in events] == [VoteEventKind.START]
    assert v.latest_region() == wisp  # not the wall, the frame's best
    play(v, [[wall]], t0=10.0)
    assert v.latest_region() is None  # nothing of its own in the latest frame
