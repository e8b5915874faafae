"""Peak memory (max RSS, MB) of `ivr dtmf FILE` and `ivr answer FILE` on a long high-rate recording.

Writes a 10-minute 192 kHz stereo 16-bit WAV (keypad tones at the start, then noise; written block by block,
so writing it costs little memory), runs each command in a child process and prints the child's max RSS from
``resource.getrusage(RUSAGE_CHILDREN)`` (each command in its own fresh child, via a wrapper process).

    python benchmarks/bench_memory.py [--seconds 600] [--rate 192000] [--channels 2] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

_WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(f'{r.returncode} {peak:.1f} ' + r.stderr.decode(errors='replace').strip().replace(chr(10), ' | ')[:200])\n"
)


def write_long_wav(path: Path, seconds: float, rate: int, channels: int) -> None:
    from ivr.media import dtmf

    rng = np.random.default_rng(1)
    keys = dtmf.generate("123#", rate, 100, 100, -10.0)
    block = rate * 10
    total = int(seconds * rate)
    with sf.SoundFile(str(path), "w", rate, channels, "PCM_16", format="WAV") as fh:
        done = 0
        while done < total:
            n = min(block, total - done)
            x = (rng.standard_normal(n) * 300).astype(np.int16)
            if done == 0:
                x[: len(keys)] = keys
            fh.write(np.repeat(x[:, None], channels, axis=1))
            done += n


def peak_mb(cmd: list[str]) -> tuple[int, float, str]:
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}).stdout
    rc, mb, *rest = out.split(" ", 2)
    return int(rc), float(mb), (rest[0] if rest else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=int, default=192000)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="use (or create) this WAV instead of a temporary one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav = args.keep or Path(tmp) / "long.wav"
        if not wav.exists():
            write_long_wav(wav, args.seconds, args.rate, args.channels)
        size = wav.stat().st_size / 1e6
        print(f"file: {args.seconds:.0f} s at {args.rate} Hz, {args.channels} channels, {size:.0f} MB on disk")
        base = [sys.executable, "-m", "ivr"]
        for name, cmd in (("python -c pass (baseline)", [sys.executable, "-c", "import numpy, soundfile"]),
                          ("ivr dtmf FILE", base + ["dtmf", str(wav)]),
                          ("ivr answer FILE --model none", base + ["answer", str(wav), "--model", "none"])):
            rc, mb, err = peak_mb(cmd)
            print(f"{name:<32} max RSS {mb:8.1f} MB   exit {rc}" + (f"   ({err})" if rc else ""))


if __name__ == "__main__":
    main()
