"""Audio at the edges: read any common WAV, convert, resample, write, and cut into frames.

Inside the IVR, audio is always mono ``int16`` numpy arrays at a known sample rate, handled in
``FRAME_MS`` (20 ms) frames. Everything that comes from outside (a WAV in any PCM/float/μ-law/A-law
subtype, stereo, 44.1 kHz...) is converted once, here.

Levels: ``dbfs`` follows AES17, so a full-scale sine reads 0 dBFS and a sine whose peak is at
10 % of full scale reads -20 dBFS.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ivr.errors import IvrError

FRAME_MS = 20
MAX_SECONDS = 600.0

_FULL_SCALE = 32768.0


def to_float(x: np.ndarray) -> np.ndarray:
    """int16 samples (or any integer PCM) -> float32 in [-1, 1)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype == np.int16:
        return x.astype(np.float32) / np.float32(_FULL_SCALE)
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    raise TypeError(f"to_float: unsupported sample type {x.dtype}")


def to_int16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, rounded and clipped (int16 input is returned unchanged)."""
    x = np.asarray(x)
    if x.dtype == np.int16:
        return x
    if x.dtype.kind != "f":
        x = to_float(x)
    y = np.rint(np.asarray(x, dtype=np.float64) * _FULL_SCALE)
    return np.clip(y, -32768, 32767).astype(np.int16)


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample a mono signal from ``src`` Hz to ``dst`` Hz with soxr (quality HQ).

    int16 in -> int16 out; float in -> float32 out.
    """
    x = np.asarray(x)
    if src == dst or len(x) == 0:
        return x.copy()
    import soxr

    if x.dtype == np.int16:
        return to_int16(soxr.resample(to_float(x), src, dst, quality="HQ"))
    return np.asarray(soxr.resample(x.astype(np.float32), src, dst, quality="HQ"), dtype=np.float32)


class StreamResampler:
    """Resample a stream chunk by chunk (int16 in, int16 out) with the same filter as :func:`resample`."""

    def __init__(self, src: int, dst: int):
        self.src, self.dst = int(src), int(dst)
        self._stream = None
        if self.src != self.dst:
            import soxr

            self._stream = soxr.ResampleStream(self.src, self.dst, 1, dtype="float32", quality="HQ")

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(x)
        if self._stream is None:
            return to_int16(x)
        return to_int16(self._stream.resample_chunk(to_float(x), last=last))


def noise(n: int, kind: str = "white", rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` samples of white or pink (1/f power) Gaussian noise at unit RMS, as float64: a test signal for
    receivers and recognisers (scale it to the level or SNR wanted)."""
    if kind not in ("white", "pink"):
        raise ValueError(f"noise kind must be 'white' or 'pink', not {kind!r}")
    w = (rng if rng is not None else np.random.default_rng()).standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(w)
        f = np.arange(len(spec), dtype=float)
        f[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(f), n)
    return w / np.sqrt(np.mean(w**2))


def dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (AES17: a full-scale sine is 0 dBFS). Empty or silent input gives -inf."""
    x = np.asarray(x)
    if x.size == 0:
        return float("-inf")
    f = to_float(x).astype(np.float64) if x.dtype.kind != "f" else x.astype(np.float64)
    rms = float(np.sqrt(np.mean(f * f)))
    if rms <= 0.0:
        return float("-inf")
    return 20.0 * np.log10(rms * np.sqrt(2.0))


def frames(x: np.ndarray, rate: int, ms: int = FRAME_MS) -> Iterator[np.ndarray]:
    """Cut ``x`` into frames of ``ms`` milliseconds; the last one is padded with zeros."""
    n = int(round(rate * ms / 1000))
    if n <= 0:
        raise ValueError(f"frame of {ms} ms at {rate} Hz has no samples")
    x = np.asarray(x)
    for i in range(0, len(x), n):
        f = x[i : i + n]
        if len(f) < n:
            f = np.concatenate([f, np.zeros(n - len(f), dtype=x.dtype)])
        yield f


def _riff_data_check(path: Path) -> str | None:
    """Look at a RIFF/WAVE header for what libsndfile forgives: a data chunk cut short, zero channels.

    Returns a problem description, or None when nothing is wrong (or the file is not RIFF/WAVE).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return None
                cid, clen = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt " and clen >= 4:
                    channels = struct.unpack("<H", fh.read(4)[2:4])[0]
                    if channels == 0:
                        return "declares zero audio channels"
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):  # written to a pipe: length unknown
                        return None
                    have = size - (pos + 8)
                    if have < clen:
                        return (
                            f"is truncated: its header promises {clen} bytes of audio but only {have} "
                            "are there (the recording or the copy was cut short)"
                        )
                    return None
                pos += 8 + clen + (clen & 1)
    except OSError:
        return None
    return None


# Sample rates a recording of speech can sensibly have: telephone audio is 8 kHz; a few old formats go down
# to 4 kHz; studio audio goes up to 384 kHz.
MIN_RATE = 4000
MAX_RATE = 384000


def read_audio(path, rate: int | None = None, *, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """Read a sound file as mono int16 at ``rate`` Hz (or the file's own rate when ``rate`` is None).

    Any subtype libsndfile reads (8/16/24/32-bit PCM, float, μ-law, A-law...), mono or multi-channel
    (channels are averaged). Problems raise :class:`IvrError` naming the file and the fix.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise IvrError(f"audio file {p} does not exist", "check the path (and the working directory)")
    if p.is_dir():
        raise IvrError(f"audio file {p} is a directory, not a sound file", "give the path of a .wav file")
    if p.stat().st_size == 0:
        raise IvrError(f"audio file {p} is empty (0 bytes)", "record or copy the file again")
    problem = _riff_data_check(p)
    if problem:
        raise IvrError(f"audio file {p} {problem}", "record or copy the file again")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # libsndfile says why in its message
        reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        if "channel count is zero" in reason.lower():
            raise IvrError(
                f"audio file {p} declares zero audio channels", "record or export the file again"
            ) from None
        raise IvrError(
            f"audio file {p} cannot be read as audio ({reason})",
            "give a WAV file (PCM, float, μ-law or A-law); convert others with "
            "`sox IN -r 16000 -c 1 -b 16 OUT.wav`",
        ) from None
    if info.channels <= 0:
        raise IvrError(f"audio file {p} declares zero audio channels", "record or export the file again")
    if info.frames <= 0:
        raise IvrError(f"audio file {p} holds no audio (0 samples)", "record the file again; it is empty")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise IvrError(
            f"audio file {p} declares a sample rate of {info.samplerate} Hz, outside {MIN_RATE}..{MAX_RATE} Hz "
            "(a damaged header, or not sound recorded for listening)",
            "re-export it at a usual rate, e.g. `sox IN -r 16000 OUT.wav` (8 kHz telephone audio is fine)",
        )
    seconds = info.frames / float(info.samplerate)
    if seconds > max_seconds:
        raise IvrError(
            f"audio file {p} is {seconds / 60:.1f} minutes long, more than the {max_seconds:.0f} s limit "
            "(an hour of audio for a question?)",
            "cut the part you need, e.g. `sox IN OUT.wav trim 0 60`",
        )
    try:
        data, src_rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:
        reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        raise IvrError(f"audio file {p} is damaged ({reason})", "record or copy the file again") from None
    if data.shape[0] == 0:
        raise IvrError(f"audio file {p} holds no audio (0 samples)", "record the file again; it is empty")
    if data.shape[0] < info.frames * 0.99:
        raise IvrError(
            f"audio file {p} is truncated: {data.shape[0]} of {info.frames} samples could be read",
            "record or copy the file again",
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate is not None and int(rate) != int(src_rate):
        mono = resample(mono, int(src_rate), int(rate))
        src_rate = int(rate)
    return to_int16(mono), int(src_rate)


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM WAV."""
    import soundfile as sf

    sf.write(str(path), to_int16(np.asarray(samples)), int(rate), subtype="PCM_16", format="WAV")


def write_wav_stereo(path, left: np.ndarray, right: np.ndarray, rate: int) -> None:
    """Write a two-channel 16-bit PCM WAV (e.g. caller on the left, IVR on the right).

    The shorter channel is padded with silence.
    """
    import soundfile as sf

    a, b = to_int16(np.asarray(left)), to_int16(np.asarray(right))
    n = max(len(a), len(b))
    out = np.zeros((n, 2), dtype=np.int16)
    out[: len(a), 0] = a
    out[: len(b), 1] = b
    sf.write(str(path), out, int(rate), subtype="PCM_16", format="WAV")
