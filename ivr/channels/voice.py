"""The IVR's voice for a set of ``Resources``: recorded prompts first, the synthesiser for the rest.

``catalogue(resources)`` lists every sentence a call can say by the id the call log gives it (prompt ids
such as ``greet_long``, ``no_input_1``, ``topic_menu:password``, ``confirm:7``; answers as ``faq_<id>``),
with the file its text comes from. ``use_recordings(resources)`` puts a ``RecordedVoice`` in front of the
TTS cache when ``prompts/audio/`` holds recordings (see ``ivr.media.recordings``).
"""

from __future__ import annotations

from pathlib import Path


def catalogue(resources) -> tuple[dict[str, str], dict[str, Path]]:
    """``({id: text}, {id: source file})`` for every prompt and FAQ answer of ``resources``."""
    from ivr.core.dialogue import Dialogue, answer_text

    d = Dialogue(resources.faq, resources.matcher, resources.prompts, resources.settings, menu=resources.menu)
    texts = dict(d.prompt_texts())
    prompts_file = getattr(resources.prompts, "path", None)
    sources: dict[str, Path] = {i: Path(prompts_file) for i in texts} if prompts_file else {}
    for entry in resources.faq.entries:
        texts[f"faq_{entry.id}"] = answer_text(entry)
        if getattr(entry, "source", None):
            sources[f"faq_{entry.id}"] = Path(entry.source)
    return texts, sources


def recordings_for(resources, directory: Path | str | None = None):
    from ivr.media.recordings import Recordings

    texts, sources = catalogue(resources)
    return Recordings(texts, directory, sources)


def use_recordings(resources):
    """``resources`` with its ``tts`` wrapped in a ``RecordedVoice`` when there are recordings to play."""
    from ivr.media.recordings import RecordedVoice, has_recordings

    if not has_recordings():  # the usual case: nothing recorded, nothing to build
        return resources
    recordings = recordings_for(resources)
    if len(recordings) and not isinstance(resources.tts, RecordedVoice):
        resources.tts = RecordedVoice(resources.tts, recordings)
    return resources
