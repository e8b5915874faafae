"""Matcher speed: one match against the shipped FAQ and against a synthetic 10,000-entry FAQ, and the cold
start of `ivr ask --json "x"`. Prints figures; asserts nothing."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.content.faq import Faq, FaqEntry, load_faq  # noqa: E402
from ivr.language.match import Matcher  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))]


def queries() -> list[str]:
    """The dev questions, the long chatty ones (the slowest to match) and the few-word calls."""
    out = []
    for name in ("eval_questions.yaml", "eval_questions_long.yaml", "eval_questions_keywords.yaml"):
        data = yaml.safe_load((ROOT / "tests" / "data" / name).read_text(encoding="utf-8"))
        out += [q["text"] for q in data["questions"]]
    return out


def noisy_queries(texts: list[str]) -> list[str]:
    """The same questions as a recogniser writes them with 20 % syllable errors (seeded)."""
    from ivr.cli.eval import noisy_texts

    return noisy_texts(texts, 0.2, 0)


def synthetic_faq(base: Faq, n: int, seed: int = 7) -> Faq:
    """n entries whose phrasings recombine the words of the real FAQ (so the vocabulary overlaps heavily)."""
    rng = random.Random(seed)
    words = sorted({w for e in base.entries for t in (e.question, *e.paraphrases, *e.keywords) for w in t.split()})
    topics = [t.id for t in base.topics]
    src = base.entries[0].source
    entries = []
    for i in range(1, n + 1):
        def phrase(lo, hi):
            return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

        entries.append(FaqEntry(
            id=i, topic=rng.choice(topics), question=phrase(8, 16) + "?", answer=phrase(10, 20),
            paraphrases=tuple(phrase(4, 9) for _ in range(3)), keywords=tuple(phrase(2, 3) for _ in range(2)),
            spoken=None, source=src,
        ))
    return Faq(topics=list(base.topics), entries=entries)


def bench(label: str, faq: Faq, texts: list[str], rounds: int) -> None:
    t0 = time.perf_counter()
    matcher = Matcher(faq)
    build = time.perf_counter() - t0
    phrasings = sum(1 + len(e.paraphrases) + len(e.keywords) for e in faq.entries)
    for t in texts[:10]:
        matcher.match(t)  # warm up
    samples = []
    for _ in range(rounds):
        for t in texts:
            t0 = time.perf_counter()
            matcher.match(t)
            samples.append(time.perf_counter() - t0)
    p50, p99 = percentiles(samples)
    print(f"{label}: {len(faq.entries)} entries, {phrasings} phrasings; build {build * 1000:.0f} ms; "
          f"match p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms over {len(samples)} matches")


def cold_start(runs: int = 7) -> None:
    ivr = Path(sys.executable).parent / "ivr"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(ivr), "ask", "--json", "x"], check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    imports = subprocess.run(
        [sys.executable, "-c", "import sys; from ivr.cli import main; import contextlib, io\n"
         "with contextlib.redirect_stdout(io.StringIO()): main(['ask', '--json', 'x'])\n"
         "print(' '.join(m for m in ('numpy', 'vosk', 'pyttsx3', 'soundfile') if m in sys.modules))"],
        capture_output=True, text=True, cwd=ROOT,
    ).stdout.strip()
    print(f"cold start `ivr ask --json \"x\"`: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms over {runs} runs; heavy modules imported: {imports or 'none'}")


def main() -> None:
    faq = load_faq()
    texts = queries()
    bench("shipped FAQ", faq, texts, rounds=5)
    bench("shipped FAQ, 20 % syllable errors", faq, noisy_queries(texts), rounds=5)
    bench("synthetic FAQ", synthetic_faq(faq, 10_000), texts, rounds=1)
    cold_start()


if __name__ == "__main__":
    main()
