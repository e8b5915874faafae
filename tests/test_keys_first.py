"""Control before data on the phone: keys and hang-ups never wait behind speech decoding, and new calls are
admitted by the measured decoding lag (keypad-first, or 503 before answer). Real CallSession, real Vosk
(the packaged Korean model), real SIP server over loopback."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from sipp.harness import ServerThread, SipClient
from sipp.tone_session import ToneFactory
from test_session import espeak_8k, korean_model_dir

from ivr.channels.session import CallSession, Resources
from ivr.phone.admission import SpeechAdmission
from ivr.phone.worker import SessionWorker, WorkerPool

RATE = 8000


@pytest.fixture(scope="module")
def res_ko():
    return Resources.load(model_path=korean_model_dir(), tts_rate=RATE)


def _speech(tmp_path, seconds: float = 4.0) -> np.ndarray:
    parts, n = [], 0
    while n < seconds * RATE:
        parts.append(espeak_8k("cho em hỏi em quên mật khẩu thì lấy lại thế nào", "vi", tmp_path))
        n += len(parts[-1])
    return np.concatenate(parts)


def test_a_key_runs_before_the_speech_waiting_to_be_decoded(res_ko, tmp_path):
    speech = _speech(tmp_path)
    seen = {}

    def factory(call_id, channel, speech=True):
        s = CallSession(res_ko, call_id=call_id, sample_rate=RATE, channel=channel, defer_decode=True,
                        speech=speech)
        feed_digit = s.feed_digit

        def spy(digit, t):  # the real method; what was still waiting to be decoded is written down
            seen.setdefault("backlog", s.decode_backlog)
            seen.setdefault("decoded", s.caller.decoded)
            feed_digit(digit, t)
        s.feed_digit = spy
        return s

    async def main():
        pool = WorkerPool(threads=1)
        try:
            w = SessionWorker(factory, "k1", "sip", lambda pcm: pcm.astype("<i2").tobytes(),
                              lambda data: np.frombuffer(data, "<i2").astype(np.int16), pool)
            w.start()
            for i in range(0, len(speech) // 160 * 160, 160):  # 4 s of speech arrive at once (a burst)
                w.feed(speech[i:i + 160].astype("<i2").tobytes())
            end = time.monotonic() + 30  # the burst has gone through the gate: the speech waits to be decoded
            while time.monotonic() < end and (w.session is None or w.session.decode_backlog < 100):
                await asyncio.sleep(0.001)
            w.digit("1")
            end = time.monotonic() + 60
            while time.monotonic() < end and not (w.session is not None and w.session.decode_backlog == 0
                                                  and "backlog" in seen):
                await asyncio.sleep(0.05)
            session = w.session
            w.hangup()
            await asyncio.wait_for(w.finished, 30)
            return session
        finally:
            pool.close()

    session = asyncio.run(main())
    keys = [e for e in session.events if e["type"] == "key"]
    assert keys and keys[0]["digit"] == "1"
    assert seen["backlog"] > 50  # the key was taken while most of the speech still waited to be decoded
    assert any(e["type"] == "heard" for e in session.events)  # and the speech was decoded afterwards
    heard = [e for e in session.events if e["type"] == "heard"]
    assert all(e["lag_ms"] >= 0 for e in heard)


def test_decode_lag_is_measured_and_admission_follows_it(res_ko, tmp_path):
    from ivr.media.caller_audio import CallerAudio

    caller = CallerAudio(RATE, res_ko.model, defer=True)
    speech = _speech(tmp_path, 2.0)
    x = np.concatenate([np.zeros(RATE // 2, np.int16), speech])
    for i in range(0, len(x) // 160 * 160, 160):
        caller.feed(x[i:i + 160], i / RATE)
    time.sleep(0.3)
    keys = SpeechAdmission(max_lag=0.2, when_busy="keys", lag=caller.lag)
    refuse = SpeechAdmission(max_lag=0.2, when_busy="refuse", lag=caller.lag)
    assert caller.lag() >= 0.3
    assert keys.decide() == "keys" and refuse.decide() == "refuse"
    while caller.backlog:
        caller.decode(50)
    assert caller.lag() == 0.0
    assert keys.decide() == "speech" and refuse.decide() == "speech"


def test_a_busy_line_answers_keypad_first(res_ko):
    s = CallSession(res_ko, call_id="busy", sample_rate=RATE, speech=False)
    s.start(0.0)
    plays = [e for e in s.events if e["type"] == "queued"]
    assert plays[0]["prompt_id"] == "greet_keys" and not s.speech
    assert any(e["type"] == "speech_off" and "busy" in e["reason"] for e in s.events)
    assert [e for e in s.events if e["type"] == "listen"][0]["speech"] is False


class SpeechFactory(ToneFactory):
    """The FAKE tone session of the SIP tests, and whether each call was given speech."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.speech: dict[str, bool] = {}

    def __call__(self, call_id, channel, speech=True):
        self.speech[call_id] = speech
        return super().__call__(call_id, channel)


class Backlog:
    """A real recogniser's backlog as the lag source: ``behind`` fills it, ``caught_up`` decodes it."""

    def __init__(self, model, speech):
        from ivr.media.caller_audio import CallerAudio

        self.caller = CallerAudio(RATE, model, defer=True)
        self.speech = speech

    def behind(self):
        x = np.concatenate([np.zeros(RATE // 2, np.int16), self.speech])
        for i in range(0, len(x) // 160 * 160, 160):
            self.caller.feed(x[i:i + 160], i / RATE)
        time.sleep(0.3)

    def caught_up(self):
        while self.caller.backlog:
            self.caller.decode(50)


@pytest.mark.parametrize("when_busy", ["keys", "refuse"])
def test_sip_admission_by_decoding_lag(res_ko, tmp_path, when_busy):
    factory = SpeechFactory(tmp_path / "logs")
    srv = ServerThread(factory, max_decode_lag=0.2, when_busy=when_busy)
    backlog = Backlog(res_ko.model, _speech(tmp_path, 2.0))
    srv.server.admission.lag = backlog.caller.lag  # the measured lag of a real recogniser's backlog
    a, b = SipClient(srv.sip_port), SipClient(srv.sip_port)
    try:
        a.invite()  # decoding keeps up: a call with speech
        backlog.behind()
        if when_busy == "refuse":
            b.request("INVITE", body=b.offer())
            refused = b.status(503)
            assert "overloaded" in (refused.get("Warning") or "") and refused.get("Retry-After")
            assert not any(m.status == 200 for m in b.inbox)
        else:
            b.invite()  # answered, keys only
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(factory.speech) < (1 if when_busy == "refuse" else 2):
            time.sleep(0.05)
        assert factory.speech[a.call_id] is True
        if when_busy == "keys":
            assert factory.speech[b.call_id] is False
        backlog.caught_up()
        c = SipClient(srv.sip_port)
        try:
            c.invite()  # caught up: speech again
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and c.call_id not in factory.speech:
                time.sleep(0.05)
            assert factory.speech[c.call_id] is True
        finally:
            c.close()
    finally:
        a.close()
        b.close()
        srv.close()


def test_words_decoded_after_a_later_key_do_not_undo_it(res_ko, tmp_path):
    """Decoding lags: the caller's question is decoded only after they pressed a key. The key was acted on
    at once; the late words are logged, not sent to the dialogue."""
    s = CallSession(res_ko, call_id="late", sample_rate=RATE, defer_decode=True)
    s.start(0.0)
    x = np.concatenate([np.zeros(RATE, np.int16), _speech(tmp_path, 2.0), np.zeros(RATE * 2, np.int16)])
    n = len(x) // 160
    for k in range(n):
        s.feed_audio(x[k * 160:(k + 1) * 160], k * 0.02)
        s.ivr_audio(160, (k + 1) * 0.02)
    assert s.decode_backlog > 0
    s.feed_digit("1", n * 0.02)  # topic 1, after the words, before they are decoded
    s.ivr_audio(160, n * 0.02)
    menu = [e for e in s.events if e["type"] == "menu"]
    s.decode()
    heard = [e for e in s.events if e["type"] == "heard"]
    assert menu and heard and all(e.get("superseded_by_key") for e in heard)
    assert not [e for e in s.events if e["type"] == "speech"]  # the dialogue never took the late words


def test_a_pool_thread_keeps_nothing_of_the_call_it_last_ran():
    """Once a call's jobs have run, the pool's threads hold no reference to it (its session, recogniser and
    resampler are freed when the call ends, not when the next call comes)."""
    import gc
    import threading
    import weakref

    from ivr.phone.worker import WorkerPool

    ran = threading.Event()

    class Job:  # stands where a SessionWorker stands: the pool only calls _run_some
        def _run_some(self, limit, decoder):
            ran.set()

    pool = WorkerPool(threads=1, decoders=1)
    try:
        job = Job()
        gone = weakref.ref(job)
        pool.schedule(job)
        assert ran.wait(5)
        del job
        deadline = time.monotonic() + 5
        while gone() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        assert gone() is None
    finally:
        pool.close()


def test_the_decoding_lag_is_the_speech_waiting_at_the_measured_speed(monkeypatch):
    """Admission reads how long the decoders need for the speech waiting in all calls, at the decoding speed
    the process measured on its last turns, not the oldest frame's wait."""
    from ivr.media import asr
    from ivr.phone.worker import WorkerPool

    rate = asr.DecodeRate(window=4)
    monkeypatch.setattr(asr, "decode_rate", rate)
    assert rate.rtf() == rate.default  # nothing measured yet: a cautious guess
    rate.record(4.0, 1.0)
    rate.record(2.0, 1.0)
    rate.record(0.1, 5.0)  # too short to say anything: not counted
    assert rate.rtf() == pytest.approx(2.0 / 6.0)

    class WaitingCall:  # a stand-in for a SessionWorker: only how much speech it has waiting
        def __init__(self, seconds):
            self.seconds = seconds

        def backlog_seconds(self):
            return self.seconds

    pool = WorkerPool(threads=1, decoders=2)
    try:
        calls = [WaitingCall(3.0), WaitingCall(1.5), WaitingCall(0.0)]
        for c in calls:
            pool.register(c)
        assert pool.decode_lag() == pytest.approx(4.5 * (2.0 / 6.0) / 2)
    finally:
        pool.close()


def test_no_input_timer_waits_while_the_callers_words_wait_to_be_decoded(res_ko, tmp_path):
    """Decoding lags far behind (a busy line): the caller spoke over the greeting, but no recogniser has
    decoded the words yet. However long the IVR audio runs on meanwhile, the caller is not told "no input";
    once decoded, the words reach the dialogue. (The IVR's own audio path once fired that timer: under load a
    caller who had asked a question was taken through the no-input ladder to goodbye.)"""
    s = CallSession(res_ko, call_id="lagging", sample_rate=RATE, defer_decode=True)
    s.start(0.0)
    x = np.concatenate([np.zeros(RATE, np.int16), _speech(tmp_path, 2.0)])
    seconds = 60.0  # past the greeting, the menu and the no-input deadline after them, several times
    n = int(seconds / 0.02)
    silence = np.zeros(160, np.int16)
    for k in range(n):
        frame = x[k * 160:(k + 1) * 160] if (k + 1) * 160 <= len(x) else silence
        s.feed_audio(frame, k * 0.02)
        s.ivr_audio(160, (k + 1) * 0.02)
    assert s.decode_backlog > 0
    assert not [e for e in s.events if e["type"] in ("timeout", "no_input")]
    s.decode(t=n * 0.02)
    assert [e for e in s.events if e["type"] == "speech"]  # the words reached the dialogue
    assert not [e for e in s.events if e["type"] == "no_input"]


def test_decoder_threads_run_at_a_lower_scheduling_priority_than_the_call_threads():
    """When the cores are full, the kernel runs the call threads (keys, the IVR's frames) before decoding."""
    import os
    import threading

    from ivr.phone.worker import DECODER_NICE, WorkerPool

    seen: dict[bool, int] = {}
    done = threading.Event()

    class Job:  # stands where a SessionWorker stands: the pool only calls _run_some
        def _run_some(self, limit, decoder):
            seen[decoder] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if len(seen) == 2:
                done.set()

    pool = WorkerPool(threads=1, decoders=1)
    try:
        pool.schedule(Job())
        pool.schedule(Job(), decode=True)
        assert done.wait(5)
    finally:
        pool.close()
    assert seen[True] == min(19, seen[False] + DECODER_NICE) and seen[True] > seen[False]


def test_the_pool_reads_the_speech_waiting_in_real_call_workers(monkeypatch):
    """``decode_lag`` sums what each registered SessionWorker says is waiting. (The method once sat on the
    pool instead of the worker: the real line's lag raised, admission took that for "no lag", and a busy
    line never answered new calls keypad-first.)"""
    from ivr.media import asr, g711
    from ivr.phone.worker import FRAME_SAMPLES, WorkerPool

    rate = asr.DecodeRate(window=4)
    rate.record(2.0, 1.0)  # decoding at 0.5 x real time
    monkeypatch.setattr(asr, "decode_rate", rate)

    class WaitingSession:  # FAKE session: only how many speech frames wait to be decoded
        decode_backlog = 150  # 3 s at 20 ms a frame

    async def lag() -> float:
        pool = WorkerPool(threads=1, decoders=1)
        try:
            worker = SessionWorker(lambda *a, **k: None, "waiting", "sip", g711.ulaw_encode, g711.ulaw_decode,
                                   pool)
            worker.session = WaitingSession()
            assert worker.backlog_seconds() == pytest.approx(150 * FRAME_SAMPLES / 8000)
            return pool.decode_lag()
        finally:
            pool.close()

    assert asyncio.run(lag()) == pytest.approx(3.0 * 0.5)
