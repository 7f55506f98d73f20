"""The site config: models, loading with located errors, cross-checks."""

from agent.siteconfig.loader import (
    ConfigError,
    LoadedSite,
    Problem,
    available_profiles,
    find_profile,
    load_profile,
    load_site,
)
from agent.siteconfig.models import SiteConfig
from agent.siteconfig.policy import ZonePolicy, ZoneSchedule

__all__ = [
    "ConfigError",
    "LoadedSite",
    "Problem",
    "SiteConfig",
    "ZonePolicy",
    "ZoneSchedule",
    "available_profiles",
    "find_profile",
    "load_profile",
    "load_site",
]
