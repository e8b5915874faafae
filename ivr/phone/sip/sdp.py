"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264): G.711 plus RFC 4733 telephone-event.

The IVR answers with PCMU or PCMA, whichever comes first in the caller's list, and echoes the caller's
telephone-event payload type when one is offered.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

STATIC = {0: "PCMU", 8: "PCMA"}
CODECS = ("PCMU", "PCMA")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(ValueError):
    """The body is not an SDP offer we can answer (the server replies 488 or 400)."""


@dataclass
class Offer:
    address: str  # connection address of the audio stream
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMU/8000"
    direction: str = "sendrecv"
    ptime: int | None = None


@dataclass
class Negotiated:
    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    event_pt: int | None  # telephone-event payload type, echoed from the offer
    remote_address: str
    remote_port: int
    direction: str  # our direction (the answer's)

    @property
    def remote_routable(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.remote_address)
        except ValueError:
            return False
        return not ip.is_unspecified and self.remote_port > 0


def parse_offer(body: bytes) -> Offer:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    session_addr = None
    media: Offer | None = None
    media_addr = None
    session_direction = "sendrecv"
    in_audio = False
    seen_media = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            if line:
                raise SdpError(f"bad SDP line {line[:40]!r}")
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "c":
            parts = value.split()
            if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                raise SdpError(f"bad connection line {value[:40]!r}")
            addr = parts[2].split("/")[0]
            if not seen_media:
                session_addr = addr
            elif in_audio:
                media_addr = addr
        elif kind == "m":
            seen_media = True
            parts = value.split()
            in_audio = False
            if media is None and len(parts) >= 4 and parts[0] == "audio" and parts[2].startswith("RTP/AVP"):
                if not parts[1].split("/")[0].isdigit():
                    raise SdpError(f"bad media port {parts[1]!r}")
                port = int(parts[1].split("/")[0])
                pts = []
                for p in parts[3:]:
                    if not p.isdigit() or int(p) > 127:
                        raise SdpError(f"bad payload type {p!r}")
                    pts.append(int(p))
                if port > 65535:
                    raise SdpError(f"bad media port {port}")
                if port != 0:
                    media = Offer("", port, pts, direction=session_direction)
                    in_audio = True
        elif kind == "a":
            if value in DIRECTIONS:
                if not seen_media:
                    session_direction = value
                elif in_audio and media:
                    media.direction = value
            elif in_audio and media and value.startswith("rtpmap:"):
                pt_text, _, enc = value[7:].partition(" ")
                if pt_text.isdigit():
                    media.rtpmap[int(pt_text)] = enc.strip()
            elif in_audio and media and value.startswith("ptime:") and value[6:].strip().isdigit():
                media.ptime = int(value[6:].strip())
    if media is None:
        raise SdpError("no active audio stream (m=audio ... RTP/AVP) in the offer")
    media.address = media_addr or session_addr or ""
    if not media.address:
        raise SdpError("no connection address (c=) for the audio stream")
    return media


def encoding(offer: Offer, pt: int) -> tuple[str, int]:
    """(name, clock rate) of payload type ``pt`` in ``offer``."""
    if pt in offer.rtpmap:
        name, _, rest = offer.rtpmap[pt].partition("/")
        rate = rest.split("/")[0]
        return name.upper() if name.lower() != "telephone-event" else "telephone-event", int(rate or 0) if rate.isdigit() else 0
    if pt in STATIC:
        return STATIC[pt], 8000
    return "", 0


def negotiate(offer: Offer) -> Negotiated:
    codec = None
    event_pt = None
    for pt in offer.payload_types:
        name, rate = encoding(offer, pt)
        if codec is None and name in CODECS and rate == 8000:
            codec = (name, pt)
        if event_pt is None and name == "telephone-event" and rate == 8000:
            event_pt = pt
    if codec is None:
        raise SdpError("no common codec: the IVR speaks PCMU or PCMA at 8000 Hz")
    return Negotiated(codec[0], codec[1], event_pt, offer.address, offer.port,
                      ANSWER_DIRECTION.get(offer.direction, "sendrecv"))


def build_answer(neg: Negotiated, local_ip: str, local_port: int, session_id: int, version: int = 1) -> bytes:
    family = "IP6" if ":" in local_ip else "IP4"
    pts = [str(neg.payload_type)] + ([str(neg.event_pt)] if neg.event_pt is not None else [])
    lines = [
        "v=0",
        f"o=ivr {session_id} {version} IN {family} {local_ip}",
        "s=ivr",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP {' '.join(pts)}",
        f"a=rtpmap:{neg.payload_type} {neg.codec}/8000",
    ]
    if neg.event_pt is not None:
        lines += [f"a=rtpmap:{neg.event_pt} telephone-event/8000", f"a=fmtp:{neg.event_pt} 0-15"]
    lines += ["a=ptime:20", f"a={neg.direction}"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
