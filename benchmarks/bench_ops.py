"""Running the line: cost of the analytics report, the live metrics, recorded prompts and `ivr test`.

- ``report``: ``calllog.report`` + the HTML page over N synthetic call logs (p50/p99 of repeats, MB of page).
- ``metrics``: ``Metrics.observe`` per call-log record, over the records of real simulated calls.
- ``recordings``: converting a 10 s 44.1 kHz stereo recording (cold) and fetching it again (warm).
- ``ivr test``: the shipped conversation cases (tests/conversations), virtual call seconds per wall second.

    .venv/bin/python benchmarks/bench_ops.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def synthetic_logs(d: Path, n: int) -> None:
    rng = random.Random(3)
    for i in range(n):
        recs = [{"t": 0, "type": "call", "call_id": f"c{i}", "channel": "sip",
                 "at": f"2026-11-30T{rng.randint(7, 21):02d}:{rng.randint(0, 59):02d}:00+07:00"}]
        t = 2.0
        for _ in range(rng.randint(1, 4)):
            t += rng.uniform(3, 40)
            r = rng.random()
            if r < 0.6:
                recs.append({"t": t, "type": "answer", "faq_id": rng.randint(1, 14),
                             "via": rng.choice(["keys", "voice", "confirm_voice"])})
            elif r < 0.8:
                recs.append({"t": t, "type": "no_match", "text": f"câu hỏi lạ số {rng.randint(1, 50)}"})
            else:
                recs.append({"t": t, "type": "no_input", "count": 1})
        recs.append({"t": t + 5, "type": "hangup", "by": "caller"})
        (d / f"c{i}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                                       encoding="utf-8")


def bench_report(calls: int) -> None:
    from ivr.channels.calllog import report
    from ivr.channels.report_html import render

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_logs(Path(tmp), calls)
        rep, page = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            data = report(tmp)
            t1 = time.perf_counter()
            html = render(data)
            t2 = time.perf_counter()
            rep.append((t1 - t0) * 1000)
            page.append((t2 - t1) * 1000)
        print(f"report over {calls} call logs: p50 {pct(rep, 50):.0f} ms, p99 {pct(rep, 99):.0f} ms "
              f"({pct(rep, 50) * 1000 / calls:.0f} µs per call)")
        print(f"HTML page: p50 {pct(page, 50):.1f} ms, p99 {pct(page, 99):.1f} ms, {len(html) / 1e6:.2f} MB")


def bench_metrics(resources) -> None:
    from ivr.cli.call import simulate_call
    from ivr.media.audio import read_audio
    from ivr.phone.metrics import Metrics

    calls = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calls"
    records = []
    for name in ("keys_topic1_account.wav", "demo_call.wav", "operator.wav"):
        caller, _ = read_audio(calls / name, 8000)
        s, _, _ = simulate_call(caller, resources)
        records += s.events
    m = Metrics()
    times = []
    for rep in range(20):
        for rec in records:
            t0 = time.perf_counter_ns()
            m.observe(f"c{rep}", "sip", rec)
            times.append((time.perf_counter_ns() - t0) / 1000)
        m.call_ended(f"c{rep}")
    print(f"metrics observe: {len(times)} records, p50 {pct(times, 50):.1f} µs, p99 {pct(times, 99):.1f} µs")


def bench_recordings() -> None:
    from ivr.media.recordings import Recordings

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "audio"
        d.mkdir()
        r = 44100
        t = np.arange(10 * r) / r
        x = 0.1 * np.sin(2 * np.pi * (300 * t + 60 * t * t))
        sf.write(d / "greet_long.wav", np.stack([x, x], 1), r, subtype="PCM_24")
        cold, warm = [], []
        for i in range(5):
            recs = Recordings({"greet_long": "Xin chào"}, d, cache_dir=Path(tmp) / f"cache{i}")
            t0 = time.perf_counter()
            recs.get("Xin chào", 8000)
            t1 = time.perf_counter()
            for _ in range(50):
                s0 = time.perf_counter()
                recs.get("Xin chào", 8000)
                warm.append((time.perf_counter() - s0) * 1000)
            cold.append((t1 - t0) * 1000)
        print(f"recording 10 s 44.1 kHz stereo -> 8 kHz at -20 LUFS: cold p50 {pct(cold, 50):.0f} ms; "
              f"cached p50 {pct(warm, 50):.2f} ms, p99 {pct(warm, 99):.2f} ms")


def bench_conversation(resources) -> None:
    from ivr.channels.conversation import known_ids, load_cases, run_case

    cases_dir = Path(__file__).resolve().parent.parent / "tests" / "conversations"
    faq_ids, prompt_ids = known_ids(resources)
    cases = [c for f in sorted(cases_dir.glob("*.yaml")) for c in load_cases(f, faq_ids, prompt_ids)]
    run_case(cases[0], resources)  # warm the speech cache
    walls, virt = [], 0.0
    for case in cases:
        r = run_case(case, resources)
        walls.append(r.wall_seconds)
        virt += r.call_seconds
    print(f"ivr test: {len(cases)} cases, p50 {pct(walls, 50) * 1000:.0f} ms, p99 {pct(walls, 99) * 1000:.0f} ms "
          f"per case; {virt / sum(walls):.0f} s of call per wall second")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    os.environ.setdefault("IVR_CACHE_DIR", tempfile.mkdtemp(prefix="ivr-bench-cache-"))
    from ivr.channels.session import Resources

    resources = Resources.load(model_path="none", tts_rate=8000)
    bench_report(args.calls)
    bench_metrics(resources)
    bench_recordings()
    bench_conversation(resources)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
