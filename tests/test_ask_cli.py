import io
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

from ivr.cli import main
from ivr.content import paths

IVR = Path(sys.executable).parent / "ivr"
KEYS = {"question", "decision", "faq_id", "score", "answer", "alternatives", "out_of_scope"}


def run(capsys, argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_object(obj, faq):
    assert set(obj) == KEYS
    assert obj["decision"] in ("answer", "confirm", "reject")
    assert isinstance(obj["score"], float) and 0.0 <= obj["score"] <= 1.0
    if obj["decision"] == "reject":
        assert obj["faq_id"] is None and obj["answer"] is None
    else:
        assert obj["answer"] == faq.by_id(obj["faq_id"]).answer
    for alt in obj["alternatives"]:
        assert set(alt) == {"faq_id", "score"} and alt["faq_id"] != obj["faq_id"]


def test_ask_readable(capsys, faq):
    code, out, _ = run(capsys, ["ask", "tôi quên mật khẩu"])
    assert code == 0
    assert "decision: answer" in out
    assert faq.by_id(9).question in out
    assert "Sử dụng chức năng Quên mật khẩu trên web hoặc app" in out
    assert "score:" in out and "alternatives:" in out


def test_ask_readable_reject(capsys):
    code, out, _ = run(capsys, ["ask", "xin chào"])
    assert code == 0 and "decision: reject" in out and "keypad menu" in out


def test_ask_json_one_question(capsys, faq):
    code, out, _ = run(capsys, ["ask", "--json", "quên mã pin"])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    check_object(obj, faq)
    assert obj["question"] == "quên mã pin" and obj["faq_id"] == 3
    assert "Kích hoạt lại" in lines[0], "ensure_ascii=False keeps Vietnamese readable"


def test_ask_json_stdin_lines_in_order(capsys, monkeypatch, faq):
    questions = ["quên mật khẩu", "", "@@@ ###", "đổi mật khẩu", "mất ví tiền", "ạ", "quen ma pin"]
    code, out, _ = run(capsys, ["ask", "--json"], stdin="\n".join(questions) + "\n", monkeypatch=monkeypatch)
    assert code == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["question"] for o in objs] == questions
    for o in objs:
        check_object(o, faq)
    assert [o["faq_id"] for o in objs] == [9, None, None, 6, None, None, 3]


def test_ask_json_stdin_nfc(capsys, monkeypatch):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "quên mật khẩu")
    code, out, _ = run(capsys, ["ask", "--json"], stdin=nfd + "\r\n", monkeypatch=monkeypatch)
    obj = json.loads(out)
    assert obj["question"] == unicodedata.normalize("NFC", nfd) and obj["faq_id"] == 9


def test_ask_with_broken_faq_dir_exits_2(capsys, tmp_path):
    (tmp_path / "a.yaml").write_text("topics: [\n", encoding="utf-8")
    code, out, err = run(capsys, ["ask", "--dir", str(tmp_path), "quên mật khẩu"])
    assert code == 2 and "a.yaml" in err and "not valid YAML" in err and "fix:" in err


def test_faq_check_summary(capsys, faq):
    code, out, _ = run(capsys, ["faq", "check"])
    assert code == 0
    assert f"FAQ OK: {len(faq.entries)} entries, {len(faq.topics)} topics" in out
    for t in faq.topics:
        assert f"{t.key}  {t.id}" in out
    e = faq.by_id(3)
    assert f"{e.id:>3}  {e.topic:<12} {len(e.paraphrases):>3} {len(e.keywords):>3}" in out


def test_faq_check_broken_file_exits_2(capsys, tmp_path):
    (tmp_path / "a.yaml").write_text(
        "topics:\n  - {id: t, label: T}\nentries:\n  - {id: 1, topic: t, question: q, answer: a, extra: x}\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, ["faq", "check", "--dir", str(tmp_path)])
    assert code == 2 and "a.yaml" in err and "entry 1" in err and "extra" in err


def test_faq_without_subcommand(capsys):
    code, out, _ = run(capsys, ["faq"])
    assert code == 2 and "check" in out


def read_lines(stream) -> queue.Queue:
    """Lines of a child's stdout, read by a daemon thread so the test waits with a deadline; None at EOF."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_installed_ivr_streams_one_line_per_question(faq):
    """The real console script: each answer arrives before the next question is written (flushed per line)."""
    proc = subprocess.Popen(
        [str(IVR), "ask", "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8", cwd=paths.home(),
    )
    lines = read_lines(proc.stdout)
    try:
        got = []
        for q in ["quên mã pin", "alo alo", "đổi mật khẩu"]:
            proc.stdin.write(q + "\n")
            proc.stdin.flush()
            line = lines.get(timeout=60)  # raises queue.Empty rather than hang if no answer comes
            assert line is not None, proc.stderr.read()
            got.append(json.loads(line))
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [o["question"] for o in got] == ["quên mã pin", "alo alo", "đổi mật khẩu"]
    assert [o["faq_id"] for o in got] == [3, None, 6]
    for o in got:
        check_object(o, faq)


def test_ask_json_says_out_of_scope(capsys):
    """A question about what the line does not handle (faq/out_of_scope.yaml) is rejected as out of scope."""
    code, out, _ = run(capsys, ["ask", "--json", "quên mật khẩu usb token"])
    obj = json.loads(out)
    assert code == 0 and obj["decision"] == "reject" and obj["faq_id"] is None
    assert obj["out_of_scope"] is True
    code, out, _ = run(capsys, ["ask", "--json", "tôi quên mật khẩu thì làm sao"])
    obj = json.loads(out)
    assert (obj["decision"], obj["faq_id"], obj["out_of_scope"]) == ("answer", 9, False)
    code, out, _ = run(capsys, ["ask", "quên mật khẩu usb token"])
    assert "out of scope" in out
