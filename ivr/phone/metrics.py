"""Live metrics and health of the phone server: Prometheus counters from the call-log events, and a small
HTTP server (``ivr serve --http ADDR``) with ``/metrics``, ``/healthz`` and ``/report``.

The figures come from the events every call already logs, so the phone code needs one hook: a call's log
is wrapped in a ``LogTee`` (``watch(session, metrics)``), which hands each record to ``Metrics.observe`` and
then to the real log. Nothing of what a caller said or typed is kept: only the event type, the FAQ id,
``via``, the channel and the timings are read.

Metrics (a ``CollectorRegistry`` per ``Metrics``, so two servers in one process do not mix):

- ``ivr_active_calls``                    calls in progress (a gauge)
- ``ivr_calls_total{channel,outcome}``    ended calls; outcome: answered (at least one answer, never went to
                                          the operator), transferred, unanswered, error (the IVR gave up)
- ``ivr_answers_total{entry,via}``        answers given; via: voice (a spoken question, also after a
                                          confirmation) or keys (the keypad menu)
- ``ivr_transfers_total{result}``         requested (the IVR handed the call over), failed (the transfer
                                          was refused), completed (handed over and not failed by the end of
                                          the call, or a ``transfer_completed`` event)
- ``ivr_decode_seconds``                  time the recogniser took on the caller's final words (``heard``'s
                                          ``decode_ms``)
- ``ivr_key_to_audio_seconds``            from a key to the first IVR audio of the answer to it (the ``play``
                                          event's ``latency`` when ``after`` is ``key``)

HTTP: ``/metrics`` (Prometheus text format), ``/healthz`` (200 ``ok``; 503 ``draining`` once the server
refuses new calls, so a load balancer takes it out), ``/report`` (the analytics page over the server's log
directory; recordings are named, not linked). The server binds loopback unless an address is given; a
request from an address ``allows`` refuses gets 403.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ivr.phone.admission import peer_address

log = logging.getLogger(__name__)

DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.02, 0.04, 0.06, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
VOICE_VIA = ("voice", "confirm_voice", "confirm_keys")


class _Call:
    __slots__ = ("channel", "answered", "transfer_open", "transferred", "error", "closed")

    def __init__(self, channel: str):
        self.channel = channel
        self.answered = False
        self.transfer_open = False  # a transfer requested, neither failed nor completed yet
        self.transferred = False
        self.error = False
        self.closed = False


class Metrics:
    """The counters of one server. ``observe(call_id, channel, record)`` for each call-log record;
    ``call_ended(call_id)`` once the call's log is closed."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge("ivr_active_calls", "Calls in progress", registry=r)
        self.calls = Counter("ivr_calls", "Ended calls, by channel and outcome", ["channel", "outcome"], registry=r)
        self.answers = Counter("ivr_answers", "Answers given, by FAQ entry and voice/keys", ["entry", "via"],
                               registry=r)
        self.transfers = Counter("ivr_transfers", "Operator transfers, by result", ["result"], registry=r)
        self.decode = Histogram("ivr_decode_seconds", "Recogniser time on the caller's final words",
                                buckets=DECODE_BUCKETS, registry=r)
        self.key_latency = Histogram("ivr_key_to_audio_seconds", "From a key to the first IVR audio answering it",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()

    def call_started(self, call_id: str, channel: str) -> None:
        with self._lock:
            if call_id in self._calls:
                return
            self._calls[call_id] = _Call(channel)
        self.active_calls.inc()

    def observe(self, call_id: str, channel: str, record: dict[str, Any]) -> None:
        """Count one call-log record. Never raises: metrics must not disturb a call."""
        try:
            self._observe(call_id, channel, record)
        except Exception as exc:  # a malformed record: skip it
            log.debug("metrics: record of call %s skipped: %r", call_id, exc)

    def _observe(self, call_id: str, channel: str, rec: dict[str, Any]) -> None:
        self.call_started(call_id, channel)
        call = self._calls.get(call_id)
        if call is None or call.closed:
            return
        kind = rec.get("type")
        if kind == "answer" and rec.get("faq_id") is not None:
            via = "voice" if rec.get("via") in VOICE_VIA else "keys"
            self.answers.labels(entry=str(int(rec["faq_id"])), via=via).inc()
            call.answered = True
        elif kind == "transfer":
            self._settle_transfer(call)
            self.transfers.labels(result="requested").inc()
            call.transfer_open = True
            call.transferred = True
        elif kind == "transfer_failed":
            if call.transfer_open:
                call.transfer_open = False
                self.transfers.labels(result="failed").inc()
            call.transferred = False
        elif kind == "transfer_completed":
            self._settle_transfer(call)
        elif kind == "heard" and rec.get("decode_ms") is not None:
            self.decode.observe(float(rec["decode_ms"]) / 1000.0)
        elif kind == "play" and rec.get("after") == "key" and rec.get("latency") is not None:
            self.key_latency.observe(max(0.0, float(rec["latency"])))
        elif kind == "hangup" and rec.get("reason") == "error":
            call.error = True

    def _settle_transfer(self, call: _Call) -> None:
        if call.transfer_open:
            call.transfer_open = False
            self.transfers.labels(result="completed").inc()

    def call_ended(self, call_id: str) -> None:
        with self._lock:
            call = self._calls.pop(call_id, None)
        if call is None or call.closed:
            return
        call.closed = True
        self._settle_transfer(call)
        if call.error:
            outcome = "error"
        elif call.transferred:
            outcome = "transferred"
        elif call.answered:
            outcome = "answered"
        else:
            outcome = "unanswered"
        self.calls.labels(channel=call.channel or "unknown", outcome=outcome).inc()
        self.active_calls.dec()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class LogTee:
    """Stands where a call's ``CallLog`` stands: each record goes to ``metrics`` and then to the log."""

    def __init__(self, calllog, metrics: Metrics, call_id: str, channel: str):
        self.log = calllog
        self.metrics = metrics
        self.call_id = str(call_id)
        self.channel = channel
        self.closed = False
        metrics.call_started(self.call_id, channel)

    def write(self, record: dict) -> None:
        if not self.closed:  # a record after the end must not bring the call back to life
            self.metrics.observe(self.call_id, self.channel, record)
        if self.log is not None:
            self.log.write(record)

    def tick(self, t: float) -> None:
        if self.log is not None:
            self.log.tick(t)

    def close(self) -> None:
        try:
            if self.log is not None:
                self.log.close()
        finally:
            self.closed = True
            self.metrics.call_ended(self.call_id)

    def __getattr__(self, name):
        return getattr(self.log, name)


def watch(session, metrics: Metrics | None):
    """Count ``session``'s call-log events in ``metrics`` (a ``CallSession``: its ``calllog`` is teed)."""
    if metrics is not None:
        session.calllog = LogTee(session.calllog, metrics, session.call_id, session.channel)
        session.call.on_record = session.calllog.write  # the call hands each record to the tee
    return session


# --- HTTP ---------------------------------------------------------------------------------------------------


class Health:
    """What ``/healthz`` says: ``draining`` is set when the server stops taking calls."""

    def __init__(self):
        self.draining = False


def loopback_only(host: str) -> bool:
    ip = peer_address(host)
    return ip is not None and ip.is_loopback


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/report`` on ``host:port`` (port 0: any free port) in a daemon thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0, *, log_dir: Path | None = None,
                 health: Health | None = None, allows: Callable[[str], bool] = loopback_only):
        self.metrics = metrics
        self.health = health if health is not None else Health()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.allows = allows
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # no access log on stderr
                log.debug("http %s " + fmt, self.client_address[0], *args)

            def do_GET(self):  # noqa: N802 - the http.server name
                if not server.allows(self.client_address[0]):
                    return self._send(403, b"forbidden\n", "text/plain; charset=utf-8")
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    return self._send(200, server.metrics.exposition(), CONTENT_TYPE_LATEST)
                if path == "/healthz":
                    if server.health.draining:
                        return self._send(503, b"draining\n", "text/plain; charset=utf-8")
                    return self._send(200, b"ok\n", "text/plain; charset=utf-8")
                if path == "/report":
                    code, body = server.report_page()
                    return self._send(code, body, "text/html; charset=utf-8")
                return self._send(404, b"not found: /metrics, /healthz, /report\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        server_class = ThreadingHTTPServer
        if ":" in host:  # an IPv6 address
            import socket

            server_class = type("ThreadingHTTPServer6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        self.httpd = server_class((host, int(port)), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ivr-metrics-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def report_page(self) -> tuple[int, bytes]:
        from ivr.channels.calllog import report
        from ivr.channels.report_html import render
        from ivr.errors import IvrError

        if self.log_dir is None:
            return 404, b"<p>no log directory</p>"
        try:
            data = report(self.log_dir)
        except IvrError as exc:
            import html

            return 500, f"<p>{html.escape(str(exc))}</p>".encode()
        try:
            from ivr.content.faq import load_faq

            faq = load_faq()
        except Exception:
            faq = None
        return 200, render(data, faq, link_base=None, sources=[str(self.log_dir)]).encode("utf-8")

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start(address: tuple[str, int], metrics: Metrics, *, log_dir: Path | None = None, health: Health | None = None,
          allows: Callable[[str], bool] = loopback_only) -> MetricsServer:
    """Start the HTTP server (``address``: host, port). ``OSError`` when the address cannot be bound."""
    return MetricsServer(metrics, address[0], address[1], log_dir=log_dir, health=health, allows=allows).start()
