"""The gateway killed with SIGKILL between store and the centre's confirm: nothing lost."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agent.gb26875.codec import TimeLabel
from agent.gb26875.objects import TypeFlag
from firmware_mocks.centre import MockCentre
from tests.gb26875.support import T0
from tests.uplink.uplink_support import spawn_python


def child(folder: Path, port: int, n: int) -> subprocess.Popen[bytes]:
    return spawn_python(
        "import asyncio\n"
        "from pathlib import Path\n"
        "from tests.gb26875.gb_child import main\n"
        f"asyncio.run(main(Path({str(folder)!r}), {port}, {n}))\n"
    )


async def readline(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout_s)
    return line.decode().strip()


@pytest.mark.parametrize("when", ["no_confirm_yet", "mid_stream", "confirm_withheld"])
async def test_sigkill_between_store_and_confirm_loses_nothing(tmp_path: Path, when: str) -> None:
    centre = MockCentre()
    await centre.start()
    n = 30
    proc = child(tmp_path, centre.port, n)
    stored: list[int] = []
    try:
        assert await readline(proc) == "connected"
        await centre.wait_for(lambda: bool(centre.data_units()))
        if when == "no_confirm_yet":
            centre.silent_next = 10**6  # the connection stays, no confirm comes
        if when == "confirm_withheld":
            # the centre takes the 6th decision, but its confirm never leaves
            centre.withhold_skip, centre.withhold_confirm_next = 5, 1
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        stop_after = 12 if when == "mid_stream" else n
        while len(stored) < stop_after:
            line = await readline(proc)
            assert line.startswith("stored "), line
            stored.append(int(line.split()[1]))
        if when == "confirm_withheld":  # killed while the gateway waits for that confirm
            await centre.wait_for(lambda: centre.withhold_confirm_next == 0, 20)
        proc.kill()  # SIGKILL: no cleanup, no goodbye
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    confirmed_before = {o.time for o in centre.objects(TypeFlag.COMPONENT_STATE)}
    if when == "no_confirm_yet":
        assert not confirmed_before
    centre.silent_next = 0
    want = {TimeLabel.from_wall(T0 + i, 480) for i in stored}

    def got() -> set[TimeLabel]:
        return {o.time for o in centre.objects(TypeFlag.COMPONENT_STATE)}  # type: ignore[union-attr]

    again = child(tmp_path, centre.port, 0)
    try:
        assert await readline(again) == "connected"
        await centre.wait_for(lambda: want <= got(), 20)
    finally:
        again.kill()
        again.wait()
        await centre.stop()
    assert want <= got()
    # no duplicate at all: what was sent again after the restart (its confirm
    # or its delete lost with the kill) went under its old serial number
    counts: dict[TimeLabel, int] = {}
    for o in centre.objects(TypeFlag.COMPONENT_STATE):
        counts[o.time] = counts.get(o.time, 0) + 1  # type: ignore[union-attr]
    assert want <= set(counts)  # (and those stored before the kill, not yet read)
    assert all(n == 1 for n in counts.values()), counts
    if when == "confirm_withheld":
        assert centre.discarded >= 1
