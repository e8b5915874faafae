"""The keypad menu: main menu of FAQ topics -> the questions of a topic -> the answer.

``build_menu(faq, prompts)`` gives the tree the dialogue navigates (the one source of truth for keys);
``menu_to_json`` and ``menu_to_text`` show it (``ivr menu``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr.errors import IvrError

OPERATOR = "operator"
RESERVED_KEYS = {"*", "#"}  # repeat and back to the main menu, everywhere


@dataclass(eq=False)
class MenuNode:
    """One node: a submenu (``options``), an answer (``faq_id``) or an action (``action``)."""

    label: str
    key: str | None = None  # the key that reaches this node from its parent (None for the root)
    prompt: str | None = None  # what is said at a submenu
    options: dict[str, MenuNode] | None = None
    faq_id: int | None = None
    action: str | None = None
    topic_id: str | None = None
    parent: MenuNode | None = field(default=None, repr=False)

    @property
    def is_menu(self) -> bool:
        return self.options is not None

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def max_key_length(self) -> int:
        return max((len(k) for k in self.options or {}), default=1)

    def completes(self, keys: str) -> bool:
        """True when ``keys`` typed at this menu need no further key (no longer option starts with them)."""
        return not any(len(k) > len(keys) and k.startswith(keys) for k in self.options or {})

    def path_to(self, faq_id: int) -> list[str] | None:
        """The keys leading from this node to the answer ``faq_id``, or None."""
        for key, child in (self.options or {}).items():
            if child.faq_id == faq_id:
                return [key]
            if child.is_menu:
                rest = child.path_to(faq_id)
                if rest is not None:
                    return [key, *rest]
        return None

    def walk(self):
        yield self
        for child in (self.options or {}).values():
            yield from child.walk()


def lower_first(text: str) -> str:
    """"Tài khoản" -> "tài khoản" inside a sentence; acronyms ("VNPT", "SmartCA") are kept."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _check_key(key: str, where: str, taken: dict[str, str], operator_key: str | None) -> None:
    if not key.isdigit():
        raise IvrError(f"{where}: key {key!r} is not made of digits", "give topics the keys 1, 2, 3 ...")
    if key == operator_key:
        raise IvrError(f"{where}: key {key} is the operator key", "give the topic another key or change operator.key")
    if key in taken:
        raise IvrError(f"{where}: key {key} is already used by {taken[key]}", "give each topic its own key")


def build_menu(faq, prompts, operator: bool = True, operator_key: str = "0") -> MenuNode:
    """The keypad tree of ``faq`` with the words of ``prompts`` (topics in their file order)."""
    op_key = operator_key if operator else None
    root = MenuNode(label=prompts.menu_labels["main_menu"], options={})
    taken: dict[str, str] = {}
    for topic in faq.topics:
        entries = faq.entries_for_topic(topic.id)
        if not entries:
            continue  # a topic with no question has nothing to offer on the keypad
        key = str(topic.key)
        _check_key(key, f"FAQ topic {topic.id}", taken, op_key)
        taken[key] = f"topic {topic.id}"
        node = MenuNode(label=topic.label, key=key, options={}, topic_id=topic.id, parent=root)
        for i, entry in enumerate(entries, start=1):
            qkey = str(i)
            if qkey == op_key:  # cannot happen with keys from 1, kept for clarity
                raise IvrError(f"FAQ topic {topic.id}: question key {qkey} is the operator key", "")
            node.options[qkey] = MenuNode(
                label=prompts.summary(entry), key=qkey, faq_id=entry.id, topic_id=topic.id, parent=node
            )
        if op_key:
            node.options[op_key] = MenuNode(
                label=prompts.menu_labels["operator"], key=op_key, action=OPERATOR, parent=node
            )
        node.prompt = _topic_prompt(node, prompts, op_key)
        root.options[key] = node
    if not root.options:
        raise IvrError("the FAQ has no topic with questions: the keypad menu would be empty",
                       "give the FAQ entries topics listed under topics:")
    if op_key:
        root.options[op_key] = MenuNode(label=prompts.menu_labels["operator"], key=op_key, action=OPERATOR,
                                        parent=root)
    root.prompt = _main_prompt(root, prompts, op_key)
    return root


def _main_prompt(root: MenuNode, prompts, op_key: str | None) -> str:
    parts = [
        prompts.part("main_menu", "option", key=key, label=lower_first(child.label))
        for key, child in root.options.items()
        if child.is_menu
    ]
    if op_key:
        parts.append(prompts.part("main_menu", "operator", operator=op_key))
    parts.append(prompts.part("main_menu", "tail"))
    return " ".join(parts)


def _topic_prompt(node: MenuNode, prompts, op_key: str | None) -> str:
    parts = [prompts.part("topic_menu", "head", topic=lower_first(node.label))]
    parts += [
        prompts.part("topic_menu", "option", key=key, label=child.label)
        for key, child in node.options.items()
        if child.faq_id is not None
    ]
    if op_key:
        parts.append(prompts.part("topic_menu", "operator", operator=op_key))
    parts.append(prompts.part("topic_menu", "tail"))
    return " ".join(parts)


def menu_to_json(node: MenuNode) -> dict[str, Any]:
    """The tree as plain data: {"prompt", "options": {key: {"label", "prompt", "options"} | {"label",
    "faq_id"} | {"label", "action"}}} (the root has no label)."""
    out: dict[str, Any] = {} if node.is_root else {"label": node.label}
    if node.is_menu:
        out["prompt"] = node.prompt
        out["options"] = {key: menu_to_json(child) for key, child in node.options.items()}
    elif node.faq_id is not None:
        out["faq_id"] = node.faq_id
    else:
        out["action"] = node.action
    return out


def menu_to_text(node: MenuNode, indent: str = "  ") -> str:
    """An indented, readable tree for people."""
    lines = [node.label]

    def visit(n: MenuNode, depth: int) -> None:
        for key, child in (n.options or {}).items():
            pad = indent * depth
            if child.is_menu:
                lines.append(f"{pad}[{key}] {child.label}")
                visit(child, depth + 1)
            elif child.faq_id is not None:
                lines.append(f"{pad}[{key}] {child.label}  -> FAQ {child.faq_id}")
            else:
                lines.append(f"{pad}[{key}] {child.label}  -> {child.action}")

    visit(node, 1)
    lines.append(f"{indent}[*] nghe lại    [#] về menu chính")
    return "\n".join(lines)
