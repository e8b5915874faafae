"""Audio at the edges: read any common WAV, convert, resample, write, and cut into frames.

Inside the IVR, audio is always mono ``int16`` numpy arrays at a known sample rate, handled in
``FRAME_MS`` (20 ms) frames. Everything that comes from outside (a WAV in any PCM/float/μ-law/A-law
subtype, stereo, 44.1 kHz...) is converted once, here.

Levels: ``dbfs`` follows AES17, so a full-scale sine reads 0 dBFS and a sine whose peak is at
10 % of full scale reads -20 dBFS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Riff:
    """What a RIFF/WAVE header says, as far as libsndfile forgives it."""

    problem: str | None = None  # an error: the file cannot be trusted
    note: str | None = None  # a warning: the file is read, but not all of it is what it seems


def _riff_check(path: Path) -> _Riff:
    """Look at a RIFF/WAVE header for what libsndfile forgives: a data chunk cut short, zero channels, a data
    chunk declaring fewer bytes than follow it (libsndfile silently reads only the declared part)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return _Riff()
            pos = 12
            block_align, rate = 0, 0
            while pos + 8 <= size:
                fh.seek(pos)
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return _Riff()
                cid, clen = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt " and clen >= 14:
                    _tag, channels, rate, _byte_rate, block_align = struct.unpack("<HHIIH", fh.read(14))
                    if channels == 0:
                        return _Riff(problem="declares zero audio channels")
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):  # written to a pipe: length unknown
                        return _Riff()
                    have = size - (pos + 8)
                    if have < clen:
                        return _Riff(problem=(
                            f"is truncated: its header promises {clen} bytes of audio but only {have} "
                            "are there (the recording or the copy was cut short)"))
                    end = pos + 8 + clen + (clen & 1)
                    if not _chunks_follow(fh, end, size):
                        extra = size - (pos + 8 + clen)
                        secs = f" (about {extra / block_align / rate:.2f} s more, if it is audio)" \
                            if block_align and rate else ""
                        declared = f"{clen / block_align / rate:.2f} s" if block_align and rate else f"{clen} bytes"
                        return _Riff(note=(
                            f"its header declares {declared} of audio, but {extra} more bytes follow that are "
                            f"not part of any WAV chunk{secs}; only the declared {declared} are read"))
                    return _Riff()
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return _Riff()
    return _Riff()


def _chunks_follow(fh, pos: int, size: int) -> bool:
    """True when the bytes from ``pos`` to the end are well-formed RIFF chunks (LIST, id3, ...) or padding."""
    while pos + 8 <= size:
        fh.seek(pos)
        hdr = fh.read(8)
        cid, clen = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if not all(32 <= b < 127 for b in cid) or pos + 8 + clen > size + 1:
            return False
        pos += 8 + clen + (clen & 1)
    return size - pos <= 1 or not any(_read_at(fh, pos, size - pos))


def _read_at(fh, pos: int, n: int) -> bytes:
    fh.seek(pos)
    return fh.read(n)


# The first bytes of the formats libsndfile reads (WAV/RF64/W64, AIFF, AU, FLAC, Ogg, CAF, MP3 with a tag).
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM", b".snd", b"fLaC", b"OggS", b"caff", b"ID3", b"wvpk",
          b"IMA ", b"2BIT", b"NIST", b"Crea", b"SQ", b"PVF1", b"#!AMR", b"MThd", b"MAT", b"\x00\x00\x01",
          b"ajkg", b"DSD ")


def _looks_like_sound(head: bytes) -> bool:
    if any(head.startswith(m) for m in _MAGIC):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # an MPEG audio frame


@contextlib.contextmanager
def _quiet_stderr():
    """Keep what C libraries print on file descriptor 2 (libmpg123's own error lines) out of the terminal.

    Only on the main thread: elsewhere (the phone server's workers) redirecting the process's stderr would
    hide other threads' messages.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_log = logging.getLogger("ivr.audio")

# Sample rates a recording of speech can sensibly have: telephone audio is 8 kHz; a few old formats go down
# to 4 kHz; studio audio goes up to 384 kHz.
MIN_RATE = 4000
MAX_RATE = 384000
# Samples (all channels) decoded at once: 4 MB of float32 whatever the rate or channel count.
BLOCK_BUDGET = 1 << 20


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / float(self.rate)


_CONVERT_FIX = ("give a WAV file (PCM, float, μ-law or A-law); convert others with "
                "`sox IN -r 16000 -c 1 -b 16 OUT.wav`")


def open_audio(path, *, max_seconds: float = MAX_SECONDS) -> AudioInfo:
    """Check that ``path`` is a sound file this program can read, without decoding it; ``IvrError`` (naming
    the file, the true reason and the fix) when it is not. A header that hides part of the file is warned
    about (logger ``ivr.audio``)."""
    import soundfile as sf

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise IvrError(f"audio file {p} does not exist", "check the path (and the working directory)") from None
    except OSError as exc:
        raise IvrError(f"audio file {p} cannot be reached ({exc.strerror})", "check the path and its "
                       "directories' permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise IvrError(f"audio file {p} is a directory, not a sound file", "give the path of a .wav file")
    if not stat.S_ISREG(st.st_mode):
        raise IvrError(f"audio file {p} is not a regular file (a device, pipe or socket)",
                       "save the recording to a file first and give that file's path")
    if st.st_size == 0:
        raise IvrError(f"audio file {p} is empty (0 bytes)", "record or copy the file again")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except PermissionError:
        raise IvrError(f"audio file {p} cannot be read: permission denied",
                       f"make it readable (chmod a+r {p}) or copy it somewhere you can read") from None
    except OSError as exc:
        raise IvrError(f"audio file {p} cannot be read ({exc.strerror})", "copy the file again") from None
    if not _looks_like_sound(head):
        raise IvrError(f"audio file {p} cannot be read as audio: it is not a sound file (it does not "
                       "start with a WAV, FLAC, Ogg, AIFF, AU or MP3 header)", _CONVERT_FIX)
    riff = _riff_check(p)
    if riff.problem:
        raise IvrError(f"audio file {p} {riff.problem}", "record or copy the file again")
    try:
        with _quiet_stderr():
            info = sf.info(str(p))
    except Exception as exc:  # libsndfile says why in its message
        reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        if "channel count is zero" in reason.lower():
            raise IvrError(
                f"audio file {p} declares zero audio channels", "record or export the file again"
            ) from None
        if "not a regular file" in reason.lower() or "system error" in reason.lower():
            reason = "its header is damaged or of an unknown kind"
        raise IvrError(f"audio file {p} cannot be read as audio ({reason})", _CONVERT_FIX) from None
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
    if riff.note:
        _log.warning("audio file %s: %s. If the recording is longer, rewrite its header: "
                     "`sox --ignore-length IN OUT.wav`", p, riff.note)
    return AudioInfo(p, int(info.samplerate), int(info.channels), int(info.frames))


def iter_blocks(path, rate: int | None = None, block_seconds: float = 1.0, *,
                max_seconds: float = MAX_SECONDS, info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """Read a sound file block by block as mono int16 at ``rate`` Hz (the file's own rate when None).

    Memory stays bounded by a constant whatever the file's rate, length or channel count: at most
    ``BLOCK_BUDGET`` samples are decoded at once, channels are averaged and each block is resampled with
    soxr's streaming resampler. Samples that are not numbers (NaN, infinite) are treated as silence and
    named in a warning. Problems raise :class:`IvrError` naming the file and the fix (before the first block
    for anything the header shows).
    """
    import soundfile as sf

    info = info or open_audio(path, max_seconds=max_seconds)
    p = info.path
    dst = int(rate) if rate is not None else info.rate
    frames_per_block = max(256, min(int(info.rate * block_seconds), BLOCK_BUDGET // info.channels))
    stream = None
    if dst != info.rate:
        import soxr

        stream = soxr.ResampleStream(info.rate, dst, 1, dtype="float32", quality="HQ")
    read = 0
    bad = 0
    first_bad: float | None = None
    try:
        with _quiet_stderr():
            fh = sf.SoundFile(str(p))
    except Exception as exc:
        reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        raise IvrError(f"audio file {p} cannot be read as audio ({reason})", _CONVERT_FIX) from None
    with fh:
        while True:
            try:
                block = fh.read(frames_per_block, dtype="float32", always_2d=True)
            except Exception as exc:
                reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
                raise IvrError(f"audio file {p} is damaged ({reason})", "record or copy the file again") from None
            if block.shape[0] == 0:
                break
            finite = np.isfinite(block)
            if not finite.all():
                n = int(block.size - np.count_nonzero(finite))
                if first_bad is None:
                    first_bad = (read + int(np.argmin(finite.all(axis=1)))) / info.rate
                bad += n
                block = np.where(finite, block, np.float32(0.0))
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            read += block.shape[0]
            if stream is not None:
                mono = stream.resample_chunk(mono, last=False)
            if len(mono):
                yield to_int16(mono)
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if len(tail):
            yield to_int16(tail)
    if read < info.frames * 0.99:
        raise IvrError(f"audio file {p} is truncated: {read} of {info.frames} samples could be read",
                       "record or copy the file again")
    if bad:
        _log.warning("audio file %s: %d samples are not numbers (NaN or infinite), the first at %.2f s; they are "
                     "treated as silence. Re-export the recording if it should hold sound there", p, bad, first_bad)


def sample_rate(path) -> int:
    """The sample rate a sound file declares (for a file :func:`open_audio` has already accepted)."""
    import soundfile as sf

    with _quiet_stderr():
        return int(sf.info(str(path)).samplerate)


def read_audio(path, rate: int | None = None, *, max_seconds: float = MAX_SECONDS,
               max_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a sound file as mono int16 at ``rate`` Hz (or the file's own rate when ``rate`` is None; with
    ``max_rate``, files above that rate are brought down to it).

    Any subtype libsndfile reads (8/16/24/32-bit PCM, float, μ-law, A-law...), mono or multi-channel
    (channels are averaged). Read block by block (:func:`iter_blocks`): memory holds the result, not the
    file. Problems raise :class:`IvrError` naming the file and the fix.
    """
    info = open_audio(path, max_seconds=max_seconds)
    dst = int(rate) if rate is not None else info.rate
    if rate is None and max_rate is not None and info.rate > max_rate:
        dst = int(max_rate)
    blocks = list(iter_blocks(path, dst, info=info))
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
    if samples.size == 0:
        raise IvrError(f"audio file {info.path} holds no audio (0 samples)", "record the file again; it is empty")
    return samples, dst


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
