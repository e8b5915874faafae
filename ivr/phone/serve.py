"""``ivr serve``: the phone hotline process — a SIP/RTP listener and an Asterisk AudioSocket listener.

Every call gets its own ``CallSession`` (the engine ``ivr call`` uses), owned by a ``SessionWorker``: one
thread per call on which every session method runs, in order (speech decoding is CPU heavy and must stay
off the event loop; the contract allows one thread at a time per session). The event loop only moves
bytes: at each 20 ms tick of the shared ``MediaClock`` it sends the frame the worker prepared in advance.

Shutdown (SIGTERM, Ctrl-C): new calls are refused (SIP 503, AudioSocket connections closed), calls in
progress get ``grace`` seconds to finish, then each is told goodbye and hung up (BYE / AudioSocket hangup).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("ivr.phone.serve")

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
PREFETCH = 3  # frames prepared ahead of the clock (60 ms)

SessionFactory = Callable[[str, str], Any]  # (call_id, channel) -> CallSession


class WorkerPool:
    """A few threads that run the calls' session jobs; each call's jobs run in order, one at a time.

    One thread per call would have every call thread compete with the event loop for the interpreter
    lock at every 20 ms tick; with a small pool the loop waits for at most a few of them.
    """

    def __init__(self, threads: int | None = None, batch: int = 8):
        import os

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


class SessionWorker:
    """Owns one call's session: every session method runs on a pool thread, in order, one at a time.

    The event loop calls the thread-safe entry points (start, feed, digit, pull, hangup ...).
    ``encode``: int16 frame -> bytes to send (G.711 for RTP, raw little-endian for AudioSocket).
    ``decode``: received bytes -> int16 samples.
    """

    def __init__(self, factory: SessionFactory, call_id: str, channel: str,
                 encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray],
                 pool: WorkerPool | None = None):
        self.call_id = call_id
        self.channel = channel
        self._factory = factory
        self._encode = encode
        self._decode = decode
        self._pool = pool or default_pool()
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
        self.ended = False  # the IVR hung up (session.ended)
        self.transfer_to: str | None = None
        self.failed: str | None = None
        self.underruns = 0
        self.done = threading.Event()
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
        self.transfer_to = None
        self._put(("transfer_failed", self.now(), reason))

    def goodbye(self) -> None:
        self._put(("goodbye", self.now()))

    def hangup(self) -> None:
        """The caller hung up (or the call is torn down): the session is told (log flushed), then released."""
        self._put(("hangup", self.now()))
        self._put(None)

    def stop(self) -> None:
        self._put(None)

    def pull(self) -> tuple[bytes, bool] | None:
        """The next prepared frame (payload, is_speech), or None when the worker fell behind."""
        frame = self.out.popleft() if self.out else None
        if frame is None and self.started:
            self.underruns += 1
        if self.started and not self.ended:
            now = self.now()
            while (ahead := len(self.out) + self._n_requested - self._n_done) < PREFETCH:
                self._n_requested = next(self._requested)
                # t of the frame's first sample: after the frames already prepared or being prepared
                self._put(("read", now + ahead * FRAME_SAMPLES / 8000))
        return frame

    @property
    def drained(self) -> bool:
        """The IVR hung up and every frame it produced has been sent."""
        return self.ended and not self.out

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
                self.done.set()
                return
            self._job(job)
        self._pool.schedule(self)  # more to do: back in the line behind the other calls

    def _job(self, job) -> None:
        kind = job[0]
        if kind == "create":
            try:
                self.session = self._factory(self.call_id, self.channel)
            except Exception as exc:
                log.exception("call %s: session could not be created", self.call_id)
                self.failed = f"session: {exc}"
                self.ended = True
            return
        session = self.session
        if session is None:
            return
        try:
            if kind == "read":
                pcm = np.asarray(session.read_audio(FRAME_SAMPLES, job[1]), dtype=np.int16)
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
                if job[2]:
                    session.transfer_failed(job[1], job[2])
                else:
                    session.transfer_failed(job[1])
            elif kind == "goodbye":
                fn = getattr(session, "goodbye", None)
                if fn is not None:
                    fn(job[1])
                else:  # no goodbye prompt in this session: hang up straight away
                    self.ended = True
            elif kind == "hangup":
                if not getattr(session, "ended", False):
                    session.hangup(job[1])
            if session.ended:
                self.ended = True
            elif session.transfer_to and self.transfer_to is None:
                self.transfer_to = session.transfer_to
        except Exception as exc:
            log.exception("call %s: session failed", self.call_id)
            self.failed = f"session: {exc}"
            self.ended = True
            try:
                session.hangup(self.now())
            except Exception:
                log.exception("call %s: hangup after failure", self.call_id)


@dataclass
class CallLimiter:
    """Calls in progress across both listeners; ``draining`` refuses new ones."""

    max_calls: int = 50
    active: int = 0
    draining: bool = False
    total: int = 0

    def try_acquire(self) -> str | None:
        """None when a call may start (and count it), else why not: "draining" | "busy"."""
        if self.draining:
            return "draining"
        if self.active >= self.max_calls:
            return "busy"
        self.active += 1
        self.total += 1
        return None

    def release(self) -> None:
        self.active = max(0, self.active - 1)


@dataclass
class AllowList:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    @classmethod
    def parse(cls, items: list[str] | None) -> AllowList:
        from ivr.errors import IvrError

        nets = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        for item in items or []:
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise IvrError(f"--allow {item!r} is not an address or CIDR network",
                               "write it like 192.0.2.10 or 10.0.0.0/8") from None
        return cls(nets)

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)


@dataclass
class ServeOptions:
    sip: tuple[str, int] | None = ("127.0.0.1", 5060)
    audiosocket: tuple[str, int] | None = ("127.0.0.1", 9092)
    max_calls: int = 50
    rtp_ports: tuple[int, int] = (20000, 20999)
    allow: list[str] = field(default_factory=list)
    operator_uri: str | None = None
    ring: float = 0.3
    grace: float = 30.0  # seconds calls in progress may go on after SIGTERM
    goodbye: float = 10.0  # seconds the goodbye prompt may take before the BYE
    t1: float = 0.5
    t2: float = 4.0
    media_timeout: float = 60.0
    public_ip: str | None = None


class PhoneServer:
    """Both listeners, one call limit, one media clock; ``shutdown`` drains them gracefully."""

    def __init__(self, options: ServeOptions, factory: SessionFactory):
        self.options = options
        self.factory = factory
        self.limiter = CallLimiter(max_calls=options.max_calls)
        self.allow = AllowList.parse(options.allow)
        self.sip = None
        self.audiosocket = None
        self.clock = None

    async def start(self) -> None:
        from ivr.phone.audiosocket import AudioSocketServer
        from ivr.phone.rtp import MediaClock
        from ivr.phone.sip.server import SipServer, SipSettings

        opts = self.options
        self.clock = MediaClock()
        if opts.sip:
            settings = SipSettings(host=opts.sip[0], port=opts.sip[1], rtp_ports=opts.rtp_ports, ring=opts.ring,
                                   operator_uri=opts.operator_uri, t1=opts.t1, t2=opts.t2,
                                   media_timeout=opts.media_timeout, public_ip=opts.public_ip)
            self.sip = SipServer(settings, self.factory, self.limiter, self.allow, self.clock)
            await self.sip.start()
        if opts.audiosocket:
            self.audiosocket = AudioSocketServer(opts.audiosocket[0], opts.audiosocket[1], self.factory,
                                                 self.limiter, self.allow, self.clock,
                                                 idle_timeout=opts.media_timeout)
            await self.audiosocket.start()

    def addresses(self) -> dict[str, str]:
        out = {}
        if self.sip:
            out["sip"] = f"{self.options.sip[0]}:{self.sip.port}"
        if self.audiosocket:
            out["audiosocket"] = f"{self.options.audiosocket[0]}:{self.audiosocket.port}"
        return out

    def active(self) -> int:
        n = len(self.sip.active_calls()) if self.sip else 0
        return n + (self.audiosocket.active() if self.audiosocket else 0)

    async def shutdown(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls finish within ``grace`` s, then goodbye + hang up, then close."""
        grace = self.options.grace if grace is None else grace
        self.limiter.draining = True
        if self.audiosocket:
            self.audiosocket.stop_listening()
        await self._wait(lambda: self.active() == 0, grace)
        if self.active():
            log.info("shutting down: %d call(s) still in progress, saying goodbye", self.active())
            workers = []
            if self.sip:
                workers += [c.worker for c in self.sip.active_calls() if c.worker and c.worker.started]
            if self.audiosocket:
                workers += [w for w, _ in self.audiosocket.workers.values()]
            for worker in workers:
                worker.goodbye()
            await self._wait(lambda: all(w.drained for w in workers), self.options.goodbye)
            if self.sip:
                self.sip.hang_up_all("service shutting down")
            if self.audiosocket:
                self.audiosocket.hang_up_all()
        if self.sip:  # let the BYEs get their answers
            await self._wait(lambda: self.sip.pending_requests() == 0, 8 * self.options.t1)
        await asyncio.sleep(0.05)
        for worker in self._all_workers():
            await asyncio.get_running_loop().run_in_executor(None, worker.done.wait, 5.0)
        if self.sip:
            self.sip.close()
        if self.clock:
            p50, p99, worst = self.clock.lateness_ms()
            log.info("media clock: %d ticks, %d skipped; tick lateness p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                     self.clock.ticks, self.clock.skipped, p50, p99, worst)
            await self.clock.close()

    def _all_workers(self) -> list[SessionWorker]:
        out = []
        if self.sip:
            out += [c.worker for c in self.sip.calls.values() if c.worker]
        if self.audiosocket:
            out += [w for w, _ in self.audiosocket.workers.values()]
        return out

    @staticmethod
    async def _wait(cond: Callable[[], bool], timeout: float) -> None:
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            await asyncio.sleep(0.05)


def run(options: ServeOptions, factory: SessionFactory, ready: Callable[[dict[str, str]], None] | None = None,
        health=None) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully. Returns the exit code. ``health``
    (ivr.phone.metrics.Health) is told when the server starts draining."""
    import gc
    import signal

    # Everything loaded so far (FAQ, matcher, prompts, speech cache, model) lives as long as the process:
    # keep it out of the collector's full passes, which would otherwise stall the packet clock.
    gc.collect()
    gc.freeze()

    async def main() -> int:
        server = PhoneServer(options, factory)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready:
            ready(server.addresses())
        await stop.wait()
        if health is not None:
            health.draining = True  # /healthz says 503 from now on
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.shutdown()
        return 0

    return asyncio.run(main())
