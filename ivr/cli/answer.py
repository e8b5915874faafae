"""``ivr answer FILE.wav``: what the IVR would answer to a recorded caller (for support staff).

The file's keypad presses walk the keypad menu (topic key, then question key); its speech is transcribed
(Vosk), matched against the FAQ and answered. ``--out`` writes the spoken reply as a WAV.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, field
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
match = loading the FAQ, prompts and keypad menu, and matching; tts = rendering the reply (0 without --out).
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


def walk_keys(root, digits: str) -> KeyPath:
    """Walk the keypad tree ``root`` (ivr.core.menu.build_menu) with ``digits``, as a caller pressing them.

    '#' goes back to the main menu, '*' (repeat) changes nothing; a key that is the start of a longer key
    waits for the next one (and counts alone at the end, as after the inter-digit timeout)."""
    path = KeyPath(digits)
    if not digits:
        return path
    node, pending = root, ""

    def enter(child, rest: str) -> bool:
        """Go to ``child``; True when the walk ends there."""
        nonlocal node
        path.trail.append(child.label)
        if child.faq_id is not None:
            path.status, path.faq_id, path.ignored = "answer", child.faq_id, rest
            return True
        if child.action is not None:
            path.status, path.ignored = child.action, rest  # "operator"
            path.note = f"key {child.key} asks for an operator"
            return True
        node = child
        return False

    for i, key in enumerate(digits):
        if key in "#*":
            if key == "#":
                node, path.trail = root, []
            pending = ""
            continue
        pending += key
        options = node.options or {}
        if pending in options and node.completes(pending):
            child, pending = options[pending], ""
            if enter(child, digits[i + 1:]):
                return path
        elif not any(k.startswith(pending) for k in options):
            where = "main menu" if node.is_root else f"menu '{node.label}'"
            path.status, path.ignored = "invalid", digits[i + 1:]
            path.note = f"key {pending} means nothing in the {where} (keys there: {', '.join(options)})"
            return path
    if pending and pending in (node.options or {}) and enter(node.options[pending], ""):
        return path
    path.status = "incomplete"
    where = "the main menu" if node.is_root else f"menu '{node.label}'"
    path.note = f"keys stop at {where}: a further key is needed (keys there: {', '.join(node.options or {})})"
    return path


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


def _load_recognizer_model(cli_model: str | None):
    """(model or None, message when speech cannot be transcribed)."""
    from ivr.media import asr

    if cli_model is not None and cli_model.lower() == "none":
        return None, "speech recognition switched off (--model none)"
    try:
        path = asr.resolve_model_path(cli_model)
    except IvrError as exc:
        if cli_model or os.environ.get(asr.ENV_MODEL):
            raise  # a path was given and is wrong: the user must fix it
        return None, f"{exc.problem}; fix: {exc.fix}"
    return asr.load_model(path), ""


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

    from ivr.content.faq import load_faq
    from ivr.content.prompts import load_prompts
    from ivr.core.dialogue import answer_text, load_settings
    from ivr.core.menu import build_menu
    from ivr.language.match import Matcher
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
    vosk_model, no_model = _load_recognizer_model(model)
    transcript = _transcribe(vosk_model, speech, file_rate) if vosk_model is not None else None
    t1 = time.perf_counter()

    faq = load_faq()
    prompts = load_prompts()
    settings = load_settings()
    root = build_menu(faq, prompts, operator=settings.operator_enabled, operator_key=settings.operator_key)
    keypath = walk_keys(root, "".join(d for d in digits if d in "0123456789*#"))
    decision, faq_id, score = "reject", None, None
    if keypath.status == "answer":
        decision, faq_id = "keys", keypath.faq_id
    elif transcript:
        result = Matcher(faq).match(transcript)
        decision, faq_id, score = result.decision, result.faq_id, round(float(result.score), 4)
    t2 = time.perf_counter()

    entry = faq.by_id(faq_id) if faq_id is not None else None
    answer = entry.answer if entry is not None and decision in ("answer", "keys") else None
    if decision in ("answer", "keys"):
        reply_text = answer_text(entry)
    elif decision == "confirm":
        reply_text = prompts.text("confirm", summary=prompts.summary(entry))
    else:
        reply_text = prompts.ladder("no_match", 0)
    reply_wav = None
    if out_path is not None:
        from ivr.media.tts import Synthesizer, TtsCache

        audio = TtsCache(Synthesizer.from_config()).get(reply_text, rate)
        try:
            write_wav(out_path, np.asarray(audio), rate)
        except Exception as exc:
            raise IvrError(f"--out {out_path} cannot be written ({exc})", "choose a writable path") from None
        reply_wav = str(out_path)
    t3 = time.perf_counter()

    result = {
        "transcript": transcript,
        "digits": digits,
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
        "keypath": keypath,
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
    shown = "".join(k.digit for k in extra["keys"])
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
