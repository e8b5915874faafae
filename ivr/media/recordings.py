"""Recorded prompts: a human voice where there is a recording, the synthesiser everywhere else.

Where the recordings are: ``prompts/audio/`` (``IVR_RECORDINGS_DIR`` moves it). One WAV per sentence,
named after the id the call log gives the play, with ``:`` written ``__`` (a colon is not a file-name
character everywhere):

    greet_long.wav, goodbye.wav, no_input_1.wav, main_menu.wav,
    topic_menu__password.wav        (prompt id ``topic_menu:password``)
    confirm__7.wav                  (prompt id ``confirm:7``: the confirmation for FAQ 7)
    faq_7.wav                       (the answer of FAQ entry 7)

``ivr prompts script`` lists every id, its file name and the exact text to read.

A recording is played for a text when the text the call is about to say is the text of the recording's
id (the catalogue maps ids to texts; the lookup is by text, so the confirmation and the menus, whose texts
are filled in per entry or per topic, find their recordings too). Anything not recorded is synthesised.

Any WAV libsndfile reads is accepted (any rate, stereo, 24-bit, float...). It is converted once: mixed to
mono, quiet lead-in and tail trimmed to ``EDGE_S``, brought to the loudness target ``TARGET_LUFS``
(ITU-R BS.1770 integrated loudness, measured with pyloudnorm; the gain is lowered when the peak would pass
``PEAK_CEILING_DBFS``), resampled to the channel's rate, and cached on disk like the synthesiser's output
(``<cache>/recordings``; the key is a hash of the file's bytes, the rate and the conversion settings, so a
re-recorded file is converted anew).

Which text a recording holds: a sidecar ``<name>.txt`` beside the WAV holds the text the voice talent
read (the script's ``text`` column). When it is there and differs from the current text, the recording is
out of date: it is *not* played (the synthesiser says the new text) and ``ivr prompts status`` warns. When
there is no sidecar, the file's modification time is compared with the prompts or FAQ file's: an older
recording is played but flagged ``older than its text`` (a modification time only hints: any edit of
``prompts/vi.yaml``, or a fresh checkout, moves it; the sidecar is exact).

A recording that cannot be read never ends a call: it is skipped (logged), and the synthesiser speaks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV_DIR = "IVR_RECORDINGS_DIR"
TARGET_LUFS = -20.0  # integrated loudness every recording is brought to
PEAK_CEILING_DBFS = -1.0  # the gain never pushes a sample peak above this
EDGE_S = 0.15  # quiet kept before the first and after the last sound
EDGE_DBFS = -45.0  # 10 ms blocks quieter than this count as quiet at the edges
FORMAT = 1  # conversion version (part of the cache key)

# warnings in `ivr prompts status`
QUIET_LUFS = -40.0  # a recording quieter than this needed more than 20 dB of gain: noise comes up with it
CLIP_RUN = 3  # this many full-scale samples in a row count as clipping
WORDS_PER_SECOND = 2.5  # a calm Vietnamese prompt speaker: about 150 syllables (words) a minute
LONG_FACTOR = 2.0  # a recording longer than LONG_FACTOR x its expected length + LONG_SLACK_S is flagged
LONG_SLACK_S = 1.5

_ID_RE = re.compile(r"^[A-Za-z0-9_:.\-]+$")


def recordings_dir() -> Path:
    """``$IVR_RECORDINGS_DIR``, else ``prompts/audio``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    from ivr.content import paths

    return paths.prompts_dir() / "audio"


def has_recordings(directory: Path | str | None = None) -> bool:
    """The recordings directory holds at least one WAV file."""
    d = Path(directory) if directory is not None else recordings_dir()
    try:
        return d.is_dir() and any(p.suffix.lower() == ".wav" for p in d.iterdir())
    except OSError:
        return False


def file_name(item_id: str) -> str:
    """The WAV file name for a prompt or answer id (``topic_menu:password`` -> ``topic_menu__password.wav``)."""
    if not _ID_RE.match(item_id):
        raise ValueError(f"id {item_id!r} has characters not allowed in a recording's file name")
    return item_id.replace(":", "__") + ".wav"


def item_id(name: str) -> str:
    """The id a recording's file name stands for (the inverse of ``file_name``)."""
    stem = name[:-4] if name.lower().endswith(".wav") else name
    return stem.replace("__", ":")


def same_text(a: str, b: str) -> bool:
    return _clean(a) == _clean(b)


def _clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


# --- analysis and conversion --------------------------------------------------------------------------------


def loudness_lufs(x: np.ndarray, rate: int) -> float:
    """ITU-R BS.1770 integrated loudness of float samples in [-1, 1]; -inf for silence. Audio shorter than
    one 400 ms gating block is padded with silence (pyloudnorm needs a whole block) and corrected for it."""
    import pyloudnorm

    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    block = int(0.4 * rate) + 1
    pad = 0
    if len(x) < block:
        pad = block - len(x)
        x = np.concatenate([x, np.zeros(pad)])
    value = float(pyloudnorm.Meter(rate).integrated_loudness(x))
    if pad and np.isfinite(value):  # the padding diluted the block's energy: put it back
        value += 10.0 * np.log10(len(x) / (len(x) - pad))
    return value


def clipped_runs(x: np.ndarray) -> int:
    """Runs of ``CLIP_RUN`` or more samples at full scale (int16 ±32767/-32768, float ±1.0)."""
    x = np.asarray(x)
    f = np.abs(x.astype(np.float64) / 32768.0) if x.dtype.kind in "iu" else np.abs(x.astype(np.float64))
    hot = f >= 0.999
    if not hot.any():
        return 0
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.sum((ends - starts) >= CLIP_RUN))


def peak_dbfs(x: np.ndarray) -> float:
    m = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return 20.0 * np.log10(m) if m > 0 else float("-inf")


def _read_float(path: Path) -> tuple[np.ndarray, int]:
    """Mono float64 samples at the file's own rate (checked by ``ivr.media.audio.read_audio``'s rules)."""
    import soundfile as sf

    from ivr.media.audio import read_audio

    read_audio(path)  # every check of a damaged or absurd file, with its message
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data.mean(axis=1), int(rate)


def _trim(x: np.ndarray, rate: int) -> np.ndarray:
    n = max(1, rate // 100)
    blocks = len(x) // n
    if blocks == 0:
        return x
    rms = np.sqrt(np.mean(np.square(x[: blocks * n].reshape(blocks, n)), axis=1))
    loud = np.flatnonzero(rms >= 10.0 ** (EDGE_DBFS / 20.0) / np.sqrt(2.0))
    if loud.size == 0:
        return x
    keep = int(EDGE_S * rate)
    start = max(0, loud[0] * n - keep)
    end = min(len(x), (loud[-1] + 1) * n + keep)
    return x[start:end]


@dataclass
class Analysis:
    """Figures of one recording as the voice talent delivered it (before conversion)."""

    seconds: float
    rate: int
    lufs: float
    peak_dbfs: float
    clipped: int  # runs of full-scale samples
    gain_db: float  # what the conversion applies


def analyse(path: Path) -> tuple[Analysis, np.ndarray, int]:
    """Read ``path``; return its figures and the trimmed, loudness-normalised float samples (file's rate)."""
    x, rate = _read_float(path)
    clipped = clipped_runs(x)
    x = _trim(x, rate)
    lufs = loudness_lufs(x, rate)
    peak = peak_dbfs(x)
    gain = 0.0
    if np.isfinite(lufs):
        gain = TARGET_LUFS - lufs
        if np.isfinite(peak):
            gain = min(gain, PEAK_CEILING_DBFS - peak)
    y = x * 10.0 ** (gain / 20.0)
    return Analysis(len(x) / rate, rate, lufs, peak, clipped, gain), y, rate


def convert(path: Path, rate: int) -> np.ndarray:
    """The recording as the IVR plays it: mono int16 at ``rate``, trimmed and at the loudness target."""
    from ivr.media.audio import resample, to_int16

    _info, y, src = analyse(path)
    if src != rate:
        y = resample(y.astype(np.float32), src, rate)
    return to_int16(np.clip(y, -1.0, 32767 / 32768))


# --- the recordings of one deployment -----------------------------------------------------------------------


@dataclass
class Item:
    """One sentence the IVR can say: its id, current text, and its recording (``path``) if there is one."""

    id: str
    text: str
    source: Path | None = None  # the prompts or FAQ file the text comes from
    path: Path | None = None
    recorded_text: str | None = None  # the sidecar's text
    notes: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return file_name(self.id)

    @property
    def out_of_date(self) -> bool:
        """The sidecar says the recording holds another text."""
        return self.recorded_text is not None and not same_text(self.recorded_text, self.text)

    @property
    def playable(self) -> bool:
        return self.path is not None and not self.out_of_date

    @property
    def older_than_text(self) -> bool:
        """No sidecar, and the recording's file is older than the file its text comes from."""
        if self.path is None or self.recorded_text is not None or self.source is None:
            return False
        try:
            return self.path.stat().st_mtime < Path(self.source).stat().st_mtime
        except OSError:
            return False


class Recordings:
    """The recordings found for a catalogue ``{id: text}`` (optionally ``sources``: ``{id: file}``)."""

    def __init__(self, catalogue: dict[str, str], directory: Path | str | None = None,
                 sources: dict[str, Path] | None = None, cache_dir: Path | str | None = None):
        from ivr.content import paths

        self.directory = Path(directory) if directory is not None else recordings_dir()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "recordings"
        sources = sources or {}
        self.items: dict[str, Item] = {
            i: Item(i, _clean(t), sources.get(i)) for i, t in catalogue.items() if _ID_RE.match(i)
        }
        self.unknown: list[Path] = []  # WAV files that name no prompt or answer
        if self.directory.is_dir():
            for path in sorted(self.directory.iterdir()):
                if path.suffix.lower() != ".wav" or not path.is_file():
                    continue
                item = self.items.get(item_id(path.name))
                if item is None:
                    self.unknown.append(path)
                    continue
                item.path = path
                sidecar = path.with_suffix(".txt")
                if sidecar.is_file():
                    try:
                        item.recorded_text = _clean(sidecar.read_text(encoding="utf-8"))
                    except (OSError, UnicodeDecodeError) as exc:
                        item.notes.append(f"sidecar {sidecar.name} unreadable ({exc})")
        self._by_text: dict[str, Item] = {}
        for item in self.items.values():
            if item.playable:
                self._by_text.setdefault(item.text, item)
        self._memory: dict[tuple, np.ndarray] = {}
        self._failed: set[Path] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_text)

    def for_text(self, text: str) -> Item | None:
        """The recorded item whose text is ``text`` (NFC, spacing ignored), or None."""
        return self._by_text.get(_clean(text))

    def audio(self, item: Item, rate: int) -> np.ndarray:
        """The converted recording of ``item`` at ``rate`` (read-only), from memory, disk cache, or converted now."""
        assert item.path is not None
        st = item.path.stat()
        memo = (str(item.path), st.st_mtime_ns, st.st_size, int(rate))  # a re-recorded file changes these
        with self._lock:
            hit = self._memory.get(memo)
        if hit is not None:
            return hit
        data = item.path.read_bytes()
        key = hashlib.sha256(data).hexdigest() + f"-{int(rate)}-{TARGET_LUFS}-{PEAK_CEILING_DBFS}-{EDGE_S}-{FORMAT}"
        key = hashlib.sha256(key.encode()).hexdigest()
        cached = self.cache_dir / key[:2] / f"{key}.npy"
        samples = None
        if cached.exists():
            try:
                samples = np.load(cached, allow_pickle=False)
                if samples.dtype != np.int16 or samples.ndim != 1:
                    samples = None
            except (OSError, ValueError):
                samples = None
        if samples is None:
            samples = convert(item.path, int(rate))
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npy")
                np.save(tmp, samples, allow_pickle=False)
                os.replace(tmp, cached)
            except OSError as exc:  # a read-only cache costs a conversion per process, nothing more
                log.warning("cannot cache the converted recording %s: %s", item.path, exc)
        samples.setflags(write=False)
        with self._lock:
            self._memory[memo] = samples
        return samples

    def get(self, text: str, rate: int) -> np.ndarray | None:
        """The recording for ``text`` at ``rate``, or None (not recorded, out of date, or unreadable)."""
        item = self.for_text(text)
        if item is None or item.path in self._failed:
            return None
        try:
            return self.audio(item, rate)
        except Exception as exc:  # any damage (read_audio's checks may trip on it too): never end a call
            self._failed.add(item.path)
            log.warning("recording %s cannot be played, the synthesiser speaks instead: %s", item.path, exc)
            return None


class RecordedVoice:
    """The IVR's voice: ``get(text, rate)`` gives the recording when there is one, else the TTS cache's audio.

    Stands wherever a ``TtsCache`` stands (every other attribute is the cache's)."""

    def __init__(self, tts, recordings: Recordings):
        self.tts = tts
        self.recordings = recordings

    def get(self, text: str, sample_rate: int) -> np.ndarray:
        audio = self.recordings.get(text, sample_rate)
        return audio if audio is not None else self.tts.get(text, sample_rate)

    def render_all(self, texts, sample_rate: int, progress: bool = True) -> dict[str, int]:
        """Convert the recorded texts, and render the others with the synthesiser."""
        texts = list(dict.fromkeys(texts))
        recorded = [t for t in texts if self.recordings.get(t, sample_rate) is not None]
        counts = self.tts.render_all([t for t in texts if t not in set(recorded)], sample_rate, progress=progress)
        counts["texts"] = len(texts)
        counts["recorded"] = len(recorded)
        return counts

    def __getattr__(self, name):
        return getattr(self.tts, name)
