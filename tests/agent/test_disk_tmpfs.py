"""Issue 14: a full disk on a real file system (a 2 MB tmpfs), real ENOSPC.

Runs only where the test may mount one (root with CAP_SYS_ADMIN, as in this
development image); elsewhere it is skipped and test_disk_matrix.py covers
the same cells with faults injected at the storage calls. Read-only cannot be
done this way: a tmpfs with a database open for writing refuses to be
remounted read-only (EBUSY), while the kernel forces it on a failing card.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import outbox as outbox_mod
from agent.events import GATEWAY_ZONE, DecisionType
from agent.outbox import Outbox
from tests.uplink.uplink_support import decision


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


@pytest.mark.parametrize("fault", ["full"])
async def test_real_full_or_read_only_disk(
    small_disk: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_mod, "MEMORY_RETRY_S", 0.0)
    path = small_disk / "outbox.db"
    ob = Outbox(path, 1000, 10**9)
    await ob.submit(decision(DecisionType.STATS, 0))
    if fault == "full":
        await asyncio.to_thread(_fill, small_disk)
    else:
        await asyncio.to_thread(_remount, small_disk, "ro")
    ds = [
        decision(
            DecisionType.FIRE_ALARM if n % 3 == 0 else DecisionType.FAULT,
            n,
            snapshot=b"\xff" * 100_000,
        )
        for n in range(1, 7)
    ]
    for d in ds:
        async with asyncio.timeout(2):
            await ob.submit(d)  # never raises, never hangs
    batch = await ob.next_batch(100)
    assert [p.type for p in batch[:2]] == ["fire_alarm"] * 2
    assert batch[2].payload["zone"] == GATEWAY_ZONE and batch[2].type == "fault"
    assert ob.status()["write_failing"]

    if fault == "full":
        await asyncio.to_thread((small_disk / "filler").unlink)
    else:
        await asyncio.to_thread(_remount, small_disk, "rw")
    await ob.next_batch(1)  # written out once the disk takes writes again
    assert ob.status()["in_memory"] == 0
    await ob.close()
    ob2 = Outbox(path, 1000, 10**9)
    assert {d.id for d in ds} <= {p.id for p in await ob2.next_batch(100)}
    await ob2.close()
