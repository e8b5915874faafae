"""Settings files in ``config/``: one YAML file per area (match, dialogue, tts, asr, sip)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ivr.content import paths
from ivr.errors import IvrError

# libyaml's parser when present: same results, several times faster (cold start of `ivr ask`)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, missing_fix: str = "check the path") -> Any:
    """Parse one YAML data file (settings, FAQ, prompts). A missing, unreadable, non-UTF-8 or malformed file
    is an ``IvrError`` naming the file (and the line and column of a syntax error) and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IvrError(f"{path} is missing", missing_fix) from None
    except UnicodeDecodeError as exc:
        raise IvrError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                       "save the file as UTF-8") from None
    except OSError as exc:
        raise IvrError(f"{path}: cannot be read ({exc.strerror})", "check the file exists and is readable") from None
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IvrError(f"{path}: not valid YAML{line}: {problem}",
                       "fix the YAML syntax there (indentation, quotes, a missing ':')") from None


@cache
def load(area: str) -> dict[str, Any]:
    """Return the mapping in ``config/<area>.yaml``; a broken file is an ``IvrError`` naming it."""
    path = paths.config_dir() / f"{area}.yaml"
    data = read_yaml(path, "restore it from the repository")
    if not isinstance(data, dict):
        raise IvrError(f"{path}: expected a mapping of settings at the top level", "see the comments in the file")
    return data
