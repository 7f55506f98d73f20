"""The whole scenario corpus replays in simulated time and meets its expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.events import DecisionType
from firmware_mocks.timeline import check, corpus, load_scenario, replay, scenario_site

SCENARIOS = corpus()


def test_corpus_is_large_enough() -> None:
    names = [load_scenario(p) for p in SCENARIOS]
    assert len(names) >= 30
    truths = {sc.truth for sc in names}
    assert {"fire", "nuisance", "electrical", "fault"} <= truths
    assert sum(sc.truth == "fire" for sc in names) >= 10
    assert sum(sc.truth == "nuisance" for sc in names) >= 10
    for sc in names:
        forwards = [e for e in sc.expect if e.type is DecisionType.FIRE_ALARM and e.count != 0]
        if sc.truth == "nuisance" and forwards:
            # a nuisance the engine cannot hold back must say so, and why
            assert sc.honest_note, f"{sc.name}: forwarded nuisance without honest_note"
        if sc.truth == "fire":
            assert forwards, f"{sc.name}: a fire scenario must expect its fire alarm"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    sc = load_scenario(path)
    result = replay(sc)
    problems = check(result)
    assert not problems, "\n".join(problems)

    site = scenario_site(sc)
    policies = {z.id: z.policy for z in site.config.zones}
    poll_s = max(d.poll_interval_s for _b, d in site.config.devices())
    tick_s = site.config.engine.tick_s
    fires = result.of(DecisionType.FIRE_ALARM)
    # one FIRE_ALARM per zone incident: no zone gets two within its clear time
    seen: dict[str, float] = {}
    for t, d in fires:
        assert d.zone not in seen or t - seen[d.zone] > policies[d.zone].incident_clear_s
        seen[d.zone] = t
        assert d.evidence, "a fire alarm says why"
        assert d.first_seen_mono <= d.mono
        assert d.verified == (d.details["rule"] != "ceiling")
        if d.cameras:
            assert d.snapshot_jpeg is not None
        # worst case: the hard ceiling plus one poll (and one tick) after the first raw alarm
        first = result.first_raw_alarm.get(d.zone)
        if first is not None:
            assert t - first <= policies[d.zone].ceiling_s + poll_s + tick_s
    if sc.truth == "fire":
        assert any(d.zone == sc.zone for _t, d in fires), "a real fire is never lost"


def _trace(path: Path) -> list[object]:
    r = replay(load_scenario(path))
    out: list[object] = []
    for t, d in r.decisions:
        dd = d.to_dict()
        del dd["id"]
        dd["details"].pop("of_id", None)  # names another decision's (random) id
        for e in dd["evidence"]:
            del e["observation_id"]
        out.append((t, dd))
    out += [(t, s.source, s.reason, s.count) for t, s in r.suppressed]
    out += [(t, c.target, c.action) for t, c in r.commands]
    return out


@pytest.mark.parametrize(
    "name", ["kitchen-fire", "nuisance-cooking-fumes", "detector-offline-during-verification"]
)
def test_replay_is_deterministic(name: str) -> None:
    path = next(p for p in SCENARIOS if p.stem == name)
    assert _trace(path) == _trace(path)
