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


# --- ivr menu -----------------------------------------------------------------------------------------------


def _register_menu(sub) -> None:
    p = sub.add_parser("menu", help="show the keypad menu built from the FAQ topics and the prompts",
                       description="Show the keypad menu: main menu of topics -> questions -> answers.")
    p.add_argument("--json", action="store_true", help="print the menu tree as JSON")
    p.set_defaults(func=cmd_menu)


def cmd_menu(args) -> int:
    from ivr.dialogue import load_settings
    from ivr.faq import load_faq
    from ivr.menu import build_menu, menu_to_json, menu_to_text
    from ivr.prompts import load_prompts

    settings = load_settings()
    root = build_menu(load_faq(), load_prompts(), operator=settings.operator_enabled,
                      operator_key=settings.operator_key)
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
    p.set_defaults(func=cmd_chat)


class _Speaker:
    """Speaks through ivr.tts and sounddevice; says once when there is no sound device and goes quiet."""

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

            if self.cache is None:
                sd.query_devices(kind="output")  # raises when there is no output device
                from ivr.tts import Synthesizer, TtsCache

                self.cache = TtsCache(Synthesizer.from_config())
            audio = self.cache.get(text, self.rate)
            sd.play(audio, self.rate, blocking=True)
        except Exception as exc:  # no PortAudio device, no espeak-ng...: keep the conversation going in text
            self._warn(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


class _ChatCall:
    """Drives one Dialogue from lines of text, with a simulated clock."""

    def __init__(self, dialogue, out, speaker: _Speaker | None, verbose: bool):
        self.d = dialogue
        self.out = out
        self.speaker = speaker
        self.verbose = verbose
        self.t = 0.0
        self.queued: list = []  # plays not yet heard (dropped when the caller barges in)
        self.finished = False

    def send(self, event) -> None:
        self.run(self.d.handle(event))

    def run(self, actions) -> None:
        from ivr.dialogue import HangUp, Log, Play, StopPlayback, Transfer

        for a in actions:
            if self.verbose:
                print(json.dumps(a.record(), ensure_ascii=False), file=sys.stderr)
            if isinstance(a, Play):
                self.queued.append(a)
            elif isinstance(a, StopPlayback):
                self.queued.clear()
            elif isinstance(a, Transfer):
                self.flush()
                self._say(f"[chuyển máy tới tổng đài viên ({a.target}): bản mô phỏng dừng ở đây]")
                self.finished = True
            elif isinstance(a, HangUp):
                self.flush()
                self._say(f"[tổng đài kết thúc cuộc gọi: {a.reason}]")
                self.finished = True
            elif isinstance(a, Log):
                pass

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def flush(self) -> None:
        """Play out what is queued: print (and speak) it, then report each play as finished."""
        from ivr.dialogue import PlaybackFinished

        while self.queued and not self.finished:
            play = self.queued.pop(0)
            tag = f"IVR [FAQ {play.faq_id}]" if play.faq_id is not None else "IVR"
            self._say(f"{tag}: {play.text}")
            if self.speaker:
                self.speaker.say(play.text)
            self.t += max(1.0, len(play.text.split()) / WORDS_PER_SECOND)
            self.send(PlaybackFinished(play.play_id, t=self.t))

    def line(self, text: str) -> None:
        from ivr.dialogue import Digit, SpeechFinal, Timeout

        text = unicodedata.normalize("NFC", text).strip()
        if not text:
            if self.d.deadline is None:
                return
            self.t = max(self.t, self.d.deadline)
            self.send(Timeout(t=self.t))
        else:
            self.t += THINK_SECONDS
            if _KEYS_RE.fullmatch(text):
                for ch in text:  # keys typed together arrive together: later ones cut what earlier ones start
                    self.send(Digit(ch, t=self.t))
                    if self.finished:
                        break
                if self.d.waiting_for == "inter_digit" and not self.finished:  # the line ends the entry
                    self.t = max(self.t, self.d.deadline)
                    self.send(Timeout(t=self.t))
            else:
                self.send(SpeechFinal(text, 1.0, t=self.t))
        self.flush()


def cmd_chat(args) -> int:
    from ivr.dialogue import CallStarted, Hangup, new_dialogue

    call = _ChatCall(new_dialogue(), sys.stdout, _Speaker() if args.speak else None, args.verbose)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Gõ câu hỏi, hoặc phím (0-9 * #); dòng trống là im lặng; Ctrl-D để gác máy.", flush=True)
    call.send(CallStarted(t=0.0))
    call.flush()
    while not call.finished:
        try:
            text = input("Bạn: ") if interactive else sys.stdin.readline()
        except EOFError:
            text = None
        if text is None or (not interactive and text == ""):
            call.send(Hangup(t=call.t))
            print("[quý khách gác máy]", flush=True)
            break
        text = text.rstrip("\n")
        if not interactive:
            print(f"Bạn: {text}", flush=True)
        call.line(text)
    return 0
