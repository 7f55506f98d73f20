"""Data, not code: example site configs (sites/, example-site.yaml) and device
profiles (profiles/), shipped with the package so that an installed gateway
finds its built-in profiles."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
BUILTIN_PROFILES = CONFIG_DIR / "profiles"
EXAMPLE_SITE = CONFIG_DIR / "example-site.yaml"
