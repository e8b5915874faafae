"""Phone channel load: concurrent keypad calls from sipp into `ivr serve` (the real call session).

For each load level (10, 25, 50 ... calls at once) sipp places that many calls that press the keys of a
menu path as RFC 4733 events and stay on the line listening. Measured:
- CPU per call: the `ivr serve` process's CPU time (user + system, /proc) while all calls are up,
  as a percentage of one core per call;
- outgoing RTP pacing: every packet the server sends is captured on the loopback interface with the kernel
  timestamp of its transmission (AF_PACKET, outgoing copy; needs root); per call, the deviation of each inter-packet gap from 20 ms; p50/p99/max
  over all calls;
- answered calls (sipp's count of successful calls) and calls whose log reached the answer.
The run stops at the first level where the p99 deviation passes 10 ms or calls fail: the level before it is
the number of calls this machine holds.

Usage: .venv/bin/python benchmarks/bench_sip.py [--levels 10,25,50,75,100] [--seconds 10] [--model none]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIPP_DIR = ROOT / "tests" / "sipp"
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
PACKET_OUTGOING = 4


def free_port(kind=socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Capture(threading.Thread):
    """Kernel-timestamped capture of UDP packets from ports [low, high] on the loopback interface."""

    def __init__(self, low: int, high: int):
        super().__init__(daemon=True)
        self.low, self.high = low, high
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: outgoing too
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.settimeout(0.2)
        self.packets: dict[int, list[float]] = {}  # SSRC -> kernel times
        self.recording = False
        self.stop_flag = False

    def run(self) -> None:
        while not self.stop_flag:
            try:
                data, anc, _, addr = self.sock.recvmsg(2048, socket.CMSG_SPACE(16))
            except (TimeoutError, OSError):
                continue
            if addr[2] != PACKET_OUTGOING or not self.recording or len(data) < 14 + 20 + 8 + 12:
                continue
            ip = data[14:]
            if data[12:14] != b"\x08\x00" or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport = struct.unpack_from("!H", ip, ihl)[0]
            if not self.low <= sport <= self.high:
                continue
            ssrc = struct.unpack_from("!I", ip, ihl + 8 + 8)[0]
            t = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    t = sec + nsec / 1e9
            if t is not None:
                self.packets.setdefault(ssrc, []).append(t)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_serve(tmp: Path, low: int, high: int, model: str, max_calls: int):
    log_dir = tmp / "logs"
    cmd = [sys.executable, "-m", "ivr", "serve", "--sip", "127.0.0.1:0", "--audiosocket", "off",
           "--rtp-ports", f"{low}-{high}", "--log-dir", str(log_dir), "--model", model,
           "--max-calls", str(max_calls), "--grace", "1"]
    err = open(tmp / "serve.err", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(ROOT))
    end = time.monotonic() + 120
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith("listening sip"):
            return proc, int(line.split()[-1].rsplit(":", 1)[1]), log_dir
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"ivr serve did not start: {(tmp / 'serve.err').read_text()[-2000:]}")


def run_level(n: int, seconds: float, model: str, pcap: str, faq_id: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        low = 30000 + (n * 37 % 2000) * 2
        high = low + 4 * n + 40
        proc, sip_port, log_dir = start_serve(tmp, low, high, model, max_calls=n + 10)
        capture = Capture(low, high)
        capture.start()
        sipp = None
        try:
            text = (SIPP_DIR / "uac_play.xml").read_text(encoding="iso-8859-1")
            hold = int(seconds * 1000)
            text = text.replace("{pcap}", pcap).replace("{lead_ms}", "800").replace("{hold_ms}", str(hold))
            scen = tmp / "uac_play.xml"
            scen.write_text(text, encoding="iso-8859-1")
            rate = max(10, n)  # all calls start within about a second
            cmd = ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_port()),
                   "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-m", str(n), "-l", str(n), "-r", str(rate),
                   "-timeout", f"{int(seconds + 60)}s", "-timeout_error", "-nostdin", "-recv_timeout", "30000",
                   "-trace_stat", "-stf", str(tmp / "stat.csv")]
            sipp = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(SIPP_DIR))
            time.sleep(2.5)  # calls set up, keys pressed
            capture.recording = True
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            window = max(2.0, seconds - 4.0)
            time.sleep(window)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            capture.recording = False
            rc = sipp.wait(seconds + 90)
            stat = (tmp / "stat.csv").read_text().splitlines() if (tmp / "stat.csv").exists() else []
        finally:
            if sipp is not None and sipp.poll() is None:
                sipp.kill()
            capture.stop_flag = True
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            clock = [ln for ln in (tmp / "serve.err").read_text().splitlines() if "media clock" in ln]
            if clock:
                print("   server " + clock[-1].split("INFO ", 1)[-1], flush=True)
        ok = failed = None
        if len(stat) >= 2:
            head, last = stat[0].split(";"), stat[-1].split(";")
            row = dict(zip(head, last, strict=False))
            ok, failed = int(row.get("SuccessfulCall(C)", 0)), int(row.get("FailedCall(C)", 0))
        answered = 0
        for path in log_dir.glob("*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("type") == "answer" and ev.get("faq_id") == faq_id:
                    answered += 1
                    break
        devs = []
        streams = 0
        for times in capture.packets.values():
            if len(times) < 10:
                continue
            streams += 1
            gaps = np.diff(np.array(times)) * 1000
            devs.extend(np.abs(gaps - 20.0))
        devs = np.array(devs) if devs else np.array([np.nan])
        return {"calls": n, "sipp_rc": rc, "ok": ok, "failed": failed, "answered": answered, "streams": streams,
                "cpu_pct_per_call": 100 * (cpu1 - cpu0) / (t1 - t0) / n,
                "cpu_pct_total": 100 * (cpu1 - cpu0) / (t1 - t0),
                "dev_p50": float(np.percentile(devs, 50)), "dev_p99": float(np.percentile(devs, 99)),
                "dev_max": float(np.max(devs)), "packets": int(sum(len(v) for v in capture.packets.values()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="10,25,50,75,100")
    ap.add_argument("--seconds", type=float, default=10.0, help="time each call stays on the line")
    ap.add_argument("--model", default="none", help="Vosk model for the calls ('none': keys only)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_sip: the loopback capture needs root (AF_PACKET); skipped")
        return 0
    import yaml

    caps = yaml.safe_load((SIPP_DIR / "pcaps.yaml").read_text(encoding="utf-8"))["captures"]
    cap = next(c for c in caps if c["mode"] == "rfc4733")
    print(f"cores: {os.cpu_count()}  model: {args.model}  keys: {cap['keys']} -> FAQ {cap['faq_id']}  "
          f"call: {args.seconds:.0f} s")
    print(f"{'calls':>5} {'ok':>4} {'fail':>4} {'answer':>6} {'streams':>7} {'CPU%/call':>9} {'CPU%':>6} "
          f"{'dev p50 ms':>10} {'dev p99 ms':>10} {'dev max ms':>10}")
    held = 0
    for n in [int(x) for x in args.levels.split(",")]:
        r = run_level(n, args.seconds, args.model, cap["file"], cap["faq_id"])
        print(f"{r['calls']:>5} {r['ok']!s:>4} {r['failed']!s:>4} {r['answered']:>6} {r['streams']:>7} "
              f"{r['cpu_pct_per_call']:>9.2f} {r['cpu_pct_total']:>6.1f} {r['dev_p50']:>10.2f} "
              f"{r['dev_p99']:>10.2f} {r['dev_max']:>10.2f}", flush=True)
        if not r["dev_p99"] <= 10.0 or (r["failed"] or 0) > 0 or r["ok"] != n:
            break
        held = n
    print(f"calls held with p99 RTP spacing deviation <= 10 ms and no failed call: {held}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
