"""Who may call: the call limit (calls and calls not yet confirmed), the source address allow list, and
whether a new call gets speech recognition when decoding is behind (``SpeechAdmission``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CallLimiter:
    """Calls in progress across both listeners; ``draining`` refuses new ones.

    A call holds a slot only once it is confirmed (SIP ACK, AudioSocket UUID). Before that it is *pending*:
    pending INVITEs and unidentified AudioSocket connections are bounded on their own, in all and per source
    address, so callers that never confirm cannot take the slots of real calls.
    """

    max_calls: int = 50
    active: int = 0
    draining: bool = False
    total: int = 0
    max_pending: int = 40
    max_pending_per_source: int = 20
    pending: dict[str, int] = field(default_factory=dict)
    changed: Callable[[], None] | None = None  # called when a call or a pending place is let go

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
        self._changed()

    def _changed(self) -> None:
        if self.changed is not None:
            self.changed()

    def try_pending(self, source: str) -> str | None:
        """None when an unconfirmed call from ``source`` may wait (and count it), else "draining" | "busy"."""
        if self.draining:
            return "draining"
        if self.active >= self.max_calls or sum(self.pending.values()) >= self.max_pending:
            return "busy"
        if self.pending.get(source, 0) >= self.max_pending_per_source:
            return "busy"
        self.pending[source] = self.pending.get(source, 0) + 1
        return None

    def release_pending(self, source: str) -> None:
        n = self.pending.get(source, 0) - 1
        if n > 0:
            self.pending[source] = n
        else:
            self.pending.pop(source, None)
        self._changed()

    @property
    def n_pending(self) -> int:
        return sum(self.pending.values())


@dataclass
class SpeechAdmission:
    """Admission by measured load: when speech decoding is more than ``max_lag`` seconds behind (``lag()``:
    the speech waiting in all calls at the measured decoding speed, ivr/phone/worker.py
    ``WorkerPool.decode_lag``), a new call is
    answered keypad-first (``when_busy`` "keys": speech off for that call, the ``greet_keys`` prompt) or
    refused before it is answered ("refuse": SIP 503 with Retry-After, so a proxy routes it elsewhere).
    Calls in progress keep their keys and speech. ``decide()`` says "speech", "keys" or "refuse"."""

    max_lag: float = 1.0
    when_busy: str = "keys"
    lag: Callable[[], float] = lambda: 0.0
    counts: dict[str, int] = field(default_factory=lambda: {"speech": 0, "keys": 0, "refuse": 0})

    def decide(self) -> str:
        try:
            behind = float(self.lag())
        except Exception:  # noqa: BLE001 - no measurement: the call is not punished for it
            behind = 0.0
        out = "speech" if behind <= self.max_lag else ("refuse" if self.when_busy == "refuse" else "keys")
        self.counts[out] += 1
        return out


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address as the socket gave it (a scope ``%eth0`` dropped, an IPv4-mapped IPv6 address as the
    IPv4 one), or None when ``host`` is no address."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


@dataclass
class AllowList:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    @classmethod
    def parse(cls, items: list[str] | None, loopback: bool = True, what: str = "--allow") -> AllowList:
        from ivr.errors import IvrError

        nets = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")] if loopback else []
        for item in items or []:
            try:
                nets.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise IvrError(f"{what} {item!r} is not an address or CIDR network",
                               "write it like 192.0.2.10 or 10.0.0.0/8") from None
        return cls(nets)

    def allows(self, host: str) -> bool:
        ip = peer_address(host)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)
