"""The base of every config and profile model: frozen, unknown keys forbidden.

A misspelt key is an error that names the line and the key path, never a
silent default (see agent.siteconfig.errors for how errors are located).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        validate_default=True,
        use_attribute_docstrings=True,
    )


# A name people type and logs show: device, camera, bus and zone names.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    Field(description="letters, digits, '-', '_' and '.', starting with a letter or digit"),
]
