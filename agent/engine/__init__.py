"""The confirmation engine: forward real fires, hold back nuisance alarms.

* ``Engine``: the pure, deterministic state machine (agent.engine.core).
* ``EngineRunner``: the Part that feeds it from the observation queue and
  hands its output to the outbox, the bus workers and the nuisance log.
* ``NuisanceLog``: the local, bounded JSON-lines log of held-back nuisances.

See docs/confirmation.md for the policies and their defaults.
"""

from agent.engine.core import Engine, EngineOutput, Suppressed
from agent.engine.nuisance_log import NuisanceLog
from agent.engine.runner import EngineRunner
from agent.engine.site import SiteIndex

__all__ = ["Engine", "EngineOutput", "EngineRunner", "NuisanceLog", "SiteIndex", "Suppressed"]
