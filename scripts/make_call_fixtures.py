#!/usr/bin/env python3
"""Regenerate the simulated phone calls in tests/fixtures/calls/ and their manifest.

Each file is the caller's side of one call (8 kHz mu-law): keypad tones from ``ivr.media.dtmf.generate`` at
moments derived from the keypad menu, and for one call a question spoken by espeak-ng. Keys are pressed
early in the prompt they answer (every prompt lasts longer than ``STEP`` seconds), so the flow does not
depend on exact speech durations; where a call has to wait for a prompt to end (the silent call, the last
goodbye, one answer listened to in full), the wait is measured on the TTS cache's own audio plus a margin.

Steps of one call are ``STEP`` seconds apart (longer than the call log's key-run gap, so menu keys are not
mistaken for a typed number); keys of one step (topic then question) are typed together, over the prompt.

Run ``python scripts/make_call_fixtures.py`` after changing the menu, the prompts or the voice.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.channels.resources import Resources  # noqa: E402
from ivr.media.dtmf import generate  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "calls"
RATE = 8000
FIRST = 0.8  # the first keys land over the greeting
STEP = 2.0  # seconds between steps (each step's keys barge into the prompt the step before started)
TONE_MS, GAP_MS = 100, 150
MARGIN = 1.5  # seconds of silence after the IVR's last prompt should have ended
QUESTION = (9, "cho em hỏi em quên mật khẩu thì lấy lại thế nào")  # spoken in the speech call


class Caller:
    def __init__(self):
        self.audio = np.zeros(0, np.int16)
        self.keys: list[dict] = []

    def _ensure(self, n: int) -> None:
        if len(self.audio) < n:
            self.audio = np.concatenate([self.audio, np.zeros(n - len(self.audio), np.int16)])

    def press(self, keys: str, at: float) -> float:
        tones = generate(keys, RATE, tone_ms=TONE_MS, gap_ms=GAP_MS, level_dbfs=-12.0)
        i = int(round(at * RATE))
        self._ensure(i + len(tones))
        self.audio[i:i + len(tones)] = tones
        for j, k in enumerate(keys):
            self.keys.append({"key": k, "at": round(at + j * (TONE_MS + GAP_MS) / 1000, 3)})
        return at + len(tones) / RATE

    def say(self, speech: np.ndarray, at: float) -> float:
        i = int(round(at * RATE))
        self._ensure(i + len(speech))
        self.audio[i:i + len(speech)] = speech
        return at + len(speech) / RATE

    def until(self, seconds: float) -> None:
        self._ensure(int(round(seconds * RATE)))


def main() -> int:
    res = Resources.load(model_path="none", tts_rate=RATE)
    p = res.prompts
    s = res.settings
    menu = res.menu

    def dur(text: str) -> float:
        return len(res.tts.get(text, RATE)) / RATE

    def path(faq_id: int) -> str:
        keys = menu.path_to(faq_id)
        assert keys is not None, faq_id
        return "".join(keys)

    goodbye = dur(p.text("goodbye"))
    calls: list[dict] = []

    def keys_call(name: str, steps: list[str], answers: list[int], note: str, between: str = "#") -> None:
        c = Caller()
        t = FIRST
        for i, step in enumerate(steps):
            if i:
                c.press(between, t)
                t += STEP
            c.press(step, t)
            t += STEP
        c.press(s.goodbye_key, t)
        c.until(t + goodbye + MARGIN + 0.5)
        calls.append({"file": f"{name}.wav", "caller": c, "answers": answers, "end": "ivr_hangup",
                      "sequence": ["answer"] * len(answers) + ["goodbye", "hangup"], "model": None,
                      "note": note})

    # every answer of every topic, by keys; type-ahead over the greeting
    topics = [n for n in menu.options.values() if n.is_menu]
    for node in topics:
        ids = [child.faq_id for child in node.options.values() if child.faq_id is not None]
        between = "#" if node.key != "2" else s.menu_key  # one call goes back with the after-answer menu key
        keys_call(f"keys_topic{node.key}_{node.topic_id}", [path(i) for i in ids], ids,
                  f"topic {node.key} ({node.topic_id}): every answer, keys typed over the greeting and each "
                  f"answer interrupted with '{between}'", between)

    # one answer listened to in full, then the after-answer menu key and the next question
    first, second = 1, 10
    c = Caller()
    end = c.press(path(first), FIRST)
    intro = dur(p.text("answer_intro", summary=p.summary(res.faq.by_id(first))))
    from ivr.core.dialogue import answer_text

    answer = dur(answer_text(res.faq.by_id(first)))
    t = end + intro + answer + 3.0  # inside the after-answer prompt
    c.press(s.menu_key, t)
    c.press(path(second), t + STEP)
    c.press(s.goodbye_key, t + 2 * STEP)
    c.until(t + 2 * STEP + goodbye + MARGIN + 0.5)
    calls.append({"file": "listen_answer_then_menu.wav", "caller": c, "answers": [first, second],
                  "end": "ivr_hangup", "sequence": ["answer", "answer", "goodbye", "hangup"],
                  "model": None, "full_answer": first,
                  "note": f"FAQ {first} heard to the end, then '{s.menu_key}' (main menu) and FAQ {second}"})

    # the demo (`make run`): the most asked question typed over the greeting and heard in full, back to the
    # main menu for a second answer heard in full, then goodbye
    first, second = 9, 10
    c = Caller()
    end = c.press(path(first), FIRST)
    t = end + dur(p.text("answer_intro", summary=p.summary(res.faq.by_id(first)))) + dur(
        answer_text(res.faq.by_id(first))) + 3.0
    c.press(s.menu_key, t)
    end = c.press(path(second), t + STEP)
    t = end + dur(p.text("answer_intro", summary=p.summary(res.faq.by_id(second)))) + dur(
        answer_text(res.faq.by_id(second))) + 3.0
    c.press(s.goodbye_key, t)
    c.until(t + goodbye + MARGIN + 0.5)
    calls.append({"file": "demo_call.wav", "caller": c, "answers": [first, second], "end": "ivr_hangup",
                  "sequence": ["answer", "answer", "goodbye", "hangup"], "model": None,
                  "full_answer": first,
                  "note": f"the demo: FAQ {first} and FAQ {second} each heard in full, then goodbye"})

    # silence: the no-input ladder to goodbye
    main = dur(menu.prompt)
    total = dur(p.text("greet_long")) + main
    for n in range(1, s.max_timeouts + 1):
        lead = dur(p.ladder("no_input", n))
        total += s.timeout + lead + (goodbye if n == s.max_timeouts else main)
    c = Caller()
    c.until(total + MARGIN + 1.0)
    calls.append({"file": "silent.wav", "caller": c, "answers": [], "end": "ivr_hangup",
                  "sequence": ["no_input"] * s.max_timeouts + ["goodbye", "hangup"], "model": None,
                  "note": "the caller says nothing: no-input ladder to goodbye"})

    # an invalid key, then the menu still works
    valid = set(menu.options)
    bad = next(k for k in "987654321" if k not in valid)
    c = Caller()
    c.press(bad, FIRST)
    c.press(path(6), FIRST + STEP)
    c.press(s.goodbye_key, FIRST + 2 * STEP)
    c.until(FIRST + 2 * STEP + goodbye + MARGIN + 0.5)
    calls.append({"file": "invalid_key.wav", "caller": c, "answers": [6], "end": "ivr_hangup",
                  "sequence": ["invalid", "answer", "goodbye", "hangup"], "model": None,
                  "note": f"key {bad} means nothing at the main menu: 'invalid' and the menu again, then FAQ 6"})

    # the operator
    c = Caller()
    c.press(s.operator_key, FIRST)
    c.until(FIRST + dur(p.text("operator")) + MARGIN + 0.5)
    calls.append({"file": "operator.wav", "caller": c, "answers": [], "end": "transfer",
                  "sequence": ["operator", "transfer"], "model": None,
                  "note": f"key {s.operator_key}: 'please hold', then the transfer"})

    # a spoken question through the recogniser, then keys
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "q.wav"
        subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(wav), QUESTION[1]], check=True,
                       capture_output=True)
        speech, rate = sf.read(wav, dtype="float32")
    speech = (soxr.resample(speech, rate, RATE) * 0.7 * 32767).astype(np.int16)
    c = Caller()
    end = c.say(speech, 1.0)
    t = end + 3.0  # the recogniser's final comes about a second after the words stop; then a reply plays
    c.press("#", t)
    c.press(path(QUESTION[0]), t + STEP)
    c.press(s.goodbye_key, t + 2 * STEP)
    c.until(t + 2 * STEP + goodbye + MARGIN + 0.5)
    calls.append({"file": "spoken_question_then_keys.wav", "caller": c, "answers": [QUESTION[0]],
                  "end": "ivr_hangup", "sequence": ["heard", "speech", "match", "answer", "goodbye", "hangup"],
                  "model": "ko", "speech": QUESTION[1],
                  "note": "a Vietnamese question (espeak-ng) heard by the Korean test model as other words: "
                          "whatever was understood, '#' and the keys then reach the answer"})

    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for call in calls:
        c = call.pop("caller")
        sf.write(OUT / call["file"], c.audio, RATE, subtype="ULAW", format="WAV")
        call["seconds"] = round(len(c.audio) / RATE, 2)
        call["keys"] = c.keys
        manifest.append(call)
    header = ("# Simulated phone calls (caller's side, 8 kHz mu-law), made by scripts/make_call_fixtures.py.\n"
              "# answers: FAQ ids the call must reach, in order; end: ivr_hangup | transfer | caller_hangup;\n"
              "# sequence: event types that must appear in this order; model: null (keys only) or ko (the\n"
              "# packaged Korean Vosk model); keys: the keys pressed and when (seconds).\n")
    text = yaml.safe_dump({"calls": manifest}, allow_unicode=True, sort_keys=False, width=110)
    (OUT / "manifest.yaml").write_text(header + text, encoding="utf-8")
    covered = sorted({i for call in manifest for i in call["answers"]})
    print(f"{len(manifest)} calls in {OUT}; answers covered: {covered}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
