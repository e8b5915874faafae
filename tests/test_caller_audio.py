"""The caller-audio piece on its own: real keypad tones through the real DTMF receiver, frame by frame."""

from __future__ import annotations

import numpy as np

from ivr.core.events import Digit
from ivr.media.caller_audio import CallerAudio
from ivr.media.dtmf import generate

RATE = 8000
FRAME = RATE // 50


def frames(x: np.ndarray):
    x = np.concatenate([x, np.zeros(-len(x) % FRAME, np.int16)])
    return [x[i:i + FRAME] for i in range(0, len(x), FRAME)]


def test_a_key_is_one_digit_event_at_key_down_not_at_release():
    caller = CallerAudio(RATE)  # no model: keys only
    tone = generate("5", RATE, tone_ms=200, gap_ms=0)
    got = []
    for k, f in enumerate(frames(np.concatenate([np.zeros(FRAME * 5, np.int16), tone, np.zeros(FRAME * 10, np.int16)]))):
        for ev in caller.feed(f, k * FRAME / RATE):
            got.append((k, ev))
    assert [ev for _, ev in got] == [Digit("5", t=got[0][1].t, via="tone")]
    k, ev = got[0]
    assert abs(ev.t - (k + 1) * FRAME / RATE) < 1e-9  # timed at the end of the frame it was recognised in
    assert 0.1 + 0.02 <= ev.t <= 0.1 + 0.08  # within a few frames of the tone's start, long before it ends
    assert not caller.speech


def test_the_tone_may_come_on_another_stream_than_the_speech():
    """The kiosk gives the raw microphone for keys and its gated audio for speech: keys are found on the
    first, whatever the second holds."""
    caller = CallerAudio(RATE)
    tone = frames(generate("7", RATE, tone_ms=120, gap_ms=0))
    got = [ev for k, f in enumerate(tone) for ev in caller.feed(f, k * FRAME / RATE, speech=np.zeros(FRAME, np.int16))]
    assert [e.digit for e in got] == ["7"]
