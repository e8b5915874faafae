"""The ``ivr`` command. Each area registers its sub-commands from a module in ``ivr/commands``.

Command modules import their heavy engines (numpy, vosk, pyttsx3) inside the handlers so that
``ivr ask`` starts quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ivr import __version__
from ivr.errors import IvrError

COMMAND_MODULES = [
    "ivr.cli.ask",  # ask, faq check
    "ivr.cli.eval",  # eval SET (text or WAV questions)
    "ivr.cli.say",  # say, prompts render
    "ivr.cli.dtmf",  # dtmf
    "ivr.cli.model",  # model download|path|check
    "ivr.cli.answer",  # answer FILE.wav
    "ivr.cli.call",  # call, chat, kiosk, menu, report
    "ivr.cli.serve",  # serve (SIP/RTP, AudioSocket)
    "ivr.cli.check",  # check (every file an editor may touch)
    "ivr.cli.test",  # test (conversation test cases)
]


def _warnings_to_terminal() -> None:
    """Warnings about input (a header hiding audio, samples that are not numbers) reach the user as one line
    ``ivr: warning: ...``, not through Python's warnings machinery with a source line."""
    import logging

    class _ToStderr(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after start-up)."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _value):
            pass

    log = logging.getLogger("ivr.audio")
    if not log.handlers:
        handler = _ToStderr()
        handler.setFormatter(logging.Formatter("ivr: warning: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr", description="Offline Vietnamese voice IVR for VNPT SmartCA support."
    )
    parser.add_argument("--version", action="version", version=f"ivr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _warnings_to_terminal()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IvrError as exc:
        print(f"ivr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ivr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
