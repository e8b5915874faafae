"""``ivr dtmf``: find keypad presses in a WAV file, or write keypad tones to one."""

from __future__ import annotations

import json

from ivr.cli.options import check_output, number
from ivr.errors import IvrError

MAX_GENERATED_SECONDS = 600.0  # the longest recording the other commands read


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
    p.add_argument("--rate", type=number(4000, 192000, kind=int, unit="Hz", example="--rate 8000"), default=8000,
                   help="sample rate for --generate (default 8000)")
    p.add_argument("--tone-ms", type=number(1, 10000, unit="milliseconds", example="--tone-ms 100"),
                   default=100.0, help="length of each tone, 1-10000 (default 100)")
    p.add_argument("--gap-ms", type=number(0, 10000, unit="milliseconds", example="--gap-ms 100"),
                   default=100.0, help="silence after each tone, 0-10000 (default 100)")
    p.add_argument("--level", type=number(-90, -3, unit="dBFS; two tones add up, so -3 is full scale",
                                          example="--level -10"),
                   default=-10.0, help="level of each tone in dBFS, -90 to -3 (default -10)")
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
    if not args.generate:
        raise IvrError("ivr dtmf --generate: no keys given", "give the keys, e.g. --generate 123#")
    seconds = len(args.generate) * (args.tone_ms + args.gap_ms) / 1000
    if seconds > MAX_GENERATED_SECONDS:
        raise IvrError(f"ivr dtmf --generate: {len(args.generate)} keys of {args.tone_ms:g} + {args.gap_ms:g} ms "
                       f"make {seconds:.0f} s of audio, more than the {MAX_GENERATED_SECONDS:.0f} s limit",
                       "give fewer keys or shorter --tone-ms/--gap-ms")
    check_output(args.out)
    samples = dtmf.generate(args.generate, args.rate, args.tone_ms, args.gap_ms, args.level)
    try:
        audio.write_wav(args.out, samples, args.rate)
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
        raise IvrError(f"cannot write {args.out}: {exc}", "check the directory exists and is writable") from None
    print(f"wrote {args.out}: {len(args.generate)} keys, {len(samples) / args.rate:.2f} s at {args.rate} Hz")
    return 0


def _scan(args) -> int:
    from ivr.media import audio, dtmf

    info = audio.open_audio(args.file)  # every problem the header shows, before any output
    rx = dtmf.DtmfReceiver(info.rate)
    events = []
    n = 0
    for block in audio.iter_blocks(args.file, info=info):  # memory bounded whatever the file's length
        n += len(block)
        events += rx.feed(block)
    events += rx.flush()
    rate = info.rate
    digits = dtmf.digits_of(events)
    if args.json:
        out = {
            "digits": digits,
            "events": [{"digit": e.digit, "start": round(e.start, 3), "end": round(e.end, 3)} for e in events],
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not events:
        print(f"{args.file}: no keypad tones ({n / rate:.2f} s scanned)")
        return 0
    print(f"{args.file}: {digits}")
    for e in events:
        print(f"  {e.digit}  {e.start:8.3f} s - {e.end:8.3f} s  ({(e.end - e.start) * 1000:.0f} ms)")
    return 0
