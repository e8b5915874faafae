"""Voice activity detection on espeak-ng speech padded with silence, with and without white noise at
15-20 dB SNR: start/end edges against the known speech boundaries (printed), noise and silence alone."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from ivr.errors import IvrError
from ivr.media.vad import Vad, segments

RATE = 16000
TOLERANCE_S = 0.1  # edge error allowed (five 20 ms frames)
SENTENCES = [
    ("vi", "cho em hỏi em quên mật khẩu thì lấy lại thế nào"),
    ("vi-vn-x-south", "tôi bị mất điện thoại thì phải làm sao"),
    ("vi-vn-x-central", "làm sao kiểm tra thời hạn chữ ký số"),
]


def espeak(text: str, voice: str, path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    x, rate = sf.read(path, dtype="float64")
    return soxr.resample(x, rate, RATE)


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    """(signal padded with 1 s / 1.5 s of silence, true start, true end) per sentence."""
    d = tmp_path_factory.mktemp("vad")
    out = []
    for i, (voice, text) in enumerate(SENTENCES):
        x = espeak(text, voice, d / f"{i}.wav")
        loud = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
        start, end = loud[0] / RATE + 1.0, loud[-1] / RATE + 1.0
        sig = np.concatenate([np.zeros(RATE), x, np.zeros(int(1.5 * RATE))]) * 0.5
        out.append((sig, start, end))
    return out


def with_noise(sig: np.ndarray, start: float, end: float, snr_db: float | None, seed: int) -> np.ndarray:
    if snr_db is not None:
        p_speech = np.mean(sig[int(start * RATE):int(end * RATE)] ** 2)
        rng = np.random.default_rng(seed)
        sig = sig + rng.normal(0.0, np.sqrt(p_speech / 10 ** (snr_db / 10)), sig.size)
    return (np.clip(sig, -1, 1) * 32767).astype(np.int16)


@pytest.mark.parametrize("snr_db", [None, 20.0, 15.0], ids=["clean", "snr20", "snr15"])
def test_edges_match_the_known_speech_boundaries(utterances, snr_db):
    errors = []
    for i, (sig, start, end) in enumerate(utterances):
        segs = segments(with_noise(sig, start, end, snr_db, seed=i), RATE)
        assert len(segs) == 1, (SENTENCES[i], segs)
        (s, e), = segs
        errors.append((s - start, e - end))
        assert abs(s - start) <= TOLERANCE_S, (SENTENCES[i], s, start)
        assert abs(e - end) <= TOLERANCE_S, (SENTENCES[i], e, end)
    err = np.abs(np.array(errors)) * 1000
    print(f"\nVAD {snr_db or 'clean'} dB: start error mean {err[:, 0].mean():.0f} ms max {err[:, 0].max():.0f} ms; "
          f"end error mean {err[:, 1].mean():.0f} ms max {err[:, 1].max():.0f} ms")


def test_streaming_events_fire_after_onset_and_after_the_hangover(utterances):
    sig, start, end = utterances[0]
    x = with_noise(sig, start, end, 15.0, seed=7)
    vad = Vad(RATE)
    fired = []
    step = RATE // 50
    for i in range(0, len(x), step):
        ev = vad.feed(x[i:i + step])
        if ev:
            fired.append((ev, (i + step) / RATE))
    assert [f[0] for f in fired] == ["start", "end"]
    assert start <= fired[0][1] <= start + 0.2  # within start_ms (+ a frame) of the onset
    assert end + 0.3 <= fired[1][1] <= end + 0.6  # after the 400 ms hangover, not before
    assert vad.speech_start == pytest.approx(start, abs=TOLERANCE_S)


def test_chunk_size_does_not_change_the_decisions(utterances):
    sig, start, end = utterances[1]
    x = with_noise(sig, start, end, 20.0, seed=3)
    a = segments(x, RATE)
    vad = Vad(RATE)
    got, opened = [], None
    for i in range(0, len(x), 333):
        for ev, t in vad.feed_events(x[i:i + 333]):
            if ev == "start":
                opened = t
            else:
                got.append((opened, t))
    assert got == a


@pytest.mark.parametrize("level_dbfs", [-60.0, -30.0, -15.0])
def test_steady_noise_alone_is_not_speech(level_dbfs):
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 10 ** (level_dbfs / 20) / np.sqrt(2), 5 * RATE)
    assert segments((noise * 32767).astype(np.int16), RATE) == []


def test_digital_silence_is_not_speech():
    assert segments(np.zeros(3 * RATE, dtype=np.int16), RATE) == []


def test_noise_that_appears_mid_stream_is_learnt_as_background():
    """A fan switched on: one long 'utterance' at most, ended by max_utterance_s, then quiet again."""
    rng = np.random.default_rng(2)
    x = np.concatenate([np.zeros(RATE), rng.normal(0, 0.05, 25 * RATE)])
    segs = segments((x * 32767).astype(np.int16), RATE)
    assert len(segs) <= 1
    if segs:
        assert segs[0][1] - segs[0][0] <= 15.1


def test_8k_audio_and_bad_input():
    vad = Vad(8000)
    assert vad.frame_len == 160
    with pytest.raises(IvrError):
        Vad(100)
    with pytest.raises(IvrError):
        vad.feed(np.zeros((10, 2), dtype=np.int16))
