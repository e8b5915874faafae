"""SIP user agent server over UDP (RFC 3261) with one RTP stream per call.

What it does, per method:
- INVITE (new): 100 Trying, 180 Ringing, then after ``ring`` seconds 200 OK with the SDP answer; the 200 is
  retransmitted from T1 doubling up to T2 until the ACK; no ACK within 64*T1 (timer H) -> BYE and clean-up.
  488 when no common codec or an unusable offer, 486 when the call limit is reached, 503 while shutting down.
- INVITE (re-INVITE in a dialog): 200 OK with an SDP answer to the new offer (hold: ``a=sendonly`` is
  answered ``a=recvonly``, ``a=inactive`` with ``a=inactive``; the ``o=`` version goes up when it changes).
- ACK: confirms the call; only now does the call get its slot, its session (greeting) and its log.
- BYE: 200 OK, the session is told the caller hung up. The IVR's own BYE carries the dialog's tags, next
  CSeq and Route set and is retransmitted until a final response; the dialog lives on until then, so a
  BYE from the caller that crosses ours is answered 200 (not 481).
- Requests inside a dialog (ACK, BYE, INFO, NOTIFY, re-INVITE) are matched by Call-ID *and* both tags
  (RFC 3261 12.2.2): a wrong From or To tag gets 481 and changes nothing.
- CANCEL before the answer: 200 for the CANCEL and 487 for the INVITE.
- OPTIONS: 200 with Allow/Accept; 503 with Retry-After while draining (a load balancer's probe). INFO with application/dtmf-relay: a key. NOTIFY: REFER progress.
- Operator transfer: REFER (RFC 3515) with Refer-To: the operator URI; 202 then a NOTIFY whose sipfrag says
  2xx -> BYE; a refusal, a failure or no operator configured -> ``session.transfer_failed``.
- Anything else: 501. A datagram that does not parse is answered 400 when its request line and Via could be
  read (a bad CSeq, a Via port out of range, a header that must appear once appearing twice), otherwise
  dropped. A request whose top Via names a transport other than UDP gets 400. Responses go to the packet's
  real source address (RFC 3261 18.2.2, RFC 3581); ``received``/``rport`` values the sender wrote are ignored.
- Requests from addresses outside the allow list are dropped without an answer.
- Unconfirmed calls (INVITE answered, no ACK yet) are bounded in all and per source address, apart from
  the call limit; they hold an RTP port but no session, no log file and no call slot.

Media (RTP) goes to the SDP address at once only when it is the signalling source's address or inside
``media_networks`` (an RTP proxy); any other address gets RTP only after RTP came from it (symmetric RTP
latching, like Asterisk's strictrtp/comedia), so an offer cannot aim the IVR's audio at a third party.
Inbound RTP is bounded per call in rate and size: the excess is dropped and counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass

import numpy as np

from ivr.phone import rtp
from ivr.phone.admission import AllowList, CallLimiter
from ivr.phone.clock import MediaClock
from ivr.phone.sip import sdp
from ivr.phone.sip.dialog import T1, T2, Dialog, new_tag, response_address, stamp_via
from ivr.phone.sip.message import SipMessage, SipParseError, make_response, parse, parse_via
from ivr.phone.worker import SessionFactory, SessionWorker

log = logging.getLogger("ivr.phone.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
RTP_RATE = 150.0  # inbound RTP packets per second one call may send (audio 50/s plus key events)
RTP_BURST = 50.0  # ... in bursts of up to this many
RTP_MAX_SIZE = 1500  # bytes in one RTP packet (G.711 at 20 ms: 172)
USER_AGENT = "ivr-smartca"


@dataclass
class SipSettings:
    host: str = "127.0.0.1"
    port: int = 5060
    rtp_ports: tuple[int, int] = (20000, 20999)
    ring: float = 0.3  # seconds between 180 Ringing and 200 OK
    operator_uri: str | None = None
    t1: float = T1
    t2: float = T2
    transfer_timeout: float = 30.0
    media_timeout: float = 60.0  # no RTP at all from the caller for this long -> BYE
    public_ip: str | None = None  # address put in SDP/Contact (default: the bound address)
    media_networks: AllowList | None = None  # RTP may be sent there before any arrives (an RTP proxy)


class ClientTransaction:
    """A non-INVITE request we sent (BYE, REFER): retransmitted T1, 2T1 ... T2 until a final response."""

    def __init__(self, server: SipServer, msg: SipMessage, dest: tuple[str, int], on_final):
        self.server = server
        self.msg = msg
        self.data = msg.to_bytes()
        self.dest = dest
        self.on_final = on_final
        self.branch = parse_via(msg.get("Via") or "").branch
        self.interval = server.settings.t1
        self.deadline = time.monotonic() + 64 * server.settings.t1
        self.done = False
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.server.client_txns[self.branch] = self
        self.server.txns_idle.clear()
        self.server.send(self.data, self.dest)
        self._arm()

    def _arm(self) -> None:
        self._handle = self.server.loop.call_later(self.interval, self._retransmit)

    def _retransmit(self) -> None:
        if self.done:
            return
        if time.monotonic() >= self.deadline:  # timer F
            self.finish(None)
            return
        self.server.send(self.data, self.dest)
        self.interval = min(self.interval * 2, self.server.settings.t2)
        self._arm()

    def response(self, resp: SipMessage) -> None:
        if resp.status and resp.status >= 200:
            self.finish(resp)
        elif self._handle:  # provisional: keep retransmitting at T2 (RFC 3261 17.1.2.2)
            self.interval = self.server.settings.t2

    def finish(self, resp: SipMessage | None) -> None:
        if self.done:
            return
        self.done = True
        if self._handle:
            self._handle.cancel()
        self.server.client_txns.pop(self.branch, None)
        if not self.server.client_txns:
            self.server.txns_idle.set()
        try:
            self.on_final(resp)
        except Exception:
            log.exception("handling the final response to %s", self.msg.method)


class RtpEndpoint(asyncio.DatagramProtocol):
    """The call's RTP socket: receives audio and RFC 4733 events, sends a packet at every clock tick."""

    def __init__(self, call: SipCall):
        self.call = call
        self.transport: asyncio.DatagramTransport | None = None
        self.events = rtp.TelephoneEvents()
        self.sender: rtp.RtpSender | None = None
        self.remote: tuple[str, int] | None = None
        self.latch = False  # True: take the source of the first packet as the remote address
        self.latch_from: set[str] = set()  # addresses the first packet may come from
        self.silence = b""
        self.received = 0
        self.ignored = 0
        self.dropped = 0  # over the rate or size bound
        self._tokens = RTP_BURST
        self._t_tokens = time.monotonic()
        self.last_rx = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def configure(self, neg: sdp.Negotiated) -> None:
        if self.sender is None or self.sender.payload_type != neg.payload_type:
            self.sender = rtp.RtpSender(neg.payload_type)
        self.silence = rtp.encode(np.zeros(rtp.FRAME_SAMPLES, dtype=np.int16), neg.codec)
        target = (neg.remote_address, neg.remote_port) if neg.remote_routable else None
        if target is not None and target == self.remote:
            return  # the same address as before (a re-INVITE for hold, a session refresh)
        server = self.call.server
        trusted = server.settings.media_networks
        if target is not None and (same_host(target[0], self.call.source[0])
                                   or (trusted is not None and trusted.allows(target[0]))):
            self.remote = target
            self.latch = False
        else:  # elsewhere: nothing goes there before RTP comes from there (symmetric RTP latching)
            self.remote = None
            self.latch = True
            self.latch_from = {self.call.source[0]} | ({target[0]} if target else set())

    def datagram_received(self, data: bytes, addr) -> None:
        addr = (addr[0], addr[1])
        if self.latch and self.remote is None:
            trusted = self.call.server.settings.media_networks
            if not (any(same_host(addr[0], h) for h in self.latch_from)
                    or (trusted is not None and trusted.allows(addr[0]))):
                self.ignored += 1
                return
            self.remote = addr
            self.latch = False
        if addr != self.remote:
            self.ignored += 1
            return
        now = time.monotonic()  # token bucket: a flood costs a comparison per packet, not a decode
        self._tokens = min(RTP_BURST, self._tokens + (now - self._t_tokens) * RTP_RATE)
        self._t_tokens = now
        if len(data) > RTP_MAX_SIZE or self._tokens < 1.0:
            self.dropped += 1
            return
        self._tokens -= 1.0
        try:
            packet = rtp.RtpPacket.parse(data)
        except rtp.RtpError:
            self.ignored += 1
            return
        self.received += 1
        self.last_rx = time.monotonic()
        call = self.call
        neg = call.negotiated
        worker = call.worker
        if worker is None or neg is None or not worker.started:
            return
        if neg.event_pt is not None and packet.payload_type == neg.event_pt:
            key = self.events.feed(packet)
            if key:
                worker.digit(key)
        elif packet.payload_type == neg.payload_type:
            worker.feed(packet.payload)

    def tick(self, now: float, skipped: int) -> None:
        call = self.call
        worker = call.worker
        if worker is None or self.sender is None or self.transport is None:
            return
        if skipped:
            self.sender.skip(skipped * rtp.FRAME_SAMPLES)
        frame = worker.pull()
        payload, speech = frame if frame else (self.silence, False)
        if self.remote is not None and call.negotiated and call.negotiated.direction in ("sendrecv", "sendonly"):
            self.transport.sendto(self.sender.packet(payload, rtp.FRAME_SAMPLES, speech), self.remote)
        else:  # nothing sent (on hold, or not latched yet): the stream's clock still advances
            self.sender.skip(rtp.FRAME_SAMPLES)
        call.after_tick(now)

    def close(self) -> None:
        if self.transport:
            self.transport.close()


class SipCall:
    def __init__(self, server: SipServer, invite: SipMessage, source: tuple[str, int]):
        self.server = server
        self.invite = invite
        self.source = source
        self.call_id = invite.call_id
        self.branch = parse_via(invite.get("Via") or "").branch
        self.local_tag = new_tag()
        self.dialog = Dialog.from_invite(invite, self.local_tag)
        self.state = "ringing"  # ringing -> answered -> confirmed -> ending -> ended
        self.last_response: bytes | None = None
        self.negotiated: sdp.Negotiated | None = None
        self.answer_sdp = b""
        self.session_id = random.randrange(1, 2**31)
        self.rtp: RtpEndpoint | None = None
        self.rtp_port = 0
        self.worker: SessionWorker | None = None
        self.clock_token: int | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._retx_interval = server.settings.t1
        self.transfer_state: str | None = None  # None | "pending" | "accepted" | "done"
        self._transfer_timer: asyncio.TimerHandle | None = None
        self.end_reason = ""
        self.hangup_sent = False
        self.speech = True  # admission: False when the call was admitted keypad-first (decoding behind)
        self.pending = True  # holds a pending (unconfirmed) place in the limiter until ACK or the end
        self.has_slot = False  # holds a call slot (from the ACK on)
        self.sdp_version = 1

    # -- responses ---------------------------------------------------------------------------------
    def respond(self, status: int, body: bytes = b"", headers=None, *, store: bool = True) -> None:
        hdrs = [("Server", USER_AGENT)]
        if status > 100 and status < 300:
            hdrs.append(("Contact", self.server.contact))
        if status == 200:
            hdrs += [("Allow", ALLOW), ("Content-Type", "application/sdp")]
        hdrs += headers or []
        resp = make_response(self.invite, status, to_tag=self.local_tag, headers=hdrs, body=body)
        data = resp.to_bytes()
        if store:
            self.last_response = data
        self.server.send(data, response_address(self.invite, self.source))

    # -- lifecycle ---------------------------------------------------------------------------------
    def later(self, delay: float, fn, *args) -> None:
        self._timers.append(self.server.loop.call_later(delay, fn, *args))

    def answer(self) -> None:
        if self.state != "ringing":
            return
        self.state = "answered"
        self.respond(200, self.answer_sdp)
        self._retx_interval = self.server.settings.t1
        self.later(self._retx_interval, self._retransmit_200)
        self.later(64 * self.server.settings.t1, self._timer_h)

    def _retransmit_200(self) -> None:
        if self.state != "answered" or not self.last_response:
            return
        self.server.send(self.last_response, response_address(self.invite, self.source))
        self._retx_interval = min(self._retx_interval * 2, self.server.settings.t2)
        self.later(self._retx_interval, self._retransmit_200)

    def _timer_h(self) -> None:
        if self.state == "answered":
            log.info("call %s: no ACK for the 200 OK (timer H), hanging up", self.call_id)
            self.state = "confirmed"
            self.hang_up("no ACK")

    def confirmed(self) -> None:
        if self.state != "answered":
            return
        self.state = "confirmed"
        server = self.server
        self._release_pending()
        if server.limiter.try_acquire() is not None:
            log.info("call %s: no call slot free at the ACK, hanging up", self.call_id)
            self.hang_up("busy")
            return
        self.has_slot = True
        codec = self.negotiated.codec
        self.worker = SessionWorker(server.factory, self.call_id, "sip",
                                    lambda pcm: rtp.encode(pcm, codec), lambda data: rtp.decode(data, codec),
                                    on_drained=self._ivr_hung_up, on_transfer=self.start_transfer,
                                    speech=self.speech)
        self.worker.start()
        if self.rtp:
            self.rtp.last_rx = time.monotonic()
        self.clock_token = self.server.clock.subscribe(self.rtp.tick) if self.rtp else None

    def after_tick(self, now: float) -> None:
        """Checked at every media tick: silence from the caller (a caller on hold sends none: not counted)."""
        if (self.state == "confirmed" and self.rtp and self.negotiated
                and self.negotiated.direction in ("sendrecv", "recvonly")
                and now - self.rtp.last_rx > self.server.settings.media_timeout):
            self.hang_up("no media from the caller")

    def _ivr_hung_up(self) -> None:
        """The worker's signal: the IVR hung up and its last frame was sent."""
        self.hang_up(self.worker.failed if self.worker and self.worker.failed else "ivr hung up")

    def hang_up(self, reason: str) -> None:
        """The IVR ends the call: BYE (retransmitted until answered) and clean-up. The dialog is kept until
        the BYE is answered, so that a BYE from the caller crossing ours is answered 200."""
        if self.state in ("ending", "ended"):
            return
        self.end_reason = reason
        if self.state in ("confirmed", "answered"):
            bye = self.dialog.request("BYE", self.server.via_host, self.server.port, self.server.contact,
                                      [("User-Agent", USER_AGENT), ("Reason", f'SIP;cause=200;text="{reason}"')])
            self.hangup_sent = True
            self.release()
            self.state = "ending"
            ClientTransaction(self.server, bye, self.dialog.destination(self.source),
                              lambda r: self.cleanup(caller_hung_up=False)).start()
            return
        self.cleanup(caller_hung_up=False)

    def _release_pending(self) -> None:
        if self.pending:
            self.pending = False
            self.server.limiter.release_pending(self.source[0])

    def cleanup(self, caller_hung_up: bool) -> None:
        """The call is over: everything of it is released and the server forgets it."""
        if self.state == "ended":
            return
        self.release()
        self.state = "ended"
        self.server.forget(self)

    def release(self) -> None:
        """Media, session, timers and the call's places in the limiter: all let go (idempotent)."""
        if self.state in ("ending", "ended"):
            return
        if self.rtp and self.rtp.sender:
            log.info("call %s ended (%s): %d RTP packets sent, %d frames not ready in time, %d received, %d ignored, %d dropped",
                     self.call_id, self.end_reason or self.state, self.rtp.sender.sent,
                     self.worker.underruns if self.worker else 0, self.rtp.received, self.rtp.ignored,
                     self.rtp.dropped)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self.clock_token is not None:
            self.server.clock.unsubscribe(self.clock_token)
            self.clock_token = None
        if self.rtp:
            self.rtp.close()
            self.server.release_port(self.rtp_port)
        if self._transfer_timer:
            self._transfer_timer.cancel()
        if self.worker:
            if not self.worker.started:
                self.worker.stop()
            else:  # tells the session unless it hung up itself
                self.worker.hangup()
            closing = self.server.closing
            closing.add(self.worker.finished)
            self.worker.finished.add_done_callback(closing.discard)
            self.worker = None  # nothing of the call is kept once the session is let go
        self._release_pending()
        if self.has_slot:
            self.has_slot = False
            self.server.limiter.release()

    # -- transfer ----------------------------------------------------------------------------------
    def start_transfer(self, target: str, context: dict | None = None) -> None:
        """The worker's signal: the dialogue asks for the operator. REFER with what the caller asked."""
        if self.state != "confirmed" or self.transfer_state is not None or self.worker is None:
            return
        uri = self.server.settings.operator_uri
        if not uri:
            log.info("call %s: transfer asked but no operator URI configured", self.call_id)
            self.worker.transfer_failed("no operator URI configured (--operator-uri)")
            return
        self.transfer_state = "pending"
        self._transfer_timer = self.server.loop.call_later(
            self.server.settings.transfer_timeout, self.transfer_result, False, "no transfer result in time")
        headers = [("Refer-To", f"<{uri}>"), ("Referred-By", f"<{self.dialog.local_uri}>"),
                   ("User-Agent", USER_AGENT)]
        headers += context_headers(context or {})
        refer = self.dialog.request("REFER", self.server.via_host, self.server.port, self.server.contact, headers)
        self.worker.note("transfer_outcome", outcome="attempted", target=uri)

        def on_final(resp: SipMessage | None) -> None:
            if self.state != "confirmed" or self.transfer_state != "pending":
                return
            if resp is not None and 200 <= (resp.status or 0) < 300:
                self.transfer_state = "accepted"
                if self.worker:
                    self.worker.note("transfer_outcome", outcome="accepted", status=resp.status)
            else:
                self.transfer_result(False, f"REFER answered {resp.status if resp else 'never'}")

        ClientTransaction(self.server, refer, self.dialog.destination(self.source), on_final).start()

    def transfer_result(self, ok: bool, why: str) -> None:
        if self.transfer_state not in ("pending", "accepted"):
            return
        log.info("call %s: transfer %s (%s)", self.call_id, "done" if ok else "failed", why)
        if self._transfer_timer:
            self._transfer_timer.cancel()
            self._transfer_timer = None
        if ok:
            self.transfer_state = "done"
            if self.worker:
                self.worker.note("transfer_outcome", outcome="completed", detail=why)
            self.hang_up("transferred")
        else:
            self.transfer_state = None
            if self.worker:
                self.worker.note("transfer_outcome", outcome="failed", reason=why)
                self.worker.transfer_failed(why)


def context_headers(context: dict) -> list[tuple[str, str]]:
    """``X-IVR-*`` headers for the operator: what the caller asked (identity digits already masked)."""
    names = {"transcript": "X-IVR-Transcript", "entry": "X-IVR-Entry", "path": "X-IVR-Menu-Path"}
    out = []
    for key, name in names.items():
        value = context.get(key)
        if value:
            safe = "".join(c if c.isprintable() else " " for c in str(value)).strip()[:200]
            out.append((name, safe))
    return out


class SipServer(asyncio.DatagramProtocol):
    def __init__(self, settings: SipSettings, factory: SessionFactory, limiter: CallLimiter,
                 allow: AllowList, clock: MediaClock, *, admission=None):
        self.settings = settings
        self.admission = admission  # SpeechAdmission: speech for a new call only while decoding keeps up
        self.factory = factory
        self.limiter = limiter
        self.allow = allow
        self.clock = clock
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, SipCall] = {}
        self.client_txns: dict[str, ClientTransaction] = {}
        self.txns_idle = asyncio.Event()
        self.txns_idle.set()
        self.closing: set[asyncio.Future] = set()  # sessions of ended calls still being let go
        self.used_ports: set[int] = set()
        self.port = settings.port
        self.via_host = settings.public_ip or settings.host
        self.stats = {"received": 0, "dropped": 0, "bad": 0, "calls": 0}

    @property
    def contact(self) -> str:
        return f"<sip:ivr@{self._host_for_uri()}:{self.port}>"

    def _host_for_uri(self) -> str:
        host = self.via_host
        return f"[{host}]" if ":" in host else host

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.settings.host, self.settings.port), family=family)
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        if self.via_host in ("0.0.0.0", "::"):
            self.via_host = _default_ip()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    # -- dispatch ----------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr) -> None:
        source = (addr[0], addr[1])
        self.stats["received"] += 1
        if not self.allow.allows(source[0]):
            self.stats["dropped"] += 1
            return
        if not data.strip():
            return  # keep-alive (RFC 5626 CRLF)
        try:
            try:
                msg = parse(data)
            except SipParseError as exc:
                self.stats["bad"] += 1
                self._bad_request(exc, source)
                return
            if msg.is_request:
                via = stamp_via(msg, source)
                if via.transport != "UDP":
                    if msg.method != "ACK":
                        self.reply(msg, source, 400, [("Warning", f'399 ivr "Via transport {via.transport} '
                                                                  'is not served here: UDP only"')])
                    return
                self.handle_request(msg, source)
            else:
                self.handle_response(msg)
        except Exception:
            log.exception("request from %s could not be handled", source)
            self.stats["bad"] += 1

    def _bad_request(self, exc: SipParseError, source: tuple[str, int]) -> None:
        msg = exc.partial
        log.info("bad SIP message from %s: %s", source, exc.reason)
        if msg is None or not msg.is_request or msg.method == "ACK" or not msg.get("Via"):
            return
        try:
            stamp_via(msg, source)
            dest = response_address(msg, source)
        except ValueError:  # the Via itself is what is wrong: echoed as it came, answered to the source
            dest = source
        reason = "Bad Request"
        safe = "".join(c for c in exc.reason if 32 <= ord(c) < 127 and c != '"')[:100]
        resp = make_response(msg, 400, reason, to_tag=new_tag(),
                             headers=[("Server", USER_AGENT), ("Warning", f'399 ivr "{safe}"')])
        self.send(resp.to_bytes(), dest)

    def reply(self, req: SipMessage, source, status: int, headers=None, body: bytes = b"",
              to_tag: str | None = None) -> None:
        hdrs = [("Server", USER_AGENT)] + (headers or [])
        resp = make_response(req, status, to_tag=to_tag or new_tag(), headers=hdrs, body=body)
        self.send(resp.to_bytes(), response_address(req, source))

    def handle_request(self, msg: SipMessage, source: tuple[str, int]) -> None:
        method = msg.method
        if method == "INVITE":
            self.on_invite(msg, source)
            return
        if method == "CANCEL":
            self.on_cancel(msg, source, self.calls.get(msg.call_id))
            return
        call = self.find_dialog(msg)
        if method == "ACK":
            if call and call.state == "answered" and msg.cseq[0] == call.dialog.remote_cseq:
                call.confirmed()
            elif call and call.state == "rejected":
                call.cleanup(caller_hung_up=True)
        elif method == "BYE":
            if call is None or call.state in ("ringing",):
                self.reply(msg, source, 481)
                return
            self.reply(msg, source, 200, to_tag=call.local_tag)
            if call.state == "ending":  # our BYE crossed the caller's: the dialog ends when ours is answered
                return
            call.end_reason = "caller hung up"
            call.cleanup(caller_hung_up=True)
        elif method == "OPTIONS":
            if self.limiter.draining and call is None:  # tells a load balancer to stop sending calls here
                self.reply(msg, source, 503, [("Retry-After", "300")])
                return
            self.reply(msg, source, 200, [("Allow", ALLOW), ("Accept", "application/sdp"),
                                          ("Accept-Language", "vi")],
                       to_tag=call.local_tag if call else None)
        elif method == "INFO":
            self.on_info(msg, source, call)
        elif method == "NOTIFY":
            self.on_notify(msg, source, call)
        else:
            self.reply(msg, source, 501, [("Allow", ALLOW)])

    def on_invite(self, msg: SipMessage, source) -> None:
        to_tag = _tag(msg.get("To"))
        call = self.calls.get(msg.call_id)
        if (call is not None and call.branch == parse_via(msg.get("Via") or "").branch
                and (_tag(msg.get("From")) or "") == call.dialog.remote_tag):
            if call.last_response:  # retransmission
                self.send(call.last_response, response_address(msg, source))
            return
        if to_tag:
            self.on_reinvite(msg, source, self.find_dialog(msg))
            return
        if call is not None:
            self.reply(msg, source, 482)
            return
        speech = True
        if self.admission is not None:  # decoding is behind: keypad-first, or a 503 before answer
            verdict = self.admission.decide()
            if verdict == "refuse":
                self.stats["overloaded"] = self.stats.get("overloaded", 0) + 1
                self.reply(msg, source, 503, [("Retry-After", "5"),
                                              ("Warning", '399 ivr "speech recognition is overloaded"')])
                return
            speech = verdict == "speech"
        refusal = self.limiter.try_pending(source[0])
        if refusal == "draining":
            self.reply(msg, source, 503, [("Retry-After", "60")])
            return
        if refusal == "busy":
            self.reply(msg, source, 486)
            return
        acquired = True
        try:
            if msg.get("Require"):
                self.reply(msg, source, 420, [("Unsupported", msg.get("Require") or "")])
                return
            ctype = (msg.get("Content-Type") or "").split(";")[0].strip().lower()
            if not msg.body or ctype != "application/sdp":
                self.reply(msg, source, 488, [("Warning", '399 ivr "an SDP offer is required in the INVITE"')])
                return
            try:
                neg = sdp.negotiate(sdp.parse_offer(msg.body))
            except sdp.SdpError as exc:
                safe = str(exc).replace('"', "'")[:100]
                self.reply(msg, source, 488, [("Warning", f'304 ivr "{safe}"')])
                return
            if not self.reachable(neg):
                self.reply(msg, source, 488, [("Warning", '301 ivr "Incompatible network address format"')])
                return
            call = SipCall(self, msg, source)
            call.speech = speech
            call.negotiated = neg
            self.calls[call.call_id] = call
            acquired = False  # the call owns the pending place now; its clean-up releases it
            self.stats["calls"] += 1
            call.respond(100, store=False)
            self.loop.create_task(self._setup(call))
        finally:
            if acquired:
                self.limiter.release_pending(source[0])

    def reachable(self, neg: sdp.Negotiated) -> bool:
        """The offer's media address is of the family our RTP sockets speak (or unspecified: latching)."""
        try:
            ip = ipaddress.ip_address(neg.remote_address)
        except ValueError:
            return False
        if ip.is_unspecified:
            return True
        ipv6 = ":" in self.settings.host
        return ip.version == (6 if ipv6 else 4) or (ipv6 and ip.version == 4 and self.settings.host == "::")

    async def _setup(self, call: SipCall) -> None:
        try:
            port, endpoint = await self.open_rtp(call)
        except OSError:
            log.warning("call %s: no free RTP port in %s", call.call_id, self.settings.rtp_ports)
            call.respond(503, headers=[("Retry-After", "5")])
            call.state = "rejected"
            call.later(64 * self.settings.t1, call.cleanup, True)
            return
        if call.state != "ringing":  # cancelled meanwhile
            endpoint.close()
            self.release_port(port)
            return
        call.rtp, call.rtp_port = endpoint, port
        endpoint.configure(call.negotiated)
        call.answer_sdp = sdp.build_answer(call.negotiated, self.via_host, port, call.session_id)
        call.respond(180)
        call.later(self.settings.ring, call.answer)

    async def open_rtp(self, call: SipCall) -> tuple[int, RtpEndpoint]:
        low, high = self.settings.rtp_ports
        ports = list(range(low + (low % 2), high + 1, 2))
        start = random.randrange(len(ports)) if ports else 0
        for i in range(len(ports)):
            port = ports[(start + i) % len(ports)]
            if port in self.used_ports:
                continue
            try:
                family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
                transport, endpoint = await self.loop.create_datagram_endpoint(
                    lambda: RtpEndpoint(call), local_addr=(self.settings.host, port), family=family)
            except OSError:
                continue
            self.used_ports.add(port)
            return port, endpoint
        raise OSError("no free RTP port")

    def release_port(self, port: int) -> None:
        self.used_ports.discard(port)

    def forget(self, call: SipCall) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]

    def find_dialog(self, msg: SipMessage) -> SipCall | None:
        """The call whose dialog ``msg`` belongs to: same Call-ID, From tag and To tag (RFC 3261 12.2.2)."""
        call = self.calls.get(msg.call_id)
        if call is None:
            return None
        if (_tag(msg.get("From")) or "") != call.dialog.remote_tag or _tag(msg.get("To")) != call.local_tag:
            return None
        return call

    def on_reinvite(self, msg: SipMessage, source, call: SipCall | None) -> None:
        if call is None or call.state not in ("confirmed", "answered"):
            self.reply(msg, source, 481)
            return
        if msg.cseq[0] <= call.dialog.remote_cseq:
            self.reply(msg, source, 500, [("Retry-After", "1")])
            return
        call.dialog.remote_cseq = msg.cseq[0]
        if msg.body:
            try:
                neg = sdp.negotiate(sdp.parse_offer(msg.body))
            except sdp.SdpError as exc:
                safe = str(exc).replace('"', "'")[:100]
                self.reply(msg, source, 488, [("Warning", f'304 ivr "{safe}"')], to_tag=call.local_tag)
                return
            if not self.reachable(neg):
                self.reply(msg, source, 488, [("Warning", '301 ivr "Incompatible network address format"')],
                           to_tag=call.local_tag)
                return
            old = (call.negotiated.remote_address, call.negotiated.remote_port, call.negotiated.direction)
            call.negotiated.remote_address = neg.remote_address
            call.negotiated.remote_port = neg.remote_port
            call.negotiated.direction = neg.direction
            if call.rtp:
                call.rtp.configure(call.negotiated)
                call.rtp.last_rx = time.monotonic()  # e.g. back from hold: the media timer starts again
            if (neg.remote_address, neg.remote_port, neg.direction) != old:  # RFC 3264 8: a new version
                call.sdp_version += 1
                call.answer_sdp = sdp.build_answer(call.negotiated, self.via_host, call.rtp_port,
                                                   call.session_id, call.sdp_version)
        hdrs = [("Server", USER_AGENT), ("Contact", self.contact), ("Allow", ALLOW),
                ("Content-Type", "application/sdp")]
        resp = make_response(msg, 200, to_tag=call.local_tag, headers=hdrs, body=call.answer_sdp)
        self.send(resp.to_bytes(), response_address(msg, source))

    def on_cancel(self, msg: SipMessage, source, call: SipCall | None) -> None:
        branch = parse_via(msg.get("Via") or "").branch
        if call is None or call.branch != branch:
            self.reply(msg, source, 481)
            return
        self.reply(msg, source, 200, to_tag=call.local_tag)
        if call.state == "ringing":
            call.respond(487)
            call.state = "rejected"
            call.end_reason = "cancelled"
            call._release_pending()
            if call.rtp:
                call.rtp.close()
                self.release_port(call.rtp_port)
                call.rtp = None
            if call.worker:
                call.worker.stop()
            # the 487 is retransmitted on INVITE retransmissions; the ACK (or timer H) ends the call
            call.later(64 * self.settings.t1, call.cleanup, False)

    def on_info(self, msg: SipMessage, source, call: SipCall | None) -> None:
        if call is None or call.state not in ("confirmed", "answered"):
            self.reply(msg, source, 481)
            return
        self.reply(msg, source, 200, to_tag=call.local_tag)
        ctype = (msg.get("Content-Type") or "").lower()
        if "dtmf-relay" in ctype and call.worker and call.worker.started:
            for line in msg.body.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition("=")
                value = value.strip().upper()
                if key.strip().lower() == "signal" and len(value) == 1 and value in rtp.EVENT_KEYS:
                    call.worker.digit(value)
        elif ctype.startswith("application/dtmf") and call.worker and call.worker.started:
            value = msg.body.decode("utf-8", "replace").strip().upper()
            if len(value) == 1 and value in rtp.EVENT_KEYS:
                call.worker.digit(value)

    def on_notify(self, msg: SipMessage, source, call: SipCall | None) -> None:
        if call is None:
            self.reply(msg, source, 481)
            return
        self.reply(msg, source, 200, to_tag=call.local_tag)
        if not (msg.get("Event") or "").lower().startswith("refer"):
            return
        frag = msg.body.decode("utf-8", "replace").strip().split("\r\n")[0].split("\n")[0]
        parts = frag.split()
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if status >= 300:
            call.transfer_result(False, f"operator leg answered {status}")
        elif 200 <= status < 300:
            call.transfer_result(True, frag)
        elif "terminated" in (msg.get("Subscription-State") or "").lower():
            call.transfer_result(False, "subscription terminated without a final status")

    def handle_response(self, msg: SipMessage) -> None:
        try:
            branch = parse_via(msg.get("Via") or "").branch
        except ValueError:
            return
        txn = self.client_txns.get(branch)
        if txn:
            txn.response(msg)

    # -- shutdown ----------------------------------------------------------------------------------
    def active_calls(self) -> list[SipCall]:
        return [c for c in self.calls.values() if c.state in ("ringing", "answered", "confirmed")]

    def close(self) -> None:
        for txn in list(self.client_txns.values()):
            txn.finish(None)
        for call in list(self.calls.values()):
            call.cleanup(caller_hung_up=False)
        self.calls.clear()
        if self.transport:
            self.transport.close()

    def hang_up_all(self, reason: str) -> None:
        for call in list(self.calls.values()):
            if call.state == "ringing":
                call.respond(503)
                call.state = "rejected"
                call.cleanup(caller_hung_up=False)
            elif call.state == "confirmed":
                call.hang_up(reason)
            elif call.state == "answered":  # no ACK yet: no BYE before it (RFC 3261 15), timer H ends it
                call.cleanup(caller_hung_up=False)
            elif call.state == "rejected":
                call.cleanup(caller_hung_up=False)

    def pending_requests(self) -> int:
        return len(self.client_txns)

    async def requests_done(self) -> None:
        """Returns when every request the IVR sent (BYE, REFER) has its final answer or timed out."""
        await self.txns_idle.wait()


def _tag(value: str | None) -> str | None:
    if not value:
        return None
    for part in value.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == "tag":
            return val.strip()
    return None


def same_host(a: str, b: str) -> bool:
    """The two addresses are one host (``::ffff:10.0.0.1`` is ``10.0.0.1``)."""
    try:
        x, y = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b
    x = x.ipv4_mapped or x if x.version == 6 else x
    y = y.ipv4_mapped or y if y.version == 6 else y
    return x == y


def _default_ip() -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()

