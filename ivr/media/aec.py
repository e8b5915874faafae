"""Acoustic echo cancellation for the kiosk's full-duplex mode, with Xiph's libspeexdsp.

At the kiosk the microphone hears the IVR's own voice from the loudspeaker (the echo) as well as the
visitor. To let the visitor interrupt (barge-in) while the IVR speaks, the echo is taken out of the mic
signal before the voice-activity detector and the recogniser see it:

    aec = EchoCanceller(16000, frame=320, tail_ms=200)
    cleaned = aec.process(mic_frame, speaker_frame)   # int16, ``frame`` samples each, same instant

``speaker_frame`` is what was sent to the loudspeaker for the same 20 ms as ``mic_frame`` was recorded
(the reference). libspeexdsp's adaptive filter (MDF, ``speex_echo_cancellation``) learns the room's echo
path up to ``tail_ms`` long and subtracts its estimate; its preprocessor (``speex_preprocess_run`` with
the echo state attached) then suppresses what is left of the echo (``suppress_db`` while only the IVR
speaks, ``suppress_active_db`` while the visitor speaks too). ``suppress=False`` gives the linear
canceller alone (to measure it). libspeexdsp applies the preprocessor's spectral gain, and so its echo
suppression, only with its noise suppression on, so that is on too (``noise_db``, libspeexdsp's default
-15 dB); the visitor's speech keeps its level (measured in tests/test_aec.py).

The adaptive filter needs about 2-3 s of loudspeaker audio to converge: until then echo leaks through
(tests/test_aec.py and benchmarks/bench_aec.py show the curve); the kiosk keeps one canceller for its
whole run, so only its first prompt is affected (ivr/media/duplex.py holds barge-in back until then).

The library is the Debian package ``libspeexdsp1``, loaded with ctypes (no compiler needed); its absence
is an ``IvrError`` naming the install command.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ivr.errors import IvrError

INSTALL = "install the Xiph SpeexDSP library: sudo apt-get install libspeexdsp1 (or: make system)"

# speex/speex_echo.h
_ECHO_SET_SAMPLING_RATE = 24
# speex/speex_preprocess.h
_PRE_SET_DENOISE = 0
_PRE_SET_AGC = 2
_PRE_SET_DEREVERB = 8
_PRE_SET_NOISE_SUPPRESS = 18
_PRE_SET_ECHO_SUPPRESS = 20
_PRE_SET_ECHO_SUPPRESS_ACTIVE = 22
_PRE_SET_ECHO_STATE = 24

_lib = None


def _load_library():
    """The libspeexdsp shared library with its function types declared (loaded once)."""
    global _lib
    if _lib is not None:
        return _lib
    names = ["libspeexdsp.so.1", "libspeexdsp.so", "libspeexdsp.1.dylib"]
    found = ctypes.util.find_library("speexdsp")
    if found:
        names.append(found)
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        raise IvrError("echo cancellation needs the SpeexDSP library (libspeexdsp.so.1), which cannot be loaded",
                       INSTALL)
    vp, ip, i16p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int16)
    lib.speex_echo_state_init.argtypes = [ip, ip]
    lib.speex_echo_state_init.restype = vp
    lib.speex_echo_state_destroy.argtypes = [vp]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_state_reset.argtypes = [vp]
    lib.speex_echo_state_reset.restype = None
    lib.speex_echo_cancellation.argtypes = [vp, i16p, i16p, i16p]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_ctl.argtypes = [vp, ip, vp]
    lib.speex_echo_ctl.restype = ip
    lib.speex_preprocess_state_init.argtypes = [ip, ip]
    lib.speex_preprocess_state_init.restype = vp
    lib.speex_preprocess_state_destroy.argtypes = [vp]
    lib.speex_preprocess_state_destroy.restype = None
    lib.speex_preprocess_run.argtypes = [vp, i16p]
    lib.speex_preprocess_run.restype = ip
    lib.speex_preprocess_ctl.argtypes = [vp, ip, vp]
    lib.speex_preprocess_ctl.restype = ip
    _lib = lib
    return lib


def available() -> bool:
    """True when libspeexdsp can be loaded."""
    try:
        _load_library()
        return True
    except IvrError:
        return False


def _int_arg(value: int) -> ctypes.c_int:
    return ctypes.c_int(int(value))


class EchoCanceller:
    """Removes the loudspeaker's echo from the microphone signal, frame by frame. See the module notes.

    ``rate``: sample rate in Hz (8000-48000) of both signals. ``frame``: samples per call (10-20 ms is
    what libspeexdsp is made for, e.g. 320 at 16 kHz). ``tail_ms``: the longest echo path it learns
    (the room's reverberation that matters; 100-300 ms at a kiosk).
    """

    def __init__(self, rate: int, frame: int, tail_ms: float = 200.0, *, suppress: bool = True,
                 suppress_db: int = -40, suppress_active_db: int = -15, noise_db: int = -15):
        if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
            raise IvrError(f"echo canceller: sample rate {rate!r} is not usable", "give a rate from 8000 to 48000 Hz")
        if isinstance(frame, bool) or not isinstance(frame, int) or not rate // 200 <= frame <= rate // 10:
            raise IvrError(f"echo canceller: frame of {frame!r} samples is not usable at {rate} Hz",
                           f"give 5-100 ms of samples, e.g. {rate // 50} (20 ms)")
        if isinstance(tail_ms, bool) or not isinstance(tail_ms, int | float) or not 10 <= tail_ms <= 2000:
            raise IvrError(f"echo canceller: tail of {tail_ms!r} ms is out of range", "give 10-2000 ms, e.g. 200")
        lib = _load_library()
        self.rate, self.frame, self.tail_ms = rate, frame, float(tail_ms)
        self.filter_length = int(round(rate * tail_ms / 1000))
        self._lib = lib
        self._echo = lib.speex_echo_state_init(frame, self.filter_length)
        self._pre = None
        if not self._echo:
            raise IvrError("echo canceller: libspeexdsp could not create its state", INSTALL)
        r = _int_arg(rate)
        lib.speex_echo_ctl(self._echo, _ECHO_SET_SAMPLING_RATE, ctypes.byref(r))
        if suppress:
            self._pre = lib.speex_preprocess_state_init(frame, rate)
            if not self._pre:
                self.close()
                raise IvrError("echo canceller: libspeexdsp could not create its preprocessor", INSTALL)
            for request, value in ((_PRE_SET_DENOISE, 1), (_PRE_SET_NOISE_SUPPRESS, int(noise_db)),
                                   (_PRE_SET_AGC, 0), (_PRE_SET_DEREVERB, 0),
                                   (_PRE_SET_ECHO_SUPPRESS, int(suppress_db)),
                                   (_PRE_SET_ECHO_SUPPRESS_ACTIVE, int(suppress_active_db))):
                v = _int_arg(value)
                lib.speex_preprocess_ctl(self._pre, request, ctypes.byref(v))
            lib.speex_preprocess_ctl(self._pre, _PRE_SET_ECHO_STATE, ctypes.c_void_p(self._echo))
        self._out = np.zeros(frame, dtype=np.int16)
        self.frames = 0

    def _frame_arg(self, x, name: str) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype != np.int16:
            if a.dtype.kind == "f":
                a = np.clip(np.rint(a * 32768.0), -32768, 32767).astype(np.int16)
            else:
                raise IvrError(f"echo canceller: {name} frame has sample type {a.dtype}",
                               "give mono int16 (or float in [-1, 1]) samples")
        if a.ndim != 1 or a.size != self.frame:
            raise IvrError(f"echo canceller: {name} frame has shape {a.shape}, expected ({self.frame},)",
                           f"cut both signals into frames of {self.frame} samples")
        return np.ascontiguousarray(a)

    def process(self, mic_frame, speaker_frame) -> np.ndarray:
        """One frame of microphone and loudspeaker audio (same instant) -> the microphone without echo."""
        if self._echo is None:
            raise IvrError("echo canceller: used after close()", "create a new EchoCanceller")
        mic = self._frame_arg(mic_frame, "microphone")
        ref = self._frame_arg(speaker_frame, "loudspeaker")
        out = np.empty(self.frame, dtype=np.int16)
        i16p = ctypes.POINTER(ctypes.c_int16)
        self._lib.speex_echo_cancellation(self._echo, mic.ctypes.data_as(i16p), ref.ctypes.data_as(i16p),
                                          out.ctypes.data_as(i16p))
        if self._pre is not None:
            self._lib.speex_preprocess_run(self._pre, out.ctypes.data_as(i16p))
        self.frames += 1
        return out

    def process_signal(self, mic, speaker) -> np.ndarray:
        """Whole signals (same length, time-aligned) -> the cleaned microphone signal; a last partial frame
        is passed through unchanged."""
        mic = np.asarray(mic)
        speaker = np.asarray(speaker)
        if mic.shape != speaker.shape or mic.ndim != 1:
            raise IvrError(f"echo canceller: microphone {mic.shape} and loudspeaker {speaker.shape} signals differ",
                           "give two mono signals of the same length")
        out = np.asarray(mic, dtype=np.int16).copy() if mic.dtype == np.int16 else self._whole(mic)
        n = self.frame
        for i in range(0, (len(mic) // n) * n, n):
            out[i:i + n] = self.process(mic[i:i + n], speaker[i:i + n])
        return out

    def _whole(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)

    def reset(self) -> None:
        """Forget the learnt echo path (the kiosk moved, the volume changed a lot)."""
        if self._echo is not None:
            self._lib.speex_echo_state_reset(self._echo)

    def close(self) -> None:
        if self._pre is not None:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if self._echo is not None:
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __enter__(self) -> EchoCanceller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
