"""``ivr answer FILE.wav``: what the IVR would answer to a recorded caller (for support staff).

The file's keypad presses are pressed in a call (``ivr.core.call.Call``: the IVR's own dialogue walks the
keypad menu, topic key then question key); its speech is transcribed (Vosk) and said to a call, whose
dialogue matches it against the FAQ and answers. ``--out`` writes the spoken reply as a WAV.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from ivr.errors import IvrError

KEY_MARGIN_S = 0.03  # audio muted around each key press before speech recognition
MIN_SPEECH_S = 0.3  # voice activity shorter than this is not "speech in the file"

DESCRIPTION = """\
Answer a recorded caller: read any WAV file, detect the keypad presses in it and transcribe its speech,
then say what the IVR answers.

decision:
  keys     the keys in the file walk the keypad menu to an answer (topic key, then question key; '#' goes
           back to the main menu, '*' repeats). Keys that reach an answer win over speech.
  answer   the speech matched one FAQ entry clearly
  confirm  the speech probably means one entry: the IVR would ask "Có phải quý khách muốn hỏi về ...?"
  reject   nothing understood (no speech, no match, or keys that lead nowhere): the no-match prompt

--json prints one object:
  {"transcript": str|null, "digits": str, "decision": "keys"|"answer"|"confirm"|"reject", "faq_id": int|null,
   "score": float|null, "answer": str|null, "reply_wav": str|null,
   "timings_ms": {"decode": n, "match": n, "tts": n}}
transcript is null when speech was not transcribed (no model, --model none) and "" when the model heard no
words; score is the speech match score (null for keys or no words); answer is the FAQ answer text for
"keys" and "answer". Notes (keys that lead nowhere, no model) go to stderr with --json.

Without a Vosk model the keys still work; speech is reported as not transcribed, with the command that
downloads a model. The exit status is 0 when a report was produced, 2 for a file that cannot be read.
timings_ms: decode = reading the file, key detection and speech recognition (model loading included);
match = loading the FAQ, prompts and keypad menu, and the call's dialogue walking the keys and matching; tts = rendering the reply (0 without --out).
"""


@dataclass
class KeyPath:
    """Where the keys of a file lead in the keypad menu."""

    digits: str
    status: str = "none"  # none | answer | incomplete | invalid | operator
    faq_id: int | None = None
    trail: list[str] = field(default_factory=list)  # labels of the menus/answer passed through
    note: str = ""
    ignored: str = ""  # keys after the answer (the after-answer choices are not simulated)


class NoAudio:
    """The voice of a call that is not heard: every play is over as soon as it starts."""

    def audio(self, text: str):
        import numpy as np

        return np.zeros(0, dtype=np.int16)


def _where(node) -> str:
    return "main menu" if node.is_root else f"menu '{node.label}'"


def walk_keys(call, digits: str) -> KeyPath:
    """Press ``digits`` in ``call`` (a fresh ``ivr.core.call.Call``), as a caller would, and say where they
    lead: the call's own dialogue walks the keypad menu ('#' main menu, '*' repeat; a key that starts a
    longer one waits for the next, and counts alone at the end, after the inter-digit timeout). The walk
    stops at the first answer, operator request or invalid key."""
    path = KeyPath(digits)
    if not digits:
        return path
    from ivr.core.events import Digit

    t = 0.0
    call.start(t)
    call.audio(1, t)
    d = call.dialogue
    for i, key in enumerate(digits):
        t += 0.5
        node = d.node
        seen = len(call.events)
        call.send(Digit(key, t=t, via="tone"))
        if d.waiting_for == "inter_digit" and i == len(digits) - 1:
            t = d.deadline
            call.tick(t)
        call.audio(1, t)
        if d.node.is_root and key == "#":
            path.trail = []
        for rec in call.events[seen:]:
            kind = rec["type"]
            if kind == "menu":
                path.trail.append(d.node.label)
            elif kind == "answer":
                label = next((c.label for c in (node.options or {}).values() if c.faq_id == rec["faq_id"]), "")
                path.trail.append(label)
                path.status, path.faq_id, path.ignored = "answer", rec["faq_id"], digits[i + 1:]
                return path
            elif kind == "operator":
                path.status, path.ignored = "operator", digits[i + 1:]
                path.note = f"key {key} asks for an operator"
                return path
            elif kind == "invalid":
                path.status, path.ignored = "invalid", digits[i + 1:]
                path.note = (f"key {rec['keys']} means nothing in the {_where(node)} "
                             f"(keys there: {', '.join(node.options or {})})")
                return path
    path.status = "incomplete"
    node = d.node
    path.note = (f"keys stop at {'the ' if node.is_root else ''}{_where(node)}: a further key is needed "
                 f"(keys there: {', '.join(node.options or {})})")
    return path


def answer_speech(call, transcript: str) -> tuple[str, int | None, float | None, str | None]:
    """Say ``transcript`` to ``call`` (a fresh Call) once its greeting is over: (decision, faq_id, score,
    the text of the reply), decided by the call's own dialogue."""
    from ivr.core.events import Play, SpeechFinal

    call.start(0.0)
    call.audio(1, 0.0)
    seen = len(call.events)
    actions = call.send(SpeechFinal(transcript, 1.0, t=1.0))
    match = next((r for r in call.events[seen:] if r["type"] == "match"), None)
    if match is None:  # a voice command ("menu", "goodbye"...), not a question
        return "reject", None, None, None
    decision, faq_id = match["decision"], match["faq_id"]
    plays = [a for a in actions if isinstance(a, Play)]
    if decision == "answer":
        reply = next((p.text for p in plays if p.faq_id is not None), None)
    else:
        want = "confirm" if decision == "confirm" else "no_match"
        reply = next((p.text for p in plays if (p.prompt_id or "").startswith(want)), None)
    return decision, faq_id, round(float(match["score"]), 4), reply


def register(sub) -> None:
    import argparse

    p = sub.add_parser("answer", help="answer a recorded caller (WAV): keys, speech, match, spoken reply",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE.wav", help="the recording (any WAV: PCM, float, μ-law, A-law; any rate)")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema above)")
    p.add_argument("--out", metavar="REPLY.wav", default=None, help="write the spoken reply to this WAV file")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="Vosk model directory (default: $IVR_VOSK_MODEL, then models/, then the cache); "
                        "'none' skips speech recognition")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the --out WAV (default 16000)")
    p.set_defaults(func=cmd_answer)


def _transcribe(model, samples, rate: int) -> str:
    from ivr.media.asr import Recognizer

    rec = Recognizer(model, rate)
    texts = []
    step = rate // 50
    for i in range(0, len(samples), step):
        ev = rec.feed(samples[i:i + step])
        if ev is not None and ev.kind == "final":
            texts.append(ev.text)
    texts.append(rec.finish().text)
    return unicodedata.normalize("NFC", " ".join(t for t in texts if t).strip())


def _check_out(out: str | None) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise IvrError(f"--out {p} is a directory", "give a file name, e.g. --out reply.wav")
    if not parent.is_dir():
        raise IvrError(f"--out {p}: the directory {parent} does not exist", "create it or choose another path")
    if not os.access(parent, os.W_OK):
        raise IvrError(f"--out {p}: the directory {parent} is not writable", "choose a writable path")
    return p


def answer_file(path, *, model: str | None = None, out: str | None = None, rate: int = 16000) -> tuple[dict, dict]:
    """Answer one recording. Returns (result object as printed by --json, extra facts for the readable report)."""
    import numpy as np

    from ivr.channels.resources import Resources, speech_model
    from ivr.core.dialogue import answer_text
    from ivr.core.privacy import mask_text
    from ivr.media.asr import load_model
    from ivr.media.audio import read_audio, write_wav
    from ivr.media.audio import sample_rate as sf_rate
    from ivr.media.dtmf import detect
    from ivr.media.tts import check_rate
    from ivr.media.vad import segments

    out_path = _check_out(out)
    if out_path is not None:
        rate = check_rate(rate)
    t0 = time.perf_counter()
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise IvrError(f"audio file {p} is empty (0 bytes)", "record or copy the file again")
    # read block by block and brought down to at most 16 kHz: memory stays small whatever the file's rate,
    # channel count and length (a 10-minute 192 kHz stereo file took 3.3 GB read whole)
    samples, file_rate = read_audio(p, max_rate=16000)
    own_rate = sf_rate(p)  # the report names the file's own rate, not the rate it was analysed at
    keys = detect(samples, file_rate)
    digits = "".join(k.digit for k in keys)
    speech = samples.copy()
    for k in keys:  # the tones are not speech: keep them away from the recogniser and the VAD
        a = max(0, int((k.start - KEY_MARGIN_S) * file_rate))
        b = min(len(speech), int((k.end + KEY_MARGIN_S) * file_rate) + 1)
        speech[a:b] = 0
    voiced = sum(e - s for s, e in segments(speech, file_rate))
    model_path, no_model = speech_model(model)
    vosk_model = load_model(model_path) if model_path is not None else None
    transcript = _transcribe(vosk_model, speech, file_rate) if vosk_model is not None else None
    t1 = time.perf_counter()

    res = Resources.load(speech=False)
    keypath = walk_keys(res.new_call(NoAudio(), sample_rate=8000), "".join(d for d in digits if d in "0123456789*#"))
    decision, faq_id, score, reply_text = "reject", None, None, None
    if keypath.status == "answer":
        decision, faq_id = "keys", keypath.faq_id
        reply_text = answer_text(res.faq.by_id(faq_id))
    elif transcript:
        decision, faq_id, score, reply_text = answer_speech(res.new_call(NoAudio(), sample_rate=8000), transcript)
    if reply_text is None:
        reply_text = res.prompts.ladder("no_match", 1)
    t2 = time.perf_counter()

    entry = res.faq.by_id(faq_id) if faq_id is not None else None
    answer = entry.answer if entry is not None and decision in ("answer", "keys") else None
    reply_wav = None
    if out_path is not None:
        audio = res.tts.get(reply_text, rate)
        try:
            write_wav(out_path, np.asarray(audio), rate)
        except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
            raise IvrError(f"--out {out_path} cannot be written ({exc})", "choose a writable path") from None
        reply_wav = str(out_path)
    t3 = time.perf_counter()

    result = {
        "transcript": mask_text(transcript) if transcript is not None else None,
        "digits": mask_text(digits),
        "decision": decision,
        "faq_id": faq_id,
        "score": score,
        "answer": answer,
        "reply_wav": reply_wav,
        "timings_ms": {"decode": round((t1 - t0) * 1000, 1), "match": round((t2 - t1) * 1000, 1),
                       "tts": round((t3 - t2) * 1000, 1)},
    }
    extra = {
        "file_rate": own_rate,
        "seconds": len(samples) / file_rate,
        "keys": keys,
        "shown_keys": mask_text(digits),
        "keypath": replace(keypath, digits=mask_text(keypath.digits), ignored=mask_text(keypath.ignored)),
        "speech_seconds": voiced,
        "no_model": no_model if (vosk_model is None and voiced >= MIN_SPEECH_S) else "",
        "model_off": vosk_model is None,
        "question": entry.question if entry is not None else None,
        "reply_text": reply_text,
    }
    return result, extra


def _keys_line(extra) -> str:
    kp = extra["keypath"]
    if not kp.digits and not extra["keys"]:
        return "none"
    shown = extra["shown_keys"]
    if kp.status == "answer":
        text = f"{shown} -> {' > '.join(kp.trail)} (FAQ {kp.faq_id})"
    elif kp.status == "none":
        text = f"{shown} -> not keypad-menu keys (the menu uses 0-9 * #)"
    else:
        text = f"{shown} -> {kp.note or kp.status}"
    if kp.ignored:
        text += f"; keys after that not followed: {kp.ignored}"
    return text


def _print_readable(path, result: dict, extra: dict, out) -> None:
    w = out.write
    w(f"file:       {path} ({extra['seconds']:.1f} s at {extra['file_rate']} Hz)\n")
    w(f"keys:       {_keys_line(extra)}\n")
    if result["transcript"] is not None:
        w(f"transcript: {result['transcript'] or '(no words recognised)'}\n")
    elif extra["no_model"]:
        w(f"transcript: not transcribed: {extra['no_model']}\n")
    else:
        w("transcript: (no speech in the file)\n" if not extra["model_off"] or extra["speech_seconds"] < MIN_SPEECH_S
          else "transcript: not transcribed\n")
    score = f"   score: {result['score']:.3f}" if result["score"] is not None else ""
    w(f"decision:   {result['decision']}{score}\n")
    if extra["question"] is not None:
        w(f"matched:    [{result['faq_id']}] {extra['question']}\n")
    if result["answer"] is not None:
        w("answer:\n")
        for line in result["answer"].splitlines():
            w(f"  {line}\n")
    else:
        w(f"reply:      {extra['reply_text']}\n")
    if result["reply_wav"]:
        w(f"spoken reply written to {result['reply_wav']}\n")
    t = result["timings_ms"]
    w(f"timings:    decode {t['decode']:.0f} ms, match {t['match']:.0f} ms, tts {t['tts']:.0f} ms\n")


def cmd_answer(args) -> int:
    result, extra = answer_file(args.file, model=args.model, out=args.out, rate=args.rate)
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        kp = extra["keypath"]
        if kp.status in ("incomplete", "invalid", "operator"):
            print(f"ivr answer: keys {kp.digits}: {kp.note}", file=sys.stderr)
        if extra["no_model"]:
            print(f"ivr answer: speech not transcribed: {extra['no_model']}", file=sys.stderr)
    else:
        _print_readable(args.file, result, extra, sys.stdout)
    return 0
