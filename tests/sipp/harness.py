"""Test harness for the phone channel: the server in a background thread, a raw SIP/RTP client, sipp runs."""

from __future__ import annotations

import asyncio
import queue
import random
import socket
import threading
import time
import uuid

from ivr.phone.server import PhoneServer, ServeOptions
from ivr.phone.sip.message import SipMessage, SipParseError, parse


def free_rtp_range(size: int = 200) -> tuple[int, int]:
    """A random even-aligned port range for one test server (ephemeral ports in parallel runs)."""
    low = random.randrange(21000, 59000) & ~1
    return low, low + size - 1


class ServerThread:
    """Runs a ``PhoneServer`` on its own event loop thread, on ephemeral ports."""

    def __init__(self, factory, **overrides):
        opts = dict(sip=("127.0.0.1", 0), audiosocket=("127.0.0.1", 0), rtp_ports=free_rtp_range(), ring=0.05,
                    grace=2.0, goodbye=2.0, t1=0.1, t2=0.4, max_calls=20)
        opts.update(overrides)
        self.options = ServeOptions(**opts)
        self.server = PhoneServer(self.options, factory)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    @property
    def sip_port(self) -> int:
        return self.server.sip.port

    @property
    def audiosocket_port(self) -> int:
        return self.server.audiosocket.port

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server loop and return its result."""
        async def wrap():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def start_shutdown(self, grace: float | None = None):
        """Begin the graceful shutdown (as SIGTERM does); ``close`` waits for it."""
        self._shutdown = asyncio.run_coroutine_threadsafe(self.server.shutdown(grace), self.loop)
        return self._shutdown

    def shutdown(self, grace: float | None = None, timeout: float = 30) -> None:
        self.start_shutdown(grace).result(timeout)

    def close(self) -> None:
        try:
            pending = getattr(self, "_shutdown", None)
            if pending is None:
                self.shutdown(0.0)
            else:
                pending.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class SipClient:
    """A bare UDP SIP peer for protocol tests: sends requests, collects responses and requests."""

    def __init__(self, server_port: int, host: str = "127.0.0.1"):
        self.host = host  # the client's own address (another loopback address is another source)
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((host, 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = f"{uuid.uuid4()}@test"
        self.tag = uuid.uuid4().hex[:8]
        self.cseq = 1
        self.inbox: list[SipMessage] = []

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def offer(self, pts: str = "0 8 101", address: str | None = None, port: int | None = None,
              direction: str = "sendrecv", version: int = 1) -> str:
        address = address or self.host
        family = "IP6" if ":" in address else "IP4"
        return (
            f"v=0\r\no=t 1 {version} IN {family} {address}\r\ns=-\r\nc=IN {family} {address}\r\nt=0 0\r\n"
            f"m=audio {port or self.rtp_port} RTP/AVP {pts}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={direction}\r\n"
        )

    def request(self, method: str, *, body: str = "", branch: str | None = None, to_tag: str | None = None,
                cseq: int | None = None, extra: str = "", call_id: str | None = None, ctype: str = "application/sdp",
                from_tag: str | None = None, uri: str | None = None) -> tuple[bytes, str]:
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
        to = "<sip:ivr@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        n = self.cseq if cseq is None else cseq
        head = (
            f"{method} {uri or f'sip:ivr@127.0.0.1:{self.server[1]}'} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:caller@{self.host}:{self.port}>;tag={from_tag or self.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id or self.call_id}\r\n"
            f"CSeq: {n} {method}\r\n"
            f"Contact: <sip:caller@{self.host}:{self.port}>\r\n"
            f"{extra}"
        )
        if body:
            head += f"Content-Type: {ctype}\r\n"
        head += f"Content-Length: {len(body.encode())}\r\n\r\n"
        data = head.encode() + body.encode()
        self.sock.sendto(data, self.server)
        return data, branch

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def receive(self, timeout: float = 5.0) -> SipMessage | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        try:
            msg = parse(data)
        except SipParseError as exc:  # e.g. a 400 to a request without Call-ID has none either
            if exc.partial is None:
                raise
            msg = exc.partial
        self.inbox.append(msg)
        return msg

    def wait_for(self, pred, timeout: float = 10.0) -> SipMessage:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.receive(max(0.05, end - time.monotonic()))
            if msg is not None and pred(msg):
                return msg
        raise AssertionError(f"no matching message within {timeout} s; got {[self._line(m) for m in self.inbox]}")

    def status(self, code: int, method: str = "INVITE", timeout: float = 10.0) -> SipMessage:
        return self.wait_for(lambda m: m.status == code and m.cseq[1] == method, timeout)

    @staticmethod
    def _line(m: SipMessage) -> str:
        return f"{m.status} {m.cseq}" if m.status else f"{m.method}"

    def reply(self, req: SipMessage, status: int, body: str = "") -> None:
        from ivr.phone.sip.message import make_response

        resp = make_response(req, status, to_tag=self.tag if "tag=" not in (req.get("To") or "") else None)
        resp.body = body.encode()
        self.sock.sendto(resp.to_bytes(), self.server)

    def ack(self, ok: SipMessage, branch: str | None = None) -> None:
        to_tag = ok.get("To").split("tag=")[1].split(";")[0]
        self.request("ACK", branch=branch, to_tag=to_tag, cseq=ok.cseq[0])

    def invite(self, pts: str = "0 8 101", address: str | None = None) -> tuple[SipMessage, str]:
        """INVITE, wait for the 200, ACK it. Returns (200 OK, local to-tag)."""
        _, branch = self.request("INVITE", body=self.offer(pts, address))
        ok = self.status(200)
        self.ack(ok)
        return ok, ok.get("To").split("tag=")[1].split(";")[0]


# ---------------------------------------------------------------- sipp

SIPP_DIR = __import__("pathlib").Path(__file__).resolve().parent


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_media_port() -> int:
    """An even port P with P..P+3 free (sipp's -mp: RTP, RTCP and the next pair), above Linux's ephemeral
    range (32768-60999) and the servers' RTP ranges (free_rtp_range), so only another test run competes."""
    for _ in range(100):
        low = random.randrange(61000, 65500) & ~1
        socks = []
        try:
            for port in range(low, low + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return low
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free even port range for sipp's media above 61000")


def scenario(tmp_dir, template: str, **values) -> str:
    """Write ``tests/sipp/<template>`` with its {placeholders} filled into ``tmp_dir``; returns the path."""
    text = (SIPP_DIR / template).read_text(encoding="iso-8859-1")
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    path = __import__("pathlib").Path(tmp_dir) / template
    path.write_text(text, encoding="iso-8859-1")
    return str(path)


class SippResult:
    def __init__(self, returncode: int, stdout: str, errors: str):
        self.returncode = returncode
        self.stdout = stdout
        self.errors = errors

    def __repr__(self) -> str:
        return f"sipp exit {self.returncode}\n{self.errors[-3000:]}\n{self.stdout[-2000:]}"


def run_sipp(scenario_path: str, sip_port: int, tmp_dir, calls: int = 1, concurrent: int = 1,
             rate: int = 10, timeout: float = 90.0, media_port: int | None = None) -> SippResult:
    """Run sipp as a caller against 127.0.0.1:sip_port; the process is always killed at the end."""
    import subprocess
    from pathlib import Path

    err = Path(tmp_dir) / f"sipp_errors_{time.monotonic_ns()}.log"
    cmd = ["sipp", f"127.0.0.1:{sip_port}", "-sf", scenario_path, "-i", "127.0.0.1", "-p", str(free_udp_port()),
           "-mi", "127.0.0.1", "-mp", str(media_port or free_media_port()), "-m", str(calls),
           "-l", str(concurrent), "-r", str(rate), "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-recv_timeout", "30000", "-nostdin", "-trace_err", "-error_file", str(err), "-max_retrans", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=str(SIPP_DIR), text=True, errors="replace")
    try:
        out, _ = proc.communicate(timeout=timeout + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    errors = err.read_text(errors="replace") if err.exists() else ""
    return SippResult(proc.returncode, out or "", errors)


def pcap_rtp(path) -> list:
    """The RTP packets of a capture written by scripts/make_pcaps.py (Ethernet + IPv4 + UDP)."""
    import struct
    from pathlib import Path

    from ivr.phone import rtp

    data = Path(path).read_bytes()
    out, offset = [], 24
    while offset + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + incl]
        out.append(rtp.RtpPacket.parse(frame[14 + 20 + 8 :]))
        offset += 16 + incl
    return out


# ---------------------------------------------------------------- `ivr serve` as a process


def read_lines(stream) -> queue.Queue:
    """Lines of a child's text ``stream``, read by a daemon thread, so a reader can wait with a deadline
    (``get(timeout=...)``). None is queued when the stream closes."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        try:
            for line in stream:
                lines.put(line)
        except (OSError, ValueError):  # closed under us
            pass
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


class IvrServe:
    """``ivr serve`` in a subprocess on ephemeral ports; always killed by ``stop``."""

    def __init__(self, tmp_dir, *args: str, timeout: float = 60.0):
        import os
        import subprocess
        import sys
        from pathlib import Path

        self.log_dir = Path(tmp_dir) / "logs"
        self.stderr_path = Path(tmp_dir) / f"ivr_serve_{time.monotonic_ns()}.err"
        low, high = free_rtp_range()
        cmd = [sys.executable, "-m", "ivr", "serve", "--sip", "127.0.0.1:0", "--audiosocket", "127.0.0.1:0",
               "--rtp-ports", f"{low}-{high}", "--log-dir", str(self.log_dir), *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     text=True, env=env)
        self.addresses: dict[str, int] = {}
        lines = read_lines(self.proc.stdout)
        end = time.monotonic() + timeout
        try:
            while len(self.addresses) < 2:
                try:  # a child that is alive but silent cannot hold the test beyond the deadline
                    line = lines.get(timeout=max(0.0, end - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None:  # deadline passed, or stdout closed (the child exited)
                    raise RuntimeError(f"ivr serve did not start within {timeout} s: {self.stderr()}")
                if line.startswith("listening "):
                    _, name, addr = line.split()
                    self.addresses[name] = int(addr.rsplit(":", 1)[1])
        except BaseException:
            self.stop()
            raise

    @property
    def sip_port(self) -> int:
        return self.addresses["sip"]

    @property
    def audiosocket_port(self) -> int:
        return self.addresses["audiosocket"]

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()

    def logs(self) -> list[list[dict]]:
        import json

        out = []
        for path in sorted(self.log_dir.glob("*.jsonl")):
            out.append([json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()])
        return out


# ---------------------------------------------------------------- kamailio

KAMAILIO_CFG = SIPP_DIR.parent.parent / "deploy" / "kamailio" / "kamailio.cfg"


class Kamailio:
    """Debian's kamailio with deploy/kamailio/kamailio.cfg in front of ``instances`` (SIP ports on
    127.0.0.1): a foreground child (-DD -E) with its dispatcher list, runtime dir and log in a temp dir,
    on a free port. Every wait has a deadline; ``stop`` always ends the process."""

    def __init__(self, tmp_dir, instances: list[int], ping_interval: int = 1, fr_timer_ms: int = 1000,
                 timeout: float = 20.0):
        import subprocess
        from pathlib import Path

        self.dir = Path(tmp_dir) / f"kamailio-{time.monotonic_ns()}"
        self.dir.mkdir()
        (self.dir / "dispatcher.list").write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in instances))
        self.log_path = self.dir / "kamailio.log"
        self.port = free_udp_port()
        cmd = ["kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG), "-Y", str(self.dir), "-w", str(self.dir),
               "-m", "32", "-M", "4",
               "-A", f"LISTEN=udp:127.0.0.1:{self.port}", "-A", f'DS_LIST="{self.dir / "dispatcher.list"}"',
               "-A", f"DS_PING_INTERVAL={ping_interval}", "-A", f"FR_TIMER={fr_timer_ms}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        probe = SipClient(self.port)
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kamailio exited {self.proc.returncode}: {self.log()}")
                probe.call_id = f"{uuid.uuid4()}@ready"
                probe.request("OPTIONS", uri=f"sip:127.0.0.1:{self.port}")
                if probe.receive(0.5) is not None:
                    return
            raise RuntimeError(f"kamailio did not answer within {timeout} s: {self.log()}")
        finally:
            probe.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
