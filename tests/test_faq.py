import re
import textwrap
import unicodedata
from pathlib import Path

import pytest

from ivr.content import paths
from ivr.content.faq import Faq, FaqEntry, Topic, load_faq
from ivr.errors import IvrError

SOURCE_PAGE = paths.home() / "faq" / "source" / "smartca_faq_page.txt"

TOPICS = """\
topics:
  - id: account
    label: Tài khoản
  - id: password
    label: Mật khẩu
"""


def entry(id="1", topic="password", question="Quên mật khẩu?", answer="Dùng chức năng Quên mật khẩu.", extra=""):
    text = f"  - id: {id}\n    topic: {topic}\n    question: {question}\n    answer: {answer}\n"
    return text + textwrap.indent(textwrap.dedent(extra), "    ") if extra else text


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(directory: Path) -> str:
    with pytest.raises(IvrError) as info:
        load_faq(directory)
    assert info.value.fix, "every loading error says how to fix it"
    return str(info.value)


def parse_source_page(path: Path) -> dict[int, tuple[str, str]]:
    """Questions and answers of the public FAQ page: 'N. question', blank, 'Trả lời', answer lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: dict[int, tuple[str, str]] = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^(\d+)\. (.+)$", lines[i])
        if not m:
            i += 1
            continue
        number, question = int(m.group(1)), m.group(2)
        i += 1
        while lines[i].strip() == "":
            i += 1
        assert lines[i].strip() == "Trả lời", f"line {i + 1}: expected 'Trả lời'"
        i += 1
        answer = []
        while i < len(lines) and not re.match(r"^\d+\. ", lines[i]):
            answer.append(lines[i])
            i += 1
        while answer and not answer[-1].strip():
            answer.pop()
        out[number] = (question, "\n".join(answer))
    return out


# --- the shipped FAQ ----------------------------------------------------------------------------------------


def test_shipped_faq_loads(faq):
    assert isinstance(faq, Faq)
    assert [e.id for e in faq.entries] == list(range(1, 15))
    assert [t.key for t in faq.topics] == [str(i) for i in range(1, len(faq.topics) + 1)]
    assert all(isinstance(t, Topic) for t in faq.topics)
    assert all(isinstance(e, FaqEntry) and e.source.name == "smartca.yaml" for e in faq.entries)
    topic_ids = {t.id for t in faq.topics}
    assert {e.topic for e in faq.entries} <= topic_ids


def test_questions_and_answers_equal_the_source_page(faq):
    page = parse_source_page(SOURCE_PAGE)
    assert sorted(page) == [e.id for e in faq.entries]
    for e in faq.entries:
        question, answer = page[e.id]
        assert e.question == unicodedata.normalize("NFC", question), f"entry {e.id} question"
        assert e.answer == unicodedata.normalize("NFC", answer), f"entry {e.id} answer"


def test_by_id_and_entries_for_topic(faq):
    assert faq.by_id(9).question.startswith("Tôi quên mật khẩu")
    with pytest.raises(KeyError):
        faq.by_id(999)
    password = faq.entries_for_topic("password")
    assert [e.id for e in password] == [e.id for e in faq.entries if e.topic == "password"]
    assert 9 in [e.id for e in password]
    assert faq.entries_for_topic("nope") == []
    assert sum(len(faq.entries_for_topic(t.id)) for t in faq.topics) == len(faq.entries)


def test_all_text_is_nfc(faq):
    for e in faq.entries:
        for text in (e.question, e.answer, *e.paraphrases, *e.keywords):
            assert unicodedata.is_normalized("NFC", text)


# --- loading a directory ------------------------------------------------------------------------------------


def test_minimal_file_and_defaults(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry())
    faq = load_faq(tmp_path)
    e = faq.by_id(1)
    assert (e.paraphrases, e.keywords, e.spoken) == ((), (), None)
    assert e.source == tmp_path / "a.yaml"
    assert [(t.id, t.key) for t in faq.topics] == [("account", "1"), ("password", "2")]


def test_files_are_merged_in_name_order(tmp_path):
    write(tmp_path, "b.yaml", "topics:\n  - id: device\n    label: Thiết bị\nentries:\n" + entry(id=2, topic="device"))
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=1))
    faq = load_faq(tmp_path)
    assert [e.id for e in faq.entries] == [1, 2]
    assert [t.id for t in faq.topics] == ["account", "password", "device"]
    assert faq.by_id(2).source.name == "b.yaml"


def test_decomposed_text_is_nfc_on_load(tmp_path):
    nfd = unicodedata.normalize("NFD", "Quên mật khẩu?")
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(question=f'"{nfd}"', extra=f'paraphrases: ["{nfd}"]\n'))
    e = load_faq(tmp_path).by_id(1)
    assert e.question == "Quên mật khẩu?" and e.paraphrases == ("Quên mật khẩu?",)


def test_optional_fields(tmp_path):
    extra = 'paraphrases: ["quên mk"]\nkeywords: [quên mật khẩu]\nspoken: "Bạn dùng chức năng quên mật khẩu."\n'
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(extra=extra))
    e = load_faq(tmp_path).by_id(1)
    assert e.paraphrases == ("quên mk",) and e.keywords == ("quên mật khẩu",)
    assert e.spoken == "Bạn dùng chức năng quên mật khẩu."


# --- every loading error names the file, the entry and the field --------------------------------------------


def test_bad_yaml_names_the_line(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry() + '    paraphrases: ["unclosed\n    keywords: []\n')
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "not valid YAML" in msg and re.search(r"line \d+", msg)


def test_bad_indentation_yaml(tmp_path):
    write(tmp_path, "a.yaml", "topics:\n  - id: a\n   label: x\n")
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "line 3" in msg


def test_not_a_mapping(tmp_path):
    write(tmp_path, "a.yaml", "- just\n- a list\n")
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "mapping" in msg


def test_empty_file_is_not_a_mapping(tmp_path):
    write(tmp_path, "a.yaml", "# nothing\n")
    assert "mapping" in load_error(tmp_path)


def test_unknown_top_level_field(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry() + "entires: []\n")
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "entires" in msg


def test_unknown_entry_field(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=7, extra="paraphrase: [x]\n"))
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "entry 7" in msg and "paraphrase" in msg and "paraphrases" in msg


@pytest.mark.parametrize("missing", ["topic", "question", "answer"])
def test_missing_field(tmp_path, missing):
    text = entry(id=4)
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(missing + ":")) + "\n"
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + text)
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "entry 4" in msg and f"'{missing}'" in msg and "missing" in msg


def test_missing_id(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n  - topic: password\n    question: q\n    answer: a\n")
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "entry #1" in msg and "'id'" in msg


@pytest.mark.parametrize("bad_id", ['"three"', "1.5", "0", "-2", "true"])
def test_wrong_id_type(tmp_path, bad_id):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=bad_id))
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "'id'" in msg and "whole number" in msg


@pytest.mark.parametrize(
    "field,text",
    [("question", "question: 42\n"), ("answer", "answer: [a, b]\n"), ("topic", "topic: 3\n")],
)
def test_wrong_text_type(tmp_path, field, text):
    body = entry(id=5)
    body = re.sub(rf"    {field}: .*\n", "    " + text, body)
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + body)
    msg = load_error(tmp_path)
    assert "entry 5" in msg and f"'{field}'" in msg and "expected text" in msg


def test_paraphrases_not_a_list(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=5, extra="paraphrases: quên mk\n"))
    msg = load_error(tmp_path)
    assert "entry 5" in msg and "'paraphrases'" in msg and "list" in msg


def test_keyword_item_not_text(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=5, extra="keywords: [pin, 48]\n"))
    msg = load_error(tmp_path)
    assert "entry 5" in msg and "'keywords' item 2" in msg


@pytest.mark.parametrize("field", ["question", "answer"])
def test_empty_question_or_answer(tmp_path, field):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + re.sub(rf"{field}: .*\n", f'{field}: "   "\n', entry(id=6)))
    msg = load_error(tmp_path)
    assert "entry 6" in msg and f"'{field}'" in msg and "empty" in msg


def test_duplicate_id_within_a_file(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=3) + entry(id=3))
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "entry 3" in msg and "duplicate id 3" in msg and "same file" in msg


def test_duplicate_id_across_files(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=3))
    write(tmp_path, "b.yaml", "entries:\n" + entry(id=3))
    msg = load_error(tmp_path)
    assert "b.yaml" in msg and "duplicate id 3" in msg and "a.yaml" in msg


def test_unknown_topic(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry(id=8, topic="pasword"))
    msg = load_error(tmp_path)
    assert "entry 8" in msg and "'topic'" in msg and "pasword" in msg and "account, password" in msg


def test_duplicate_topic_ids(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "  - id: account\n    label: Again\nentries:\n" + entry())
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "duplicate topic id 'account'" in msg


def test_duplicate_topic_ids_across_files(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n" + entry())
    write(tmp_path, "b.yaml", "topics:\n  - id: password\n    label: Again\n")
    msg = load_error(tmp_path)
    assert "b.yaml" in msg and "duplicate topic id 'password'" in msg


def test_topic_missing_label(tmp_path):
    write(tmp_path, "a.yaml", "topics:\n  - id: account\nentries:\n" + entry(topic="account"))
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "topic #1" in msg and "'label'" in msg


def test_no_entries_at_all(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries: []\n")
    msg = load_error(tmp_path)
    assert "no entries" in msg and "a.yaml" in msg


def test_no_topics(tmp_path):
    write(tmp_path, "a.yaml", "entries:\n" + entry())
    assert "no topics" in load_error(tmp_path)


def test_entries_not_a_list(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n  id: 1\n")
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "'entries'" in msg


def test_entry_not_a_mapping(tmp_path):
    write(tmp_path, "a.yaml", TOPICS + "entries:\n  - just text\n")
    msg = load_error(tmp_path)
    assert "entry #1" in msg and "mapping" in msg


def test_no_yaml_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert "no *.yaml files" in load_error(tmp_path)


def test_missing_directory(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nowhere")


def test_not_utf8(tmp_path):
    (tmp_path / "a.yaml").write_bytes((TOPICS + "entries:\n" + entry()).encode("utf-16"))
    msg = load_error(tmp_path)
    assert "a.yaml" in msg and "UTF-8" in msg
