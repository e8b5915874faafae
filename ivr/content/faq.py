"""The FAQ a support editor maintains in ``faq/*.yaml``: topics (the keypad menu) and entries.

Every ``*.yaml`` file of the directory is read (in name order) and merged; a mistake anywhere is an
``IvrError`` that names the file, the entry and the field, and says how to fix it. All text is NFC.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ivr.content import paths
from ivr.content.config import at, blank, read_yaml, unknown_key_fix
from ivr.errors import IvrError

ENTRY_FIELDS = {"id", "topic", "question", "answer", "paraphrases", "keywords", "spoken"}
REQUIRED_ENTRY_FIELDS = ("id", "topic", "question", "answer")
TOPIC_FIELDS = {"id", "label"}
FILE_FIELDS = {"topics", "entries", "out_of_scope"}
OUT_OF_SCOPE_FIELDS = {"label", "phrasings"}


@dataclass(frozen=True)
class Topic:
    id: str
    label: str
    key: str  # the keypad digit: "1", "2", ... in file order


@dataclass(frozen=True)
class FaqEntry:
    id: int
    topic: str
    question: str
    answer: str
    paraphrases: tuple[str, ...]
    keywords: tuple[str, ...]
    spoken: str | None
    source: Path


@dataclass(frozen=True)
class OutOfScope:
    """Something the line does not handle (another service, billing, ...) and how callers ask for it."""

    label: str
    phrasings: tuple[str, ...]
    source: Path


@dataclass
class Faq:
    topics: list[Topic]
    entries: list[FaqEntry]
    out_of_scope: list[OutOfScope] = field(default_factory=list)
    _by_id: dict[int, FaqEntry] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}

    def by_id(self, entry_id: int) -> FaqEntry:
        """The entry with this id; ``KeyError`` if there is none."""
        return self._by_id[entry_id]

    def entries_for_topic(self, topic_id: str) -> list[FaqEntry]:
        """The entries of one topic, in file order."""
        return [e for e in self.entries if e.topic == topic_id]

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _where(path: Path, entry_id=None, index: int | None = None, fld: str | None = None) -> str:
    parts = [str(path)]
    if entry_id is not None:
        parts.append(f"entry {entry_id}")
    elif index is not None:
        parts.append(f"entry #{index + 1} (no usable id)")
    if fld:
        parts.append(f"field '{fld}'")
    return ", ".join(parts)


def _read(path: Path) -> dict:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise IvrError(f"{path}: expected a mapping with 'topics' and/or 'entries' at the top level, "
                       f"found {type(data).__name__}",
                       "start the file with 'topics:' and 'entries:' (see faq/smartca.yaml)")
    for key in data:
        if str(key) not in FILE_FIELDS:
            raise IvrError(f"{at(path, data, key)}: unknown top-level field '{key}'",
                           "only 'topics', 'entries' and 'out_of_scope' are allowed at the top level; "
                           + unknown_key_fix(key, FILE_FIELDS))
    return data


def _text(value, where: str, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise IvrError(f"{where}: expected text, found {type(value).__name__} ({value!r})",
                       "write the value as text (quote it if needed)")
    value = _nfc(value)
    if required and blank(value):
        shown = "is empty" if not value else f"shows nothing (only spaces or invisible characters: {value!r})"
        raise IvrError(f"{where}: {shown}; it would be read to callers as silence",
                       "write the text or remove the entry")
    return value


def _texts(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise IvrError(f"{where}: expected a list of texts, found {type(value).__name__}",
                       "write it as a YAML list: [\"...\", \"...\"] or one '- ...' per line")
    out = []
    for i, item in enumerate(value):
        out.append(_text(item, f"{where} item {i + 1}"))
    return tuple(out)


def _load_topics(path: Path, raw, topics: list[Topic], seen: dict[str, Path]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise IvrError(f"{path}, field 'topics': expected a list of {{id, label}}, found {type(raw).__name__}",
                       "write one '- id: ...\\n    label: ...' per topic")
    for i, item in enumerate(raw):
        where = f"{path}, topic #{i + 1}"
        if not isinstance(item, dict):
            raise IvrError(f"{where}: expected a mapping with id and label, found {type(item).__name__}",
                           "write it as '- id: password\\n    label: Mật khẩu và mã PIN'")
        for key in item:
            if str(key) not in TOPIC_FIELDS:
                raise IvrError(f"{at(path, item, key)}, topic #{i + 1}: unknown field '{key}'",
                               "a topic has only 'id' and 'label'; " + unknown_key_fix(key, TOPIC_FIELDS))
        for fld in ("id", "label"):
            if fld not in item:
                raise IvrError(f"{where}, field '{fld}': missing", f"add '{fld}:' to the topic")
        tid = _text(item["id"], f"{where}, field 'id'").strip()
        if tid in seen:
            raise IvrError(f"{where}, field 'id': duplicate topic id '{tid}' (also in {seen[tid]})",
                           "give each topic its own id")
        seen[tid] = path
        label = _text(item["label"], f"{path}, topic '{tid}', field 'label'").strip()
        topics.append(Topic(id=tid, label=label, key=str(len(topics) + 1)))


def _load_entry(path: Path, index: int, item) -> FaqEntry:
    if not isinstance(item, dict):
        raise IvrError(f"{_where(path, index=index)}: expected a mapping (id, topic, question, answer, ...), "
                       f"found {type(item).__name__}", "write the entry as '- id: ...' followed by its fields")
    raw_id = item.get("id")
    entry_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    for key in item:
        if str(key) not in ENTRY_FIELDS:
            where = _where(at(path, item, key), entry_id, index, str(key))
            raise IvrError(f"{where}: unknown field", unknown_key_fix(key, ENTRY_FIELDS))
    for fld in REQUIRED_ENTRY_FIELDS:
        if fld not in item:
            raise IvrError(f"{_where(path, entry_id, index, fld)}: missing", f"add '{fld}:' to the entry")
    if entry_id is None or entry_id < 1:
        raise IvrError(f"{_where(path, None, index, 'id')}: expected a whole number of 1 or more, found {raw_id!r}",
                       "give the entry a unique positive number as its id")
    w = lambda fld: _where(at(path, item, fld), entry_id, index, fld)  # noqa: E731
    topic = _text(item["topic"], w("topic")).strip()
    question = _text(item["question"], w("question"))
    answer = _text(item["answer"], w("answer"))
    spoken = item.get("spoken")
    if spoken is not None:
        spoken = _text(spoken, w("spoken"))
    return FaqEntry(
        id=entry_id,
        topic=topic,
        question=question,
        answer=answer,
        paraphrases=_texts(item.get("paraphrases"), w("paraphrases")),
        keywords=_texts(item.get("keywords"), w("keywords")),
        spoken=spoken,
        source=path,
    )


def _load_out_of_scope(path: Path, raw, groups: list[OutOfScope]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise IvrError(f"{path}, field 'out_of_scope': expected a list of {{label, phrasings}}, "
                       f"found {type(raw).__name__}",
                       "write one '- label: ...\\n    phrasings: [...]' per thing the line does not handle")
    for i, item in enumerate(raw):
        where = f"{path}, out_of_scope #{i + 1}"
        if not isinstance(item, dict):
            raise IvrError(f"{where}: expected a mapping with label and phrasings, found {type(item).__name__}",
                           "write it as '- label: Hóa đơn điện tử\\n    phrasings: [\"xuất hóa đơn\"]'")
        unknown = sorted(set(map(str, item)) - OUT_OF_SCOPE_FIELDS)
        if unknown:
            raise IvrError(f"{where}: unknown field(s) {', '.join(unknown)}",
                           "an out-of-scope group has only 'label' and 'phrasings'")
        for fld in ("label", "phrasings"):
            if fld not in item:
                raise IvrError(f"{where}, field '{fld}': missing", f"add '{fld}:' to the group")
        label = _text(item["label"], f"{where}, field 'label'").strip()
        phrasings = _texts(item["phrasings"], f"{path}, out_of_scope '{label}', field 'phrasings'")
        if not phrasings:
            raise IvrError(f"{path}, out_of_scope '{label}', field 'phrasings': is empty",
                           "list at least one way a caller asks for it, or remove the group")
        groups.append(OutOfScope(label=label, phrasings=phrasings, source=path))


def load_faq(directory: Path | str | None = None) -> Faq:
    """Read and validate every ``*.yaml`` file in ``directory`` (default ``faq/``) into one ``Faq``."""
    directory = Path(directory) if directory is not None else paths.faq_dir()
    if not directory.is_dir():
        raise IvrError(f"FAQ directory {directory} does not exist",
                       "point --dir (or IVR_HOME) at the directory that holds the faq/*.yaml files")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise IvrError(f"FAQ directory {directory} has no *.yaml files",
                       "add the FAQ file (e.g. faq/smartca.yaml) or point --dir at the right directory")
    topics: list[Topic] = []
    topic_seen: dict[str, Path] = {}
    entries: list[FaqEntry] = []
    id_seen: dict[int, Path] = {}
    out_of_scope: list[OutOfScope] = []
    for path in files:
        data = _read(path)
        _load_topics(path, data.get("topics"), topics, topic_seen)
        _load_out_of_scope(path, data.get("out_of_scope"), out_of_scope)
        raw_entries = data.get("entries")
        if raw_entries is None:
            continue
        if not isinstance(raw_entries, list):
            raise IvrError(f"{path}, field 'entries': expected a list of entries, found {type(raw_entries).__name__}",
                           "write one '- id: ...' block per entry under 'entries:'")
        for index, item in enumerate(raw_entries):
            entry = _load_entry(path, index, item)
            if entry.id in id_seen:
                other = id_seen[entry.id]
                where = "earlier in the same file" if other == path else f"also in {other}"
                raise IvrError(f"{_where(path, entry.id, index, 'id')}: duplicate id {entry.id} ({where})",
                               "give every entry its own id across all FAQ files")
            id_seen[entry.id] = path
            entries.append(entry)
    if not entries:
        raise IvrError(f"FAQ directory {directory}: no entries in {', '.join(p.name for p in files)}",
                       "add at least one entry under 'entries:'")
    if not topics:
        raise IvrError(f"FAQ directory {directory}: no topics in {', '.join(p.name for p in files)}",
                       "add the 'topics:' list (id and label of each keypad menu topic)")
    known = {t.id for t in topics}
    for e in entries:
        if e.topic not in known:
            raise IvrError(f"{_where(e.source, e.id, fld='topic')}: unknown topic '{e.topic}'",
                           f"use one of the topic ids: {', '.join(t.id for t in topics)}")
    return Faq(topics=topics, entries=entries, out_of_scope=out_of_scope)
