"""The threads that run the calls' sessions, and the owner of one call's session (``SessionWorker``).

Speech decoding is CPU heavy and must stay off the event loop, and a ``CallSession`` allows one thread at a
time: every session method of a call runs on a small shared ``WorkerPool``, one job at a time. The event
loop only moves bytes: at each 20 ms media tick it sends the frame the worker prepared ahead.

Control before data (pipecat's system frames jump the queue). A call's jobs are typed (``Start``,
``Digit``, ``Hangup``...) and come in three lanes, each taken before the next:

1. control: ``Create``, ``Start``, ``Digit`` (RFC 4733, AudioSocket), ``Hangup``, ``TransferFailed``,
   ``Goodbye``, ``Note``, ``Close``: they run before any audio already queued;
2. media: ``Audio`` (the caller's frames: in-band DTMF and the voice-activity gate only, which are cheap, so
   a tone is a key within the frame it was recognised in) and ``Read`` (the IVR's next frame);
3. decoding: the session's ``decode_backlog`` (speech frames the gate let through), decoded a few frames
   (``DECODE_CHUNK``) at a time, only when lanes 1 and 2 are empty; the recogniser may lag behind.

The pool's call threads take only calls with control or media work; its decoder threads (one per core)
take calls with speech to decode, ``DECODE_CHUNK`` frames at a time, at a lower scheduling priority
(``DECODER_NICE``): when the cores are full, keys and the IVR's frames run first. A key or an IVR frame of a call waits
at most for one decoding chunk of that same call, never for other calls' decoding (Vosk releases the
interpreter lock while it decodes). ``WorkerPool.decode_lag()`` estimates how far decoding is behind (the
speech waiting, at the measured decoding speed): admission (ivr/phone/admission.py) reads it.

What the session decides reaches the channel as a signal on the event loop, never as a flag to poll:
``on_drained()`` once the IVR hung up and every frame it produced was sent, ``on_transfer(target, context)``
once when the dialogue asks for the operator. ``finished`` (an asyncio future) resolves when the session
was told the call is over and let go: after that the worker holds nothing of the call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("ivr.phone.worker")

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
PREFETCH = 3  # frames prepared ahead of the clock (60 ms) while the IVR speaks
QUIET_PREFETCH = 1  # ... and while it is quiet: a key then waits behind one prepared frame of silence, not three
DECODE_CHUNK = 6  # speech frames decoded (in one recogniser call) before the thread looks at other calls again
DECODER_NICE = 10  # the decoder threads' scheduling priority, below the event loop's and the call threads'


def lower_priority(nice: int = DECODER_NICE) -> bool:
    """Lower the calling thread's scheduling priority by ``nice`` (Linux schedules threads one by one): when the
    cores are full, the kernel then runs the event loop and the call threads (keys, the IVR's next frame)
    before speech decoding, which takes every cycle they leave. False where the platform cannot."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return True
    except (AttributeError, OSError):
        return False

SessionFactory = Callable[..., Any]  # (call_id, channel[, speech=False]) -> CallSession


# -- jobs -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Create:
    speech: bool = True


@dataclass(frozen=True)
class Start:
    t: float


@dataclass(frozen=True)
class DigitJob:
    digit: str
    t: float


@dataclass(frozen=True)
class TransferFailedJob:
    t: float
    reason: str = ""


@dataclass(frozen=True)
class Goodbye:
    t: float


@dataclass(frozen=True)
class Note:
    t: float
    kind: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hangup:
    t: float


@dataclass(frozen=True)
class Close:
    """Let the session go (after a hang-up, or when the call is torn down)."""


@dataclass(frozen=True)
class Audio:
    data: bytes
    t: float  # call time the payload arrived (its last sample's end)


@dataclass(frozen=True)
class Read:
    t: float  # call time of the first sample of the IVR frame to prepare


ControlJob = Create | Start | DigitJob | TransferFailedJob | Goodbye | Note | Hangup | Close
MediaJob = Audio | Read


class WorkerPool:
    """A few threads that run the calls' session jobs; each call's jobs run one at a time.

    Calls with control or media work wait in one line, served by the call threads; calls with speech to
    decode in another, served by the decoder threads. One thread per call would have every call thread compete with the
    event loop for the interpreter lock at every 20 ms tick; with a small pool the loop waits for at most
    a few of them.
    """

    def __init__(self, threads: int | None = None, batch: int = 8, decoders: int | None = None):
        self.size = threads or max(2, min(4, os.cpu_count() or 2))
        self.decoders = decoders or max(1, os.cpu_count() or 2)
        self.batch = batch  # control/media jobs of one call run before the thread moves on (fairness)
        self._cv = threading.Condition()
        self._fast: deque = deque()
        self._slow: deque = deque()
        self._closed = False
        self._workers: weakref.WeakSet = weakref.WeakSet()
        self._threads = [threading.Thread(target=self._run, args=(False,), name=f"call-worker-{i}", daemon=True)
                         for i in range(self.size)]
        self._threads += [threading.Thread(target=self._run, args=(True,), name=f"call-decoder-{i}", daemon=True)
                          for i in range(self.decoders)]
        for thread in self._threads:
            thread.start()

    def register(self, worker: SessionWorker) -> None:
        with self._cv:
            self._workers.add(worker)

    def schedule(self, worker: SessionWorker, decode: bool = False) -> None:
        with self._cv:
            (self._slow if decode else self._fast).append(worker)
            self._cv.notify_all()

    def decode_lag(self) -> float:
        """Seconds (wall clock) the decoder threads need for the speech waiting in all calls, at the measured
        decoding speed (``ivr.media.asr.decode_rate``): how far decoding is behind, and how long a new
        caller's words would wait. Not the oldest frame's wait: on a busy line a turn may wait for a
        recogniser by design, and is then decoded several times faster than real time."""
        from ivr.media.asr import decode_rate

        with self._cv:
            workers = list(self._workers)
        waiting = sum(w.backlog_seconds() for w in workers)
        return waiting * decode_rate.rtf() / max(1, self.decoders)

    def _run(self, decoder: bool) -> None:
        """A call thread takes calls with keys or frames to handle; a decoder thread, calls with speech to
        decode (a few frames, then the call goes back in line)."""
        line = self._slow if decoder else self._fast
        if decoder:
            lower_priority()
        while True:
            with self._cv:
                while not line and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                worker = line.popleft()
            worker._run_some(self.batch, decoder)
            worker = None  # nothing of a call is kept by a thread waiting for the next one

    def busy(self) -> bool:
        """Calls wait with keys or frames to handle."""
        return bool(self._fast)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


_default_pool: WorkerPool | None = None
_default_pool_lock = threading.Lock()


def default_pool() -> WorkerPool:
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = WorkerPool()
        return _default_pool


def transfer_context(events: list[dict]) -> dict[str, str]:
    """What the caller asked, for the operator: last words heard, the entry matched, the menu path."""
    from ivr.channels.calllog import mask_text

    heard = ""
    entry = ""
    path: list[str] = []
    for ev in events:
        kind = ev.get("type")
        if kind in ("speech", "heard") and ev.get("text"):
            heard = str(ev["text"])
        elif kind in ("match", "answer", "confirm") and ev.get("faq_id") is not None:
            entry = str(ev["faq_id"])
        elif kind == "menu" and ev.get("topic") is not None:
            path.append(str(ev["topic"]))
        elif kind == "digit" and ev.get("digit"):
            path.append(str(ev["digit"]))
    out = {}
    if heard:
        out["transcript"] = mask_text(heard)
    if entry:
        out["entry"] = entry
    if path:
        out["path"] = mask_text(" ".join(path[-20:]))
    return out


class SessionWorker:
    """Owns one call's session: every session method runs on a pool thread, one at a time, control first.

    Created on the event loop, once the call is confirmed. The loop calls the entry points (start, feed,
    digit, pull, hangup ...). ``encode``: int16 frame -> bytes to send (G.711 for RTP, raw little-endian
    for AudioSocket). ``decode``: received bytes -> int16 samples. ``speech=False``: the session is made
    without speech recognition (admission: the line is too busy to listen), keys only.
    """

    def __init__(self, factory: SessionFactory, call_id: str, channel: str,
                 encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray],
                 pool: WorkerPool | None = None, *, on_drained: Callable[[], None] | None = None,
                 on_transfer: Callable[[str, dict], None] | None = None, speech: bool = True):
        self.call_id = call_id
        self.channel = channel
        self._factory = factory
        self._encode = encode
        self._decode = decode
        self._pool = pool or default_pool()
        self._loop = asyncio.get_running_loop()
        self.on_drained = on_drained
        self.on_transfer = on_transfer
        self.finished: asyncio.Future = self._loop.create_future()  # the session was let go
        self.drained: asyncio.Future = self._loop.create_future()  # nothing more to send
        self._control: deque[ControlJob] = deque()
        self._media: deque[MediaJob] = deque()
        self._lock = threading.Lock()
        self._queued = False  # in the pool's control/media line
        self._queued_decode = False  # in the pool's decoding line
        self._speaking = False  # the last frame prepared had sound
        self._running = False  # a pool thread runs this call's jobs now
        self._closed = False
        self.out: deque[tuple[bytes, bool]] = deque()
        self._requested = itertools.count(1)
        self._n_requested = 0
        self._n_done = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self.session: Any = None
        self.t0 = time.monotonic()
        self.started = False
        self.failed: str | None = None
        self.underruns = 0
        # pool-thread side: what has been signalled already
        self._ended_sent = False
        self._transfer_sent = False
        self._last_t = 0.0  # latest call time given to the session for a control event
        # loop side
        self.ivr_ended = False  # the IVR hung up (signalled from the pool thread)
        self._drained_sent = False
        self._pool.register(self)
        self._put(Create(bool(speech)))

    def _put(self, job) -> None:
        with self._lock:
            if self._closed:
                return
            (self._media if isinstance(job, Audio | Read) else self._control).append(job)
            if self._queued or self._running:
                return  # the thread running this call looks for more jobs before it lets go
            self._queued = True
        self._pool.schedule(self)

    def _signal(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the event loop (from the pool thread)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    # -- event loop side --------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        """The call is answered: reset the call clock and queue the greeting."""
        self.t0 = time.monotonic()
        self.started = True
        self._put(Start(0.0))

    def feed(self, data: bytes) -> None:
        self._put(Audio(data, self.now()))

    def digit(self, key: str) -> None:
        self._put(DigitJob(key, self.now()))

    def transfer_failed(self, reason: str = "") -> None:
        self._put(TransferFailedJob(self.now(), reason))

    def goodbye(self) -> None:
        self._put(Goodbye(self.now()))

    def note(self, kind: str, **data) -> None:
        """A record of the channel's (e.g. a transfer's outcome) for the call log, in call time."""
        self._put(Note(self.now(), kind, data))

    def hangup(self) -> None:
        """The call is over (caller hung up, or torn down): the session is told (log flushed), then let go.
        Frames still prepared are dropped: nobody will send them."""
        self.out.clear()
        self._put(Hangup(self.now()))
        self._put(Close())
        self._mark_drained(tell=False)

    def stop(self) -> None:
        self.out.clear()
        self._put(Close())
        self._mark_drained(tell=False)

    def pull(self) -> tuple[bytes, bool] | None:
        """The next prepared frame (payload, is_speech), or None when the worker fell behind."""
        frame = self.out.popleft() if self.out else None
        if self.ivr_ended:
            if not self.out:
                self._mark_drained()
            return frame
        if frame is None and self.started:
            self.underruns += 1
        if self.started:
            now = self.now()
            # while the IVR is quiet, little is prepared ahead: what a key or the caller's words start is sent
            # after one frame of silence (an underrun then costs one frame of silence, nothing audible)
            target = PREFETCH if self._speaking else QUIET_PREFETCH
            while (ahead := len(self.out) + self._n_requested - self._n_done) < target:
                self._n_requested = next(self._requested)
                # t of the frame's first sample: after the frames already prepared or being prepared
                self._put(Read(now + ahead * FRAME_SAMPLES / 8000))
        return frame

    def _ivr_hung_up(self) -> None:
        self.ivr_ended = True
        if not self.out:
            self._mark_drained()

    def _mark_drained(self, tell: bool = True) -> None:
        """Nothing more to send. ``tell``: the IVR ended the call, the channel hangs up (the channel ending
        the call itself needs no telling)."""
        if self._drained_sent:
            return
        self._drained_sent = True
        self.ivr_ended = True
        if not self.drained.done():
            self.drained.set_result(None)
        if tell and self.on_drained is not None:
            self.on_drained()

    def _finished(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    # -- pool thread side -------------------------------------------------------------------------
    def _run_some(self, limit: int, decode: bool = True) -> None:
        """Run by a pool thread taken from either line (``decode``: a decoder thread): control jobs, then
        media jobs (up to ``limit`` in all), then, on a decoder thread, one chunk of speech decoding. Then
        back in the line(s) of what is left to do."""
        with self._lock:
            if decode:
                self._queued_decode = False
            else:
                self._queued = False
            if self._running or self._closed:
                return  # another thread has this call; it reschedules when done
            self._running = True
        ran = 0
        while ran < limit:
            with self._lock:
                if self._control:
                    job = self._control.popleft()
                elif self._media:
                    job = self._media.popleft()
                else:
                    break
            ran += 1
            if isinstance(job, Close):
                self._close()
                return
            self._job(job)
        if decode and ran < limit:  # a decoder thread: a little of the speech waiting
            self._decode_some()
        with self._lock:
            self._running = False
            if self._closed:
                return
            fast = bool(self._control or self._media) and not self._queued
            slow = not self._queued_decode and self._decodable()
            self._queued |= fast
            self._queued_decode |= slow
        if fast:
            self._pool.schedule(self)
        if slow:
            self._pool.schedule(self, decode=True)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._control.clear()
            self._media.clear()
            self._running = False
        self.session = None  # nothing of the call is kept
        self._pending = np.zeros(0, dtype=np.int16)
        self._signal(self._finished)

    def _backlog(self) -> int:
        session = self.session
        return int(getattr(session, "decode_backlog", 0) or 0) if session is not None else 0

    def backlog_seconds(self) -> float:
        """Seconds of this call's speech waiting to be decoded (``WorkerPool.decode_lag`` sums them)."""
        return self._backlog() * FRAME_SAMPLES / 8000

    def _decodable(self) -> bool:
        """Speech waits and can be decoded now. A turn waiting for a recogniser (as many as the line decodes
        at once are in use) is not put in the decoders' line: its next frame looks again, 20 ms later."""
        session = self.session
        if session is None or not self._backlog():
            return False
        ready = getattr(session, "decode_ready", None)
        return True if ready is None else bool(ready)

    def _decode_some(self) -> None:
        session = self.session
        if session is None or not self._backlog():
            return
        try:
            session.decode(DECODE_CHUNK, t=self.now())
        except Exception as exc:  # noqa: BLE001 - handled like any session failure
            self._failed(session, exc)
            return
        self._check(session)

    def _after(self, session, t: float) -> float:
        """``t``, or the time of the session's latest record if that is later: the session's audio runs up
        to PREFETCH frames ahead of the clock, and a control event (hang-up, transfer outcome, goodbye)
        must not be logged before what the session already logged. Call time never runs backwards."""
        events = getattr(session, "events", None) or []
        last = 0.0
        for ev in events[-20:]:
            try:
                last = max(last, float(ev.get("t", 0.0)))
            except (TypeError, ValueError):
                pass
        self._last_t = max(float(t), last, self._last_t)
        return self._last_t

    def _job(self, job) -> None:
        if isinstance(job, Create):
            try:
                self.session = (self._factory(self.call_id, self.channel) if job.speech
                                else self._factory(self.call_id, self.channel, speech=False))
            except Exception as exc:
                log.exception("call %s: session could not be created", self.call_id)
                self.failed = f"session: {exc}"
                self._ended_sent = True
                self._signal(self._ivr_hung_up)
            return
        session = self.session
        if session is None:
            return
        try:
            if isinstance(job, Read):
                pcm = np.asarray(session.ivr_audio(FRAME_SAMPLES, job.t), dtype=np.int16)
                self._speaking = bool(np.any(pcm))
                self.out.append((self._encode(pcm), self._speaking))
                self._n_done += 1
            elif isinstance(job, Audio):
                samples = self._decode(job.data)
                if self._pending.size:
                    samples = np.concatenate([self._pending, samples])
                n = samples.size // FRAME_SAMPLES * FRAME_SAMPLES
                # the payload ended when it arrived: t of each frame's first sample counts back from there
                t0 = job.t - samples.size / 8000
                for i in range(0, n, FRAME_SAMPLES):
                    session.feed_audio(samples[i : i + FRAME_SAMPLES], max(0.0, t0 + i / 8000))
                self._pending = samples[n:]
            elif isinstance(job, DigitJob):
                session.feed_digit(job.digit, job.t)
            elif isinstance(job, Start):
                session.start(job.t)
            elif isinstance(job, TransferFailedJob):
                self._transfer_sent = False  # the dialogue may ask again
                if job.reason:
                    session.transfer_failed(self._after(session, job.t), job.reason)
                else:
                    session.transfer_failed(self._after(session, job.t))
            elif isinstance(job, Goodbye):
                fn = getattr(session, "goodbye", None)
                if fn is not None:
                    fn(self._after(session, job.t))
                else:  # no goodbye prompt in this session: hang up straight away
                    self._ended_sent = True
                    self._signal(self._ivr_hung_up)
            elif isinstance(job, Note):
                calllog = getattr(session, "calllog", None)
                if calllog is not None:
                    calllog.write({"t": self._after(session, job.t), "type": job.kind, **job.data})
                return
            elif isinstance(job, Hangup):
                if not getattr(session, "ended", False):
                    session.hangup(self._after(session, job.t))
                return
            else:
                raise TypeError(f"not a worker job: {job!r}")
            self._check(session)
        except Exception as exc:
            self._failed(session, exc)

    def _check(self, session) -> None:
        """Signal what the session decided: the IVR hung up, or wants the operator."""
        if session.ended:
            if not self._ended_sent:
                self._ended_sent = True
                self._signal(self._ivr_hung_up)
        elif session.transfer_to and not self._transfer_sent:
            self._transfer_sent = True
            context = transfer_context(list(getattr(session, "events", []) or []))
            if self.on_transfer is not None:
                self._signal(self.on_transfer, session.transfer_to, context)

    def _failed(self, session, exc: Exception) -> None:
        log.error("call %s: session failed", self.call_id, exc_info=exc)
        self.failed = f"session: {exc}"
        try:
            session.hangup(self.now())
        except Exception:
            log.exception("call %s: hangup after failure", self.call_id)
        if not self._ended_sent:
            self._ended_sent = True
            self._signal(self._ivr_hung_up)
