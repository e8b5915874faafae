"""FAKE call session for the phone-channel protocol tests (``ToneSession``).

It follows the CallSession contract (start, feed_audio, feed_digit, ivr_audio, tick, hangup, ended,
transfer_to, transfer_failed, events) but has no dialogue: it plays a 440 Hz "greeting" tone, records the
keys and audio it receives, and writes the same kind of JSON-lines call log. Keys: "0" asks for the
operator (``transfer_to``), "9" plays a short goodbye tone and hangs up. The real CallSession is tested
through the same server in the real-peer tests; this fake only isolates the SIP/RTP/AudioSocket layers.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np


def exclusive(method):
    """Counts how many threads are inside the session's methods at once (the contract allows one)."""

    def wrapper(self, *args, **kwargs):
        with self._guard:
            self._inside += 1
            self.max_inside = max(self.max_inside, self._inside)
        self.threads.add(threading.current_thread().name)
        try:
            return method(self, *args, **kwargs)
        finally:
            with self._guard:
                self._inside -= 1

    return wrapper


class ToneSession:
    def __init__(self, call_id: str, log_dir: Path | None = None, greeting_s: float = 1.0, rate: int = 8000,
                 freq: float = 440.0):
        self.call_id = call_id
        self.rate = rate
        self.freq = freq
        self.greeting = int(greeting_s * rate)
        self.remaining = 0
        self.phase = 0
        self.digits: list[str] = []
        self.events: list[dict] = []
        self.audio_frames = 0
        self.audio_energy = 0.0
        self.ended = False
        self.hanging = False
        self.transfer_to: str | None = None
        self.transfer_failures = 0
        self.threads: set[str] = set()
        self._guard = threading.Lock()
        self._inside = 0
        self.max_inside = 0
        self.reads = 0
        self.last_read_t = 0.0
        self._log = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self._log = open(Path(log_dir) / f"{call_id}.jsonl", "a", encoding="utf-8")

    def _event(self, t: float, kind: str, **data) -> None:
        self.threads.add(threading.current_thread().name)
        event = {"t": round(t, 3), "type": kind, **data}
        self.events.append(event)
        if self._log:
            self._log.write(json.dumps(event) + "\n")
            self._log.flush()

    @exclusive
    def start(self, t: float) -> None:
        self._event(t, "start")
        self._event(t, "play", prompt_id="greeting")
        self.remaining = self.greeting

    @exclusive
    def feed_audio(self, pcm: np.ndarray, t: float) -> None:
        assert pcm.dtype == np.int16 and pcm.size == 160
        self.audio_frames += 1
        self.audio_energy += float(np.mean(pcm.astype(np.float64) ** 2))

    @exclusive
    def feed_digit(self, digit: str, t: float) -> None:
        self._event(t, "digit", digit=digit)
        self.digits.append(digit)
        if self.remaining:
            self._event(t, "stop")
            self.remaining = 0
        if digit == "0":
            self.transfer_to = "operator"
            self._event(t, "transfer")
        elif digit == "9":
            self._event(t, "play", prompt_id="goodbye")
            self.remaining = self.rate // 4
            self.hanging = True

    @exclusive
    def transfer_failed(self, t: float, reason: str = "") -> None:
        self.transfer_to = None
        self.transfer_failures += 1
        self._event(t, "transfer_failed", reason=reason)

    @exclusive
    def ivr_audio(self, n: int, t: float) -> np.ndarray:
        self.reads += 1
        self.last_read_t = t
        out = np.zeros(n, dtype=np.int16)
        if self.remaining:
            k = min(n, self.remaining)
            idx = np.arange(self.phase, self.phase + k)
            out[:k] = (8000 * np.sin(2 * np.pi * self.freq * idx / self.rate)).astype(np.int16)
            self.phase += k
            self.remaining -= k
        elif self.hanging and not self.ended:
            self._event(t, "hangup", reason="ivr")
            self._close()
            self.ended = True  # last: a test that sees ended finds the hangup in the events and the log
        return out

    @exclusive
    def tick(self, t: float) -> None:
        pass

    @exclusive
    def hangup(self, t: float) -> None:
        if not self.ended:
            self._event(t, "hangup", reason="caller")
            self._close()
            self.ended = True  # last: a test that sees ended finds the hangup in the events and the log

    def _close(self) -> None:
        if self._log:
            self._log.close()
            self._log = None


class ToneFactory:
    """Session factory for the servers: keeps every ToneSession it made, by call id."""

    def __init__(self, log_dir: Path | None = None, greeting_s: float = 1.0):
        self.log_dir = log_dir
        self.greeting_s = greeting_s
        self.sessions: dict[str, ToneSession] = {}

    def __call__(self, call_id: str, channel: str) -> ToneSession:
        session = ToneSession(call_id, self.log_dir, self.greeting_s)
        self.sessions[call_id] = session
        return session
