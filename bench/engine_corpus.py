"""Benchmark of the confirmation engine over the scenario corpus.

Prints, over every scenario (each replayed at several poll phases):

* nuisance alarms forwarded as fire / nuisance alarms (target <= 1 %), next
  to a plain forward-every-alarm baseline measured in the same run;
* real fires confirmed (target: all);
* time from the first raw alarm to the forwarded alert: median where a camera
  covers the zone (target <= 15 s), median overall, worst (target <= hard
  ceiling + one poll interval);
* observations per second the engine sustains on one core, next to the
  forward-everything pass-through fed the same observations.

Run: python -m bench.engine_corpus [--variants N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.engine import Engine, EngineOutput
from agent.events import (
    Condition,
    Decision,
    DecisionType,
    DeviceKind,
    Observation,
    StateChange,
    VideoDetection,
)
from agent.siteconfig import LoadedSite
from firmware_mocks.timeline import (
    MONO0,
    WALL0,
    Scenario,
    corpus,
    load_scenario,
    replay,
    scenario_site,
)

ELECTRICAL = (DeviceKind.RESIDUAL_CURRENT, DeviceKind.ELECTRICAL_FIRE)


class PassThrough:
    """The plain baseline: every raw fire alarm edge leaves the gateway as a fire."""

    def __init__(self, site: LoadedSite) -> None:
        self.site = site

    def feed(self, obs: Observation, now_mono: float, now_wall: float) -> EngineOutput:
        out = EngineOutput()
        raw = (
            isinstance(obs, StateChange)
            and obs.active
            and obs.condition is Condition.ALARM
            and obs.kind not in ELECTRICAL
        ) or (isinstance(obs, VideoDetection) and obs.confirmed and obs.active)
        if raw:
            out.decisions.append(
                Decision(
                    type=DecisionType.FIRE_ALARM,
                    zone=obs.zone,
                    reason="raw alarm",
                    first_seen_wall=obs.wall,
                    first_seen_mono=obs.mono,
                    wall=now_wall,
                    mono=now_mono,
                    devices=(obs.source,),
                )
            )
        return out

    def tick(self, now_mono: float, now_wall: float) -> EngineOutput:
        return EngineOutput()


def shifted(sc: Scenario, shift_s: float) -> Scenario:
    """The same scenario with the world shifted in time: the polls see it at another phase."""
    events = tuple(e.model_copy(update={"at": e.at + shift_s}) for e in sc.events)
    return sc.model_copy(update={"events": events, "duration_s": sc.duration_s + shift_s})


@dataclass
class Tally:
    nuisance_alarms: int = 0
    nuisance_forwarded: int = 0
    nuisance_forwarded_names: list[str] = field(default_factory=list)
    fires: int = 0
    fires_confirmed: int = 0
    missed: list[str] = field(default_factory=list)
    latency_camera_s: list[float] = field(default_factory=list)
    latency_other_s: list[float] = field(default_factory=list)
    worst: tuple[float, str] = (0.0, "")
    unverified: int = 0
    nuisance_scenarios: int = 0
    nuisance_scenarios_held: int = 0


def score(results: list[tuple[Scenario, Any]], site: LoadedSite) -> Tally:
    cams = {c.zone for c in site.config.cameras}
    tally = Tally()
    for sc, r in results:
        fires = [(t, d) for t, d in r.decisions if d.type is DecisionType.FIRE_ALARM]
        true_fire = [(t, d) for t, d in fires if sc.truth == "fire" and d.zone == sc.zone]
        false_fire = [(t, d) for t, d in fires if (t, d) not in true_fire]
        # every nuisance alarm either was held back (suppressed) or forwarded as fire
        tally.nuisance_alarms += len(r.suppressed) + len(false_fire)
        tally.nuisance_forwarded += len(false_fire)
        tally.nuisance_forwarded_names += [f"{sc.name}:{d.zone}" for _t, d in false_fire]
        if sc.truth == "nuisance":
            tally.nuisance_scenarios += 1
            tally.nuisance_scenarios_held += not fires
        if sc.truth == "fire":
            tally.fires += 1
            if true_fire:
                tally.fires_confirmed += 1
                t, d = true_fire[0]
                lat = t - r.first_raw_alarm.get(sc.zone, t)
                (tally.latency_camera_s if sc.zone in cams else tally.latency_other_s).append(lat)
                if lat > tally.worst[0]:
                    tally.worst = (lat, sc.name)
                tally.unverified += not d.verified
            else:
                tally.missed.append(sc.name)
    return tally


def throughput(
    traces: list[tuple[LoadedSite, list[Observation]]], factory: Any, repeat: int
) -> float:
    """Observations per second through ``factory(site)``, with ticks every 0.5 s."""
    best = 0.0
    n = sum(len(obs) for _s, obs in traces)
    for _ in range(repeat):
        t0 = time.perf_counter()
        for site, obs in traces:
            eng = factory(site)
            tick_s = site.config.engine.tick_s
            next_tick = MONO0
            for o in obs:
                while next_tick <= o.mono:
                    eng.tick(next_tick, WALL0 + next_tick - MONO0)
                    next_tick += tick_s
                eng.feed(o, o.mono, o.wall)
        dt = time.perf_counter() - t0
        best = max(best, n / dt)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=4, help="poll phases per scenario")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs (best is kept)")
    args = ap.parse_args(argv)

    scenarios = [load_scenario(p) for p in corpus()]
    site = scenario_site(scenarios[0])
    policy = site.config.zones[0].policy
    poll_s = max(d.poll_interval_s for _b, d in site.config.devices())
    runs: dict[str, list[tuple[Scenario, Any]]] = {"engine": [], "passthrough": []}
    traces: list[tuple[LoadedSite, list[Observation]]] = []
    t0 = time.perf_counter()
    for sc in scenarios:
        for k in range(args.variants):
            v = shifted(sc, 0.37 * k)
            obs: list[Observation] = []
            runs["engine"].append((v, replay(v, observe=obs.append)))
            runs["passthrough"].append((v, replay(v, PassThrough)))
            if k == 0:
                traces.append((scenario_site(v), obs))
    replay_s = time.perf_counter() - t0

    eng = score(runs["engine"], site)
    base = score(runs["passthrough"], site)
    # the nuisance alarms of the corpus: every raw alarm a forward-everything
    # gateway sends that is not the real fire (the same count for both)
    raw_nuisances = base.nuisance_forwarded
    n_obs = sum(len(o) for _s, o in traces)
    rate = throughput(traces, Engine, args.repeat)
    base_rate = throughput(traces, PassThrough, args.repeat)

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} = {100.0 * a / b:.2f} %" if b else "n/a"

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} s" if xs else "n/a"

    limit = policy.ceiling_s + poll_s
    cam_med = statistics.median(eng.latency_camera_s) if eng.latency_camera_s else 0.0
    print(f"scenario corpus: {len(scenarios)} scenarios x {args.variants} poll phases")
    print(f"replay of {len(runs['engine'])} runs (engine + baseline): {replay_s:.2f} s wall")
    print()
    print("nuisance alarms forwarded as fire / nuisance alarms (target <= 1 %)")
    print("  (nuisance alarms: raw alarm edges and video onsets that are not the real fire)")
    print(f"  engine       {pct(eng.nuisance_forwarded, raw_nuisances)}")
    print(f"  pass-through {pct(base.nuisance_forwarded, raw_nuisances)}")
    print(
        f"  nuisance scenarios with no fire forwarded: "
        f"{pct(eng.nuisance_scenarios_held, eng.nuisance_scenarios)}"
    )
    if eng.nuisance_forwarded:
        names = sorted(set(eng.nuisance_forwarded_names))
        print(f"  forwarded by the engine: {', '.join(names)}")
        print(
            f"  reduction vs pass-through: "
            f"{base.nuisance_forwarded / eng.nuisance_forwarded:.1f}x fewer nuisance alerts"
        )
    print()
    print("real fires confirmed (target: all)")
    print(
        f"  engine       {pct(eng.fires_confirmed, eng.fires)}"
        + (f"  MISSED: {eng.missed}" if eng.missed else "")
    )
    print(f"  of which forwarded unverified by the hard ceiling: {eng.unverified}")
    print()
    print("first raw alarm -> forwarded alert")
    print(f"  median, zone with a camera   {med(eng.latency_camera_s)} (target <= 15 s)")
    print(f"  median, zone without camera  {med(eng.latency_other_s)}")
    print(f"  median, all                  {med(eng.latency_camera_s + eng.latency_other_s)}")
    print(
        f"  worst                        {eng.worst[0]:.1f} s ({eng.worst[1]}); "
        f"target <= ceiling {policy.ceiling_s:g} s + poll {poll_s:g} s = {limit:g} s"
    )
    print(
        f"  pass-through median (no confirmation at all): {med(base.latency_camera_s + base.latency_other_s)}"
    )
    print()
    print(f"throughput on one core ({n_obs} observations, ticks every 0.5 s simulated)")
    print(f"  engine       {rate:,.0f} observations/s")
    print(
        f"  pass-through {base_rate:,.0f} observations/s  (engine = {rate / base_rate:.2f}x of it)"
    )
    ok = (
        (eng.nuisance_forwarded <= 0.01 * raw_nuisances)
        and eng.fires_confirmed == eng.fires
        and cam_med <= 15.0
        and eng.worst[0] <= limit
    )
    print()
    print("targets met" if ok else "targets NOT all met (see above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
