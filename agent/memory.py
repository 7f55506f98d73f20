"""The C allocator's settings for the agent, set by the agent itself.

glibc's malloc gives a thread that finds the allocator busy an arena of its
own, up to 8 per core, and keeps what is freed in each; with cameras (a capture
thread each, inference in worker threads) that held ~15-20 MB more
(bench/footprint.py --scenario cameras4 --no-unit-env, docs/operations.md
"Footprint"). ``MALLOC_ARENA_MAX=2`` in systemd/firegate.service's Environment=
sets the same before the interpreter starts; ``tune()`` gives it to an agent
started any other way (a maintainer's ``firegate run``, a container), as long
as it runs before the agent starts threads: arenas are made when threads first
contend, not at start. Elsewhere than glibc (musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENA_MAX = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter numbers (malloc.h)


def tune(arena_max: int = ARENA_MAX) -> bool:
    """Bound glibc's malloc arenas to ``arena_max`` unless ``MALLOC_ARENA_MAX`` is
    set (the environment, e.g. the unit or a drop-in, decides then). True when set
    here; False where the C library is not glibc or the environment decides."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it: musl's mallopt differs)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_ARENA_MAX, arena_max) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arena_max)
        return False
    return True
