"""``ivr say`` (speak a text or write it to a WAV file) and ``ivr prompts render`` (fill the speech cache)."""

from __future__ import annotations

import re
import sys
import time
import unicodedata
from pathlib import Path

from ivr.cli.options import check_output, number
from ivr.errors import IvrError

VOICE_CHOICES = ["north", "central", "south"]
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def register(sub):
    p = sub.add_parser("say", help="speak a text with the IVR's voice, or write it to a WAV file")
    p.add_argument("text", help="Vietnamese text (numbers, abbreviations and symbols are read out sensibly)")
    p.add_argument("--out", metavar="FILE.wav", help="write a mono 16-bit WAV instead of playing it")
    p.add_argument("--rate", type=number(4000, 96000, kind=int, unit="Hz", example="--rate 8000"), metavar="HZ",
                   help="sample rate, 4000-96000 (default: phone_rate of config/tts.yaml with --out, kiosk_rate when playing)")
    _voice_options(p)
    p.add_argument("--show", action="store_true", help="print the spoken form of the text (what is synthesised)")
    p.set_defaults(func=_say)

    parser = sub.add_parser("prompts", help="work with the IVR's prompts")
    psub = parser.add_subparsers(dest="prompts_command", metavar="ACTION")
    r = psub.add_parser("render", help="pre-render every prompt and FAQ answer into the speech cache")
    r.add_argument("--rate", type=int, nargs="+", metavar="HZ",
                   help="sample rates to render (default: phone_rate and kiosk_rate of config/tts.yaml)")
    _voice_options(r)
    r.add_argument("--cache-dir", metavar="DIR", help="cache directory (default: <cache>/tts, see IVR_CACHE_DIR)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_render)
    from ivr.cli.prompts import register_actions  # status, script

    register_actions(psub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _voice_options(p) -> None:
    p.add_argument("--voice", choices=VOICE_CHOICES, help="Vietnamese voice (default: voice of config/tts.yaml)")
    p.add_argument("--wpm", type=number(80, 450, kind=int, unit="words per minute", example="--wpm 160"),
                   metavar="N", help="speaking rate in words per minute (80-450)")
    p.add_argument("--volume", type=number(0, 1, example="--volume 0.8"), metavar="V",
                   help="volume from 0.0 to 1.0")


def _synth(args):
    from ivr.media.tts import Synthesizer

    return Synthesizer.from_config(voice=args.voice, rate_wpm=args.wpm, volume=args.volume)


def _say(args) -> int:
    from ivr.content import config
    from ivr.language.spoken import spoken_form

    text = unicodedata.normalize("NFC", args.text)
    if not text.strip():
        raise IvrError("nothing to say: the text is empty", 'give the text in quotes: ivr say "Xin chào"')
    from ivr.content.config import blank
    from ivr.media.tts import speakable

    spoken = spoken_form(text)
    if blank(text) or not speakable(spoken):
        shown = text.strip()
        raise IvrError(f"nothing to say: {shown[:40]!r}{'…' if len(shown) > 40 else ''} has no letters or digits "
                       "(only emoji, symbols, punctuation or invisible characters)",
                       'give words to speak: ivr say "Xin chào"')
    cfg = config.load("tts")
    rate = args.rate or int(cfg.get("phone_rate" if args.out else "kiosk_rate", 16000))
    if args.show:
        print(spoken)
    out_path = check_output(args.out)
    if not args.out:
        check_output_device()  # before synthesising: say at once when there is nowhere to play
    synth = _synth(args)
    samples = synth.render(text, rate)
    if args.out:
        from ivr.media.audio import write_wav

        out = out_path
        try:
            write_wav(out, samples, rate)
        except (OSError, RuntimeError) as exc:  # soundfile reports an unwritable path as LibsndfileError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise IvrError(f"cannot write {out} ({reason})",
                           "choose a path in a directory that exists and is writable") from None
        print(f"{out}: {len(samples) / rate:.2f} s at {rate} Hz, voice {synth.voice}")
        return 0
    play(samples, rate)
    return 0


def check_output_device() -> None:
    """Raise ``IvrError`` when PortAudio has no output device (a server, a container without sound)."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library itself is missing
        raise IvrError(f"cannot play sound: the PortAudio library is not available ({exc})",
                       "sudo apt-get install libportaudio2, or write a file with --out reply.wav") from None
    try:
        device = sd.query_devices(kind="output")
    except (sd.PortAudioError, ValueError):
        device = None
    if not device or not device.get("max_output_channels"):
        raise IvrError("cannot play sound: there is no sound output device on this machine",
                       "write the audio to a file with --out reply.wav, or connect a speaker or headset")


def play(samples, rate: int) -> None:
    """Play mono int16 samples on the default output device and wait until they have been played."""
    check_output_device()
    import sounddevice as sd

    try:
        sd.play(samples, rate, blocking=True)
    except sd.PortAudioError as exc:
        raise IvrError(f"cannot play sound on the default output device ({exc})",
                       "check the device with `python -m sounddevice`, or write a file with --out reply.wav") from None


def prompt_texts(directory: Path | None = None) -> tuple[list[str], int]:
    """Every string leaf of prompts/*.yaml -> (texts without placeholders, number of templates skipped).

    Templates such as "bấm phím {key}" are completed by the IVR during a call; their completed texts are
    rendered (and cached) then.
    """
    from ivr.content import paths
    from ivr.content.config import read_yaml

    directory = Path(directory) if directory is not None else paths.prompts_dir()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise IvrError(f"no prompts found: {directory} has no *.yaml files", "restore prompts/vi.yaml")
    texts: list[str] = []
    skipped = 0

    def walk(node) -> None:
        nonlocal skipped
        if isinstance(node, str):
            node = unicodedata.normalize("NFC", node).strip()
            if not node:
                return
            if _PLACEHOLDER.search(node):
                skipped += 1
            else:
                texts.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in files:
        walk(read_yaml(path))  # the one YAML reader: syntax errors and keys written twice name the line
    return list(dict.fromkeys(texts)), skipped


def _render(args) -> int:
    from ivr.content import config
    from ivr.content.faq import load_faq
    from ivr.language.spoken import spoken_answer
    from ivr.media.tts import TtsCache

    cfg = config.load("tts")
    rates = args.rate or [int(cfg.get("phone_rate", 8000)), int(cfg.get("kiosk_rate", 16000))]
    prompts, skipped = prompt_texts()
    answers = [spoken_answer(e) for e in load_faq().entries]
    cache = TtsCache(_synth(args), args.cache_dir)
    print(f"prompts: {len(prompts)} texts ({skipped} templates with placeholders are rendered during calls)")
    print(f"answers: {len(answers)} FAQ answers (spoken form)")
    for rate in dict.fromkeys(rates):
        start = time.perf_counter()
        counts = cache.render_all(prompts + answers, rate, progress=not args.quiet)
        print(f"{rate} Hz: {counts['texts']} texts, {counts['rendered']} rendered, {counts['cached']} already cached, "
              f"{time.perf_counter() - start:.1f} s")
    print(f"cache: {cache.directory}")
    sys.stdout.flush()
    return 0
