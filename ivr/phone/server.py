"""``ivr serve``: the phone hotline process — a SIP/RTP listener and an Asterisk AudioSocket listener.

Every confirmed call gets its own ``CallSession`` (the engine ``ivr call`` uses), owned by a
``SessionWorker`` whose jobs run on a small shared thread pool (ivr/phone/worker.py); the event loop only
moves bytes, paced by one ``MediaClock`` (ivr/phone/clock.py). Who may call is decided in
ivr/phone/admission.py. Nothing imports this module but the command (ivr/cli/serve.py) and the tests.

Shutdown (SIGTERM, Ctrl-C): new calls are refused (SIP 503, OPTIONS 503 so a load balancer stops sending,
AudioSocket connections closed), calls in progress get ``grace`` seconds to finish, then each is told
goodbye and hung up (BYE / AudioSocket hangup). Every wait is for a signal (the last call ended, a call's
goodbye played out, the BYEs answered), bounded by its timeout: with no call up it takes a moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr.phone.admission import AllowList, CallLimiter, SpeechAdmission
from ivr.phone.worker import SessionFactory, SessionWorker, default_pool

log = logging.getLogger("ivr.phone.server")


@dataclass
class ServeOptions:
    sip: tuple[str, int] | None = ("127.0.0.1", 5060)
    audiosocket: tuple[str, int] | None = ("127.0.0.1", 9092)
    max_calls: int = 50
    max_pending: int = 40  # INVITEs not yet ACKed + AudioSocket connections without a UUID, in all
    max_pending_per_source: int = 20  # ... and from one source address
    uuid_timeout: float = 3.0  # an AudioSocket connection that sends no UUID for this long is closed
    media_networks: list[str] = field(default_factory=list)  # RTP may go there at once (an RTP proxy)
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
    max_decode_lag: float = 1.0  # speech decoding this far behind (s): new calls get keys only, or a 503
    when_busy: str = "keys"  # "keys" | "refuse"


class PhoneServer:
    """Both listeners, one call limit, one media clock; ``shutdown`` drains them gracefully."""

    def __init__(self, options: ServeOptions, factory: SessionFactory):
        self.options = options
        self.factory = factory
        self.limiter = CallLimiter(max_calls=options.max_calls, max_pending=options.max_pending,
                                   max_pending_per_source=options.max_pending_per_source)
        self.allow = AllowList.parse(options.allow)
        self.admission = SpeechAdmission(max_lag=options.max_decode_lag, when_busy=options.when_busy,
                                         lag=lambda: default_pool().decode_lag())
        self.sip = None
        self.audiosocket = None
        self.clock = None
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        from ivr.phone.audiosocket import AudioSocketServer
        from ivr.phone.clock import MediaClock
        from ivr.phone.sip.server import SipServer, SipSettings

        opts = self.options
        self._idle = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.limiter.changed = lambda: loop.call_soon(self._check_idle)  # once the call's clean-up is done
        self.clock = MediaClock()
        if opts.sip:
            settings = SipSettings(host=opts.sip[0], port=opts.sip[1], rtp_ports=opts.rtp_ports, ring=opts.ring,
                                   operator_uri=opts.operator_uri, t1=opts.t1, t2=opts.t2,
                                   media_timeout=opts.media_timeout, public_ip=opts.public_ip,
                                   media_networks=AllowList.parse(opts.media_networks, loopback=False,
                                                                  what="media_networks"))
            self.sip = SipServer(settings, self.factory, self.limiter, self.allow, self.clock,
                                 admission=self.admission)
            await self.sip.start()
        if opts.audiosocket:
            self.audiosocket = AudioSocketServer(opts.audiosocket[0], opts.audiosocket[1], self.factory,
                                                 self.limiter, self.allow, self.clock,
                                                 idle_timeout=opts.media_timeout,
                                                 uuid_timeout=opts.uuid_timeout, admission=self.admission)
            await self.audiosocket.start()

    def addresses(self) -> dict[str, str]:
        out = {}
        if self.sip:
            out["sip"] = f"{self.options.sip[0]}:{self.sip.port}"
        if self.audiosocket:
            out["audiosocket"] = f"{self.options.audiosocket[0]}:{self.audiosocket.port}"
        return out

    def active(self) -> int:
        """Calls in progress or not yet confirmed, on both listeners."""
        n = len(self.sip.active_calls()) if self.sip else 0
        return n + (self.audiosocket.active() if self.audiosocket else 0)

    def _check_idle(self) -> None:
        if self._idle is not None and self.active() == 0:
            self._idle.set()

    async def shutdown(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls finish within ``grace`` s, then goodbye + hang up, then close."""
        grace = self.options.grace if grace is None else grace
        self.limiter.draining = True
        if self.audiosocket:
            self.audiosocket.stop_listening()
        if self.active():
            self._idle.clear()
            self._check_idle()
            await _wait_for(self._idle.wait(), grace)
        if self.active():
            log.info("shutting down: %d call(s) still in progress, saying goodbye", self.active())
            workers = self._workers()
            for worker in workers:
                if worker.started:
                    worker.goodbye()
            if workers:
                await asyncio.wait([w.drained for w in workers], timeout=self.options.goodbye)
            if self.sip:
                self.sip.hang_up_all("service shutting down")
            if self.audiosocket:
                self.audiosocket.hang_up_all()
        if self.sip:  # let the BYEs get their answers
            await _wait_for(self.sip.requests_done(), 8 * self.options.t1)
        finished = [w.finished for w in self._workers()] + self._ended_workers
        if finished:  # every session told the call is over and its log closed
            await asyncio.wait(finished, timeout=5.0)
        if self.sip:
            self.sip.close()
        if self.audiosocket:
            await self.audiosocket.close()
        if self.clock:
            p50, p99, worst = self.clock.lateness_ms()
            log.info("media clock: %d ticks, %d skipped; tick lateness p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                     self.clock.ticks, self.clock.skipped, p50, p99, worst)
            await self.clock.close()

    @property
    def _ended_workers(self) -> list[asyncio.Future]:
        """Sessions of calls already over that are still being let go (their log being closed)."""
        out = []
        for srv in (self.sip, self.audiosocket):
            if srv is not None:
                out += [f for f in srv.closing if not f.done()]
        return out

    def _workers(self) -> list[SessionWorker]:
        out = []
        if self.sip:
            out += [c.worker for c in self.sip.calls.values() if c.worker]
        if self.audiosocket:
            out += [w for w, _ in self.audiosocket.workers.values()]
        return out


async def _wait_for(awaitable, timeout: float) -> None:
    try:
        await asyncio.wait_for(awaitable, max(0.0, timeout))
    except TimeoutError:
        pass


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
    uv = _uvloop()

    async def main() -> int:
        server = PhoneServer(options, factory)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        log.info("event loop: %s", f"uvloop {uv.__version__}" if uv is not None else "asyncio (uvloop is not installed)")
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

    return asyncio.run(main()) if uv is None else uv.run(main())


def _uvloop():
    """uvloop (libuv) runs the server's event loop when installed: its datagram and timer paths cost a
    fraction of the standard loop's per packet, and the loop handles every RTP packet of every call."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop
