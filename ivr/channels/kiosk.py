"""The hands-free kiosk: microphone and speaker, one visitor at a time, keyboard keys as the keypad.

    device = SoundDevice(rate=16000, device=None)        # the sound card (sounddevice, one duplex stream)
    kiosk = Kiosk(Resources.load(model_path, tts_rate=16000), rate=16000)   # ivr.channels.resources
    kiosk.run(device)                                     # until 'q' or Ctrl-C

The audio path, every 20 ms frame:

    sound card ──callback──► Kiosk.on_audio(mic block) ──► queue of (mic, speaker) pairs ──► worker: process
         ▲                        │ returns the next speaker block                              │
         └────────────────────────┘◄──── speaker ring ◄── CallSession.ivr_audio                 │
       mic frame ─► [echo canceller] ─► echo gate ─► VAD ─► delay line ─► CallSession ◄──────────┘

- The device callback is thin: it queues the mic block, paired with the speaker block the card was playing
  while it recorded it (the block the previous callback returned), and takes the speaker block ready for it
  (no decoding in the audio thread). The worker thread does the work (``step``/``run``).
- Full duplex (``duplex=True``; the default when libspeexdsp is there): one ``ivr.media.duplex.DuplexMic``
  for the kiosk's whole run (the learnt echo path is kept across visits) takes the IVR's own voice out of the
  mic signal; its tail covers 200 ms of room plus the card's input and output latency. Until its filter has
  converged (``DuplexMic.converged``, about 3 s of the kiosk speaking) the kiosk stays half-duplex (the echo
  gate below). After that the cleaned mic goes to the VAD; while the IVR is audible, what the VAD hears
  reaches the session only once the duplex mic has confirmed a barge-in (``confirm_ms`` of speech: a residual
  echo blip never reaches the recogniser). On a barge-in the speaker ring is emptied and the kiosk stops
  reading the IVR's audio at once (the playout is paused), and the visitor's words go to the session, whose
  recogniser gives a partial result -> the dialogue's ``StopPlayback``, exactly as on the phone. If no words
  come (a cough), the prompt resumes where it paused ``resume_s`` after the utterance ended.
- Half duplex (``duplex=False``, or libspeexdsp missing): echo gate: while the kiosk speaks, and for
  ``tail_s`` after its last sound has left the speaker, the mic is muted (the kiosk does not hear itself, so it
  cannot barge in on itself). Keys still work: keyboard keys always, and keypad tones on the mic are detected on
  the raw (ungated, not echo-cancelled) mic audio.
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
ROOM_TAIL_MS = 200.0  # echo path the canceller learns on top of the sound card's latency


@dataclass
class KioskStats:
    frames: int = 0  # mic frames processed
    gated_frames: int = 0  # ... heard as silence because the kiosk was speaking
    vad_frames: int = 0  # ... passed to the session as speech (VAD open)
    utterances: int = 0  # VAD starts
    keys: list[str] = field(default_factory=list)
    visits: int = 0
    underruns: int = 0  # speaker blocks asked for before they were ready (silence was played)
    barge_ins: list[float] = field(default_factory=list)  # kiosk times (s) the visitor's voice stopped the IVR
    resumed: int = 0  # barge-ins with no words after them: the paused prompt went on


def duplex_mode(duplex: bool | None) -> tuple[bool, str | None]:
    """(full duplex?, a one-line notice when the wish cannot be met). ``None``: full duplex when the echo
    canceller (libspeexdsp) can be loaded, half duplex otherwise; ``True`` insists (``IvrError`` without it)."""
    from ivr.media import aec

    if duplex is False:
        return False, None
    if aec.available():
        return True, None
    if duplex:
        aec._load_library()  # raises the IvrError naming the package
    return False, ("Kiosk: half-duplex (no echo canceller: libspeexdsp1 is not installed; "
                   "sudo apt-get install libspeexdsp1): visitors interrupt the IVR with keys, not by voice.")


class Kiosk:
    """The kiosk loop. Feed it mic blocks with ``on_audio`` (any thread) and run ``step``/``run`` (one worker).

    ``resources``: ivr.channels.session.Resources (tts_rate should be ``rate`` to avoid resampling each prompt).
    ``display(line)``: where the kiosk writes what it says and hears (default: stdout).
    ``echo_gate``: False only to show what happens without it (the kiosk then hears itself).
    ``duplex``: True full duplex (echo cancelled, the visitor's voice interrupts the IVR), False half duplex
    (mic muted while the kiosk speaks), None full duplex when libspeexdsp is there (``notice`` says when
    not). ``device_latency_s``: the sound card's input + output latency (``run`` takes it from the device).
    ``resume_s``: after a barge-in that brought no words, the paused prompt resumes this long after the
    utterance ended.
    """

    def __init__(self, resources, *, rate: int = 16000, tail_s: float = 0.3, delay_frames: int = 5,
                 vad_settings: VadSettings | None = None, log_dir=None, display=None, echo_gate: bool = True,
                 duplex: bool | None = None, device_latency_s: float = 0.0, resume_s: float = 1.0):
        if rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise IvrError(f"kiosk sample rate {rate} Hz is not supported", "use --rate 16000")
        self.full_duplex, self.notice = duplex_mode(duplex)
        self.duplex = None  # the DuplexMic, made below (full duplex only)
        self.resume_s = float(resume_s)
        self._paused = False  # a barge-in paused the IVR's audio; the session has not stopped it yet
        self._barged = False  # the current utterance has barged in
        self._barge_mark = 0  # number of the session's records when it did
        self._resume_at: float | None = None
        self._last_out = None  # the speaker block the card is playing now (returned by the last callback)
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
        self._spk = np.zeros(0, dtype=np.int16)  # the speaker samples paired with ``_mic``
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
        if self.full_duplex:
            self._make_duplex(device_latency_s)

    @property
    def mode(self) -> str:
        return "full-duplex" if self.full_duplex else "half-duplex"

    def _make_duplex(self, latency_s: float) -> None:
        """One DuplexMic for the kiosk's whole run; its tail covers the room and the card's latency."""
        from ivr.media.duplex import DuplexMic

        if self.duplex is not None:
            self.duplex.close()
        tail = ROOM_TAIL_MS + max(0.0, float(latency_s)) * 1000.0
        self.duplex = DuplexMic(self.rate, tail_ms=min(tail, 2000.0), vad=self.vad.s)

    # -- the device side (any thread) ------------------------------------------------------------------------

    def on_audio(self, block) -> np.ndarray:
        """A block of mic samples (mono int16) has been captured; returns as many speaker samples to play."""
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[:, 0]
        if block.dtype != np.int16:
            from ivr.media.audio import to_int16

            block = to_int16(block)
        playing = self._last_out  # what the card played while it recorded this block
        if playing is None or len(playing) != len(block):
            playing = np.zeros(len(block), dtype=np.int16)
        out = self._take(len(block))
        self._last_out = out
        self._in.put((block.copy(), playing))
        return out

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
            block, played = self._in.get(timeout=timeout) if timeout else self._in.get_nowait()
        except queue.Empty:
            return False
        self._mic = np.concatenate([self._mic, block]) if self._mic.size else block
        self._spk = np.concatenate([self._spk, played]) if self._spk.size else played
        while len(self._mic) >= self.frame:
            frame, self._mic = self._mic[:self.frame], self._mic[self.frame:]
            spk, self._spk = self._spk[:self.frame], self._spk[self.frame:]
            self.process(frame, spk)
        return True

    def run(self, device=None) -> int:
        """Open ``device`` (``open(on_audio)``/``close()``), then work until quit. Returns the exit code."""
        if self.session is None and not self.sessions:
            self.start()
        if device is not None:
            device.open(self.on_audio)
            latency = getattr(device, "latency_s", 0.0)
            if self.full_duplex and latency and self.duplex is not None and self.duplex.aec.frames == 0:
                self._make_duplex(latency)  # the card's real latency is known once it is open
        try:
            while not self.quit.is_set():
                self.step(0.1)
        finally:
            if device is not None:
                device.close()
            if self.session is not None:
                self.session.hangup(self._session_t)
                self._show()
            if self.duplex is not None:
                self.duplex.close()
                self.duplex = None
        return 0

    def process(self, frame: np.ndarray, speaker: np.ndarray | None = None) -> None:
        """One 20 ms mic frame (and the speaker frame played while it was recorded): echo canceller, echo gate,
        VAD, barge-in, delay line, session; then one speaker frame."""
        t0 = self.t
        self.t += len(frame) / self.rate
        self.stats.frames += 1
        audible = t0 < self._gate_until  # the IVR's voice is in the air (or its tail)
        heard, barge = frame, False
        if self.duplex is not None:
            spk = speaker if speaker is not None else np.zeros(len(frame), dtype=np.int16)
            heard, barge = self.duplex.feed(frame, spk)
            # muted until converged while the IVR is audible; and while the canceller's output settles
            gated = (self.echo_gate and audible and not self.duplex.converged) or self.duplex.settling
        else:
            gated = self.echo_gate and audible
        if gated:
            self.stats.gated_frames += 1
            self.vad.skip(len(frame))
            self._open = False
            heard = np.zeros_like(frame)
        else:
            event = self.vad.feed(heard)
            if event == "start":
                self.stats.utterances += 1
                self._open = True
                self._barged = False
                self._resume_at = None
                start = self.vad.speech_start - 0.04
                for item in self._delay:  # the onset the VAD needed to decide is still in the delay line
                    if item[2] >= start and (not audible or self.duplex is None):
                        item[3] = True
                if self.session is None:
                    self._new_visit()
            elif event == "end":
                self._open = False
                if self._paused:
                    self._resume_at = self.t + self.resume_s
        if barge and (audible or self._paused) and not self._barged and self.session is not None:
            self._barge_in(t0)
        # while the IVR is audible, only a confirmed barge-in lets the cleaned mic through to the recogniser
        to_session = self._open and not gated and (self.duplex is None or not audible or self._barged)
        self._delay.append([frame, heard, t0, to_session])
        if len(self._delay) > self._delay_frames:
            self._to_session(*self._delay.popleft())
        else:
            self._speaker(np.zeros(self.frame, dtype=np.int16))

    def _barge_in(self, t: float) -> None:
        """The visitor's voice over the IVR: silence the speaker now, let the utterance through to the session
        (its recogniser's partial result makes the dialogue stop the playout, as on the phone)."""
        self._barged = True
        self._open = True
        self._paused = True
        self._resume_at = None
        self._barge_mark = len(self.session.events)
        self.stats.barge_ins.append(round(t + self.frame / self.rate, 3))  # end of the frame that decided
        with self._ring_lock:
            self._ring.clear()
            self._ring_pos = 0
        self._gate_until = 0.0
        start = (self.vad.speech_start if self.vad.speaking and self.vad.speech_start is not None else t) - 0.04
        for item in self._delay:  # what is left of the utterance's onset in the delay line
            if item[2] >= start:
                item[3] = True

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
        if self._paused and self._pause_over(s):
            self._paused = False
        if self._paused:  # the IVR holds its breath: the playout does not advance, the speaker is silent
            s.tick(end)
            self._speaker(np.zeros(len(frame), dtype=np.int16))
        else:
            out = s.ivr_audio(len(frame), end)
            self._speaker(out, playing=s.playing or bool(np.any(out)))
        if s.transfer_to:
            self.display("[kiosk: chưa có đường chuyển tới tổng đài viên tại quầy này]")
            s.transfer_failed(end, "the kiosk has no operator line")
        self._show()
        if s.ended:
            self.display("[lượt hỏi kết thúc; bấm phím hoặc nói để bắt đầu lượt mới]")
            self.session = None
            self._paused = False

    def _pause_over(self, s) -> bool:
        """The session stopped the playout (the visitor's words), or it has nothing left to play, or the
        utterance ended ``resume_s`` ago without words (the prompt goes on where it paused)."""
        if any(e["type"] == "stop" for e in s.events[self._barge_mark:]) or not s.playing or s.ended:
            return True
        if self._resume_at is not None and self.t >= self._resume_at:
            self.stats.resumed += 1
            self._resume_at = None
            return True
        return False

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
        self.latency_s = 0.0  # input + output latency of the open stream (the echo path includes it)

    def open(self, on_audio) -> None:
        sd = check_sound_device(self.device)
        self.on_audio = on_audio
        try:
            self.stream = sd.Stream(samplerate=self.rate, blocksize=self.rate // 50, channels=1, dtype="int16",
                                    device=self.device, callback=self.callback, latency="low")
            self.stream.start()
            latency = self.stream.latency
            self.latency_s = float(sum(latency)) if isinstance(latency, tuple | list) else 2 * float(latency)
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


def run_kiosk(model=None, device=None, rate: int = 16000, voice: str | None = None, log_dir=None,
              duplex: bool | None = None) -> int:
    """``ivr kiosk``: check the sound card first (the clear message comes before any loading), then run.
    ``duplex``: None full duplex when the echo canceller is there (else half duplex, with a notice)."""
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    check_sound_device(device)
    from ivr.channels.calllog import default_log_dir
    from ivr.channels.resources import Resources
    from ivr.media.tts import Synthesizer, TtsCache

    resources = Resources.load(model, tts_rate=rate, tts=TtsCache(Synthesizer.from_config(voice=voice)))
    kiosk = Kiosk(resources, rate=rate, log_dir=log_dir or default_log_dir(), duplex=duplex)
    if kiosk.notice:
        print(kiosk.notice, flush=True)
    how = "speak (you may interrupt me)" if kiosk.full_duplex else "speak after the greeting"
    print(f"Kiosk ready ({kiosk.mode}): {how}, or type keys 0-9 * #; q quits.", flush=True)
    keyboard_thread(kiosk)
    return kiosk.run(SoundDevice(rate, device))
