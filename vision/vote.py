"""Video confirmation: a vote over a window of analysed frames, per camera and class.

Pure and clock-free: the caller passes each analysed frame's time, score and
regions, and gets back at most one event. Same input, same output, so a test
can replay any score sequence.

Rules (``VoteParams``; ``low = threshold * hold_ratio``):

* A frame is a *candidate* when it has a region of the class at least
  ``min_region_area_px`` large whose score is at least ``low``.
* START (confirmed, active): the current frame is a candidate, at least
  ``need = ceil(min_fraction * window_frames)`` candidates of the last
  ``window_frames`` frames overlap its region, and their mean score is at least
  ``threshold``. One spurious frame, or a flicker in a different place each
  frame, never starts a detection.
* While active, frames need only ``low`` (hysteresis) and no overlap (smoke
  drifts): the detection ENDs when fewer than ``ceil(need / 2)`` of the last
  ``window_frames`` frames are candidates.
* UPDATE while active, at most every ``update_interval_s``: when the mean score
  rose by ``score_step`` or the typical region grew by ``growth_ratio`` since
  the last event, and after an event whose region was ``growth_ratio`` over
  START's, whatever it is now: the engine counts growth only when it holds in
  two consecutive reports, so a grown region is reported again.
* Small and steady is not fire (``small_area_px``, 0: off): while the typical
  region is at most that large, START also needs it to have grown by
  ``growth_ratio`` over the largest region of the first ``window_frames``
  candidates of this track (a candle flickers in place and stays the size it
  was; a fire that starts small grows). A track begins with the first
  candidate after a window without any.

* A steady region is not fire or smoke: the caller (which sees the pixels)
  ends a detection whose region did not move (a small flame: did not also
  grow) within its hold with ``end_steady``; where it was is then *quiet*:
  regions overlapping that place start nothing unless they grow by
  ``small_growth_ratio`` over it, until no region has overlapped it for
  ``QUIET_FORGET_WINDOWS`` windows, or until the caller sees movement there
  (``wake``). A quiet place keeps what the caller measured of the ended
  detection (``sizes``), for the next detection there (``sizes_at``).

The event's region is the *typical* region of the window: the candidates'
region of median area (the latest of equals), not the bounding box of all of
them, so that regions jittering with sensor noise never add up to "growth".
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from agent.events import Region, VideoClass

QUIET_FORGET_WINDOWS = 4  # a quiet place is forgotten after this many windows without a region


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteParams:
    threshold: float  # mean candidate score needed to start
    window_frames: int = 6
    min_fraction: float = 0.5
    hold_ratio: float = 0.7
    min_region_area_px: int = 0
    update_interval_s: float = 5.0
    score_step: float = 0.05
    growth_ratio: float = 1.25
    small_area_px: int = 0
    small_growth_ratio: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold {self.threshold} is outside (0, 1]")
        if self.window_frames < 1:
            raise ValueError("window_frames must be at least 1")
        if not 0 < self.min_fraction <= 1:
            raise ValueError(f"min_fraction {self.min_fraction} is outside (0, 1]")
        if not 0 < self.hold_ratio <= 1:
            raise ValueError(f"hold_ratio {self.hold_ratio} is outside (0, 1]")

    @property
    def low(self) -> float:
        return self.threshold * self.hold_ratio

    @property
    def need(self) -> int:
        return max(1, math.ceil(self.min_fraction * self.window_frames))

    @property
    def keep(self) -> int:
        return max(1, math.ceil(self.need / 2))


class VoteEventKind(enum.StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteEvent:
    kind: VoteEventKind
    cls: VideoClass
    score: float  # mean score of the candidates in the window (0 at END without any)
    region: Region | None  # bounding box of the candidates' regions
    t_s: float


@dataclass(frozen=True, slots=True)
class _Frame:
    t_s: float
    score: float
    region: Region | None


@dataclass(slots=True)
class _Quiet:
    where: Region
    area: int  # typical area when it was ended
    absent: int = 0  # frames since a region last overlapped it
    # the ended detection's size at each look of its hold, as the caller gave it
    # (``end_steady``'s ``sizes``), for the next detection there (``sizes_at``)
    sizes: tuple[int, ...] = ()


def overlaps(a: Region, b: Region) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def around(r: Region) -> Region:
    """``r`` and as much again on every side: where a thing seen in ``r`` may be a
    moment later (a peak cell hopping to its neighbours, a flame's spread)."""
    return Region(x=r.x - r.w, y=r.y - r.h, w=3 * r.w, h=3 * r.h, score=0.0, cls=r.cls)


def typical(regions: Sequence[Region], cls: VideoClass, score: float) -> Region:
    """The region of median area (the latest of equals), with the window's score."""
    ranked = sorted(enumerate(regions), key=lambda ir: (ir[1].area, ir[0]))
    r = ranked[len(ranked) // 2][1]
    return Region(x=r.x, y=r.y, w=r.w, h=r.h, score=score, cls=cls)


class Vote:
    """The vote for one class on one camera. ``active`` is True between START and END."""

    def __init__(self, cls: VideoClass, params: VoteParams) -> None:
        self.cls = cls
        self.p = params
        self.window: deque[_Frame] = deque(maxlen=params.window_frames)
        self.active = False
        self._last_score = 0.0
        self._last_area = 0
        self._last_emit_s = -math.inf
        self._track: list[int] = []  # areas of this track's first candidates (small rule)
        self.quiet: list[_Quiet] = []  # where steady regions were ended by end_steady
        self.start_region: Region | None = None  # the typical region at START

    def candidates(self, regions: Sequence[Region], *, quiet: bool = True) -> list[Region]:
        """The regions of ``regions`` that count as candidates of this vote (its
        class, large enough, scoring at least ``low``), without those in a quiet
        place that have not grown (with ``quiet``) or only those (``quiet=False``)."""
        mine = [
            r
            for r in regions
            if r.cls is self.cls and r.area >= self.p.min_region_area_px and r.score >= self.p.low
        ]
        hushed = [r for r in mine if self._hushed(r)]
        return [r for r in mine if r not in hushed] if quiet else hushed

    def _hushed(self, r: Region) -> bool:
        return any(
            overlaps(r, q.where) and r.area < self.p.small_growth_ratio * q.area for q in self.quiet
        )

    def wake(self, region: Region) -> bool:
        """Forget the quiet places ``region`` overlaps (the caller saw it move there);
        True if there were any."""
        before = len(self.quiet)
        self.quiet = [q for q in self.quiet if not overlaps(region, q.where)]
        return len(self.quiet) < before

    def update(self, t_s: float, regions: Sequence[Region]) -> VoteEvent | None:
        """Feed one analysed frame (its regions of any class; others are ignored)."""
        mine = [
            r
            for r in regions
            if r.cls is self.cls and r.area >= self.p.min_region_area_px and r.score >= self.p.low
        ]
        for q in list(self.quiet):
            if any(overlaps(r, q.where) for r in mine):
                q.absent = 0
            else:
                q.absent += 1
            if q.absent >= QUIET_FORGET_WINDOWS * self.p.window_frames:
                self.quiet.remove(q)  # the steady thing is gone
                continue
            limit = self.p.small_growth_ratio * q.area
            mine = [r for r in mine if not overlaps(r, q.where) or r.area >= limit]
        best = max(mine, key=lambda r: r.score) if mine else None
        frame = _Frame(t_s, best.score if best else 0.0, best)
        self.window.append(frame)
        if not any(f.region is not None for f in self.window):
            self._track.clear()
        elif best is not None and len(self._track) < self.p.window_frames:
            self._track.append(best.area)
        if not self.active:
            return self._maybe_start(frame)
        return self._while_active(t_s)

    def _maybe_start(self, frame: _Frame) -> VoteEvent | None:
        anchor = frame.region
        if anchor is None:
            return None
        cands = [f for f in self.window if f.region is not None and overlaps(f.region, anchor)]
        if len(cands) < self.p.need:
            return None
        mean = sum(f.score for f in cands) / len(cands)
        if mean < self.p.threshold:
            return None
        if self.p.small_area_px > 0:
            size = typical([f.region for f in cands if f.region is not None], self.cls, mean).area
            if size <= self.p.small_area_px:
                # small: only growth over the track's first window makes it a fire
                if len(self._track) < self.p.window_frames:
                    return None
                if size < self.p.small_growth_ratio * max(self._track):
                    return None
        self.active = True
        ev = self._emit(VoteEventKind.START, frame.t_s, cands, mean)
        self.start_region = ev.region
        return ev

    @property
    def start_area(self) -> int:
        """The typical area at START (0: never started)."""
        return 0 if self.start_region is None else self.start_region.area

    def growth_base(self) -> int:
        """The area growth is measured from: the larger of START's typical region
        and the largest region of the track's first ``window_frames`` candidates. A
        flame's region flickers over a range of sizes from look to look (a
        fireplace's: 1 to 12 cells), and START's median is one draw from it; growth
        means leaving that range, not a later draw landing above a low START."""
        return max([self.start_area, *self._track])

    def latest_region(self) -> Region | None:
        """The region this vote took from the latest frame (None: none there): its
        class's best candidate outside the quiet places, which is not always the
        frame's best region of that class."""
        return self.window[-1].region if self.window else None

    def typical_area(self) -> int:
        """Area of the typical region of the candidates now in the window (0: none)."""
        regions = [f.region for f in self.window if f.region is not None]
        return typical(regions, self.cls, 0.0).area if regions else 0

    def sizes_at(self, region: Region) -> tuple[int, ...]:
        """The ``sizes`` kept with the latest quiet place ``region`` overlaps that has
        any (empty: none). Forgotten with the place."""
        for q in reversed(self.quiet):
            if q.sizes and overlaps(region, q.where):
                return q.sizes
        return ()

    def end_steady(
        self, t_s: float, also: Sequence[Region] = (), sizes: tuple[int, ...] = ()
    ) -> VoteEvent | None:
        """End the ongoing detection as steady (neither moved nor grew): where its
        regions were becomes quiet, keeping ``sizes`` (what the caller measured of it
        over its hold) for ``sizes_at``, and so do the places of ``also`` (other
        regions the caller sees as steady now). None when nothing is active."""
        if not self.active:
            return None
        cands = [f for f in self.window if f.region is not None]
        mean = sum(f.score for f in cands) / len(cands) if cands else 0.0
        ev = self._emit(VoteEventKind.END, t_s, cands, mean)
        regions = [f.region for f in cands if f.region is not None]
        if regions:
            # everywhere its regions were in the window, and as much again around
            # (a peak cell hovering at the threshold hops to its neighbours)
            x0 = min(r.x for r in regions)
            y0 = min(r.y for r in regions)
            x1 = max(r.x + r.w for r in regions)
            y1 = max(r.y + r.h for r in regions)
            box = Region(x=x0, y=y0, w=x1 - x0, h=y1 - y0, score=0.0, cls=self.cls)
            self.quiet.append(_Quiet(around(box), self._last_area, sizes=sizes))
        for r in also:
            if r.cls is self.cls:
                self.quiet.append(_Quiet(around(r), r.area))
        self.active = False
        self.window.clear()
        self._track.clear()
        return ev

    def _while_active(self, t_s: float) -> VoteEvent | None:
        cands = [f for f in self.window if f.region is not None]
        if len(cands) < self.p.keep:
            mean = sum(f.score for f in cands) / len(cands) if cands else 0.0
            ev = self._emit(VoteEventKind.END, t_s, cands, mean)
            self.active = False
            self.window.clear()  # a new detection needs fresh evidence
            return ev
        if t_s - self._last_emit_s < self.p.update_interval_s:
            return None
        mean = sum(f.score for f in cands) / len(cands)
        box = typical([f.region for f in cands if f.region is not None], self.cls, mean)
        if (
            mean >= self._last_score + self.p.score_step
            or box.area >= self._last_area * self.p.growth_ratio
            or 0 < self.start_area * self.p.growth_ratio <= self._last_area  # did it hold?
        ):
            return self._emit(VoteEventKind.UPDATE, t_s, cands, mean)
        return None

    def _emit(
        self, kind: VoteEventKind, t_s: float, cands: Sequence[_Frame], mean: float
    ) -> VoteEvent:
        regions = [f.region for f in cands if f.region is not None]
        box = typical(regions, self.cls, mean) if regions else None
        self._last_score = mean
        self._last_area = box.area if box else 0
        self._last_emit_s = t_s
        return VoteEvent(kind=kind, cls=self.cls, score=mean, region=box, t_s=t_s)
