"""Speaking callers for benchmarks/bench_sip.py: SIP over UDP and RTP (PCMU + RFC 4733) from one asyncio loop.

Each caller dials in, and like a person on the phone reacts to what it hears:
1. ``speak_at`` seconds after the 200 OK it says its question (a recorded WAV, over the greeting: barge-in);
2. it waits for the reply: the first IVR sound after the end of its last voiced 20 ms frame that follows
   ``reply_gap`` s without sound (the greeting was stopped when the caller spoke; if it still played on
   when the caller finished, the rest of it is not taken for the reply). ``voice_to_voice`` is the time to it;
   benchmarks/bench_sip.py anchors it on the server's call log instead (``sound_after``);
3. once the IVR has been quiet for ``quiet_s`` (the reply has been said), it presses the first key (RFC 4733)
   and measures key-to-audio the same way: key sent -> first IVR packet with sound;
4. ``key_gap_s`` after that sound starts it presses the next key (over the prompt) ... ;
5. it stays on the line until ``release_at`` (so that all the calls of a level are up together) and at least
   ``hold_s`` after its last key, then hangs up (BYE).
A stage the IVR never answers within ``stage_timeout`` goes on to the next one (the call will then miss its
answer, which the call log tells). All times are the caller's own monotonic clock, at send and receive.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from ivr.media import g711
from ivr.phone import rtp
from ivr.phone.sip.message import SipParseError, parse

FRAME = 160
SILENCE = g711.ulaw_encode(np.zeros(FRAME, dtype=np.int16))
EVENT_PT = 101
LOUD = 200  # a received frame with a sample above this has sound (PCMU silence decodes to 0)
# the PCMU bytes that decode to |sample| <= LOUD: a payload has sound when deleting them leaves anything (one
# C call per packet instead of a decode and a max: the caller process shares the server's two cores)
_QUIET_BYTES = bytes(int(b) for b in np.flatnonzero(np.abs(g711.ulaw_decode(bytes(range(256))).astype(np.int32))
                                                     <= LOUD))


@dataclass
class Speech:
    """A caller's question: PCMU payloads of 20 ms, and the end of its last voiced frame (seconds)."""

    payloads: list[bytes]
    voice_end: float

    @classmethod
    def from_pcm(cls, pcm: np.ndarray, voice_end: float) -> Speech:
        pcm = np.asarray(pcm, dtype=np.int16)
        pcm = np.concatenate([pcm, np.zeros((-pcm.size) % FRAME, dtype=np.int16)])
        return cls([g711.ulaw_encode(pcm[i:i + FRAME]) for i in range(0, pcm.size, FRAME)], voice_end)


@dataclass
class CallResult:
    call_id: str
    answered: bool = False  # 200 OK
    t_ack: float | None = None
    voice_end: float | None = None  # monotonic time of the end of the last voiced frame sent
    voice_to_voice: float | None = None
    key_to_audio: float | None = None
    keys_sent: str = ""
    bye_ok: bool = False
    ivr_bye: bool = False
    error: str | None = None
    rx: list[tuple[float, bool]] = field(default_factory=list)  # (arrival, has sound) of every IVR packet
    loud: list[float] = field(default_factory=list)  # arrival of every IVR packet with sound, in order


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_packet):
        self.on_packet = on_packet
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.on_packet(data, addr, time.monotonic())


class VoiceCaller:
    def __init__(self, server: tuple[str, int], speech: Speech, keys: str, *, speak_at: float = 1.0,
                 quiet_s: float = 1.0, key_gap_s: float = 1.0, hold_s: float = 1.5, stage_timeout: float = 20.0,
                 release_at: float = 0.0, reply_gap: float = 0.6, seed: int = 0):
        self.server = server
        self.speech = speech
        self.keys = keys
        self.speak_at, self.quiet_s, self.key_gap_s = speak_at, quiet_s, key_gap_s
        self.hold_s, self.stage_timeout, self.release_at = hold_s, stage_timeout, release_at
        self.reply_gap = reply_gap
        rnd = random.Random(seed)
        self.result = CallResult(f"bench-{uuid.uuid4().hex[:12]}")
        self.tag = uuid.uuid4().hex[:8]
        self.ssrc = rnd.getrandbits(32) or 1
        self.seq = rnd.getrandbits(16)
        self.ts = rnd.getrandbits(31)
        self._sip = self._rtp = None
        self._sip_q: asyncio.Queue = asyncio.Queue()
        self.media: tuple[str, int] | None = None
        self._out: list[tuple[int, bytes, bool, int | None, str | None]] = []  # (pt, payload, marker, ts, mark)
        self.marks: dict[str, float] = {}  # mark -> monotonic time its packet was sent
        self.last_sound = 0.0
        self.first_rx = 0.0
        self._to_tag: str | None = None

    # -- transport ---------------------------------------------------------------------------------
    def _on_sip(self, data, addr, t):
        try:
            msg = parse(data)
        except SipParseError:
            return
        self._sip_q.put_nowait(msg)

    def _on_rtp(self, data, addr, t):
        if len(data) < 12 or data[1] & 0x7F != 0:
            return
        loud = bool(data[12:].translate(None, _QUIET_BYTES))
        self.result.rx.append((t, loud))
        if loud:
            self.result.loud.append(t)
            self.last_sound = t

    def tick(self) -> None:
        """Called every 20 ms by the shared pacer: send one packet (queued audio/event, or silence)."""
        if self.media is None or self._rtp is None:
            return
        if self._out:
            pt, payload, marker, ts, mark = self._out.pop(0)
        else:
            pt, payload, marker, ts, mark = 0, SILENCE, False, None, None
        pkt = rtp.build_packet(pt, self.seq, self.ts if ts is None else ts, self.ssrc, payload, marker)
        self._rtp.sendto(pkt, self.media)
        if mark is not None:
            self.marks[mark] = time.monotonic()
        self.seq = (self.seq + 1) & 0xFFFF
        if pt == 0:
            self.ts += FRAME

    def _send_sip(self, text: str) -> None:
        self._sip.sendto(text.encode(), self.server)

    def _request(self, method: str, cseq: int, body: str = "") -> None:
        to = "<sip:ivr@127.0.0.1>" + (f";tag={self._to_tag}" if self._to_tag else "")
        port = self._sip.get_extra_info("sockname")[1]
        head = (f"{method} sip:ivr@{self.server[0]}:{self.server[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1:{port}>;tag={self.tag}\r\nTo: {to}\r\n"
                f"Call-ID: {self.result.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:caller@127.0.0.1:{port}>\r\n")
        if body:
            head += "Content-Type: application/sdp\r\n"
        self._send_sip(head + f"Content-Length: {len(body.encode())}\r\n\r\n" + body)

    async def _response(self, method: str, timeout: float):
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(self._sip_q.get(), left)
            except TimeoutError:
                break
            if msg.status is None:
                self._answer_request(msg)
                continue
            if msg.cseq and msg.cseq[1] == method and msg.status >= 200:
                return msg
        return None

    def _answer_request(self, msg) -> None:
        from ivr.phone.sip.message import make_response

        if msg.method == "BYE":
            self.result.ivr_bye = True
        if msg.method != "ACK":
            self._sip.sendto(make_response(msg, 200).to_bytes(), self.server)

    # -- the call ----------------------------------------------------------------------------------
    async def _wait(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            await asyncio.sleep(0.01)
        return cond()

    def sound_after(self, t: float, gap: float = 0.0) -> float | None:
        """Arrival time of the first IVR packet with sound at or after ``t`` that follows at least ``gap``
        seconds without sound (a new prompt, not the rest of one), or None."""
        loud = self.result.loud
        for i in range(bisect.bisect_left(loud, t), len(loud)):
            if i == 0 or loud[i] - loud[i - 1] >= gap:
                return loud[i]
        return None

    async def _sound_after(self, t: float, gap: float = 0.0) -> float | None:
        """Seconds from ``t`` to ``sound_after(t, gap)``, waiting for it up to ``stage_timeout``."""
        if not await self._wait(lambda: self.last_sound >= t and self.sound_after(t, gap) is not None,
                                self.stage_timeout):
            return None
        return self.sound_after(t, gap) - t

    def _queue_key(self, key: str, mark: str) -> None:
        ts = self.ts
        steps = 5
        for i in range(steps):
            self._out.append((EVENT_PT, rtp.event_payload(key, False, FRAME * (i + 1)), i == 0, ts,
                              mark if i == 0 else None))
        for _ in range(3):
            self._out.append((EVENT_PT, rtp.event_payload(key, True, FRAME * steps), False, ts, None))
        self.ts += FRAME * steps

    async def run(self) -> CallResult:
        loop = asyncio.get_running_loop()
        r = self.result
        try:
            self._sip, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_sip), local_addr=("127.0.0.1", 0))
            self._rtp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_rtp), local_addr=("127.0.0.1", 0))
            rtp_port = self._rtp.get_extra_info("sockname")[1]
            sdp = (f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                   "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")
            self._request("INVITE", 1, sdp)
            ok = await self._response("INVITE", 30.0)
            if ok is None or ok.status != 200:
                r.error = f"INVITE: {ok.status if ok else 'no answer'}"
                return r
            self._to_tag = ok.get("To").split("tag=")[1].split(";")[0]
            self._request("ACK", 1)
            r.t_ack = time.monotonic()
            r.answered = True
            body = ok.body.decode(errors="replace")
            host = next((ln.split()[-1] for ln in body.splitlines() if ln.startswith("c=")), "127.0.0.1")
            port = int(next(ln.split()[1] for ln in body.splitlines() if ln.startswith("m=audio")))
            self.media = (host, port)
            sip_listener = asyncio.create_task(self._serve_requests())
            try:
                await self._script()
            finally:
                sip_listener.cancel()
            if not r.ivr_bye:
                self._request("BYE", 2)
                bye = await self._response("BYE", 10.0)
                r.bye_ok = bye is not None and bye.status == 200
        except Exception as exc:  # noqa: BLE001 - a benchmark caller reports, never crashes the run
            r.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.media = None
            for tr in (self._sip, self._rtp):
                if tr is not None:
                    tr.close()
        return r

    async def _serve_requests(self) -> None:
        while True:
            msg = await self._sip_q.get()
            if msg.status is None:
                self._answer_request(msg)

    async def _script(self) -> None:
        r = self.result
        await asyncio.sleep(max(0.0, r.t_ack + self.speak_at - time.monotonic()))
        last = max(0, int(np.ceil(self.speech.voice_end / 0.02)) - 1)  # the last voiced frame
        for i, payload in enumerate(self.speech.payloads):
            self._out.append((0, payload, i == 0, None, "voice_end" if i == last else None))
        await self._wait(lambda: "voice_end" in self.marks, 60.0)
        r.voice_end = self.marks.get("voice_end", time.monotonic()) + 0.02  # the end of that frame
        r.voice_to_voice = await self._sound_after(r.voice_end, self.reply_gap)
        for i, key in enumerate(self.keys):
            if i == 0:  # after the reply has been said
                await self._wait(lambda: not self._out and time.monotonic() - self.last_sound >= self.quiet_s,
                                 self.stage_timeout + 30)
            await self._wait(lambda: not self._out, 5.0)
            mark = f"key{i}"
            self._queue_key(key, mark)
            await self._wait(lambda m=mark: m in self.marks, 5.0)
            t_key = self.marks.get(mark, time.monotonic())
            r.keys_sent += key
            delay = await self._sound_after(t_key)
            if i == 0:
                r.key_to_audio = delay
            if i + 1 < len(self.keys):
                await asyncio.sleep(self.key_gap_s)
        await asyncio.sleep(max(self.hold_s, self.release_at - time.monotonic()))


class Pacer:
    """Sends every active caller's next packet at absolute 20 ms ticks (like a phone's sound card)."""

    def __init__(self):
        self.callers: set[VoiceCaller] = set()
        self.late: list[float] = []
        self._task = None

    async def run(self) -> None:
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            due = start + n * 0.02
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.late.append((time.monotonic() - due) * 1000)
            for c in list(self.callers):
                c.tick()
