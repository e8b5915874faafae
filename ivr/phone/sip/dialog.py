"""The UAS side of one SIP dialog (RFC 3261 section 12) and the requests the IVR sends inside it (BYE, REFER).

Also the response addressing of RFC 3261 18.2.2 with RFC 3581 (rport): a response goes to the address the
request really came from (never to a ``received`` or ``rport`` value the sender wrote itself), at the
source port when the Via asks for rport, else at the Via's sent-by port.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from ivr.phone.sip.message import SipMessage, Via, parse_name_addr, parse_via, uri_hostport

T1 = 0.5
T2 = 4.0


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def stamp_via(msg: SipMessage, source: tuple[str, int]) -> Via:
    """Add ``received`` and fill ``rport`` on the top Via of a request that came from ``source`` (RFC 3581)."""
    vias = msg.get_all("Via")
    via = parse_via(vias[0])
    via.params.pop("received", None)  # whatever the sender claims: only the packet's source counts
    if via.host != source[0]:
        via.params["received"] = source[0]
    if "rport" in via.params:
        via.params["rport"] = str(source[1])
        via.params["received"] = source[0]
    rest = [("Via", v) for v in vias[1:]]
    msg.remove("Via")
    msg.headers[:0] = [("Via", str(via))] + rest
    return via


def response_address(msg: SipMessage, source: tuple[str, int]) -> tuple[str, int]:
    """Where responses to ``msg`` (which came from ``source``) go: the source address always; the source
    port when the top Via has rport (RFC 3581), else the Via's sent-by port (RFC 3261 18.2.2)."""
    try:
        via = parse_via(msg.get("Via") or "")
    except ValueError:
        return source
    if "rport" in via.params:
        return source
    return source[0], via.port or 5060


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To URI of the INVITE (our address of record)
    remote_uri: str  # the From URI of the INVITE
    remote_target: str  # the Contact of the INVITE
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int = 0
    local_display: str = ""
    remote_display: str = ""

    @classmethod
    def from_invite(cls, invite: SipMessage, local_tag: str) -> Dialog:
        frm = parse_name_addr(invite.get("From") or "")
        to = parse_name_addr(invite.get("To") or "")
        contact = invite.get("Contact")
        target = parse_name_addr(contact).uri if contact else frm.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=frm.tag or "",
            local_uri=to.uri,
            remote_uri=frm.uri,
            remote_target=target,
            route_set=list(invite.get_all("Record-Route")),
            local_cseq=secrets.randbelow(10000) + 1,
            remote_cseq=invite.cseq[0],
            local_display=to.display,
            remote_display=frm.display,
        )

    def request(self, method: str, via_host: str, via_port: int, contact: str,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
        """A new request inside the dialog, with the next local CSeq and a fresh branch."""
        self.local_cseq += 1
        msg = SipMessage(method=method, uri=self.remote_target)
        msg.add("Via", f"SIP/2.0/UDP {via_host}:{via_port};branch={new_branch()};rport")
        msg.add("Max-Forwards", "70")
        for route in self.route_set:
            msg.add("Route", route)
        local = f"{self.local_display} <{self.local_uri}>" if self.local_display else f"<{self.local_uri}>"
        remote = f"{self.remote_display} <{self.remote_uri}>" if self.remote_display else f"<{self.remote_uri}>"
        msg.add("From", f"{local};tag={self.local_tag}")
        msg.add("To", f"{remote};tag={self.remote_tag}" if self.remote_tag else remote)
        msg.add("Call-ID", self.call_id)
        msg.add("CSeq", f"{self.local_cseq} {method}")
        msg.add("Contact", contact)
        for name, value in headers or []:
            msg.add(name, value)
        msg.body = body
        return msg

    def destination(self, fallback: tuple[str, int]) -> tuple[str, int]:
        """Next hop of an in-dialog request: the first Route, else the remote target (IP hosts only)."""
        uri = parse_name_addr(self.route_set[0]).uri if self.route_set else self.remote_target
        try:
            host, port = uri_hostport(uri)
        except ValueError:
            return fallback
        if not is_ip(host):
            return fallback
        return host, port or 5060
