"""Settings files in ``config/``: one YAML file per area (match, dialogue, tts, asr, sip)."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from ivr import paths
from ivr.errors import IvrError


@cache
def load(area: str) -> dict[str, Any]:
    """Return the mapping in ``config/<area>.yaml``; a broken file is an ``IvrError`` naming it."""
    path = paths.config_dir() / f"{area}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IvrError(f"settings file {path} is missing", "restore it from the repository") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IvrError(f"{path}: not valid YAML ({exc})", "fix the syntax at the line named") from None
    if not isinstance(data, dict):
        raise IvrError(f"{path}: expected a mapping of settings at the top level", "see the comments in the file")
    return data
