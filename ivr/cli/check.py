"""``ivr check``: validate everything an editor may touch, before a call does.

The FAQ (``faq/*.yaml``), the prompts (``prompts/*.yaml``), the keypad menu built from them, every settings
file (``config/*.yaml``) and the recorded prompts under ``prompts/audio/`` (when there are any). Each part is
checked by the same code that loads it for a call, so what passes here loads there. Every problem found is
printed (file, line, entry, field, and the fix); the exit status is 2 when there is any.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ivr.errors import IvrError

AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3"}


def register(sub) -> None:
    p = sub.add_parser(
        "check",
        help="validate the FAQ, prompts, menu, settings and recorded prompts (run it after every edit)",
        description="Validate every file an editor may change: faq/, prompts/ (and prompts/audio/), the keypad "
        "menu and config/*.yaml. Prints each problem with its file, line and fix; exit status 2 if any.",
    )
    p.set_defaults(func=cmd_check)


def _with_line(exc: IvrError, area: str) -> IvrError:
    """Add the line to an error the settings validators raise as "FILE: ... 'key' ..." / "FILE: key ..."."""
    import re

    from ivr.content import config

    p = str(config.path(area))
    if not exc.problem.startswith(p + ":"):
        return exc
    rest = exc.problem[len(p) + 1:]
    m = re.match(r"\s*(?:setting\s+)?'?([A-Za-z_][\w.]*)", rest)
    if not m:
        return exc
    node, key = config.load(area), None
    parts = m.group(1).split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            break
        if i == len(parts) - 1 or not isinstance(node[part], dict):
            key = part
            break
        node = node[part]
    if key is None:
        return exc
    return IvrError(f"{config.at(config.path(area), node, key)}:{rest}", exc.fix)


def check_match() -> str:
    from ivr.content import config
    from ivr.language.match import check_settings

    try:
        check_settings(config.load("match"), source=str(config.path("match")))
    except IvrError as exc:
        raise _with_line(exc, "match") from None
    return "matcher settings"


def check_dialogue() -> str:
    from ivr.channels.resources import load_settings

    try:
        load_settings()
    except IvrError as exc:
        raise _with_line(exc, "dialogue") from None
    return "call flow settings"


def check_tts() -> str:
    """config/tts.yaml: the values the speech engine is built from (without starting the engine)."""
    from ivr.content import config
    from ivr.media.tts import Synthesizer, check_rate

    cfg = config.load("tts")
    p = config.path("tts")
    for key, build in (("voice", lambda v: Synthesizer(voice=v)),
                       ("rate_wpm", lambda v: Synthesizer(rate_wpm=v)),
                       ("volume", lambda v: Synthesizer(volume=v)),
                       ("phone_rate", check_rate), ("kiosk_rate", check_rate)):
        if key in cfg:
            try:
                build(cfg[key])
            except IvrError as exc:
                raise IvrError(f"{config.at(p, cfg, key)}: {key}: {exc.problem}", exc.fix) from None
    return "speech settings"


def check_asr() -> str:
    from ivr.content import config
    from ivr.media import asr

    if not config.path("asr").is_file():
        return "speech recognition settings (none: built-in defaults)"
    data = asr.settings()
    p = config.path("asr")
    models = data.get("models") or {}
    for name, spec in models.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec.get("name"):
            raise IvrError(f"{config.at(p, models, name)}: models.{name} needs a 'name:' (the model directory)",
                           "write it like the shipped file: name: vosk-model-small-vn-0.4")
    phrases = data.get("menu_phrases")
    if phrases is not None and (not isinstance(phrases, list) or not all(isinstance(x, str) for x in phrases)):
        raise IvrError(f"{config.at(p, data, 'menu_phrases')}: menu_phrases must be a list of words",
                       "write one '- word' per line")
    return "speech recognition settings"


def check_sip() -> str:
    import argparse

    from ivr.cli.serve import options_from

    none = dict.fromkeys(("sip", "audiosocket", "max_calls", "rtp_ports", "allow", "operator_uri", "grace",
                          "log_dir", "model"))
    options_from(argparse.Namespace(**none))
    return "phone settings"


def check_config() -> list[str]:
    """Check every settings file; raises the first ``IvrError``. Returns what was checked."""
    return [f() for f in (check_match, check_dialogue, check_tts, check_asr, check_sip)]


def check_audio_prompts(directory: Path) -> tuple[int, list[IvrError]]:
    from ivr.media import audio

    errors: list[IvrError] = []
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    for p in files:
        try:
            for _ in audio.iter_blocks(p, block_seconds=5.0, max_seconds=120.0):
                pass
        except IvrError as exc:
            errors.append(exc)
    return len(files), errors


def run_checks(out=None) -> list[IvrError]:
    """Run every check, printing one line per part; returns the problems found."""
    from ivr.content import config, paths

    out = out or sys.stdout
    problems: list[IvrError] = []
    state: dict = {}

    def part(name: str, fn: Callable[[], str | None]) -> None:
        try:
            said = fn()
        except IvrError as exc:
            if all(str(exc) != str(p) for p in problems):  # the menu reads the files checked before it
                problems.append(exc)
            print(f"FAIL {name}", file=out)
            return
        print(f"ok   {name}" + (f": {said}" if said else ""), file=out)

    def faq() -> str:
        from ivr.content.faq import load_faq

        state["faq"] = f = load_faq()
        return f"{len(f.entries)} entries, {len(f.topics)} topics"

    def prompts() -> str:
        from ivr.content.prompts import load_prompts

        state["prompts"] = load_prompts()
        return str(state["prompts"].path)

    def menu() -> str:
        from ivr.channels.resources import load_settings
        from ivr.core.menu import build_menu

        if problems:  # it is built from the files checked above: their problems would only repeat
            return "not built (fix the problems above first)"
        s = load_settings()
        build_menu(state["faq"], state["prompts"], operator=s.operator_enabled, operator_key=s.operator_key)
        return "keypad menu built"

    part(f"{paths.faq_dir()}/", faq)
    part(f"{paths.prompts_dir()}/", prompts)
    for area in config.AREAS:
        fn = {"match": check_match, "dialogue": check_dialogue, "tts": check_tts, "asr": check_asr,
              "sip": check_sip}[area]
        part(str(config.path(area)), fn)
    part("menu", menu)
    audio_dir = paths.prompts_dir() / "audio"
    if audio_dir.is_dir():
        n, errors = check_audio_prompts(audio_dir)
        problems += errors
        print(f"{'FAIL' if errors else 'ok  '} {audio_dir}: {n} recordings", file=out)
    return problems


def cmd_check(args) -> int:
    from ivr.content import paths

    print(f"checking {paths.home()}")
    problems = run_checks()
    if problems:
        for exc in problems:
            print(f"ivr: error: {exc}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found; fix them and run `ivr check` again", file=sys.stderr)
        return 2
    print("everything OK")
    return 0
