"""`firegate demo --uplink gb26875`: the morning's decisions also reach a mock centre."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from firmware_mocks.broker import find_mosquitto
from firmware_mocks.demo.play import DemoError, DemoOptions, run_demo

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")


@needs_mosquitto
async def test_demo_day_reaches_the_gb26875_centre(tmp_path: Path) -> None:
    out = io.StringIO()
    result = await run_demo(DemoOptions(speed=24.0, state_dir=tmp_path, out=out, uplink="gb26875"))
    text = out.getvalue()
    assert result.ok, text
    assert result.centre_fire, text
    assert result.centre_frames is not None and result.centre_frames >= 5, text
    assert "CENTRE  storeroom        GB/T 26875.3 component" in text
    assert ": FIRE" in text and ": supervisory" in text and ": fault" in text
    assert "frames confirmed; fire alarm state received" in text
    assert (tmp_path / "outbox-gb26875.db").exists()


async def test_demo_gb26875_needs_the_broker(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="needs mosquitto"):
        await run_demo(
            DemoOptions(state_dir=tmp_path, out=io.StringIO(), uplink="gb26875", broker=False)
        )
