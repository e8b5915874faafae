"""Speech synthesis: pyttsx3 over espeak-ng's Vietnamese voices, rendered to mono int16 at any rate.

``Synthesizer(voice, rate_wpm, volume).render(text, sample_rate)`` turns text into samples. The text
is first put in its spoken form (``ivr.language.spoken.spoken_form``: numbers, abbreviations, symbols); the
displayed text is never changed. ``TtsCache`` keeps rendered audio as WAV files on disk with an
in-memory LRU in front, so prompts and FAQ answers are synthesised once.

How pyttsx3 2.99's espeak driver behaves on Linux, and what this module does about it:

- It loads ``libespeak-ng.so.1`` when ``pyttsx3.drivers._espeak`` is imported (an import error when
  espeak-ng is missing: ``check_espeak`` says what to install before that happens).
- ``espeak_Initialize`` is called with ``AUDIO_OUTPUT_RETRIEVAL``, which in espeak-ng is the
  *asynchronous* mode: a synthesis thread inside libespeak-ng works through a command queue and calls
  back with samples. ``SetParameter`` (rate, volume) is queued there; ``SetVoiceByName`` is not.
- ``runAndWait`` ends its loop with ``espeak_Cancel`` whenever ``espeak_IsPlaying`` says the queue is
  not empty, which throws away a rate or volume change still waiting in the queue. Seen here: after a
  voice change the next rate change was lost in about half of the runs, and once a render came back
  empty. Calling ``espeak_Synchronize`` after setting the properties and after each render (so the
  queue is always drained when ``runAndWait`` looks at it) made 150 renders out of 150 come out at the
  requested voice and rate. ``render`` does that.
- Voice ids are espeak-ng file identifiers in lower case (``aav/vi``, ``aav/vi-vn-x-central``,
  ``aav/vi-vn-x-south``); ``setProperty('voice', name)`` calls ``espeak_SetVoiceByName``, which takes
  the language name (``vi``, ``vi-vn-x-south``). A failing ``setProperty`` does not raise: pyttsx3
  reports it only to 'error' listeners, so this module resolves voices itself against the installed
  list and listens for errors.
- ``rate`` is words per minute (espeak-ng: 80-450), ``volume`` 0.0-1.0 (espeak-ng amplitude 0-100).
- ``save_to_file`` writes a 22050 Hz mono 16-bit WAV (espeak-ng's native rate) and prints
  "Audio saved to ..." with ``print``; libespeak-ng itself may write to stderr. Both are kept out of
  the program's output: the driver's ``print`` is replaced by a no-op and file descriptors 1 and 2 are
  pointed at a scratch file (``os.dup2``) around every engine call.
- Empty text makes the driver return without writing a file, so blank text renders as zero samples
  without calling the engine. Text with nothing speakable in it (emoji, symbols only) is an ``IvrError``:
  espeak-ng would give a hundredth of a second of silence.
- Very long text (tens of thousands of characters in one call) crashes the process inside the driver
  (a segmentation fault, no message). The engine is given pieces of at most ``MAX_PIECE_CHARS``
  characters, cut at sentence ends (then clause marks, then spaces); texts that short are rendered in
  one piece as before, so cached prompts and answers keep their audio.

pyttsx3 is not thread-safe and espeak-ng can be initialised once per process: one engine per process,
every use of it under ``_ENGINE_LOCK``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ivr.errors import IvrError

# Short name -> espeak-ng voice name (what ``espeak-ng --voices=vi`` lists on Debian).
VOICES = {"north": "vi", "central": "vi-vn-x-central", "south": "vi-vn-x-south"}
ESPEAK_INSTALL = "sudo apt-get install espeak-ng"
MIN_WPM, MAX_WPM = 80, 450
DEFAULT_WPM = 175  # espeak-ng's own default rate
CACHE_FORMAT = 2  # bump when the way audio is produced or stored changes (2: leading silence trimmed)
LEAD_MS = 10  # espeak-ng starts some words with up to 70 ms of digital silence (the closure of "Qu", "C"...):
# a play starts at most this long before its first sound, so a key or a question is answered without dead air
LEAD_FLOOR = 16  # samples at or below this magnitude (about -66 dBFS) count as that silence
MAX_PIECE_CHARS = 1000  # longest text handed to the engine in one call (FAQ answers are under 600)

_ENGINE_LOCK = threading.Lock()
_engine = None  # the process's one pyttsx3 engine, created on first use
_engine_voice: str | None = None  # voice last set on it
_engine_errors: list[BaseException] = []


def _espeak_library_loadable() -> bool:
    import ctypes

    for name in ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.1.dylib"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def check_espeak() -> None:
    """Raise ``IvrError`` (naming the install command) unless espeak-ng and its library are installed."""
    if shutil.which("espeak-ng") is None:
        raise IvrError("speech synthesis needs espeak-ng, and the espeak-ng command is not installed "
                       "(not found on PATH)", ESPEAK_INSTALL)
    if not _espeak_library_loadable():
        raise IvrError("speech synthesis needs the espeak-ng library (libespeak-ng.so.1), which cannot be loaded",
                       ESPEAK_INSTALL)


@contextlib.contextmanager
def quiet_output() -> Iterator[Path]:
    """Point file descriptors 1 and 2 at a scratch file for the duration (C-level chatter included).

    Yields the scratch file's path so that a caller can quote what was written when something failed.
    Python's own buffers are flushed first so that nothing already printed ends up in the scratch file.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fd, name = tempfile.mkstemp(prefix="ivr-tts-", suffix=".log")
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield Path(name)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        with contextlib.suppress(OSError):
            os.unlink(name)


def _get_engine():
    """The process's pyttsx3 engine (espeak driver), warmed up so that its command queue is idle.

    Call with ``_ENGINE_LOCK`` held.
    """
    global _engine
    if _engine is not None:
        return _engine
    check_espeak()
    with quiet_output():
        import pyttsx3
        from pyttsx3.drivers import _espeak
        from pyttsx3.drivers import espeak as espeak_driver

        # The driver announces every saved file with print(); keep that out of the program's output.
        espeak_driver.print = lambda *args, **kwargs: None
        engine = pyttsx3.init("espeak")
        engine.connect("error", lambda name=None, exception=None, **kw: _engine_errors.append(exception))
        # One throw-away render: afterwards the driver is idle, so setProperty applies at once instead
        # of waiting in pyttsx3's queue until the next runAndWait.
        fd, warm = tempfile.mkstemp(prefix="ivr-tts-", suffix=".wav")
        os.close(fd)
        try:
            engine.save_to_file(".", warm)
            engine.runAndWait()
            _espeak.Synchronize()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(warm)
    _engine = engine
    return engine


def installed_voices() -> dict[str, str]:
    """Vietnamese voices espeak-ng has here: language name -> voice id (e.g. 'vi' -> 'aav/vi')."""
    with _ENGINE_LOCK:
        engine = _get_engine()
        voices = engine.getProperty("voices")
    found = {}
    for v in voices:
        for lang in v.languages or []:
            if lang.lower().startswith("vi"):
                found[lang.lower()] = v.id
    return found


def resolve_voice(voice: str) -> str:
    """A short name (north/central/south) or an espeak-ng name (vi, vi-vn-x-south) -> espeak-ng name."""
    name = (voice or "").strip().lower()
    name = VOICES.get(name, name)
    name = name.split("/")[-1]  # accept the voice id form 'aav/vi' too
    if name not in VOICES.values():
        raise IvrError(f"unknown voice {voice!r}",
                       f"use one of {', '.join(VOICES)} (or the espeak-ng names {', '.join(VOICES.values())})")
    return name


def engine_version() -> str:
    """'espeak-ng X; pyttsx3 Y': part of every cache key, so an upgrade re-renders the cache."""
    from importlib.metadata import PackageNotFoundError, version

    with _ENGINE_LOCK:
        _get_engine()
        from pyttsx3.drivers import _espeak

        info = _espeak.Info(None)
    espeak = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    try:
        pyttsx3_version = version("pyttsx3")
    except PackageNotFoundError:  # pragma: no cover - it was just imported
        pyttsx3_version = "unknown"
    return f"espeak-ng {espeak}; pyttsx3 {pyttsx3_version}"


class Synthesizer:
    """Vietnamese text -> mono int16 samples, through pyttsx3 and espeak-ng.

    ``voice``: north, central or south (or the espeak-ng names vi, vi-vn-x-central, vi-vn-x-south).
    ``rate_wpm``: words per minute (None: espeak-ng's default, 175). ``volume``: 0.0-1.0 (None: 1.0).
    ``engine_calls`` counts the renders that reached the engine.
    """

    def __init__(self, voice: str = "vi", rate_wpm: int | None = None, volume: float | None = None):
        self.voice = resolve_voice(voice)
        if rate_wpm is not None:
            if isinstance(rate_wpm, bool) or not isinstance(rate_wpm, int | float) \
                    or not MIN_WPM <= rate_wpm <= MAX_WPM:
                raise IvrError(f"speaking rate {rate_wpm!r} words per minute is out of range",
                               f"give a rate from {MIN_WPM} to {MAX_WPM} (espeak-ng's default is {DEFAULT_WPM})")
            rate_wpm = int(rate_wpm)
        if volume is not None:
            if isinstance(volume, bool) or not isinstance(volume, int | float) or not 0.0 <= volume <= 1.0:
                raise IvrError(f"volume {volume!r} is out of range", "give a volume from 0.0 to 1.0")
            volume = float(volume)
        self.rate_wpm = rate_wpm
        self.volume = volume
        self.engine_calls = 0
        self._version: str | None = None

    @classmethod
    def from_config(cls, voice: str | None = None, rate_wpm: int | None = None,
                    volume: float | None = None) -> Synthesizer:
        """Settings from config/tts.yaml, each overridable."""
        from ivr.content import config

        cfg = config.load("tts")
        return cls(voice=voice or cfg.get("voice", "north"),
                   rate_wpm=rate_wpm if rate_wpm is not None else cfg.get("rate_wpm"),
                   volume=volume if volume is not None else cfg.get("volume"))

    @property
    def engine_version(self) -> str:
        if self._version is None:
            self._version = engine_version()
        return self._version

    def settings(self) -> dict:
        """What, besides the text and rate, decides the audio (used in cache keys)."""
        return {"voice": self.voice, "rate_wpm": self.rate_wpm, "volume": self.volume,
                "engine": self.engine_version}

    def render_native(self, spoken: str) -> tuple[np.ndarray, int]:
        """Synthesise text exactly as given (no spoken form) at espeak-ng's own rate -> (samples, rate).

        Long text goes to the engine in pieces (:func:`pieces`), which are joined."""
        spoken = unicodedata.normalize("NFC", spoken or "")
        if not spoken.strip():
            return np.zeros(0, dtype=np.int16), 22050
        parts = pieces(spoken)
        if len(parts) == 1:
            return self._render_piece(parts[0])
        rendered = [self._render_piece(p) for p in parts]
        rate = rendered[0][1]
        return np.concatenate([r[0] for r in rendered]), rate

    def _render_piece(self, spoken: str) -> tuple[np.ndarray, int]:
        import soundfile as sf

        global _engine_voice
        fd, wav = tempfile.mkstemp(prefix="ivr-tts-", suffix=".wav")
        os.close(fd)
        os.unlink(wav)  # the driver creates it; its absence afterwards means no audio was produced
        try:
            with _ENGINE_LOCK:
                engine = _get_engine()
                from pyttsx3.drivers import _espeak

                with quiet_output() as log:
                    _engine_errors.clear()
                    if engine.proxy.isBusy():  # cannot happen after the warm-up; recover if it does
                        engine.runAndWait()
                    if _engine_voice != self.voice:
                        engine.setProperty("voice", self.voice)
                        _engine_voice = self.voice
                    engine.setProperty("rate", self.rate_wpm or DEFAULT_WPM)
                    engine.setProperty("volume", 1.0 if self.volume is None else self.volume)
                    _espeak.Synchronize()  # drain espeak-ng's queue: see the module notes
                    engine.save_to_file(spoken, wav)
                    engine.runAndWait()
                    _espeak.Synchronize()
                    self.engine_calls += 1
                    chatter = log.read_text(errors="replace").strip()
                errors = list(_engine_errors)
                if errors:
                    _engine_voice = None  # state unknown: set the voice again next time
            if errors:
                raise IvrError(f"espeak-ng could not speak {spoken[:60]!r}: {errors[0]}",
                               f"check the voice ({self.voice}) with: espeak-ng -v {self.voice} 'xin chào'")
            if not os.path.exists(wav):
                raise IvrError(f"espeak-ng produced no audio for {spoken[:60]!r}"
                               + (f" ({chatter[:200]})" if chatter else ""),
                               f"check espeak-ng with: espeak-ng -v {self.voice} 'xin chào'")
            samples, rate = sf.read(wav, dtype="int16", always_2d=False)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(wav)
        if samples.ndim > 1:
            samples = samples[:, 0]
        return np.ascontiguousarray(samples, dtype=np.int16), int(rate)

    def render(self, text: str, sample_rate: int, *, raw: bool = False) -> np.ndarray:
        """Text -> mono int16 samples at ``sample_rate`` Hz. ``raw=True`` skips the spoken form."""
        from ivr.media.audio import resample

        sample_rate = check_rate(sample_rate)
        spoken = unicodedata.normalize("NFC", text or "") if raw else spoken_text(text)
        if (text or "").strip() and not speakable(spoken):
            shown = (text or "").strip()
            raise IvrError(f"nothing to say: {shown[:40]!r}{'…' if len(shown) > 40 else ''} has no letters or "
                           "digits (only emoji, symbols or punctuation), so it would be a moment of silence",
                           "write the words to speak")
        samples, native = self.render_native(spoken)
        return trim_lead(resample(samples, native, sample_rate), sample_rate)


def trim_lead(samples: np.ndarray, sample_rate: int, keep_ms: float = LEAD_MS) -> np.ndarray:
    """``samples`` without the silence before their first sound beyond ``keep_ms`` (all of it kept when the
    audio is silent throughout)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > LEAD_FLOOR)
    if not loud.size:
        return samples
    start = max(0, int(loud[0]) - int(sample_rate * keep_ms / 1000))
    return samples[start:] if start else samples


def speakable(text: str) -> bool:
    """True when ``text`` has something the voice can say: a letter or a digit."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


_CUTS = (".!?…\n", ";:", ",", " ")


def pieces(text: str, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters the engine can take: at sentence ends where
    possible, then at clause marks, then at spaces, and only as a last resort inside a word."""
    out: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = -1
        for marks in _CUTS:
            cut = max(rest.rfind(m, limit // 4, limit) for m in marks)
            if cut >= 0:
                break
        cut = cut + 1 if cut >= 0 else limit
        piece, rest = rest[:cut].strip(), rest[cut:].strip()
        if piece:
            out.append(piece)
    if rest:
        out.append(rest)
    return [p for p in out if speakable(p)] or out[:1]


def spoken_text(text: str) -> str:
    from ivr.language.spoken import spoken_form

    return spoken_form(unicodedata.normalize("NFC", text or ""))


def check_rate(sample_rate) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 4000 <= sample_rate <= 96000:
        raise IvrError(f"sample rate {sample_rate!r} Hz is not usable",
                       "use 8000 for the phone, 16000 or 22050 for the kiosk")
    return sample_rate


class TtsCache:
    """Rendered speech on disk (WAV files) with an in-memory LRU in front.

    The key is a hash of (spoken text, voice, rate, volume, sample rate, engine version), so a change
    of any of them renders anew. Files are written atomically (temporary file + ``os.replace``), so
    several processes may share the directory. Returned arrays are read-only (they are shared).
    """

    def __init__(self, synth: Synthesizer, directory: Path | str | None = None, memory_items: int = 256):
        from ivr.content import paths

        self.synth = synth
        self.directory = Path(directory) if directory is not None else paths.cache_dir() / "tts"
        self.memory_items = memory_items
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._keys: dict[tuple, str] = {}  # (text, rate, settings) -> key: skips the spoken form on a hit
        self.hits_memory = 0
        self.hits_disk = 0
        self.misses = 0

    def key(self, text: str, sample_rate: int) -> str:
        s = self.synth
        memo_key = (text, sample_rate, s.voice, s.rate_wpm, s.volume)
        memo = self._keys.get(memo_key)
        if memo is not None:
            return memo
        spoken = spoken_text(text)
        blob = json.dumps({"text": spoken, **self.synth.settings(), "rate": sample_rate,
                           "format": CACHE_FORMAT}, ensure_ascii=False, sort_keys=True)
        key = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        if len(self._keys) >= 4 * self.memory_items:
            self._keys.clear()
        self._keys[memo_key] = key
        return key

    def path_for(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.wav"

    def contains(self, text: str, sample_rate: int) -> bool:
        key = self.key(text, check_rate(sample_rate))
        return key in self._memory or self.path_for(key).exists()

    def get(self, text: str, sample_rate: int) -> np.ndarray:
        """Samples for ``text`` at ``sample_rate``: from memory, else from disk, else rendered and stored."""
        sample_rate = check_rate(sample_rate)
        key = self.key(text, sample_rate)
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self._memory.move_to_end(key)
                self.hits_memory += 1
                return cached
        samples = self._read(key, sample_rate)
        if samples is not None:
            self.hits_disk += 1
        else:
            self.misses += 1
            samples = self.synth.render(spoken_text(text), sample_rate, raw=True)
            self._write(key, samples, sample_rate)
        samples.setflags(write=False)
        with self._lock:
            self._memory[key] = samples
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)
        return samples

    def render_all(self, texts: Iterable[str], sample_rate: int, progress: bool = True) -> dict[str, int]:
        """Make sure every text is in the cache; returns counts {'texts', 'rendered', 'cached'}."""
        from tqdm import tqdm

        texts = list(dict.fromkeys(texts))
        before = self.misses
        for text in tqdm(texts, desc=f"speech {sample_rate} Hz", unit="text", disable=not progress,
                         file=sys.stderr):
            self.get(text, sample_rate)
        rendered = self.misses - before
        return {"texts": len(texts), "rendered": rendered, "cached": len(texts) - rendered}

    def _read(self, key: str, sample_rate: int) -> np.ndarray | None:
        import soundfile as sf

        path = self.path_for(key)
        try:
            samples, rate = sf.read(path, dtype="int16", always_2d=False)
        except FileNotFoundError:
            return None
        except Exception:  # a damaged file (e.g. a disk filled up): render again
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if rate != sample_rate or samples.ndim != 1:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return np.ascontiguousarray(samples)

    def _write(self, key: str, samples: np.ndarray, sample_rate: int) -> None:
        import soundfile as sf

        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:12]}-", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                sf.write(tmp, samples, sample_rate, format="WAV", subtype="PCM_16")
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise IvrError(f"cannot write the speech cache in {self.directory} ({exc.strerror or exc})",
                           "make the directory writable or set IVR_CACHE_DIR to one that is") from None
