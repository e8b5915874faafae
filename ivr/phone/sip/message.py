"""SIP messages (RFC 3261 section 7): a tolerant, bounded parser and a serializer.

``parse(data)`` turns one UDP datagram into a ``SipMessage`` or raises ``SipParseError``. The error carries
whatever could be read (``partial``) so the server can still answer 400 when the request line and the Via
header were readable; anything less is dropped. Nothing here trusts the sender: sizes are bounded, bytes that
are not UTF-8 are rejected, and a bad Content-Length is an error, never an exception of another kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 16384  # bytes in one datagram (an INVITE with SDP is about 1-2 kB)
MAX_HEADERS = 120
MAX_LINE = 4096

COMPACT = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding", "r": "Refer-To",
    "o": "Event", "b": "Referred-By", "u": "Allow-Events", "x": "Session-Expires",
}
CANONICAL = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type", "Max-Forwards",
        "Route", "Record-Route", "Allow", "Accept", "Supported", "Require", "User-Agent", "Server", "Event",
        "Refer-To", "Referred-By", "Subscription-State", "Allow-Events", "Subject", "Expires", "Unsupported",
        "Reason", "Session-Expires", "Content-Encoding", "Warning", "Retry-After", "WWW-Authenticate",
    )
}
CANONICAL["call-id"] = "Call-ID"
CANONICAL["cseq"] = "CSeq"
# headers whose comma-separated values are separate entries (RFC 3261 7.3.1)
MULTI = {"Via", "Route", "Record-Route", "Contact"}
REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
# headers a message carries at most once (RFC 3261 20): two of them make the message ambiguous -> 400
SINGLE = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Content-Type", "Max-Forwards")
TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    420: "Bad Extension", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "Version Not Supported",
}


class SipParseError(ValueError):
    """The datagram is not a SIP message we accept. ``partial`` holds what could be read (or None)."""

    def __init__(self, reason: str, partial: SipMessage | None = None):
        super().__init__(reason)
        self.reason = reason
        self.partial = partial


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return CANONICAL.get(low) or "-".join(p.capitalize() for p in low.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and angle brackets."""
    out, buf, quote, angle = [], [], False, False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif ch == "<" and not quote:
            angle = True
        elif ch == ">" and not quote:
            angle = False
        if ch == "," and not quote and not angle:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf).strip())
    return [v for v in out if v]


@dataclass
class SipMessage:
    method: str | None = None  # requests
    uri: str | None = None
    status: int | None = None  # responses
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        name = canonical(name)
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = canonical(name)
        return [value for key, value in self.headers if key == name]

    def set(self, name: str, value: str) -> None:
        """Replace every header called ``name`` by one with ``value`` (keeps the first position)."""
        name = canonical(name)
        for i, (key, _) in enumerate(self.headers):
            if key == name:
                self.headers[i] = (name, value)
                self.headers = [h for j, h in enumerate(self.headers) if h[0] != name or j == i]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [h for h in self.headers if h[0] != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq") or "")

    def to_bytes(self) -> bytes:
        if self.is_request:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason or REASONS.get(self.status or 0, '')}"
        lines = [start]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not TOKEN.match(parts[1]):
        raise SipParseError(f"bad CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError(f"CSeq number out of range {value!r}")
    return number, parts[1].upper()


def parse(data: bytes) -> SipMessage:
    """Parse one datagram. Raises ``SipParseError`` (with ``partial`` when the start line and headers were read)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}", _head_only(data))
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, rest = data[:sep], data[sep + 4 :]
        lines_raw = head.split(b"\r\n")
    else:
        sep = data.find(b"\n\n")
        if sep < 0:
            raise SipParseError("no blank line after the headers (truncated message)", _head_only(data))
        head, rest = data[:sep], data[sep + 2 :]
        lines_raw = head.split(b"\n")
    try:
        lines = [ln.decode("utf-8").rstrip("\r") for ln in lines_raw]
    except UnicodeDecodeError:
        raise SipParseError("header bytes are not UTF-8", _head_only(data)) from None
    msg = _start_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header lines", msg)
    unfolded: list[str] = []
    errors = []
    for line in lines[1:]:
        if len(line) > MAX_LINE:
            errors.append(f"header line longer than {MAX_LINE} characters")
            continue
        if any(ord(c) < 32 and c != "\t" for c in line):
            errors.append("control character in a header")
            continue
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not TOKEN.match(name.strip()):
            errors.append(f"malformed header line {line[:60]!r}")
            continue
        key, value = canonical(name), value.strip()
        if key in MULTI:
            for part in split_commas(value):
                msg.headers.append((key, part))
        else:
            msg.headers.append((key, value))
    if errors:
        raise SipParseError(errors[0], msg)
    for name in SINGLE:
        if len(msg.get_all(name)) > 1:
            raise SipParseError(f"{name} header appears more than once", msg)
    length_text = msg.get("Content-Length")
    if length_text is not None:
        if not length_text.isdigit() or len(length_text) > 6:
            raise SipParseError(f"bad Content-Length {length_text!r}", msg)
        length = int(length_text)
        if length > len(rest):
            raise SipParseError(f"Content-Length {length} but only {len(rest)} body bytes", msg)
        msg.body = rest[:length]
    else:
        msg.body = rest  # allowed over UDP (RFC 3261 18.3)
    if msg.is_request:
        missing = [h for h in REQUIRED if not msg.get(h)]
        if missing:
            raise SipParseError(f"missing header {', '.join(missing)}", msg)
        try:
            number, method = parse_cseq(msg.get("CSeq") or "")
            parse_via(msg.get("Via") or "")
        except SipParseError as exc:
            raise SipParseError(exc.reason, msg) from None
        if method != msg.method:
            raise SipParseError(f"CSeq method {method} does not match {msg.method}", msg)
    else:
        if not msg.get("Via") or not msg.get("CSeq") or not msg.get("Call-ID"):
            raise SipParseError("response without Via, CSeq or Call-ID", msg)
        try:
            parse_cseq(msg.get("CSeq") or "")
        except SipParseError as exc:
            raise SipParseError(exc.reason, msg) from None
    return msg


def _head_only(data: bytes) -> SipMessage | None:
    """Best-effort read of the start line and headers of a message we refuse (to answer 400/413)."""
    try:
        head = data[: min(len(data), MAX_MESSAGE)].split(b"\r\n\r\n", 1)[0]
        lines = head.decode("utf-8", errors="strict").split("\r\n")
        msg = _start_line(lines[0])
        for line in lines[1:MAX_HEADERS]:
            name, colon, value = line.partition(":")
            if colon and TOKEN.match(name.strip()) and len(line) <= MAX_LINE:
                key = canonical(name)
                if key in MULTI:
                    msg.headers += [(key, v) for v in split_commas(value.strip())]
                else:
                    msg.headers.append((key, value.strip()))
        return msg
    except (SipParseError, UnicodeDecodeError):
        return None


def _start_line(line: str) -> SipMessage:
    if len(line) > MAX_LINE:
        raise SipParseError("start line too long")
    parts = line.split(" ")
    if line.startswith("SIP/"):
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipMessage(status=int(parts[1]), reason=" ".join(parts[2:]))
    if len(parts) != 3 or not TOKEN.match(parts[0]) or not parts[1] or parts[2] != "SIP/2.0":
        raise SipParseError(f"bad request line {line[:60]!r}")
    if ":" not in parts[1]:
        raise SipParseError(f"bad Request-URI {parts[1][:60]!r}")
    return SipMessage(method=parts[0].upper(), uri=parts[1])


# ---------------------------------------------------------------- header values


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {hostport}{params}"


def parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        params[key.strip().lower()] = value.strip() if eq else None
    return params


def parse_via(value: str) -> Via:
    proto, _, rest = value.strip().partition(" ")
    bits = proto.split("/")
    if len(bits) != 3 or bits[0].upper() != "SIP" or not rest.strip():
        raise SipParseError(f"bad Via {value[:60]!r}")
    sent_by, _, params = rest.strip().partition(";")
    sent_by = sent_by.strip()
    host, port = split_hostport(sent_by)
    if not host:
        raise SipParseError(f"bad Via host {value[:60]!r}")
    return Via(bits[2].upper(), host, port, parse_params(params))


def split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.partition(":")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SipParseError(f"bad port in {text[:60]!r}")
        return host, int(port)
    return host, None


@dataclass
class NameAddr:
    display: str
    uri: str
    params: dict[str, str | None]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{params}"


def parse_name_addr(value: str) -> NameAddr:
    value = value.strip()
    if "<" in value:
        display, _, rest = value.partition("<")
        uri, close, params = rest.partition(">")
        if not close:
            raise SipParseError(f"unclosed < in {value[:60]!r}")
        return NameAddr(display.strip(), uri.strip(), parse_params(params))
    uri, _, params = value.partition(";")
    return NameAddr("", uri.strip(), parse_params(params))


def uri_hostport(uri: str) -> tuple[str, int | None]:
    """Host and port of a sip: URI (``sip:user@host:port;params``)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    return split_hostport(rest)


def make_response(request: SipMessage, status: int, reason: str | None = None, *, to_tag: str | None = None,
                  headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response copying Via, From, To, Call-ID and CSeq from ``request`` (RFC 3261 8.2.6)."""
    resp = SipMessage(status=status, reason=reason or REASONS.get(status, ""))
    for name in ("Via", "Record-Route") if 100 < status < 300 else ("Via",):
        for value in request.get_all(name):
            resp.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is not None:
            if name == "To" and to_tag and status > 100 and "tag=" not in value.lower():
                value = f"{value};tag={to_tag}"
            resp.add(name, value)
    for name, value in headers or []:
        resp.add(name, value)
    if body:
        resp.body = body
    return resp
