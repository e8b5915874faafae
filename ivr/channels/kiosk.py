"""The hands-free kiosk: microphone and speaker, one visitor at a time, keyboard keys as the keypad.

    device = SoundDevice(rate=16000, device=None)        # the sound card (sounddevice, one duplex stream)
    kiosk = Kiosk(Resources.load(model_path, tts_rate=16000), rate=16000)   # ivr.channels.resources
    kiosk.run(device)                                     # until 'q' or Ctrl-C

The audio path, every 20 ms frame:

    sound card ──callback──► Kiosk.on_audio(mic block) ──► queue ──► worker: Kiosk.process(frame)
         ▲                        │ returns the next speaker block            │
         └────────────────────────┘◄──── speaker ring ◄── CallSession.ivr_audio
                                                         mic frame ─► echo gate ─► VAD ─► delay line ─► CallSession

- The device callback is thin: it queues the mic block and takes the speaker block ready for it (no
  decoding in the audio thread). The worker thread does the work (``step``/``run``).
- Echo gate: while the kiosk speaks, and for ``tail_s`` after its last sound has left the speaker, the mic
  is muted (the kiosk does not hear itself, so it cannot barge in on itself). Keys still work: keyboard keys
  always, and keypad tones on the mic are detected on the raw (ungated) mic audio.
- VAD (ivr.media.vad) gates the recogniser: the session hears the mic only from the start of an utterance to its
  end. A short delay line (``delay_frames``, 100 ms) lets the onset the VAD needed to decide through too.
- The session gets both the raw mic frame (its caller-audio piece finds keypad tones there, as on the phone,
  even while the echo gate is closed) and the gated frame for its recogniser (``feed_audio(raw, t, speech)``).
- The display shows the session's records as lines (``ivr.channels.transcript``, kiosk style), once they are
  settled: the keys of a run still being typed show when the run ends, masked when it was long.
- When a visit ends (the IVR said goodbye), the kiosk waits; the next key or utterance starts a new visit
  with the greeting.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from ivr.errors import IvrError
from ivr.media.vad import Vad, VadSettings

KEYPAD_KEYS = set("0123456789*#")
QUIT_KEYS = {"q", "Q", "\x04"}  # q, Ctrl-D
COMFORT_NOISE_RMS = 10.0  # about -67 dBFS
CUSHION_FRAMES = 2  # speaker frames kept ready ahead of the card (40 ms of output latency)


@dataclass
class KioskStats:
    frames: int = 0  # mic frames processed
    gated_frames: int = 0  # ... heard as silence because the kiosk was speaking
    vad_frames: int = 0  # ... passed to the session as speech (VAD open)
    utterances: int = 0  # VAD starts
    keys: list[str] = field(default_factory=list)
    visits: int = 0
    underruns: int = 0  # speaker blocks asked for before they were ready (silence was played)


class Kiosk:
    """The kiosk loop. Feed it mic blocks with ``on_audio`` (any thread) and run ``step``/``run`` (one worker).

    ``resources``: ivr.channels.session.Resources (tts_rate should be ``rate`` to avoid resampling each prompt).
    ``display(line)``: where the kiosk writes what it says and hears (default: stdout).
    ``echo_gate``: False only to show what happens without it (the kiosk then hears itself).
    """

    def __init__(self, resources, *, rate: int = 16000, tail_s: float = 0.3, delay_frames: int = 5,
                 vad_settings: VadSettings | None = None, log_dir=None, display=None, echo_gate: bool = True):
        if rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise IvrError(f"kiosk sample rate {rate} Hz is not supported", "use --rate 16000")
        self.resources = resources
        self.rate = rate
        self.frame = rate // 50
        self.tail_s = float(tail_s)
        self.echo_gate = echo_gate
        self.log_dir = log_dir
        self.display = display or (lambda line: print(line, flush=True))
        self.vad = Vad(rate, vad_settings)
        self.stats = KioskStats()
        self.session = None
        self.sessions: list = []  # every visit's session, the current one last
        self.t = 0.0  # seconds of mic audio processed (the kiosk's clock)
        self.quit = threading.Event()
        self._in: queue.Queue = queue.Queue()
        self._keys: queue.Queue = queue.Queue()
        self._mic = np.zeros(0, dtype=np.int16)
        self._ring: collections.deque = collections.deque()  # speaker frames ready for the card
        self._ring_lock = threading.Lock()
        self._ring_pos = 0
        self._late = 0  # samples of silence the card played because the worker was late
        self._delay: collections.deque = collections.deque()  # [raw frame, heard frame, t, open]
        self._delay_frames = max(1, int(delay_frames))
        self._open = False
        self._gate_until = 0.0
        self._session_t = 0.0  # end of the last frame the session heard
        self._shown = 0  # records of the session counted in the stats
        self._shown_lines = 0  # ... and shown on the display
        self._rng = np.random.default_rng(0)
        for _ in range(CUSHION_FRAMES):
            self._ring.append(np.zeros(self.frame, dtype=np.int16))

    # -- the device side (any thread) ------------------------------------------------------------------------

    def on_audio(self, block) -> np.ndarray:
        """A block of mic samples (mono int16) has been captured; returns as many speaker samples to play."""
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[:, 0]
        if block.dtype != np.int16:
            from ivr.media.audio import to_int16

            block = to_int16(block)
        self._in.put(block.copy())
        return self._take(len(block))

    def on_key(self, key: str) -> None:
        """A key typed on the keyboard: 0-9 * # are keypad keys, q quits."""
        if key in QUIT_KEYS:
            self.quit.set()
        elif key in KEYPAD_KEYS:
            self._keys.put(key)

    def _take(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        with self._ring_lock:
            while filled < n and self._ring:
                head = self._ring[0]
                k = min(n - filled, len(head) - self._ring_pos)
                out[filled:filled + k] = head[self._ring_pos:self._ring_pos + k]
                filled += k
                self._ring_pos += k
                if self._ring_pos >= len(head):
                    self._ring.popleft()
                    self._ring_pos = 0
            if filled < n:
                self.stats.underruns += 1
                self._late += n - filled
        return out

    def _ring_seconds(self) -> float:
        with self._ring_lock:
            return (sum(len(f) for f in self._ring) - self._ring_pos) / self.rate

    # -- the worker side -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin the first visit (the greeting plays)."""
        self._new_visit()

    def step(self, timeout: float | None = 0.1) -> bool:
        """Handle typed keys, then one queued mic block (waiting up to ``timeout``). False when none came."""
        while True:
            try:
                key = self._keys.get_nowait()
            except queue.Empty:
                break
            self._key(key, "keyboard")
        try:
            block = self._in.get(timeout=timeout) if timeout else self._in.get_nowait()
        except queue.Empty:
            return False
        self._mic = np.concatenate([self._mic, block]) if self._mic.size else block
        while len(self._mic) >= self.frame:
            frame, self._mic = self._mic[:self.frame], self._mic[self.frame:]
            self.process(frame)
        return True

    def run(self, device=None) -> int:
        """Open ``device`` (``open(on_audio)``/``close()``), then work until quit. Returns the exit code."""
        if self.session is None and not self.sessions:
            self.start()
        if device is not None:
            device.open(self.on_audio)
        try:
            while not self.quit.is_set():
                self.step(0.1)
        finally:
            if device is not None:
                device.close()
            if self.session is not None:
                self.session.hangup(self._session_t)
                self._show()
        return 0

    def process(self, frame: np.ndarray) -> None:
        """One 20 ms mic frame: echo gate, VAD, delay line, session; then one speaker frame."""
        t0 = self.t
        self.t += len(frame) / self.rate
        self.stats.frames += 1
        gated = self.echo_gate and t0 < self._gate_until
        if gated:
            self.stats.gated_frames += 1
            self.vad.skip(len(frame))
            self._open = False
            heard = np.zeros_like(frame)
        else:
            heard = frame
            event = self.vad.feed(frame)
            if event == "start":
                self.stats.utterances += 1
                self._open = True
                start = self.vad.speech_start - 0.04
                for item in self._delay:  # the onset the VAD needed to decide is still in the delay line
                    if item[2] >= start:
                        item[3] = True
                if self.session is None:
                    self._new_visit()
            elif event == "end":
                self._open = False
        self._delay.append([frame, heard, t0, self._open and not gated])
        if len(self._delay) > self._delay_frames:
            self._to_session(*self._delay.popleft())
        else:
            self._speaker(np.zeros(self.frame, dtype=np.int16))

    # -- internals -------------------------------------------------------------------------------------------

    def _to_session(self, raw: np.ndarray, frame: np.ndarray, t: float, open_: bool) -> None:
        s = self.session
        end = t + len(frame) / self.rate
        self._session_t = end
        if s is None:
            self._speaker(np.zeros(self.frame, dtype=np.int16))
            return
        if open_:
            self.stats.vad_frames += 1
        s.feed_audio(raw, t, speech=frame if open_ else self._comfort_noise(len(frame)))
        out = s.ivr_audio(len(frame), end)
        self._speaker(out, playing=s.playing or bool(np.any(out)))
        if s.transfer_to:
            self.display("[kiosk: chưa có đường chuyển tới tổng đài viên tại quầy này]")
            s.transfer_failed(end, "the kiosk has no operator line")
        self._show()
        if s.ended:
            self.display("[lượt hỏi kết thúc; bấm phím hoặc nói để bắt đầu lượt mới]")
            self.session = None

    def _comfort_noise(self, n: int) -> np.ndarray:
        """What the session hears while the gate is closed: faint steady noise, not digital zeros (the
        recogniser's end-of-utterance rules need silence that looks like a quiet room)."""
        return self._rng.normal(0.0, COMFORT_NOISE_RMS, n).astype(np.int16)

    def _speaker(self, out: np.ndarray, playing: bool = False) -> None:
        with self._ring_lock:
            if self._late >= len(out) and not np.any(out):
                self._late -= len(out)  # the card played silence for us already: keep the latency from growing
                return
            self._ring.append(np.asarray(out, dtype=np.int16))
        if playing:  # muted until this frame has left the speaker, plus the tail
            self._gate_until = max(self._gate_until, self.t + self._ring_seconds() + self.tail_s)

    def _key(self, key: str, via: str) -> None:
        if self.session is None:
            self._new_visit()  # the key wakes the kiosk; the greeting starts, the key counts
        self.session.feed_digit(key, self._session_t)
        self._show()

    def _new_visit(self) -> None:
        from ivr.channels.session import CallSession

        self.stats.visits += 1
        self.session = CallSession(self.resources, sample_rate=self.rate, log_dir=self.log_dir, channel="kiosk")
        self.sessions.append(self.session)
        self._shown = 0
        self._shown_lines = 0
        self.session.start(self._session_t)
        self._show()

    def _show(self) -> None:
        from ivr.channels.transcript import line

        s = self.session
        if s is None:
            return
        for ev in s.events[self._shown:]:
            if ev["type"] == "key":
                self.stats.keys.append(ev["digit"])
        settled = s.call.settled
        for ev in s.events[self._shown_lines:settled]:
            text = line(ev, "kiosk")
            if text is not None:
                self.display(text)
        self._shown_lines = max(self._shown_lines, settled)
        self._shown = len(s.events)


# -- the real sound card ---------------------------------------------------------------------------------------


def check_sound_device(device=None):
    """The sounddevice module, or ``IvrError`` naming what is missing: PortAudio, an input (microphone)
    device, an output (speaker) device."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library itself is missing
        raise IvrError(f"the kiosk needs a sound card, but the PortAudio library is not available ({exc})",
                       "install it: sudo apt-get install libportaudio2") from None
    missing = []
    for kind, name in (("input", "input device (microphone)"), ("output", "output device (speaker)")):
        try:
            info = sd.query_devices(device, kind=kind)
            if int(info.get(f"max_{kind}_channels", 0)) < 1:
                missing.append(name)
        except (sd.PortAudioError, ValueError) as exc:
            missing.append(f"{name}: {exc}")
    if missing:
        where = f"device {device!r}" if device is not None else "the default devices"
        raise IvrError(
            f"the kiosk found no usable sound {' and no '.join(missing)} ({where})",
            "connect a microphone and a speaker, list devices with `python -m sounddevice`, choose one with "
            "--device N; or answer recordings with `ivr answer FILE.wav`",
        )
    return sd


class SoundDevice:
    """The sound card: one duplex ``sounddevice.Stream``; its callback is a thin adapter to ``on_audio``."""

    def __init__(self, rate: int = 16000, device=None):
        self.rate = rate
        self.device = device
        self.stream = None
        self.on_audio = None
        self.status_flags = 0

    def open(self, on_audio) -> None:
        sd = check_sound_device(self.device)
        self.on_audio = on_audio
        try:
            self.stream = sd.Stream(samplerate=self.rate, blocksize=self.rate // 50, channels=1, dtype="int16",
                                    device=self.device, callback=self.callback, latency="low")
            self.stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise IvrError(f"the sound card cannot be opened at {self.rate} Hz mono ({exc})",
                           "choose another device with --device N (`python -m sounddevice` lists them)") from None

    def callback(self, indata, outdata, frames, time, status) -> None:
        if status:
            self.status_flags += 1
        outdata[:, 0] = self.on_audio(indata[:, 0])

    def close(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            self.stream = None


# -- the keyboard ----------------------------------------------------------------------------------------------


def keyboard_thread(kiosk: Kiosk, stream=None) -> threading.Thread:
    """Read keys from the terminal (one key at a time when it is a terminal) and hand them to ``kiosk``."""
    stream = stream or sys.stdin

    def read_keys() -> None:
        fd = None
        old = None
        try:
            if stream.isatty():
                import termios
                import tty

                fd = stream.fileno()
                old = termios.tcgetattr(fd)
                tty.setcbreak(fd)
            while not kiosk.quit.is_set():
                ch = stream.read(1)
                if not ch:  # no more keys (stdin closed): the kiosk goes on listening
                    break
                kiosk.on_key(ch)
        except (OSError, ValueError):
            kiosk.quit.set()
        finally:
            if old is not None:
                import termios

                termios.tcsetattr(fd, termios.TCSADRAIN, old)

    th = threading.Thread(target=read_keys, name="kiosk-keys", daemon=True)
    th.start()
    return th


# -- ivr kiosk -------------------------------------------------------------------------------------------------


def run_kiosk(model=None, device=None, rate: int = 16000, voice: str | None = None, log_dir=None) -> int:
    """``ivr kiosk``: check the sound card first (the clear message comes before any loading), then run."""
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    check_sound_device(device)
    from ivr.channels.calllog import default_log_dir
    from ivr.channels.resources import Resources
    from ivr.media.tts import Synthesizer, TtsCache

    resources = Resources.load(model, tts_rate=rate, tts=TtsCache(Synthesizer.from_config(voice=voice)))
    kiosk = Kiosk(resources, rate=rate, log_dir=log_dir or default_log_dir())
    print("Kiosk ready: speak after the greeting, or type keys 0-9 * #; q quits.", flush=True)
    keyboard_thread(kiosk)
    return kiosk.run(SoundDevice(rate, device))
