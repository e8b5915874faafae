"""The keypad menu built from the real FAQ topics and prompts, its JSON form and ``ivr menu``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.content.faq import Faq, FaqEntry, Topic, load_faq
from ivr.content.prompts import load_prompts
from ivr.core.menu import build_menu, lower_first, menu_to_json, menu_to_text
from ivr.errors import IvrError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faq():
    return load_faq()


@pytest.fixture(scope="module")
def prompts():
    return load_prompts()


def _check_node(node: dict, root: bool = False) -> list[int]:
    """Check the shape of one JSON node; return the FAQ ids below it."""
    kinds = [k for k in ("options", "faq_id", "action") if k in node]
    assert len(kinds) == 1, node
    if root:
        assert set(node) == {"prompt", "options"}
    else:
        assert isinstance(node["label"], str) and node["label"]
    if "options" in node:
        assert isinstance(node["prompt"], str) and node["prompt"]
        if not root:
            assert set(node) == {"label", "prompt", "options"}
        ids = []
        for key, child in node["options"].items():
            assert key.isdigit()
            ids += _check_node(child)
        return ids
    if "faq_id" in node:
        assert set(node) == {"label", "faq_id"} and isinstance(node["faq_id"], int)
        return [node["faq_id"]]
    assert set(node) == {"label", "action"} and node["action"] == "operator"
    return []


def test_menu_json_shape_and_every_answer_once(faq, prompts):
    data = menu_to_json(build_menu(faq, prompts))
    ids = _check_node(data, root=True)
    assert sorted(ids) == sorted(e.id for e in faq.entries) and len(ids) == 14
    assert list(data["options"]) == [t.key for t in faq.topics] + ["0"]
    assert data["options"]["0"] == {"label": prompts.menu_labels["operator"], "action": "operator"}
    for topic in faq.topics:
        node = data["options"][topic.key]
        assert node["label"] == topic.label
        questions = {k: v for k, v in node["options"].items() if "faq_id" in v}
        assert [v["faq_id"] for v in questions.values()] == [e.id for e in faq.entries_for_topic(topic.id)]
        assert list(questions) == [str(i) for i in range(1, len(questions) + 1)]
        assert node["options"]["0"]["action"] == "operator"
        for key, child in questions.items():  # the prompt says every option's key and label
            assert f"{child['label']}, bấm phím {key}" in node["prompt"]
        assert "thăng" in node["prompt"] and "sao" in node["prompt"]
    for topic in faq.topics:
        assert f"{lower_first(topic.label)}, bấm phím {topic.key}" in data["prompt"]
    assert "bấm phím 0" in data["prompt"]


def test_menu_labels_are_the_summaries(faq, prompts):
    root = build_menu(faq, prompts)
    for entry in faq.entries:
        keys = root.path_to(entry.id)
        node = root
        for k in keys:
            node = node.options[k]
        assert node.faq_id == entry.id and node.label == prompts.summary(entry)
    assert root.path_to(999) is None


def test_menu_without_operator(faq, prompts):
    data = menu_to_json(build_menu(faq, prompts, operator=False))
    _check_node(data, root=True)
    assert "0" not in data["options"] and "tổng đài viên" not in data["prompt"]
    for node in data["options"].values():
        assert "0" not in node["options"]


def test_menu_text_is_an_indented_tree(faq, prompts):
    text = menu_to_text(build_menu(faq, prompts))
    lines = text.splitlines()
    assert lines[0] == prompts.menu_labels["main_menu"]
    for topic in faq.topics:
        assert f"  [{topic.key}] {topic.label}" in lines
    for entry in faq.entries:
        assert sum(line.startswith("    [") and line.endswith(f"-> FAQ {entry.id}") for line in lines) == 1


def _faq(topics, entries) -> Faq:
    return Faq(topics=topics, entries=[
        FaqEntry(id=i, topic=t, question=f"Câu hỏi {i}?", answer=f"Trả lời {i}.", paraphrases=(), keywords=(),
                 spoken=None, source=Path("test.yaml"))
        for i, t in entries
    ])


def test_topic_key_clashing_with_the_operator_key_is_an_error(prompts):
    faq = _faq([Topic("a", "A", "0")], [(1, "a")])
    with pytest.raises(IvrError, match="operator key"):
        build_menu(faq, prompts)
    faq = _faq([Topic("a", "A", "1"), Topic("b", "B", "1")], [(1, "a"), (2, "b")])
    with pytest.raises(IvrError, match="already used by topic a"):
        build_menu(faq, prompts)


def test_topic_without_questions_is_left_out_and_an_empty_menu_is_an_error(prompts):
    faq = _faq([Topic("a", "Alpha", "1"), Topic("b", "Beta", "2")], [(1, "a")])
    data = menu_to_json(build_menu(faq, prompts))
    assert list(data["options"]) == ["1", "0"]
    with pytest.raises(IvrError, match="no topic with questions"):
        build_menu(_faq([Topic("a", "Alpha", "1")], []), prompts)


def test_summary_falls_back_to_the_question(prompts):
    faq = _faq([Topic("a", "Alpha", "1")], [(99, "a")])
    root = build_menu(faq, prompts)
    assert root.options["1"].options["1"].label == "Câu hỏi 99"


def test_lower_first():
    assert lower_first("Tài khoản") == "tài khoản"
    assert lower_first("VNPT SmartCA") == "VNPT SmartCA"
    assert lower_first("") == ""


def _ivr(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "ivr", *args], capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, env=env, timeout=60)


def test_ivr_menu_json_prints_the_tree(faq, prompts):
    proc = _ivr("menu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == menu_to_json(build_menu(faq, prompts))


def test_ivr_menu_prints_a_readable_tree(faq, prompts):
    proc = _ivr("menu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == menu_to_text(build_menu(faq, prompts))


def test_ivr_menu_with_broken_prompts_names_the_problem(tmp_path):
    home = tmp_path / "home"
    for name in ("faq", "config", "prompts"):
        src = ROOT / name
        dst = home / name
        dst.mkdir(parents=True)
        for f in src.glob("*.yaml"):
            (dst / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    vi = home / "prompts" / "vi.yaml"
    vi.write_text(vi.read_text(encoding="utf-8").replace("{label}, bấm phím {key}.", "{lable}, bấm phím {key}.",
                                                         1), encoding="utf-8")
    env = dict(os.environ, PYTHONIOENCODING="utf-8", IVR_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "ivr", "menu"], capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 2
    assert "vi.yaml" in proc.stderr and "main_menu.option" in proc.stderr and "{lable}" in proc.stderr
    assert "Traceback" not in proc.stderr
