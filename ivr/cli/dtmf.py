"""``ivr dtmf``: find keypad presses in a WAV file, or write keypad tones to one."""

from __future__ import annotations

import json

from ivr.errors import IvrError


def register(sub):
    p = sub.add_parser(
        "dtmf",
        help="list the keypad (DTMF) presses in a WAV file, or generate keypad tones",
        description="List keypad presses in FILE, or with --generate write keypad tones to --out.",
    )
    p.add_argument("file", nargs="?", help="WAV file to scan (any rate, PCM/float/μ-law/A-law, mono or stereo)")
    p.add_argument("--json", action="store_true", help='print {"digits": ..., "events": [...]} as JSON')
    p.add_argument("--generate", metavar="KEYS", help="keys to generate: 0-9 * # A-D")
    p.add_argument("--out", metavar="WAV", help="where --generate writes the tones")
    p.add_argument("--rate", type=int, default=8000, help="sample rate for --generate (default 8000)")
    p.add_argument("--tone-ms", type=float, default=100.0, help="length of each tone (default 100)")
    p.add_argument("--gap-ms", type=float, default=100.0, help="silence after each tone (default 100)")
    p.add_argument("--level", type=float, default=-10.0, help="level of each tone in dBFS (default -10)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if args.generate is not None:
        return _generate(args)
    if not args.file:
        raise IvrError("ivr dtmf: no WAV file given", "run `ivr dtmf FILE.wav` or `ivr dtmf --generate 123# --out keys.wav`")
    return _scan(args)


def _generate(args) -> int:
    from ivr.media import audio, dtmf

    if args.file:
        raise IvrError(
            f"ivr dtmf: both a file to scan ({args.file}) and --generate were given", "use one or the other"
        )
    if not args.out:
        raise IvrError("ivr dtmf --generate needs --out FILE.wav", f"e.g. ivr dtmf --generate {args.generate!r} --out keys.wav")
    if not 4000 <= args.rate <= 192000:
        raise IvrError(f"ivr dtmf: --rate {args.rate} is not a usable sample rate", "use 8000 or 16000")
    samples = dtmf.generate(args.generate, args.rate, args.tone_ms, args.gap_ms, args.level)
    try:
        audio.write_wav(args.out, samples, args.rate)
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
        raise IvrError(f"cannot write {args.out}: {exc}", "check the directory exists and is writable") from None
    print(f"wrote {args.out}: {len(args.generate)} keys, {len(samples) / args.rate:.2f} s at {args.rate} Hz")
    return 0


def _scan(args) -> int:
    from ivr.media import audio, dtmf

    samples, rate = audio.read_audio(args.file)
    events = dtmf.detect(samples, rate)
    digits = dtmf.digits_of(events)
    if args.json:
        out = {
            "digits": digits,
            "events": [{"digit": e.digit, "start": round(e.start, 3), "end": round(e.end, 3)} for e in events],
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not events:
        print(f"{args.file}: no keypad tones ({len(samples) / rate:.2f} s scanned)")
        return 0
    print(f"{args.file}: {digits}")
    for e in events:
        print(f"  {e.digit}  {e.start:8.3f} s - {e.end:8.3f} s  ({(e.end - e.start) * 1000:.0f} ms)")
    return 0
