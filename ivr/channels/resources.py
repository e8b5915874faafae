"""What a command loads at the edge and hands to its calls: settings, FAQ, matcher, prompts, menu, voice, model.

    resources = Resources.load(model_path=None, tts_rate=8000)   # once per process
    call = resources.new_call(sample_rate=8000, call_id=..., channel=..., on_record=...)   # ivr.core.call.Call

The core (``ivr.core``) never opens a file: everything it needs is read and validated here.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.core.settings import DialogueSettings
from ivr.errors import IvrError


def load_settings() -> DialogueSettings:
    """``config/dialogue.yaml`` as validated settings."""
    from ivr.content import config

    return DialogueSettings.from_config(config.load("dialogue"), source=str(config.path("dialogue")))


def speech_model(model_path: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The one "model path or none" rule: (the model directory, "") or (None, why speech is off).

    ``"none"`` turns speech off; None finds the model as ``ivr.media.asr.resolve_model_path`` does and goes
    on without speech when there is none; a path given (``--model`` or ``$IVR_VOSK_MODEL``) that is not a
    model is an ``IvrError``."""
    from ivr.media import asr

    if isinstance(model_path, str) and model_path.strip().lower() == "none":
        return None, "speech recognition is off (--model none): keys only"
    try:
        return asr.resolve_model_path(model_path), ""
    except IvrError as exc:
        if model_path or os.environ.get(asr.ENV_MODEL):  # a path was given and is wrong: say so
            raise
        return None, f"speech recognition is off: {exc.problem}. Keys still work. ({exc.fix})"


class TtsVoice:
    """The audio of a play: rendered once by the TTS cache at ``tts_rate``, resampled to the call's rate."""

    def __init__(self, tts, tts_rate: int, sample_rate: int):
        self.tts = tts
        self.tts_rate = tts_rate
        self.sample_rate = sample_rate

    def audio(self, text: str) -> np.ndarray:
        audio = self.tts.get(unicodedata.normalize("NFC", text), self.tts_rate)
        if self.tts_rate != self.sample_rate:
            from ivr.media.audio import resample

            audio = resample(audio, self.tts_rate, self.sample_rate)
        return audio


@dataclass
class Resources:
    """What every call shares, loaded once per process.

    ``model`` is the shared Vosk model, or None (speech off: keys still work); ``speech_note`` says why
    there is no model. ``tts`` is the speech cache, used at ``tts_rate`` (the channel's rate).
    """

    faq: Any
    matcher: Any
    prompts: Any
    settings: Any
    menu: Any
    tts: Any
    tts_rate: int
    model: Any = None
    model_path: Path | None = None
    speech_note: str = ""

    @classmethod
    def load(cls, model_path: str | Path | None = None, tts_rate: int = 8000, *, tts=None,
             faq=None, prompts=None, settings=None, speech: bool = True) -> Resources:
        """Load the FAQ, matcher, prompts, call-flow settings, keypad menu, the TTS cache and the speech model.

        ``model_path``: see ``speech_model``. ``tts``: a ``TtsCache`` to use (default: the configured voice,
        the per-user cache directory). ``speech=False`` loads no model at all (for text-only channels).
        """
        from ivr.content.faq import load_faq
        from ivr.content.prompts import load_prompts
        from ivr.core.menu import build_menu
        from ivr.language.match import Matcher
        from ivr.media import asr
        from ivr.media.tts import Synthesizer, TtsCache, check_rate

        tts_rate = check_rate(tts_rate)
        faq = faq if faq is not None else load_faq()
        prompts = prompts if prompts is not None else load_prompts()
        settings = settings if settings is not None else load_settings()
        menu = build_menu(faq, prompts, operator=settings.operator_enabled, operator_key=settings.operator_key)
        if tts is None:
            tts = TtsCache(Synthesizer.from_config())
        path, note, model = None, "", None
        if speech:
            path, note = speech_model(model_path)
            model = asr.load_model(path) if path is not None else None
        from ivr.channels.voice import use_recordings  # prompts/audio/*.wav are played before TTS

        return use_recordings(cls(faq=faq, matcher=Matcher(faq), prompts=prompts, settings=settings, menu=menu,
                                  tts=tts, tts_rate=tts_rate, model=model, model_path=path, speech_note=note))

    def dialogue(self):
        from ivr.core.dialogue import Dialogue

        return Dialogue(self.faq, self.matcher, self.prompts, self.settings, menu=self.menu)

    def new_call(self, voice=None, *, sample_rate: int, **kw):
        """A ``Call`` over these resources (``voice``: default the TTS cache at ``sample_rate``)."""
        from ivr.core.call import Call

        voice = voice if voice is not None else TtsVoice(self.tts, self.tts_rate, sample_rate)
        return Call(self.dialogue(), voice, sample_rate=sample_rate, **kw)

    def texts(self) -> list[str]:
        """Every text a call can say: prompts, menus and FAQ answers (for warming the TTS cache)."""
        from ivr.core.dialogue import answer_text

        return list(self.dialogue().prompt_texts().values()) + [answer_text(e) for e in self.faq.entries]

    def warm_speech(self, sample_rate: int, seconds: float | None = None) -> dict:
        """Warm the speech recognisers on the line's own prompts (``ivr.media.asr.warm_up``); nothing
        without a model. Blocks: a server runs it in the background."""
        from ivr.media import asr

        if self.model is None:
            return {"recognisers": 0, "seconds": 0.0, "wall_s": 0.0}
        voice = TtsVoice(self.tts, self.tts_rate, sample_rate)
        clips = [voice.audio(text) for text in self.texts()[:12]]
        return asr.warm_up(self.model, sample_rate, clips, seconds=seconds)

    def warm(self, progress: bool = False) -> dict[str, int]:
        """Render every prompt and answer into the TTS cache now, so that no call waits for the engine."""
        return self.tts.render_all(self.texts(), self.tts_rate, progress=progress)
