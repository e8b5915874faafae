"""prompts/vi.yaml: loaded, validated, formatted; broken files give errors naming file, prompt and field."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import yaml

from ivr.content.faq import load_faq
from ivr.content.prompts import SPEC, load_prompts, parse_prompts, placeholders
from ivr.errors import IvrError

ROOT = Path(__file__).resolve().parent.parent
VI = ROOT / "prompts" / "vi.yaml"


@pytest.fixture()
def raw():
    return yaml.safe_load(VI.read_text(encoding="utf-8"))


def _all_texts(p):
    for value in p.texts.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from value
        else:
            yield from value.values()
    yield from p.faq_summaries.values()
    yield from p.menu_labels.values()
    for phrases in p.voice_commands.values():
        yield from phrases


def test_real_prompts_load_and_are_nfc_vietnamese():
    p = load_prompts()
    assert set(p.texts) == set(SPEC)
    texts = list(_all_texts(p))
    assert len(texts) > 40
    for text in texts:
        assert unicodedata.normalize("NFC", text) == text
        assert text == text.strip() and "  " not in text
    assert "Quý khách" in p.text("greet_long") or "quý khách" in p.text("greet_long")
    assert p.text("greet_long").startswith("Xin chào")
    assert p.ladder_length("no_input") >= 3 and p.ladder_length("no_match") >= 3


def test_the_file_is_stored_nfc():
    text = VI.read_text(encoding="utf-8")
    assert unicodedata.normalize("NFC", text) == text


def test_every_faq_entry_has_a_summary():
    p = load_prompts()
    faq = load_faq()
    assert set(p.faq_summaries) == {e.id for e in faq.entries}


def test_formatting_fills_placeholders():
    p = load_prompts()
    text = p.text("after_answer", repeat="1", another="2", menu="3", goodbye="9")
    for key in "1239":
        assert f"bấm phím {key}" in text
    assert p.text("confirm", summary="cách đổi mật khẩu") == \
        "Có phải quý khách muốn hỏi về cách đổi mật khẩu không?"
    assert p.part("main_menu", "option", key="1", label="tài khoản") == "Để được hỗ trợ về tài khoản, bấm phím 1."
    assert p.ladder("no_input", 1) != p.ladder("no_input", 2)
    assert p.ladder("no_input", 99) == p.ladder("no_input", p.ladder_length("no_input"))
    decomposed = unicodedata.normalize("NFD", "mật khẩu")
    assert p.text("confirm", summary=decomposed) == unicodedata.normalize("NFC", p.text("confirm", summary=decomposed))


def test_missing_placeholder_value_is_an_error():
    p = load_prompts()
    with pytest.raises(IvrError, match=r"confirm.*\{summary\}"):
        p.text("confirm")


def test_placeholders():
    assert placeholders("Bấm {key} cho {label}.") == {"key", "label"}
    assert placeholders("Dấu {{ngoặc}}") == set()
    with pytest.raises(ValueError):
        placeholders("Bấm {key:>3}")
    with pytest.raises(ValueError):
        placeholders("Bấm {0}")


def _error(raw, path=VI) -> str:
    with pytest.raises(IvrError) as exc:
        parse_prompts(raw, path)
    return str(exc.value)


def test_missing_prompt_is_named(raw):
    del raw["goodbye"]
    msg = _error(raw)
    assert "vi.yaml" in msg and "goodbye" in msg and "missing" in msg


def test_missing_part_is_named(raw):
    del raw["topic_menu"]["head"]
    msg = _error(raw)
    assert "topic_menu.head" in msg


def test_wrong_types_are_named(raw):
    bad = dict(raw, greet_short=["a list"])
    assert "greet_short" in _error(bad) and "expected a non-empty text" in _error(bad)
    bad = dict(raw, no_input="not a list")
    assert "no_input" in _error(bad) and "list" in _error(bad)
    bad = dict(raw, no_match=["ok", 5])
    assert "no_match[2]" in _error(bad)
    bad = dict(raw, main_menu="text")
    assert "main_menu" in _error(bad) and "mapping" in _error(bad)
    bad = dict(raw, goodbye="   ")
    assert "goodbye" in _error(bad)
    assert "top level" in _error(["a"])


def test_unknown_placeholder_is_named(raw):
    raw["confirm"] = "Có phải quý khách hỏi về {sumary} không?"
    msg = _error(raw)
    assert "confirm" in msg and "{sumary}" in msg and "{summary}" in msg


def test_placeholder_of_another_prompt_is_refused(raw):
    raw["goodbye"] = "Tạm biệt {summary}."
    msg = _error(raw)
    assert "goodbye" in msg and "{summary}" in msg


def test_broken_brace_is_named(raw):
    raw["main_menu"]["option"] = "Bấm {key cho {label}."
    msg = _error(raw)
    assert "main_menu.option" in msg


def test_unknown_prompt_id_is_named(raw):
    raw["greeting_long"] = "Xin chào"
    msg = _error(raw)
    assert "greeting_long" in msg and "unknown" in msg


def test_unknown_part_is_named(raw):
    raw["main_menu"]["footer"] = "x"
    assert "footer" in _error(raw)


def test_bad_summaries_and_commands_are_named(raw):
    bad = dict(raw, faq_summaries={"one": "x"})
    assert "faq_summaries" in _error(bad) and "'one'" in _error(bad)
    bad = dict(raw, faq_summaries={1: ""})
    assert "faq_summaries.1" in _error(bad)
    bad = dict(raw, voice_commands={"dance": ["nhảy"]})
    assert "dance" in _error(bad)
    bad = dict(raw, voice_commands={"repeat": "nghe lại"})
    assert "voice_commands.repeat" in _error(bad)
    bad = dict(raw, menu_labels={"root": "x"})
    assert "menu_labels" in _error(bad)


def test_optional_sections_may_be_left_out(raw):
    for key in ("faq_summaries", "voice_commands", "menu_labels"):
        raw.pop(key)
    p = parse_prompts(raw, VI)
    entry = load_faq().by_id(10)
    assert p.summary(entry) == entry.question.rstrip("?")
    assert p.voice_commands == {} and p.menu_labels["operator"]


def test_file_errors(tmp_path):
    with pytest.raises(IvrError, match="missing"):
        load_prompts(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("greet_long: [unclosed\n", encoding="utf-8")
    with pytest.raises(IvrError, match="not valid YAML"):
        load_prompts(bad)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("greet_long: Xin chào".encode("latin-1", errors="replace") + b"\xff\xfe")
    with pytest.raises(IvrError, match="UTF-8"):
        load_prompts(latin)
