"""The threads that run the calls' sessions, and the owner of one call's session (``SessionWorker``).

Speech decoding is CPU heavy and must stay off the event loop, and a ``CallSession`` allows one thread at a
time: every session method of a call runs on a small shared ``WorkerPool``, in order, one job at a time.
The event loop only moves bytes: at each 20 ms media tick it sends the frame the worker prepared ahead.

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
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("ivr.phone.worker")

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
PREFETCH = 3  # frames prepared ahead of the clock (60 ms)

SessionFactory = Callable[[str, str], Any]  # (call_id, channel) -> CallSession


class WorkerPool:
    """A few threads that run the calls' session jobs; each call's jobs run in order, one at a time.

    One thread per call would have every call thread compete with the event loop for the interpreter
    lock at every 20 ms tick; with a small pool the loop waits for at most a few of them.
    """

    def __init__(self, threads: int | None = None, batch: int = 8):
        self.size = threads or max(2, min(4, os.cpu_count() or 2))
        self.batch = batch  # jobs of one call run before the thread moves on (fairness)
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"call-worker-{i}", daemon=True)
                         for i in range(self.size)]
        for thread in self._threads:
            thread.start()

    def schedule(self, worker: SessionWorker) -> None:
        self._ready.put(worker)

    def _run(self) -> None:
        while True:
            worker = self._ready.get()
            if worker is None:
                return
            worker._run_some(self.batch)

    def close(self) -> None:
        for _ in self._threads:
            self._ready.put(None)


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
    """Owns one call's session: every session method runs on a pool thread, in order, one at a time.

    Created on the event loop, once the call is confirmed. The loop calls the entry points (start, feed,
    digit, pull, hangup ...). ``encode``: int16 frame -> bytes to send (G.711 for RTP, raw little-endian
    for AudioSocket). ``decode``: received bytes -> int16 samples.
    """

    def __init__(self, factory: SessionFactory, call_id: str, channel: str,
                 encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray],
                 pool: WorkerPool | None = None, *, on_drained: Callable[[], None] | None = None,
                 on_transfer: Callable[[str, dict], None] | None = None):
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
        self._jobs: deque = deque()
        self._lock = threading.Lock()
        self._scheduled = False
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
        self._put(("create",))

    def _put(self, job) -> None:
        with self._lock:
            if self._closed:
                return
            self._jobs.append(job)
            if self._scheduled:
                return
            self._scheduled = True
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
        self._put(("start", 0.0))

    def feed(self, data: bytes) -> None:
        self._put(("audio", data, self.now()))

    def digit(self, key: str) -> None:
        self._put(("digit", key, self.now()))

    def transfer_failed(self, reason: str = "") -> None:
        self._put(("transfer_failed", self.now(), reason))

    def goodbye(self) -> None:
        self._put(("goodbye", self.now()))

    def note(self, kind: str, **data) -> None:
        """A record of the channel's (e.g. a transfer's outcome) for the call log, in call time."""
        self._put(("note", self.now(), kind, data))

    def hangup(self) -> None:
        """The call is over (caller hung up, or torn down): the session is told (log flushed), then let go.
        Frames still prepared are dropped: nobody will send them."""
        self.out.clear()
        self._put(("hangup", self.now()))
        self._put(None)
        self._mark_drained(tell=False)

    def stop(self) -> None:
        self.out.clear()
        self._put(None)
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
            while (ahead := len(self.out) + self._n_requested - self._n_done) < PREFETCH:
                self._n_requested = next(self._requested)
                # t of the frame's first sample: after the frames already prepared or being prepared
                self._put(("read", now + ahead * FRAME_SAMPLES / 8000))
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
    def _run_some(self, limit: int) -> None:
        for _ in range(limit):
            with self._lock:
                if not self._jobs:
                    self._scheduled = False
                    return
                job = self._jobs.popleft()
            if job is None:
                with self._lock:
                    self._closed = True
                    self._jobs.clear()
                    self._scheduled = False
                self.session = None  # nothing of the call is kept
                self._pending = np.zeros(0, dtype=np.int16)
                self._signal(self._finished)
                return
            self._job(job)
        self._pool.schedule(self)  # more to do: back in the line behind the other calls

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
        kind = job[0]
        if kind == "create":
            try:
                self.session = self._factory(self.call_id, self.channel)
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
            if kind == "read":
                pcm = np.asarray(session.ivr_audio(FRAME_SAMPLES, job[1]), dtype=np.int16)
                self.out.append((self._encode(pcm), bool(np.any(pcm))))
                self._n_done += 1
            elif kind == "audio":
                samples = self._decode(job[1])
                if self._pending.size:
                    samples = np.concatenate([self._pending, samples])
                n = samples.size // FRAME_SAMPLES * FRAME_SAMPLES
                # the payload ended when it arrived: t of each frame's first sample counts back from there
                t0 = job[2] - samples.size / 8000
                for i in range(0, n, FRAME_SAMPLES):
                    session.feed_audio(samples[i : i + FRAME_SAMPLES], max(0.0, t0 + i / 8000))
                self._pending = samples[n:]
            elif kind == "digit":
                session.feed_digit(job[1], job[2])
            elif kind == "start":
                session.start(job[1])
            elif kind == "transfer_failed":
                self._transfer_sent = False  # the dialogue may ask again
                if job[2]:
                    session.transfer_failed(self._after(session, job[1]), job[2])
                else:
                    session.transfer_failed(self._after(session, job[1]))
            elif kind == "goodbye":
                fn = getattr(session, "goodbye", None)
                if fn is not None:
                    fn(self._after(session, job[1]))
                else:  # no goodbye prompt in this session: hang up straight away
                    self._ended_sent = True
                    self._signal(self._ivr_hung_up)
            elif kind == "note":
                calllog = getattr(session, "calllog", None)
                if calllog is not None:
                    calllog.write({"t": self._after(session, job[1]), "type": job[2], **job[3]})
                return
            elif kind == "hangup":
                if not getattr(session, "ended", False):
                    session.hangup(self._after(session, job[1]))
                return
            if session.ended:
                if not self._ended_sent:
                    self._ended_sent = True
                    self._signal(self._ivr_hung_up)
            elif session.transfer_to and not self._transfer_sent:
                self._transfer_sent = True
                context = transfer_context(list(getattr(session, "events", []) or []))
                if self.on_transfer is not None:
                    self._signal(self.on_transfer, session.transfer_to, context)
        except Exception as exc:
            log.exception("call %s: session failed", self.call_id)
            self.failed = f"session: {exc}"
            try:
                session.hangup(self.now())
            except Exception:
                log.exception("call %s: hangup after failure", self.call_id)
            if not self._ended_sent:
                self._ended_sent = True
                self._signal(self._ivr_hung_up)
