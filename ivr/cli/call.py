"""Call-flow commands: ``ivr menu`` (the keypad tree) and ``ivr chat`` (the dialogue in a terminal).

Each command has a ``_register_<name>(sub)`` helper and a ``cmd_<name>(args)`` handler; ``register``
calls the helpers.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata


def register(sub) -> None:
    _register_menu(sub)
    _register_chat(sub)
    _register_call(sub)
    _register_report(sub)
    _register_kiosk(sub)


# --- ivr menu -----------------------------------------------------------------------------------------------


def _register_menu(sub) -> None:
    p = sub.add_parser("menu", help="show the keypad menu built from the FAQ topics and the prompts",
                       description="Show the keypad menu: main menu of topics -> questions -> answers.")
    p.add_argument("--json", action="store_true", help="print the menu tree as JSON")
    p.set_defaults(func=cmd_menu)


def cmd_menu(args) -> int:
    from ivr.channels.resources import Resources
    from ivr.cli.check import check_match, check_tts
    from ivr.core.menu import menu_to_json, menu_to_text

    check_match()  # what a caller's words are matched with and the menu spoken with: broken -> say so now
    check_tts()
    root = Resources.load(speech=False).menu
    if args.json:
        print(json.dumps(menu_to_json(root), ensure_ascii=False, indent=2))
    else:
        print(menu_to_text(root))
    return 0


# --- ivr chat -----------------------------------------------------------------------------------------------

_KEYS_RE = re.compile(r"[0-9*#]+")
WORDS_PER_SECOND = 2.5  # speaking speed used to move the chat's clock while a prompt "plays"
THINK_SECONDS = 1.0  # the caller's time between the end of a prompt and a typed line


def _register_chat(sub) -> None:
    p = sub.add_parser(
        "chat", help="talk to the IVR in the terminal (type a question, keys, or an empty line for silence)",
        description="The call flow in a terminal. Type a question as the caller would say it; a line of only "
                    "0-9 * # is keys; an empty line is silence (the no-input timeout). Works on piped input.",
    )
    p.add_argument("--speak", action="store_true", help="also speak the IVR's words on the sound card")
    p.add_argument("--verbose", "-v", action="store_true", help="print the call log records on stderr")
    p.add_argument("--log-dir", metavar="DIR", help="where the chat's call log goes (default: logs/ or $IVR_LOG_DIR)")
    p.set_defaults(func=cmd_chat)


class _Speaker:
    """Speaks through ivr.media.tts and sounddevice; says once when there is no sound device and goes quiet."""

    def __init__(self):
        self.ok = True
        self.cache = None
        self.rate = 22050

    def _warn(self, why: str) -> None:
        print(f"ivr: cannot speak ({why}); printing only", file=sys.stderr)
        self.ok = False

    def say(self, text: str) -> None:
        if not self.ok:
            return
        try:
            import sounddevice as sd
        except OSError as exc:  # the PortAudio library is missing
            self._warn(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        from ivr.errors import IvrError

        try:
            if self.cache is None:
                sd.query_devices(kind="output")  # raises when there is no output device
                from ivr.media.tts import Synthesizer, TtsCache

                self.cache = TtsCache(Synthesizer.from_config())
            audio = self.cache.get(text, self.rate)
            sd.play(audio, self.rate, blocking=True)
        except (sd.PortAudioError, OSError, RuntimeError, ValueError, IvrError) as exc:  # no device, no
            # espeak-ng...: keep the conversation going in text
            self._warn(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


class ChatVoice:
    """A play in the chat lasts as long as its words take to say (``WORDS_PER_SECOND``), at least 1 s."""

    RATE = 100  # samples per second: the chat's plays are silent, only their length counts

    def audio(self, text: str):
        import numpy as np

        return np.zeros(int(max(1.0, len(text.split()) / WORDS_PER_SECOND) * self.RATE), dtype=np.int16)


class ChatCall:
    """Drives one ``Call`` from lines of text, in virtual time; prints (and speaks) what the IVR says."""

    def __init__(self, resources, out, speaker: _Speaker | None, verbose: bool, log=None, call_id: str = ""):
        self.log = log  # ivr.channels.calllog.CallLog: a chat is logged like a call, so `ivr report` counts it
        self.out = out
        self.speaker = speaker
        self.verbose = verbose
        self.call = resources.new_call(ChatVoice(), sample_rate=ChatVoice.RATE, call_id=call_id, channel="chat",
                                       on_record=self._record)
        self.t = 0.0
        self._verbose_shown = 0

    @property
    def finished(self) -> bool:
        return self.call.ended or self.call.transfer_to is not None

    def _record(self, rec: dict) -> None:
        from ivr.channels.transcript import line

        if self.log is not None:
            self.log.write(rec)
        text = line(rec, "chat")
        if text is not None:
            print(text, file=self.out, flush=True)
        if rec["type"] == "play" and self.speaker:
            self.speaker.say(rec["text"])

    def _print_records(self) -> None:
        """--verbose: the records on stderr, once settled (the keys of a run still being typed wait)."""
        if not self.verbose:
            return
        settled = self.call.settled
        for rec in self.call.events[self._verbose_shown:settled]:
            print(json.dumps(rec, ensure_ascii=False), file=sys.stderr)
        self._verbose_shown = max(self._verbose_shown, settled)

    def start(self) -> None:
        self.call.start(self.t)
        self.flush()

    def flush(self) -> None:
        """Play out what is queued, in virtual time."""
        while self.call.playing and not self.finished:
            head = next(item for item in self.call.playout.items if item.is_play)
            n = max(1, head.left)
            self.call.audio(n, self.t)
            self.t += n / ChatVoice.RATE
        self._print_records()

    def hangup(self) -> None:
        from ivr.core.events import CallerHangup

        self.call.send(CallerHangup(t=self.t))
        self._print_records()

    def line(self, text: str) -> None:
        from ivr.core.events import Digit, SpeechFinal

        text = unicodedata.normalize("NFC", text).strip()
        if not text:
            deadline = self.call.dialogue.deadline
            if deadline is None:
                return
            self.t = max(self.t, deadline)
            self.call.tick(self.t)
        else:
            self.t += THINK_SECONDS
            if _KEYS_RE.fullmatch(text):
                for ch in text:  # keys typed together arrive together: later ones cut what earlier ones start
                    self.call.send(Digit(ch, t=self.t, via="typed"))
                    if self.finished:
                        break
                if self.call.dialogue.waiting_for == "inter_digit" and not self.finished:  # the line ends it
                    self.t = max(self.t, self.call.dialogue.deadline)
                    self.call.tick(self.t)
            else:
                self.call.send(SpeechFinal(text, 1.0, t=self.t))
        self.flush()


def cmd_chat(args) -> int:
    import secrets
    import time

    from ivr.channels.calllog import CallLog, default_log_dir
    from ivr.channels.resources import Resources

    resources = Resources.load(speech=False)
    call_id = f"chat-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    log = CallLog(args.log_dir or default_log_dir(), call_id, channel="chat")
    call = ChatCall(resources, sys.stdout, _Speaker() if args.speak else None, args.verbose, log, call_id)
    try:
        return _chat(call)
    finally:
        log.close()
        print(f"-- log: {log.path}", file=sys.stderr)


def _chat(call: ChatCall) -> int:
    try:
        return _converse(call)
    finally:
        call.call.end_input()
        call._print_records()


def _converse(call: ChatCall) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print("Gõ câu hỏi, hoặc phím (0-9 * #); dòng trống là im lặng; Ctrl-D để gác máy.", flush=True)
    call.start()
    while not call.finished:
        try:
            text = input("Bạn: ") if interactive else sys.stdin.readline()
        except EOFError:
            text = None
        if text is None or (not interactive and text == ""):
            call.hangup()
            break
        text = text.rstrip("\n")
        if not interactive:  # the caller's line echoed, masked like every output
            from ivr.core.privacy import mask_text

            print(f"Bạn: {mask_text(text)}", flush=True)
        call.line(text)
    return 0


# --- ivr call -----------------------------------------------------------------------------------------------

CALL_RATE = 8000  # the telephone line


def _register_call(sub) -> None:
    p = sub.add_parser(
        "call", help="simulate a phone call: the caller's side from a WAV file, the IVR's answers to a WAV",
        description="Simulate one phone call. The caller's side is read from CALLER.wav (any WAV, converted to "
                    "8 kHz) and played to the IVR in 20 ms frames, in simulated time (much faster than real "
                    "time); keys are keypad tones in the audio. When the file ends, the caller hangs up.",
    )
    p.add_argument("caller", metavar="CALLER.wav", help="the caller's side of the call")
    p.add_argument("--out", metavar="WAV", help="write the call as a stereo WAV: caller left, IVR right")
    p.add_argument("--json", action="store_true", help="print the call's events as JSON")
    p.add_argument("--model", metavar="PATH|none", help="Vosk model directory, or 'none' for keys only "
                   "(default: the installed model, if any)")
    p.add_argument("--log-dir", metavar="DIR", help="where the call log goes (default: logs/ or $IVR_LOG_DIR)")
    p.add_argument("--operator-busy", action="store_true",
                   help="the operator transfer fails (the IVR apologises and goes on) instead of ending the call")
    p.set_defaults(func=cmd_call)


def simulate_call(caller, resources, *, log_dir=None, call_id: str | None = None, operator_busy: bool = False):
    """Run one call in simulated time. ``caller``: int16 samples at 8 kHz. Returns (session, ivr samples,
    call length in samples). Frame k of the caller ([k, k+1) x 20 ms) is fed, then the IVR frame starting at
    (k+1) x 20 ms is read, so a key or a barge-in shows in the very next IVR frame."""
    import numpy as np

    from ivr.channels.session import CallSession

    n = CALL_RATE // 50
    s = CallSession(resources, call_id=call_id, sample_rate=CALL_RATE, log_dir=log_dir, channel="file")
    s.start(0.0)
    out = [s.ivr_audio(n, 0.0)]
    frames = (len(caller) + n - 1) // n
    k = 0
    while k < frames and not s.ended:
        frame = caller[k * n:(k + 1) * n]
        if len(frame) < n:
            frame = np.concatenate([frame, np.zeros(n - len(frame), np.int16)])
        s.feed_audio(frame, k * n / CALL_RATE)
        k += 1
        if s.transfer_to is not None:
            if not operator_busy:
                break  # the call is with the operator now: the simulation ends here
            s.transfer_failed(k * n / CALL_RATE, "operator busy (simulated)")
        out.append(s.ivr_audio(n, k * n / CALL_RATE))
    if not s.ended:
        s.hangup(k * n / CALL_RATE)  # the file ended: the caller hangs up (or the call was transferred)
    ivr = np.concatenate(out)  # up to the end of the frame in which the call ended
    return s, ivr, len(ivr)


def cmd_call(args) -> int:
    from pathlib import Path

    from ivr.channels.calllog import default_log_dir
    from ivr.channels.resources import Resources
    from ivr.channels.transcript import lines
    from ivr.cli.options import check_output
    from ivr.errors import IvrError
    from ivr.media.audio import read_audio, write_wav_stereo

    out = check_output(args.out)  # before the call runs: a long call must not end in "cannot write"
    caller, _ = read_audio(args.caller, CALL_RATE)
    resources = Resources.load(model_path=args.model, tts_rate=CALL_RATE)
    if resources.model is None:
        print(f"ivr: {resources.speech_note}", file=sys.stderr)
    log_dir = Path(args.log_dir) if args.log_dir else default_log_dir()
    import time
    import uuid

    call_id = f"call-{Path(args.caller).stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    session, ivr, length = simulate_call(caller, resources, log_dir=log_dir, call_id=call_id,
                                         operator_busy=args.operator_busy)
    if out is not None:
        try:
            write_wav_stereo(out, caller[:length], ivr, CALL_RATE)  # caller padded with silence if shorter
        except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
            raise IvrError(f"--out {out}: cannot write the recording ({exc})", "give a writable path") from None
    answered = [e["faq_id"] for e in session.events if e["type"] == "answer"]
    if args.json:
        print(json.dumps({"events": session.events, "answered_faq_ids": answered}, ensure_ascii=False))
        return 0
    for line in lines(session.events, "call"):
        print(line)
    print(f"-- call of {length / CALL_RATE:.1f} s; answers given: "
          f"{', '.join(f'FAQ {i}' for i in answered) or 'none'}; log: {session.log_path}")
    if out is not None:
        print(f"-- recording (caller left, IVR right): {out}")
    return 0


# --- ivr report ---------------------------------------------------------------------------------------------


def _register_report(sub) -> None:
    p = sub.add_parser("report", help="summarise the call logs: unanswered questions, answers, transfers",
                       description="Summarise a directory of call logs (*.jsonl): questions the IVR did not "
                                   "understand (with counts), answers per FAQ entry, calls, transfers and "
                                   "the mean call length.")
    p.add_argument("log_dir", metavar="LOGDIR", nargs="*",
                   help="log directories, e.g. one per `ivr serve` instance (default: logs/)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--html", metavar="FILE", help="also write the analytics page (one self-contained HTML file)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ivr.channels.calllog import default_log_dir, report, report_text

    data = report(args.log_dir or [default_log_dir()])
    if args.html:  # ivr.channels.report_html: the same figures as a page with charts
        from ivr.channels.report_html import write_page

        page = write_page(args.html, data, args.log_dir or [default_log_dir()])
        print(f"-- analytics page: {page}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    from ivr.content.faq import load_faq
    from ivr.errors import IvrError

    try:
        faq = load_faq()
    except IvrError:  # the report goes on without the questions' text
        faq = None
    print(report_text(data, faq))
    return 0


# --- ivr kiosk ----------------------------------------------------------------------------------------------


def _register_kiosk(sub) -> None:
    p = sub.add_parser(
        "kiosk", help="hands-free kiosk: microphone and speaker, keyboard keys 0-9 * # as the keypad, q quits",
        description="Run the IVR on this computer's microphone and speaker (16 kHz). Visitors speak their "
                    "question or type keys 0-9 * # on the keyboard; q quits. Full duplex by default: the kiosk cancels "
                    "its own voice's echo (libspeexdsp) and a visitor may interrupt it by voice; without "
                    "libspeexdsp, or with --half-duplex, it does not listen while it speaks (keys still work). "
                    "Without a sound card it says what is missing.",
    )
    p.add_argument("--model", metavar="PATH", default=None,
                   help="Vosk model directory (default: found as everywhere; 'none': keys only)")
    p.add_argument("--device", metavar="N", default=None,
                   help="sound device number or name (`python -m sounddevice` lists them)")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the sound card (default 16000)")
    p.add_argument("--voice", default=None, help="voice: north, central or south (default: config/tts.yaml)")
    p.add_argument("--log-dir", metavar="DIR", help="where the visit logs go (default: logs/ or $IVR_LOG_DIR)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--duplex", dest="duplex", action="store_true", default=None,
                      help="full duplex: echo cancelled, the visitor may interrupt by voice (default when "
                           "libspeexdsp is installed; an error without it)")
    mode.add_argument("--half-duplex", dest="duplex", action="store_false",
                      help="half duplex: the mic is muted while the kiosk speaks; interrupt with keys")
    p.set_defaults(func=cmd_kiosk)


def cmd_kiosk(args) -> int:
    from ivr.channels.kiosk import run_kiosk

    return run_kiosk(model=args.model, device=args.device, rate=args.rate, voice=args.voice, log_dir=args.log_dir,
                     duplex=args.duplex)
