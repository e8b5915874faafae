"""Every sentence the IVR says: ``prompts/vi.yaml``, loaded, validated and formatted.

A prompt is a text (``greet_long``), a list of texts (the ``no_input`` and ``no_match`` ladders) or a group
of parts (``main_menu``: ``option``, ``operator``, ``tail``). Texts may hold placeholders in braces; each
prompt allows only its own (``SPEC``). Anything wrong in the file (a missing prompt, a wrong type, an unknown
placeholder, an unknown prompt id) is an ``IvrError`` naming the file, the prompt id and the field.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.content import paths
from ivr.content.config import at, blank, read_yaml, unknown_key_fix
from ivr.errors import IvrError

# prompt id -> ("text", placeholders) | ("ladder", placeholders) | ("parts", {part: placeholders})
SPEC: dict[str, tuple[str, Any]] = {
    "greet_long": ("text", set()),
    "greet_short": ("text", set()),
    "greet_keys": ("text", set()),
    "main_menu": ("parts", {"option": {"key", "label"}, "operator": {"operator"}, "tail": set()}),
    "topic_menu": (
        "parts",
        {"head": {"topic"}, "option": {"key", "label"}, "operator": {"operator"}, "tail": set()},
    ),
    "ask": ("text", set()),
    "answer_intro": ("text", {"summary"}),
    "after_answer": ("text", {"repeat", "another", "menu", "goodbye"}),
    "confirm": ("text", {"summary"}),
    "confirm_other": ("text", {"summary"}),
    "confirm_hint": ("text", {"yes", "no"}),
    "no_input": ("ladder", set()),
    "no_match": ("ladder", set()),
    "invalid": ("text", set()),
    "operator": ("text", set()),
    "transfer_failed": ("text", set()),
    "operator_unavailable": ("text", set()),
    "goodbye": ("text", set()),
    "error": ("text", set()),
}
# optional sections
MENU_LABELS = ("main_menu", "operator")
VOICE_COMMANDS = ("repeat", "another", "menu", "goodbye", "operator")
OPTIONAL = {"faq_summaries", "voice_commands", "menu_labels"}
DEFAULT_MENU_LABELS = {"main_menu": "Menu chính", "operator": "Gặp tổng đài viên"}


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def placeholders(template: str) -> set[str]:
    """The placeholder names used in ``template``; ValueError for broken braces or format specs."""
    names = set()
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain {{name}}")
        names.add(name)
    return names


@dataclass
class Prompts:
    """The validated prompts of one language. ``text``, ``part`` and ``ladder`` format them."""

    path: Path
    texts: dict[str, Any]
    faq_summaries: dict[int, str] = field(default_factory=dict)
    voice_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    menu_labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MENU_LABELS))

    def text(self, prompt_id: str, **fields: Any) -> str:
        """A text prompt, its placeholders filled from ``fields``."""
        return self._format(prompt_id, self.texts[prompt_id], fields)

    def part(self, prompt_id: str, part: str, **fields: Any) -> str:
        """One part of a group prompt (``main_menu``/``topic_menu``)."""
        return self._format(f"{prompt_id}.{part}", self.texts[prompt_id][part], fields)

    def ladder(self, prompt_id: str, step: int) -> str:
        """Step ``step`` (1-based) of a ladder prompt; steps past its end give its last text."""
        items = self.texts[prompt_id]
        return items[min(max(step, 1), len(items)) - 1]

    def ladder_length(self, prompt_id: str) -> int:
        return len(self.texts[prompt_id])

    def summary(self, entry) -> str:
        """The short summary of a FAQ entry (``faq_summaries``), or its question without the final mark."""
        text = self.faq_summaries.get(entry.id)
        if text:
            return text
        return _nfc(entry.question).strip().rstrip("?.! ").strip()

    def _format(self, where: str, template: str, fields: dict[str, Any]) -> str:
        values = {k: _nfc(str(v)) for k, v in fields.items()}
        try:
            return template.format_map(values)
        except KeyError as exc:  # the engine always passes every allowed placeholder
            raise IvrError(
                f"{self.path}: prompt {where}: placeholder {{{exc.args[0]}}} has no value here",
                "use only the placeholders listed at the top of the file",
            ) from None


def _check_template(path: Path, where: str, value: Any, allowed: set[str]) -> str:
    if not isinstance(value, str) or blank(value):
        raise IvrError(
            f"{path}: prompt {where}: expected a non-empty text, found {type(value).__name__} {value!r:.60}",
            "write the sentence the IVR should say",
        )
    try:
        used = placeholders(value)
    except ValueError as exc:
        raise IvrError(f"{path}: prompt {where}: {exc}", "write placeholders as {name}; double a literal brace") \
            from None
    unknown = used - allowed
    if unknown:
        allowed_text = ", ".join("{" + a + "}" for a in sorted(allowed)) or "none"
        raise IvrError(
            f"{path}: prompt {where}: unknown placeholder "
            + ", ".join("{" + u + "}" for u in sorted(unknown)),
            f"placeholders allowed in {where}: {allowed_text}",
        )
    return " ".join(_nfc(value).split())


def parse_prompts(data: Any, path: Path) -> Prompts:
    """Validate the mapping read from a prompts file."""
    if not isinstance(data, dict):
        raise IvrError(f"{path}: expected a mapping of prompt ids at the top level", "see prompts/vi.yaml")
    for key in data:
        if key not in SPEC and key not in OPTIONAL:
            raise IvrError(f"{at(path, data, key)}: unknown prompt id '{key}'",
                           unknown_key_fix(key, list(SPEC) + sorted(OPTIONAL)))
    texts: dict[str, Any] = {}
    for prompt_id, (kind, allowed) in SPEC.items():
        if prompt_id not in data:
            raise IvrError(f"{path}: prompt {prompt_id} is missing", f"add a {prompt_id}: entry")
        value = data[prompt_id]
        if kind == "text":
            texts[prompt_id] = _check_template(path, prompt_id, value, allowed)
        elif kind == "ladder":
            if not isinstance(value, list) or not value:
                raise IvrError(
                    f"{path}: prompt {prompt_id}: expected a list of texts (step 1, 2, ...)",
                    f"write {prompt_id}: as a list with at least one sentence",
                )
            texts[prompt_id] = [
                _check_template(path, f"{prompt_id}[{i + 1}]", v, allowed) for i, v in enumerate(value)
            ]
        else:
            if not isinstance(value, dict):
                raise IvrError(
                    f"{path}: prompt {prompt_id}: expected a mapping with " + ", ".join(allowed),
                    f"write {prompt_id}: with the fields " + ", ".join(allowed),
                )
            for key in value:
                if key not in allowed:
                    raise IvrError(f"{at(path, value, key)}: prompt {prompt_id}: unknown field '{key}'",
                                   unknown_key_fix(key, allowed))
            parts = {}
            for part, part_allowed in allowed.items():
                if part not in value:
                    raise IvrError(f"{path}: prompt {prompt_id}.{part} is missing", f"add {part}: under {prompt_id}")
                parts[part] = _check_template(path, f"{prompt_id}.{part}", value[part], part_allowed)
            texts[prompt_id] = parts

    summaries: dict[int, str] = {}
    raw = data.get("faq_summaries") or {}
    if not isinstance(raw, dict):
        raise IvrError(f"{path}: faq_summaries: expected a mapping of FAQ id to text", "write `7: summary`")
    for key, value in raw.items():
        if isinstance(key, bool) or not isinstance(key, int):
            raise IvrError(f"{path}: faq_summaries: key {key!r} is not a FAQ id (a number)", "use the entry's id")
        summaries[key] = _check_template(path, f"faq_summaries.{key}", value, set())

    commands: dict[str, tuple[str, ...]] = {}
    raw = data.get("voice_commands") or {}
    if not isinstance(raw, dict):
        raise IvrError(f"{path}: voice_commands: expected a mapping", "see prompts/vi.yaml")
    for name, phrases in raw.items():
        if name not in VOICE_COMMANDS:
            raise IvrError(
                f"{path}: voice_commands: unknown command {name!r}",
                "the commands are: " + ", ".join(VOICE_COMMANDS),
            )
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise IvrError(f"{path}: voice_commands.{name}: expected a list of phrases", "write [phrase, ...]")
        commands[name] = tuple(_nfc(p).strip() for p in phrases)

    labels = dict(DEFAULT_MENU_LABELS)
    raw = data.get("menu_labels") or {}
    if not isinstance(raw, dict):
        raise IvrError(f"{path}: menu_labels: expected a mapping", "see prompts/vi.yaml")
    for name, value in raw.items():
        if name not in MENU_LABELS:
            raise IvrError(f"{path}: menu_labels: unknown label {name!r}", "the labels are: " + ", ".join(MENU_LABELS))
        labels[name] = _check_template(path, f"menu_labels.{name}", value, set())

    return Prompts(path=path, texts=texts, faq_summaries=summaries, voice_commands=commands, menu_labels=labels)


def load_prompts(path: Path | str | None = None, language: str = "vi") -> Prompts:
    """Load ``prompts/<language>.yaml`` (or ``path``) and validate it."""
    path = Path(path) if path is not None else paths.prompts_dir() / f"{language}.yaml"
    data = read_yaml(path, "restore prompts/vi.yaml from the repository")
    return parse_prompts(data, path)
