"""Settings files in ``config/``: one YAML file per area (match, dialogue, tts, asr, sip).

Every YAML data file (settings, FAQ, prompts) is read by :func:`read_yaml`: a key written twice in one
mapping is an error (YAML would silently keep the last one), and every mapping remembers the line of each
key (:func:`line_of`), so later checks can name the line. :func:`load` also checks a settings file against
the keys its area knows (:data:`SCHEMAS`, the keys of the shipped file): an unknown key is an error naming
the closest known one.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ivr.content import paths
from ivr.errors import IvrError

# libyaml's parser when present: same results, several times faster (cold start of `ivr ask`)
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Mapping(dict):
    """A YAML mapping that remembers the line (1-based) of each key: ``lines[key]``."""

    lines: dict

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = {}


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first_line: int, owner=None):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line, self.owner = key, line, first_line, owner


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate keys and records the line of every key."""


def _construct_mapping(loader, node, deep: bool = False):
    loader.flatten_mapping(node)
    out = Mapping()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        line = key_node.start_mark.line + 1
        if key in out:
            raise DuplicateKey(key, line, out.lines.get(key, 0), out.get("id") if key != "id" else None)
        out[key] = loader.construct_object(value_node, deep=deep)
        out.lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def line_of(mapping: Any, key: Any) -> int | None:
    """The line of ``key`` in a mapping read by :func:`read_yaml` (None when unknown)."""
    return getattr(mapping, "lines", {}).get(key)


def at(path: Path, mapping: Any = None, key: Any = None) -> str:
    """``path`` or ``path, line N`` for a key of a mapping read from it."""
    line = line_of(mapping, key) if mapping is not None else None
    return f"{path}, line {line}" if line else str(path)


def closest(word: str, known) -> str | None:
    """The known key closest to a misspelt one (difflib), or None when none is close."""
    found = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_fix(key: Any, known) -> str:
    near = closest(key, known)
    listed = ", ".join(sorted(map(str, known)))
    if near:
        return f"did you mean '{near}'? (known keys here: {listed})"
    return f"remove it, or use one of the known keys: {listed}"


def blank(text: str) -> bool:
    """True when ``text`` shows nothing: only spaces, line breaks and invisible characters (zero-width space,
    joiners, byte-order marks, control characters). Such a text would be read to callers as silence."""
    import unicodedata

    return not any(unicodedata.category(c)[0] not in "ZC" for c in text)


def read_yaml(path: Path, missing_fix: str = "check the path") -> Any:
    """Parse one YAML data file (settings, FAQ, prompts). A missing, unreadable, non-UTF-8 or malformed file,
    or a key written twice in one mapping, is an ``IvrError`` naming the file and the line, and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IvrError(f"{path} is missing", missing_fix) from None
    except IsADirectoryError:
        raise IvrError(f"{path} is a directory, not a YAML file", missing_fix) from None
    except UnicodeDecodeError as exc:
        raise IvrError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                       "save the file as UTF-8") from None
    except OSError as exc:
        raise IvrError(f"{path}: cannot be read ({exc.strerror})", "check the file exists and is readable") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except DuplicateKey as exc:
        first = f" (first at line {exc.first_line})" if exc.first_line else ""
        owner = f", entry {exc.owner}" if isinstance(exc.owner, int | str) and not isinstance(exc.owner, bool) \
            else ""
        raise IvrError(f"{path}, line {exc.line}{owner}, field '{exc.key}': written twice in the same block{first}; "
                       "YAML would silently keep only the last one",
                       "keep one of the two (merge them), or fix the indentation if one belongs to another "
                       "entry") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IvrError(f"{path}: not valid YAML{line}: {problem}",
                       "fix the YAML syntax there (indentation, quotes, a missing ':')") from None


# --- the keys each settings file knows -------------------------------------------------------------------

# Derived from the shipped files (the settings classes read exactly these): a mapping of key -> None for a
# leaf, or -> the schema of a nested mapping. ``ANY`` stands for keys an editor chooses.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config"
AREAS = ("match", "dialogue", "tts", "asr", "sip")


def _schema_of(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _schema_of(v) for k, v in node.items()}
    return None


@cache
def schema(area: str) -> dict[str, Any] | None:
    """The known keys of ``config/<area>.yaml`` (from the shipped file), or None when there is no schema."""
    extra: dict[str, dict[str, Any]] = {}
    if area == "match":  # the matcher knows more settings than the shipped file sets
        from ivr.language.match import DEFAULTS

        extra = {k: None for k in DEFAULTS}
    shipped = SHIPPED_CONFIG / f"{area}.yaml"
    try:
        data = yaml.load(shipped.read_text(encoding="utf-8"), Loader=_BASE_LOADER)
    except (OSError, yaml.YAMLError):
        return extra or None
    if not isinstance(data, dict):
        return extra or None
    return {**extra, **_schema_of(data)}


def check_keys(path: Path, data: Any, known: dict[str, Any], prefix: str = "") -> None:
    """Unknown keys (against ``known``) anywhere in ``data`` are an ``IvrError`` naming file, line and key."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        name = f"{prefix}{key}"
        if str(key) not in known:
            raise IvrError(f"{at(path, data, key)}: unknown setting '{name}'", unknown_key_fix(key, known))
        sub = known[str(key)]
        if isinstance(sub, dict):
            if value is not None and not isinstance(value, dict):
                raise IvrError(f"{at(path, data, key)}: setting '{name}' should be a block of settings "
                               f"({', '.join(sub)}), found {value!r}",
                               "see the comments in the shipped file")
            check_keys(path, value, sub, prefix=f"{name}.")


def path(area: str) -> Path:
    """The real file of one settings area (under IVR_HOME when set)."""
    return paths.config_dir() / f"{area}.yaml"


@cache
def load(area: str) -> dict[str, Any]:
    """Return the mapping in ``config/<area>.yaml``; a broken file (syntax, a key written twice, an unknown
    key) is an ``IvrError`` naming the real file, the line and the key."""
    p = path(area)
    data = read_yaml(p, "restore it from the repository")
    if not isinstance(data, dict):
        raise IvrError(f"{p}: expected a mapping of settings at the top level", "see the comments in the file")
    known = schema(area)
    if known:
        check_keys(p, data, known)
    return data
