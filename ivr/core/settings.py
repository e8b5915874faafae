"""The call-flow settings (``config/dialogue.yaml``), validated from the mapping the edge has read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.core.menu import OPERATOR
from ivr.errors import IvrError

END_CHOICES = ("goodbye", "operator")


MAX_TIMEOUT_S = 120.0  # no-input wait after a prompt
MAX_INTER_DIGIT_S = 30.0  # wait between the keys of a multi-key entry


@dataclass(frozen=True)
class DialogueSettings:
    """``config/dialogue.yaml`` (see its comments)."""

    timeout: float = 7.0
    inter_digit_timeout: float = 2.0
    max_failures: int = 3
    max_timeouts: int = 3
    digit_max: int = 4
    barge_in: bool = True
    answer_barge_in: bool = True
    on_max_failures: str = "operator"
    on_max_timeouts: str = "goodbye"
    repeat_key: str = "1"
    another_key: str = "2"
    menu_key: str = "3"
    goodbye_key: str = "9"
    yes_key: str = "1"
    no_key: str = "2"
    second_candidate: bool = True
    confirm_min_score: float = 0.5
    min_confidence: float = 0.0
    operator_enabled: bool = True
    operator_key: str = "0"
    operator_target: str = OPERATOR

    @classmethod
    def from_config(cls, data: dict[str, Any], source: str = "config/dialogue.yaml") -> DialogueSettings:
        """Validate the mapping of ``config/dialogue.yaml``; errors name the file and the field."""

        def get(path: str, kind: type, default: Any) -> Any:
            node: Any = data
            for part in path.split("."):
                if not isinstance(node, dict) or part not in node:
                    return default
                node = node[part]
            if kind is float and isinstance(node, int) and not isinstance(node, bool):
                node = float(node)
            if kind is str and isinstance(node, int) and not isinstance(node, bool):
                node = str(node)
            if not isinstance(node, kind) or (kind is not bool and isinstance(node, bool)):
                raise IvrError(
                    f"{source}: {path} should be {kind.__name__}, found {node!r}",
                    f"set {path} to a {kind.__name__} (see the comments in the file)",
                )
            return node

        d = cls()
        s = cls(
            timeout=get("timeout", float, d.timeout),
            inter_digit_timeout=get("inter_digit_timeout", float, d.inter_digit_timeout),
            max_failures=get("max_failures", int, d.max_failures),
            max_timeouts=get("max_timeouts", int, d.max_timeouts),
            digit_max=get("digit_max", int, d.digit_max),
            barge_in=get("barge_in", bool, d.barge_in),
            answer_barge_in=get("answer_barge_in", bool, d.answer_barge_in),
            on_max_failures=get("on_max_failures", str, d.on_max_failures),
            on_max_timeouts=get("on_max_timeouts", str, d.on_max_timeouts),
            repeat_key=get("after_answer_keys.repeat", str, d.repeat_key),
            another_key=get("after_answer_keys.another", str, d.another_key),
            menu_key=get("after_answer_keys.menu", str, d.menu_key),
            goodbye_key=get("after_answer_keys.goodbye", str, d.goodbye_key),
            yes_key=get("confirm.yes_key", str, d.yes_key),
            no_key=get("confirm.no_key", str, d.no_key),
            second_candidate=get("confirm.second_candidate", bool, d.second_candidate),
            confirm_min_score=get("confirm.min_score", float, d.confirm_min_score),
            min_confidence=get("speech.min_confidence", float, d.min_confidence),
            operator_enabled=get("operator.enabled", bool, d.operator_enabled),
            operator_key=get("operator.key", str, d.operator_key),
            operator_target=get("operator.target", str, d.operator_target),
        )
        s.check(source)
        return s

    def check(self, source: str = "config/dialogue.yaml") -> None:
        def bad(name: str, why: str, fix: str) -> IvrError:
            return IvrError(f"{source}: {name} {why}", fix)

        # a caller left waiting longer than these hears nothing: an infinite or huge wait is a silent stall
        for name, most in (("timeout", MAX_TIMEOUT_S), ("inter_digit_timeout", MAX_INTER_DIGIT_S)):
            value = getattr(self, name)
            if not value > 0:
                raise bad(name, "must be more than 0 seconds", f"set {name} to a number of seconds, e.g. 5")
            if not value <= most:
                raise bad(name, f"is {value} seconds: a caller would wait that long in silence",
                          f"set {name} to at most {most:g} seconds")
        for name in ("max_failures", "max_timeouts", "digit_max"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1", f"set {name} to 1 or more")
        for name in ("on_max_failures", "on_max_timeouts"):
            if getattr(self, name) not in END_CHOICES:
                raise bad(name, f"is {getattr(self, name)!r}", f"set {name} to one of: {', '.join(END_CHOICES)}")
        keys = {
            "after_answer_keys.repeat": self.repeat_key,
            "after_answer_keys.another": self.another_key,
            "after_answer_keys.menu": self.menu_key,
            "after_answer_keys.goodbye": self.goodbye_key,
            "confirm.yes_key": self.yes_key,
            "confirm.no_key": self.no_key,
            "operator.key": self.operator_key,
        }
        for name, key in keys.items():
            if len(key) != 1 or key not in "0123456789":
                raise bad(name, f"is {key!r}", "use a single key 0-9 (* and # are repeat and main menu)")
        after = [self.repeat_key, self.another_key, self.menu_key, self.goodbye_key]
        if self.operator_enabled:
            after.append(self.operator_key)
        if len(set(after)) != len(after):
            raise bad("after_answer_keys", "use a key twice (or the operator key)", "give each choice its own key")
        confirm = [self.yes_key, self.no_key] + ([self.operator_key] if self.operator_enabled else [])
        if len(set(confirm)) != len(confirm):
            raise bad("confirm", "keys clash (yes, no, operator)", "give yes and no their own keys")
