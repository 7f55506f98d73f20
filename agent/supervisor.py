"""The supervisor: runs every part of the agent under one asyncio.TaskGroup.

A *part* is a small object with a ``name`` and an ``async def run()`` that
runs until cancelled (a bus worker, a camera, the engine, the uplink). If a
part raises, or returns when it should not, the supervisor logs it, reports a
fault (never silently), waits with exponential backoff and jitter, and starts
it again; once the part has run for ``stable_after_s`` the fault is restored.

Shutdown (SIGTERM/SIGINT, or ``stop`` set) cancels every part and is bounded:
after ``shutdown_s`` the supervisor returns anyway and names the parts that
did not finish.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class Part(Protocol):
    """Something the supervisor runs. ``run`` should not return until cancelled."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...


@dataclass
class PartState:
    """What the supervisor knows about one part (read by `status` and health)."""

    name: str
    running: bool = False
    restarts: int = 0
    faulted: bool = False
    last_error: str = ""
    last_start_mono: float = 0.0
    history: list[str] = field(default_factory=list)


FaultHook = Callable[[str, str], None]  # (part name, what went wrong)
RestoreHook = Callable[[str], None]  # (part name)


def _ignore_fault(name: str, error: str) -> None:
    return None


def _ignore_restore(name: str) -> None:
    return None


class Supervisor:
    def __init__(
        self,
        parts: Sequence[Part],
        *,
        clock: Clock | None = None,
        on_fault: FaultHook = _ignore_fault,
        on_restore: RestoreHook = _ignore_restore,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stable_after_s: float = 60.0,
        shutdown_s: float = 5.0,
    ) -> None:
        names = [p.name for p in parts]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"part names must be unique: {sorted(dupes)}")
        self.parts = list(parts)
        self.clock: Clock = clock or SystemClock()
        self.on_fault = on_fault
        self.on_restore = on_restore
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.shutdown_s = shutdown_s
        self.states = {p.name: PartState(p.name) for p in parts}

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until ``stop`` is set. Returns True if shutdown finished in time."""
        log.info("starting %d part(s): %s", len(self.parts), ", ".join(self.states) or "none")
        tasks: list[asyncio.Task[None]] = []

        async def group() -> None:
            async with asyncio.TaskGroup() as tg:
                for p in self.parts:
                    tasks.append(tg.create_task(self._supervise(p), name=f"part:{p.name}"))
                await stop.wait()
                for t in tasks:
                    t.cancel()

        main = asyncio.create_task(group(), name="supervisor")
        stop_wait = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({main, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()  # a bug in the supervisor itself: let it propagate
                return True
            t0 = time.monotonic()
            log.info("stopping: cancelling parts (at most %.0f s)", self.shutdown_s)
            done, _ = await asyncio.wait({main}, timeout=self.shutdown_s)
            if not done:
                stuck = [t.get_name() for t in tasks if not t.done()]
                log.error(
                    "shutdown not finished after %.1f s; still running: %s",
                    self.shutdown_s,
                    ", ".join(stuck),
                )
                main.cancel()
                return False
            main.result()
            log.info("stopped cleanly in %.2f s", time.monotonic() - t0)
            return True
        finally:
            stop_wait.cancel()

    async def _supervise(self, part: Part) -> None:
        st = self.states[part.name]
        failures = 0
        while True:
            st.running = True
            st.last_start_mono = self.clock.monotonic()
            task = asyncio.create_task(part.run(), name=f"run:{part.name}")
            try:
                if st.faulted:
                    done, _ = await asyncio.wait(
                        {task}, timeout=self.stable_after_s / self.clock.speed
                    )
                    if not done:
                        st.faulted = False
                        failures = 0
                        log.info("part %s running again; fault restored", part.name)
                        self._safe(self.on_restore, part.name)
                await task
                error = "stopped unexpectedly (run() returned)"
                log.error("part %s %s", part.name, error)
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                st.running = False
                raise
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                log.exception("part %s crashed: %s", part.name, error)
            st.running = False
            ran_s = self.clock.monotonic() - st.last_start_mono
            if ran_s >= self.stable_after_s:
                failures = 0
            failures += 1
            st.restarts += 1
            st.last_error = error
            st.history = [*st.history[-9:], error]
            if not st.faulted:
                st.faulted = True
                self._safe(self.on_fault, part.name, error)
            delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1))
            delay *= random.uniform(0.8, 1.2)  # so that parts failing together do not retry in step
            log.warning("restarting part %s in %.1f s (failure %d)", part.name, delay, failures)
            await self.clock.sleep(delay)

    @staticmethod
    def _safe(hook: Callable[..., None], *args: str) -> None:
        try:
            hook(*args)
        except Exception:  # a broken hook must not take the supervisor down
            log.exception("fault/restore hook failed for %s", args[0])
