"""Speech recognition with Vosk: find the model, load it once per process, stream 16-bit PCM frames.

One shared ``vosk.Model`` per process and path (``load_model``), one ``Recognizer`` per call (the
vosk-server pattern). Audio arrives as mono int16 frames at the channel's rate (8 kHz telephone, 16 kHz
kiosk, any WAV) and is resampled to the model's rate with a streaming soxr resampler, so frame boundaries
add no clicks.

Decoding is CPU heavy and blocks: an asyncio channel calls ``await rec.afeed(frame)`` (which runs ``feed``
in the default executor, as vosk-server does with ``run_in_executor``) or runs ``feed`` in its own thread.
A recogniser is used by one call at a time; its methods are serialised by a lock.

vosk 0.3.45 has no ``SetEndpointerMode``/``SetEndpointerDelays``; when the installed version has them the
``endpoint`` settings are applied, otherwise the model's own ``conf/model.conf`` endpoint rules decide when
an utterance ends (``Recognizer.endpointer_applied`` says which).

The same audio gives the same transcript on every run. Kaldi adds random noise ("dither", ``--dither`` in
conf/mfcc.conf, 1.0 when absent) to every sample before computing features, drawn from a generator seeded
anew for each recogniser: the same recording could be heard as different words, with different confidences,
from one run (or one recogniser) to the next. The model is therefore loaded from a copy whose mfcc.conf says
``--dither=0`` (every other file a link to the model's own), and the recogniser adds the same amount of
noise itself, from one fixed sequence restarted at each utterance stream (``dither_noise``): silence is
still never all zeros, and a support agent's test recording, an ``ivr eval`` run or a test gets one answer.
Resampling runs in floating point for the same reason (soxr's int16 output adds random dither of its own).
A warm recogniser that decoded other callers first may still differ in a confidence: Vosk composes its
graph in the order earlier audio needed it, which can break a tie another way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import threading
import time
import unicodedata
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ivr.content import config, paths
from ivr.errors import IvrError

log = logging.getLogger(__name__)

ENV_MODEL = "IVR_VOSK_MODEL"
DEFAULT_NAMES = ("vosk-model-small-vn-0.4", "vosk-model-vn-0.4")
DOWNLOAD_HINT = (
    f"run `ivr model download small` (installs models/{DEFAULT_NAMES[0]}/), or set {ENV_MODEL}=/path/to/model, "
    "or pass --model PATH"
)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def settings() -> dict[str, Any]:
    """The settings in ``config/asr.yaml``. Without that file the built-in defaults apply; a broken file is
    an ``IvrError`` naming it (a typo must not silently turn settings off)."""
    if not (paths.config_dir() / "asr.yaml").is_file():
        return {}
    return config.load("asr")


def model_names() -> list[str]:
    """Model directory names looked for in models/ and the cache, preferred first."""
    models = settings().get("models") or {}
    names = [m.get("name") for m in models.values() if isinstance(m, dict) and m.get("name")]
    return names or list(DEFAULT_NAMES)


# --------------------------------------------------------------------------------------------- model files


def missing_parts(path: Path) -> list[str]:
    """What a Vosk model directory lacks (empty when it looks like a model)."""
    path = Path(path)
    if not path.is_dir():
        return ["the directory itself"]
    missing = [part for part in ("am/final.mdl", "conf/model.conf") if not (path / part).is_file()]
    graph = path / "graph"
    static = (graph / "HCLG.fst").is_file()
    lookahead = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    if not (static or lookahead):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return missing


def is_model_dir(path: Path) -> bool:
    return not missing_parts(path)


def _checked(path: Path, origin: str) -> Path:
    path = Path(path).expanduser()
    missing = missing_parts(path)
    if missing:
        if not path.exists():
            problem = f"{origin}: {path} does not exist"
        elif not path.is_dir():
            problem = f"{origin}: {path} is a file, not a Vosk model directory"
        else:
            problem = f"{origin}: {path} is not a Vosk model (missing {', '.join(missing)})"
        raise IvrError(problem, "point it at an unpacked Vosk model directory, or " + DOWNLOAD_HINT)
    return path.resolve()


def resolve_model_path(cli_path: str | os.PathLike | None = None) -> Path:
    """The model directory to use: ``--model PATH``, then ``$IVR_VOSK_MODEL``, then ``models/<name>/``
    (preferred names first, else the only model directory there), then the per-user cache
    ``<cache>/models/<name>/``. A given path that is not a model, or no model at all, is an ``IvrError``."""
    if cli_path:
        return _checked(Path(cli_path), "--model")
    env = os.environ.get(ENV_MODEL)
    if env:
        return _checked(Path(env), ENV_MODEL)
    names = model_names()
    local = paths.models_dir()
    for name in names:
        if is_model_dir(local / name):
            return (local / name).resolve()
    if local.is_dir():
        found = sorted(
            p for p in local.iterdir() if p.is_dir() and not p.name.startswith(".") and is_model_dir(p)
        )
        if len(found) == 1:
            return found[0].resolve()
        if len(found) > 1:
            raise IvrError(
                f"{local} holds several Vosk models ({', '.join(p.name for p in found)}) and none is named "
                f"{' or '.join(names)}",
                f"choose one with --model PATH or {ENV_MODEL}=PATH",
            )
    cache = paths.cache_dir() / "models"
    for name in names:
        if is_model_dir(cache / name):
            return (cache / name).resolve()
    raise IvrError(
        f"no Vosk speech model found (looked at --model, {ENV_MODEL}, {local}/<name>/ and {cache}/<name>/ "
        f"for {', '.join(names)})",
        DOWNLOAD_HINT,
    )


def model_sample_rate(path: Path) -> int:
    """The rate the model was trained at: ``--sample-frequency`` in conf/mfcc.conf, else 16000."""
    default = int(settings().get("default_sample_rate") or 16000)
    mfcc = Path(path) / "conf" / "mfcc.conf"
    try:
        found = _conf_values(mfcc.read_text(encoding="utf-8", errors="replace"), "sample-frequency")
    except OSError:
        return default
    if not found:
        return default
    try:
        return int(float(found[0]))
    except ValueError:
        raise IvrError(
            f"{mfcc}: --sample-frequency is not a number ({'--sample-frequency=' + found[0]!r})",
            "fix or remove that line",
        ) from None


def _conf_values(conf: str, option: str) -> list[str]:
    """Every value ``--option=`` is given in the Kaldi config text ``conf``, in order, comments stripped
    (Kaldi keeps the last)."""
    prefix = f"--{option}="
    lines = (ln.split("#", 1)[0].strip() for ln in conf.splitlines())
    return [ln[len(prefix):].strip() for ln in lines if ln.startswith(prefix)]


def _set_option(lines: list[str], option: str, value) -> list[str]:
    """The lines of a Kaldi config with ``--option=value`` as that option's only setting."""
    return [ln for ln in lines if not ln.strip().startswith(f"--{option}=")] + [f"--{option}={value}"]


def model_dither(path: Path) -> float:
    """The noise Kaldi adds to each sample of this model's audio: ``--dither`` in conf/mfcc.conf (Kaldi's default
    1.0 when the line is absent); 0.0 when the model has no mfcc.conf (its features are not MFCCs)."""
    mfcc = Path(path) / "conf" / "mfcc.conf"
    try:
        found = _conf_values(mfcc.read_text(encoding="utf-8", errors="replace"), "dither")
    except OSError:
        return 0.0
    if not found:
        return 1.0
    try:
        value = float(found[-1])
    except ValueError:
        raise IvrError(f"{mfcc}: --dither is not a number ({found[-1]!r})", "fix or remove that line") from None
    if not 0.0 <= value <= 1000.0:
        raise IvrError(f"{mfcc}: --dither={found[-1]} is not a usable amount of noise",
                       "remove the line (Kaldi's default 1.0) or give a value between 0 and 1000")
    return value


def undithered_model_dir(path: Path) -> Path:
    """A directory that is the model at ``path`` with ``--dither=0`` in its conf/mfcc.conf, every other file
    a link to the model's own; made once in the per-user cache."""
    path = Path(path).resolve()
    lines = _set_option((path / "conf" / "mfcc.conf").read_text(encoding="utf-8").splitlines(), "dither", 0)
    return _conf_copy(path, "mfcc.conf", "\n".join(lines) + "\n", "undithered")


_DITHER_PERIOD = 1 << 16  # samples of the fixed noise sequence (4 s at 16 kHz) before it repeats
_dither_tables: dict[float, Any] = {}


def dither_noise(amount: float):
    """The fixed noise sequence a recogniser adds to its audio (int32, rounded Gaussian of standard deviation
    ``amount`` in 16-bit sample units, as Kaldi's dither): the same on every run."""
    import numpy as np

    with _models_lock:
        table = _dither_tables.get(amount)
        if table is None:
            g = np.random.default_rng(20261202).standard_normal(_DITHER_PERIOD)
            table = _dither_tables[amount] = np.round(g * amount).astype(np.int32)
        return table


def supports_grammar(path: Path) -> bool:
    """A phrase list works only with a runtime (lookahead) graph: graph/HCLr.fst + graph/Gr.fst."""
    graph = Path(path) / "graph"
    return (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()


def is_vietnamese(path: Path) -> bool:
    """Heuristic: the directory name has a ``vn``/``vi`` part, or its README speaks of Vietnamese."""
    path = Path(path)
    parts = path.name.lower().replace("_", "-").split("-")
    if "vn" in parts or "vi" in parts:
        return True
    readme = path / "README"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return False
    return "vietnam" in text


# --------------------------------------------------------------------------------------------- loading

PARTIAL_MS = 100  # a partial result (the caller is talking: barge-in) at most this often, in audio time

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def load_model(path: str | os.PathLike):
    """The shared ``vosk.Model`` for ``path`` (loaded once per process; safe from several threads).

    The returned model carries ``ivr_path``, ``ivr_sample_rate``, ``ivr_grammar`` and ``ivr_dither`` (the
    noise its recognisers add themselves, see the module's notes) attributes."""
    key = _checked(Path(path), "model")
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
    dither = model_dither(key)
    source = key
    if dither > 0:
        try:
            source = undithered_model_dir(key)
        except OSError as exc:
            log.warning("transcripts may differ from run to run: the model at %s could not be copied without "
                        "Kaldi's random dither (%s)", key, exc)
            dither = 0.0  # Kaldi's own dither stays on: no noise added twice
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        import vosk

        vosk.SetLogLevel(-1)
        try:
            model = vosk.Model(str(source))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise IvrError(
                f"Vosk could not load the model at {key} ({exc})",
                "the files may be damaged: remove the directory and run `ivr model download` again",
            ) from None
        model.ivr_path = key
        model.ivr_sample_rate = model_sample_rate(key)
        model.ivr_grammar = supports_grammar(key)
        model.ivr_dither = dither
        _models[key] = model
        return model


BUSY_SEARCH = {"beam": 8.0, "max_active": None}  # defaults of ``busy_search`` in config/asr.yaml
_SEARCH_OPTIONS = {"beam": ("beam", float, 1.0, 100.0), "max_active": ("max-active", int, 100, 1_000_000)}


def busy_search() -> dict[str, float | int]:
    """``busy_search`` in config/asr.yaml: the Kaldi search of turns decoded on a busy line, e.g.
    {"beam": 8.0}; {} when switched off (``busy_search: off``). A bad value is an ``IvrError``."""
    raw = settings().get("busy_search", BUSY_SEARCH)
    if raw is None or raw is False or raw == "off":
        return {}
    fix = "write busy_search: {beam: 8.0} (a narrower beam than the model's), or busy_search: off"
    if not isinstance(raw, dict):
        raise IvrError(f"config/asr.yaml: 'busy_search' must be a mapping such as {{beam: 8.0}} or off, not {raw!r}", fix)
    unknown = sorted(set(raw) - set(_SEARCH_OPTIONS))
    if unknown:
        raise IvrError(f"config/asr.yaml: busy_search has unknown setting(s) {', '.join(map(str, unknown))}",
                       f"use only {', '.join(_SEARCH_OPTIONS)}")
    out: dict[str, float | int] = {}
    for name, (_, kind, low, high) in _SEARCH_OPTIONS.items():
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high or (
                kind is int and value != int(value)):
            raise IvrError(f"config/asr.yaml: busy_search.{name} must be a {'whole ' if kind is int else ''}number "
                           f"from {low} to {high}, not {value!r}", fix)
        out[name] = kind(value)
    return out


def _conf_value(conf: str, option: str) -> float | None:
    found = _conf_values(conf, option)
    try:
        return float(found[-1]) if found else None
    except ValueError:
        return None


def searched_model_dir(path: Path, search: dict) -> Path | None:
    """A directory that is the model at ``path`` with a narrower Kaldi search (``search``: beam, max_active)
    in its conf/model.conf, every other file a link to the model's own; made once in the per-user cache.
    None when the model already searches at least as narrowly."""
    path = Path(path).resolve()
    conf = (path / "conf" / "model.conf").read_text(encoding="utf-8")
    lines = conf.splitlines()
    changed = False
    for name, value in search.items():
        option = _SEARCH_OPTIONS[name][0]
        have = _conf_value(conf, option)
        if have is not None and have <= value:
            continue
        lines = _set_option(lines, option, value)
        changed = True
    if not changed:
        return None
    return _conf_copy(path, "model.conf", "\n".join(lines) + "\n", "search")


def _conf_copy(path: Path, name: str, text: str, kind: str) -> Path:
    """A directory in the per-user cache (under ``kind``) that is the model at ``path`` with ``text`` as its
    conf/``name``, every other file a link to the model's own; made once."""
    import hashlib
    import shutil
    import tempfile

    digest = hashlib.sha256((str(path) + "\0" + name + "\0" + text).encode()).hexdigest()[:12]
    out = paths.cache_dir() / kind / f"{path.name}-{digest}"
    if (out / "conf" / name).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".making-", dir=out.parent))
    try:
        for entry in path.iterdir():
            if entry.name != "conf":
                (tmp / entry.name).symlink_to(entry)
        (tmp / "conf").mkdir()
        for entry in (path / "conf").iterdir():
            if entry.name != name:
                (tmp / "conf" / entry.name).symlink_to(entry)
        (tmp / "conf" / name).write_text(text, encoding="utf-8")
        try:
            tmp.rename(out)
        except OSError:  # another process made it meanwhile
            if not (out / "conf" / name).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


_busy_models: dict[Path, Any] = {}


def busy_model(model):
    """``model`` with the ``busy_search`` settings (loaded once per process and model), or None: switched
    off, the model already searches as narrowly, or the narrower copy could not be made (logged; the line
    then decodes every turn with the model's own search)."""
    path = getattr(model, "ivr_path", None)
    search = busy_search()
    if path is None or not search:
        return None
    with _models_lock:
        if path in _busy_models:
            return _busy_models[path]
    try:
        where = searched_model_dir(path, search)
        busy = load_model(where) if where is not None else None
    except (OSError, IvrError) as exc:
        log.warning("busy-line search off: a narrower copy of the model at %s could not be made (%s)", path, exc)
        busy = None
    if busy is not None:
        busy.ivr_search = dict(search)
    with _models_lock:
        return _busy_models.setdefault(path, busy)


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the utterance stream (since the last reset)
    end: float
    conf: float  # 0..1


@dataclass(frozen=True)
class Alternative:
    """One hypothesis of the recogniser's n-best list (``alternatives`` in config/asr.yaml)."""

    text: str
    score: float  # Vosk's score of the hypothesis (higher is likelier; only differences mean something)
    weight: float  # its share of the list: softmax of the scores, the weights of a list sum to 1


@dataclass(frozen=True)
class AsrEvent:
    kind: Literal["partial", "final"]
    text: str
    words: list[Word] = field(default_factory=list)
    confidence: float = 0.0  # final: mean word confidence; partial: 0.0 (not yet known)
    alternatives: list[Alternative] = field(default_factory=list)  # final, when n-best is on: best first


def _words(items: list[dict] | None) -> list[Word]:
    out = []
    for w in items or []:
        out.append(
            Word(
                word=_nfc(str(w.get("word", ""))),
                start=float(w.get("start", 0.0)),
                end=float(w.get("end", 0.0)),
                conf=min(1.0, max(0.0, float(w.get("conf", 0.0)))),
            )
        )
    return out


def _final(raw: str) -> AsrEvent:
    data = json.loads(raw)
    if "alternatives" in data:
        return _final_nbest(data["alternatives"] or [])
    words = _words(data.get("result"))
    confidence = sum(w.conf for w in words) / len(words) if words else 0.0
    return AsrEvent("final", _nfc(data.get("text", "")).strip(), words, confidence)


def _final_nbest(items: list[dict]) -> AsrEvent:
    """A final result with an n-best list. Vosk then gives no word confidence: a word's confidence is the
    weight of the hypotheses that have the same word at the same time."""
    import math

    items = [a for a in items if isinstance(a, dict)]
    if not items:
        return AsrEvent("final", "", [], 0.0, [])
    scores = [float(a.get("confidence", 0.0)) for a in items]
    top = max(scores)
    exps = [math.exp(max(-50.0, sc - top)) for sc in scores]
    total = sum(exps)
    alternatives = [Alternative(_nfc(str(a.get("text", ""))).strip(), sc, e / total)
                    for a, sc, e in zip(items, scores, exps, strict=True)]
    spans = [{(str(w.get("word", "")), round(float(w.get("start", 0.0)), 1)) for w in a.get("result") or []}
             for a in items]
    words = []
    for w in _words(items[0].get("result")):
        key = (w.word, round(w.start, 1))
        conf = sum(alt.weight for alt, span in zip(alternatives, spans, strict=True) if key in span)
        words.append(Word(w.word, w.start, w.end, min(1.0, conf)))
    confidence = sum(w.conf for w in words) / len(words) if words else 0.0
    alternatives = [a for a in alternatives if a.text]
    return AsrEvent("final", alternatives[0].text if alternatives else "", words, confidence, alternatives)


# --------------------------------------------------------------------------------------------- recogniser


class Recognizer:
    """One call's recogniser. ``feed`` mono int16 frames at ``input_rate``; get partial/final events.

    ``phrases``: restrict recognition to these words/phrases (keypad-menu words, say), when the model
    supports a grammar (``grammar_active``); otherwise they are ignored and ``grammar_note`` says why.
    ``endpoint``: {mode, t_start_max, t_end, t_max}, applied only when vosk has the endpointer API.
    ``alternatives``: length of the n-best list of a final result (0: none; default ``alternatives`` in
    config/asr.yaml); final events then carry ``alternatives`` for the matcher to weigh together.
    """

    def __init__(self, model, input_rate: int, *, phrases: list[str] | None = None,
                 endpoint: dict | None = None, alternatives: int | None = None):
        if not isinstance(input_rate, int) or input_rate < 1000:
            raise IvrError(f"input sample rate {input_rate!r} is not a usable rate",
                           "give the channel's real rate in Hz, e.g. 8000 or 16000")
        self.model = model
        self.input_rate = input_rate
        self.model_rate = int(getattr(model, "ivr_sample_rate", 16000))
        self.phrases = [_nfc(p).strip() for p in phrases] if phrases else None
        self.endpoint = endpoint
        self.alternatives = max_alternatives() if alternatives is None else alternatives
        if isinstance(self.alternatives, bool) or not isinstance(self.alternatives, int) or not 0 <= self.alternatives <= 20:
            raise IvrError(f"n-best length {self.alternatives!r} is not a whole number between 0 and 20",
                           "set 'alternatives' in config/asr.yaml to 0 (off) or a small number such as 3")
        self.grammar_active = False
        self.grammar_note = ""
        self.missing_words: list[str] = []
        self.endpointer_applied = False
        self._lock = threading.Lock()
        self._last_partial = ""
        self._grammar = self._choose_grammar()
        self.busy = False  # the Vosk recogniser held searches as the busy line does (``busy_search``)
        self._pool = warm_pool()
        self._key = (id(self.model), self._grammar, self.alternatives,
                     json.dumps(self._endpoint(), sort_keys=True, default=str))
        self._rec = None
        self._audio_s = self._wall_s = 0.0  # this stream's audio and the wall time Vosk spent on it
        self._partial_every = max(1, int(self.input_rate * PARTIAL_MS / 1000))  # input samples between partials
        self._since_partial = 0
        self._t0 = 0.0
        self._fed = False  # audio went in since the last final (the Vosk stream is not at a clean start)
        # a model that cannot make a recogniser fails here, at set-up, not in the first frame; the recogniser
        # then waits in the pool until the first frame (a call holds one only while its caller speaks)
        self._take()
        self._give_back()
        self._resampler = self._new_resampler()

    # -- set-up

    def _choose_grammar(self) -> str | None:
        """The phrase list as Vosk takes it (JSON), or None for free speech; sets the notes."""
        if not self.phrases:
            return None
        if not bool(getattr(self.model, "ivr_grammar", True)):
            self.grammar_note = ("this model has a static graph (graph/HCLG.fst) and ignores phrase lists; "
                                 "recognising free speech instead")
            log.warning("phrase list: %s", self.grammar_note)
            return None
        grammar = list(dict.fromkeys(self.phrases))
        if "[unk]" not in grammar:
            grammar.append("[unk]")
        self.missing_words = self._oov(grammar)
        if self.missing_words:
            # Vosk would drop them with a warning on stderr; drop them here and say so once.
            grammar = [g for g in grammar if not any(w in self.missing_words for w in g.split())]
            self.grammar_note = ("words not in the model's vocabulary (never recognised): "
                                 + ", ".join(self.missing_words))
            log.warning("phrase list: %s", self.grammar_note)
        if not any(g != "[unk]" for g in grammar):
            self.grammar_note = "no phrase of the list is in this model's vocabulary; recognising free speech instead"
            log.warning("phrase list: %s", self.grammar_note)
            return None
        self.grammar_active = True
        return json.dumps(grammar, ensure_ascii=False)

    def _make(self, model=None):
        """A new Vosk recogniser with this recogniser's settings (its decoding graph cache starts cold);
        ``model``: another copy of the model (the busy line's narrower search)."""
        import vosk

        model = self.model if model is None else model
        if self._grammar is None:
            rec = vosk.KaldiRecognizer(model, float(self.model_rate))
        else:
            rec = vosk.KaldiRecognizer(model, float(self.model_rate), self._grammar)
        amount = float(getattr(model, "ivr_dither", 0.0) or 0.0)
        rec.ivr_noise = dither_noise(amount) if amount > 0 else None
        rec.ivr_stream = 0  # samples of the current utterance stream (where its noise sequence is)
        rec.SetWords(True)
        rec.SetPartialWords(True)
        if self.alternatives > 0:
            rec.SetMaxAlternatives(self.alternatives)
        self._apply_endpoint(rec)
        return rec

    def _make_busy(self):
        """A new Vosk recogniser searching as ``busy_search`` says, or None when there is no such search."""
        model = busy_model(self.model)
        return self._make(model) if model is not None else None

    def _take(self) -> None:
        if self._rec is None:
            self._held(self._pool.take(self._key, self._make, self))

    def _held(self, rec, busy: bool = False) -> None:
        self._rec = rec
        self.busy = busy
        self._fed = False
        self._since_partial = 0
        # Vosk times words from the recogniser's first sample; ours count from this stream's start
        self._t0 = getattr(rec, "ivr_samples", 0) / self.model_rate

    @property
    def holding(self) -> bool:
        return self._rec is not None

    def ready(self) -> bool:
        """Whether ``acquire`` would succeed now (this recogniser keeps its place in the pool's line)."""
        return self._rec is not None or self._pool.can_take(self._key, self)

    def others_waiting(self) -> bool:
        """Other turns wait in line for a recogniser like this one (the line is busy)."""
        return self._rec is None and self._pool.waiting(self._key, besides=self) > 0

    def acquire(self) -> bool:
        """Hold a Vosk recogniser for the stream about to be fed, within the pool's bound on recognisers
        decoding at once; False (and a place in line) when the bound is reached."""
        with self._lock:
            if self._rec is None:
                got = self._pool.try_take(self._key, self._make, self, busy_make=self._make_busy)
                if got is None:
                    return False
                self._held(*got)
            return True

    @staticmethod
    def _send(rec, pcm) -> bool:
        """Audio to a Vosk recogniser, counted: Vosk times words from its first sample (``_held``). The
        model's dither is added here, from the fixed noise sequence at this stream's position."""
        rec.ivr_samples = getattr(rec, "ivr_samples", 0) + len(pcm)
        noise = getattr(rec, "ivr_noise", None)
        if noise is not None and len(pcm):
            import numpy as np

            at = rec.ivr_stream
            rec.ivr_stream = at + len(pcm)
            mixed = pcm.astype(np.int32) + noise.take(np.arange(at, at + len(pcm)), mode="wrap")
            pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
        return bool(rec.AcceptWaveform(pcm.tobytes()))

    @staticmethod
    def _final_of(rec) -> str:
        """Vosk's final result; the recogniser starts a new utterance stream after it (and its noise sequence
        starts over)."""
        try:
            return rec.FinalResult()
        finally:
            rec.ivr_stream = 0

    def _timed(self, event: AsrEvent) -> AsrEvent:
        """Word times from this stream's start, to the millisecond (the same whether the Vosk recogniser is new
        or has decoded earlier streams)."""
        if not event.words:
            return event
        t0 = self._t0

        def shift(words):
            return [Word(w.word, round(w.start - t0, 3), round(w.end - t0, 3), w.conf) for w in words]

        return dataclasses.replace(event, words=shift(event.words))

    def _give_back(self) -> None:
        """The Vosk recogniser is at a clean start (its final was taken): back to the warm pool."""
        rec, self._rec = self._rec, None
        if rec is not None:
            self._pool.give(self._key, rec, self, busy=self.busy)

    def _let_go(self) -> None:
        """The Vosk recogniser is mid-stream or broken: dropped, never given back warm."""
        if self._rec is not None:
            self._rec = None
            self._pool.drop(self._key, self)

    def _oov(self, grammar: list[str]) -> list[str]:
        find = getattr(self.model, "vosk_model_find_word", None)
        if find is None:
            return []
        missing = []
        for phrase in grammar:
            missing.extend(w for w in phrase.split() if find(w) < 0 and w not in missing)
        return missing

    def _endpoint(self) -> dict:
        return dict(self.endpoint if self.endpoint is not None else (settings().get("endpoint") or {}))

    def _apply_endpoint(self, rec) -> None:
        ep = self._endpoint()
        if not ep:
            return
        set_mode = getattr(rec, "SetEndpointerMode", None)
        set_delays = getattr(rec, "SetEndpointerDelays", None)
        if set_mode is None or set_delays is None:
            self.endpointer_applied = False  # vosk 0.3.45: the model's conf/model.conf rules apply
            return
        import vosk

        modes = getattr(vosk, "EndpointerMode", None)
        mode = str(ep.get("mode", "default")).upper()
        if modes is not None and hasattr(modes, mode):
            set_mode(getattr(modes, mode))
        set_delays(float(ep.get("t_start_max", 5.0)), float(ep.get("t_end", 0.5)), float(ep.get("t_max", 15.0)))
        self.endpointer_applied = True

    def _new_resampler(self):
        if self.input_rate == self.model_rate:
            return None
        from ivr.media.audio import StreamResampler

        # through float samples: soxr's own int16 output adds random (TPDF) dither, so the same audio would
        # reach Vosk as different samples on every run
        return StreamResampler(self.input_rate, self.model_rate)

    # -- streaming

    @staticmethod
    def _as_int16(samples):
        import numpy as np

        if isinstance(samples, bytes | bytearray | memoryview):
            return np.frombuffer(samples, dtype="<i2")
        arr = np.asarray(samples)
        if arr.ndim != 1:
            if arr.ndim == 2 and 1 in arr.shape:
                arr = arr.reshape(-1)
            else:
                raise IvrError(f"audio frame has shape {arr.shape}; the recogniser takes mono frames",
                               "mix down to one channel at the channel edge")
        if arr.dtype == np.int16:
            return arr
        if np.issubdtype(arr.dtype, np.floating):
            return (np.clip(arr, -1.0, 1.0) * 32767.0).astype(np.int16)
        raise IvrError(f"audio frame has sample type {arr.dtype}; the recogniser takes 16-bit PCM",
                       "convert to int16 at the channel edge")

    def _accept(self, pcm) -> bool:
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        if len(pcm) == 0:
            return False
        self._take()
        self._fed = True
        self._audio_s += len(pcm) / self.model_rate
        t0 = time.perf_counter()
        try:
            return self._send(self._rec, pcm)
        finally:
            self._wall_s += time.perf_counter() - t0

    def feed(self, samples) -> AsrEvent | None:
        """Feed one frame (int16 array or little-endian bytes). Returns a final event when an utterance
        ended with words in it, a partial event when the partial text changed (looked at every
        ``PARTIAL_MS`` of audio), else None."""
        pcm = self._as_int16(samples)
        with self._lock:
            if self._accept(pcm):
                self._last_partial = ""
                event = self._timed(_final(self._rec.Result()))
                return event if event.text else None
            if self._rec is None:  # nothing reached Vosk yet (the resampler's first samples)
                return None
            # a partial result costs a traceback of the search; callers need one for barge-in, not 50 a second
            self._since_partial += len(pcm)
            if self._since_partial < self._partial_every:
                return None
            self._since_partial = 0
            t0 = time.perf_counter()
            data = json.loads(self._rec.PartialResult())
            self._wall_s += time.perf_counter() - t0
            text = _nfc(data.get("partial", "")).strip()
            if not text or text == self._last_partial:
                return None
            self._last_partial = text
            return self._timed(AsrEvent("partial", text, _words(data.get("partial_result")), 0.0))

    def finish(self, keep: bool = False) -> AsrEvent:
        """Flush the resampler and return the final result of whatever remains (text may be empty).
        The recogniser is then ready for a new utterance stream. ``keep``: the Vosk recogniser stays with this
        one (a pause inside a turn) instead of going back to the pool."""
        import numpy as np

        with self._lock:
            if self._rec is None or not self._fed:  # nothing fed since the last final: nothing to say
                self._resampler = self._new_resampler()
                self._last_partial = ""
                if not keep:
                    self._give_back()
                return AsrEvent("final", "", [], 0.0)
            if self._resampler is not None:
                tail = self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
                if len(tail):
                    self._send(self._rec, tail)
                self._resampler = self._new_resampler()
            self._last_partial = ""
            t0 = time.perf_counter()
            event = self._timed(_final(self._final_of(self._rec)))
            decode_rate.record(self._audio_s, self._wall_s + time.perf_counter() - t0)
            self._audio_s = self._wall_s = 0.0
            self._fed = False
            if not keep:
                self._give_back()
            return event

    def reset(self) -> None:
        """Drop everything heard so far (barge-in, a new prompt): the next frame starts a fresh stream, same
        settings. A recogniser that fails to reset is dropped (never given back warm) and replaced."""
        with self._lock:
            self._resampler = self._new_resampler()
            self._last_partial = ""
            if self._rec is None or not self._fed:
                return
            try:
                self._final_of(self._rec)  # Vosk starts a new feature pipeline and decoder after a final
            except Exception:  # noqa: BLE001 - a broken recogniser is not reused
                log.warning("a recogniser failed to reset; a new one replaces it", exc_info=True)
                self._let_go()
                return
            self._fed = False
            self._give_back()

    def warm_one(self, clips, seconds: float, busy: bool = False) -> float:
        """A new Vosk recogniser with this one's settings decodes ``clips`` (cycled, one stream each) until
        ``seconds`` of audio went through it, then waits warm in the pool. It is nobody's while it warms up:
        calls arriving meanwhile are not held back. ``busy``: one with the busy line's search (none is made
        when there is no such search). Returns the seconds decoded."""
        import numpy as np

        rec = self._make_busy() if busy else self._make()
        if rec is None:
            return 0.0
        fed = 0.0
        for clip in itertools.islice(itertools.cycle(clips), 10000):
            if fed >= seconds:
                break
            pcm = self._as_int16(np.asarray(clip))
            resampler = self._new_resampler()
            if resampler is not None:
                pcm = resampler.process(pcm, last=True)
            self._send(rec, pcm)
            self._final_of(rec)
            fed += len(clip) / self.input_rate
        self._pool.give(self._key, rec, self, busy=busy)
        return fed

    def close(self) -> None:
        """The call is over: a recogniser at a clean start goes back to the warm pool (one mid-stream is
        dropped: its words are the caller's and nobody will read them)."""
        with self._lock:
            self._pool.leave(self._key, self)
            if self._fed:
                self._let_go()
            else:
                self._give_back()

    async def afeed(self, samples, executor=None) -> AsrEvent | None:
        """``feed`` off the event loop (in ``executor``, default the loop's thread pool)."""
        return await asyncio.get_running_loop().run_in_executor(executor, self.feed, samples)

    async def afinish(self, executor=None) -> AsrEvent:
        return await asyncio.get_running_loop().run_in_executor(executor, self.finish)


class WarmPool:
    """Vosk recognisers kept between turns and calls, so that decoding starts warm, and a bound on how many
    decode at once.

    With a model that has a runtime graph (graph/HCLr.fst + Gr.fst, the small models) Vosk composes the
    decoding graph on the fly, per recogniser, and caches what it composed. A new recogniser decodes 3-4
    times slower than one that has decoded a few dozen utterances (benchmarks/bench_asr.py prints both), so
    recognisers are reused: one whose final was taken holds nothing of the caller (Vosk starts a new feature
    pipeline and decoder for the next audio; only the graph cache remains) and is given back here for the
    next turn of any call. ``keep`` bounds the idle ones per setting (each warm one holds up to ~130 MB of
    graph cache with the small models).

    ``live`` bounds the recognisers in use at once per setting (0: no bound). Under load, many callers
    speaking together would otherwise each get a new, cold recogniser, and all would decode at the cold
    price; with the bound, a turn beyond it waits (its frames stay queued, oldest turn first) for a warm one,
    which then catches up several times faster than real time. ``try_take`` is that waiting path;
    ``take`` (files, the kiosk) never waits.

    ``busy``: on a busy line (the turn waited in line, others wait, or ``busy_at`` turns are decoding already)
    a turn is given a recogniser with a
    narrower search (``busy_search`` in config/asr.yaml: a smaller Kaldi beam), which decodes about twice as
    fast, so the line catches up instead of falling further behind; with nobody waiting, turns decode with the
    model's own search. The two kinds are kept warm apart and count alike toward ``live``.
    """

    def __init__(self, keep: int, live: int = 0, busy: bool = False, busy_at: int = 0):
        self.keep = keep
        self.live = live
        self.busy = busy
        self.busy_at = busy_at  # with this many decoding already, the next turn takes the busy search too (0: no)
        self._idle: dict[tuple, list] = {}
        self._holders: dict[tuple, weakref.WeakSet] = {}  # Recognizers holding a Vosk recogniser
        self._queue: dict[tuple, list] = {}  # weak references to Recognizers waiting, oldest first
        self._refused: weakref.WeakSet = weakref.WeakSet()  # Recognizers told to wait since they last took one
        self._lock = threading.Lock()
        self.made = 0  # recognisers created (cold starts)
        self.reused = 0  # takes served warm
        self.busy_takes = 0  # turns given the busy line's narrower search

    def _holding(self, key: tuple) -> weakref.WeakSet:
        return self._holders.setdefault(key, weakref.WeakSet())

    def _grant(self, key: tuple, who, make, busy: bool = False):
        """Under the lock: ``who`` holds a recogniser from now on; returns (recogniser or None, make)."""
        self._holding(key).add(who)
        idle = self._idle.get((key, busy))
        if idle:
            self.reused += 1
            return idle.pop(), None
        self.made += 1
        return None, make

    def take(self, key: tuple, make, who):
        """A recogniser for ``who`` now (warm if one is idle), whatever the bound."""
        with self._lock:
            rec, make = self._grant(key, who, make)
        return rec if rec is not None else make()

    def _line(self, key: tuple, besides=None) -> list:
        """Under the lock: the line of this setting, pruned of the gone, those now holding one and
        ``besides``; stored back so it does not grow."""
        holding = self._holding(key)
        queue = [r for r in self._queue.get(key, []) if r() is not None and r() is not besides and r() not in holding]
        self._queue[key] = queue
        return queue

    def _turn(self, key: tuple, who) -> bool:
        """Under the lock: ``who`` may take one now (queued, oldest first, when the bound is reached)."""
        if not self.live:
            return True
        queue = self._line(key)
        if not any(r() is who for r in queue):
            queue.append(weakref.ref(who))
        free = self.live - len(self._holding(key))
        granted = any(r() is who for r in queue[:max(0, free)])
        if not granted:
            self._refused.add(who)
        return granted

    def can_take(self, key: tuple, who) -> bool:
        """Whether ``try_take`` would give ``who`` a recogniser now (``who`` keeps its place in line)."""
        with self._lock:
            return self._turn(key, who)

    def try_take(self, key: tuple, make, who, busy_make=None):
        """(recogniser, busy) for ``who``, or None when ``live`` are in use and older turns wait first.
        ``busy`` when the line is busy (``who`` waited in line, or others wait) and ``busy_make`` makes a
        recogniser with the narrower search (it may return None: there is none)."""
        with self._lock:
            if not self._turn(key, who):
                return None
            waited = who in self._refused
            self._refused.discard(who)
            # others told to wait are in line behind (asking whether one is free is not waiting)
            others = any(r() in self._refused for r in self._line(key, besides=who))
            crowded = bool(self.busy_at) and len(self._holding(key)) >= self.busy_at
            busy = self.busy and busy_make is not None and (waited or others or crowded)
            rec, to_make = self._grant(key, who, busy_make if busy else make, busy)
            if busy:
                self.busy_takes += 1
        if rec is None:
            rec = to_make()
            if rec is None:  # no narrower search after all (switched off, or the copy could not be made)
                return make(), False
        return rec, busy

    def give(self, key: tuple, rec, who, busy: bool = False) -> None:
        """``who`` is done with ``rec``, which is at a clean start: kept warm (the ``keep`` last given of its
        kind: ``busy``, the busy line's search, or the model's own)."""
        with self._lock:
            self._holding(key).discard(who)
            idle = self._idle.setdefault((key, busy), [])
            if rec is not None:
                idle.append(rec)  # taken last in, first out: the most used stay, the oldest idle one goes
                if len(idle) > self.keep:
                    del idle[0]

    def waiting(self, key: tuple, besides=None) -> int:
        """Turns waiting in line for a recogniser of this setting (other than ``besides``)."""
        with self._lock:
            return sum(1 for r in self._line(key) if r() is not besides)

    def leave(self, key: tuple, who) -> None:
        """``who`` no longer waits (its call is over)."""
        with self._lock:
            self._line(key, besides=who)

    def drop(self, key: tuple, who) -> None:
        """``who`` lets its recogniser go without giving it back (mid-stream, or broken)."""
        self.give(key, None, who)

    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


class DecodeRate:
    """The measured decoding speed: wall seconds spent in Vosk per second of audio, over the last ``window``
    streams (turns) of the process. Under load it rises (the decoders share the cores), which is what an
    estimate of how long waiting speech will take must see. ``rtf()`` is ``default`` until a stream ended."""

    def __init__(self, window: int = 32, default: float = 0.5):
        self._items: deque[tuple[float, float]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.default = default

    def record(self, audio_s: float, wall_s: float) -> None:
        if audio_s > 0.2:  # a few frames say nothing about the speed
            with self._lock:
                self._items.append((audio_s, wall_s))

    def rtf(self) -> float:
        with self._lock:
            audio = sum(a for a, _ in self._items)
            wall = sum(w for _, w in self._items)
        return wall / audio if audio > 0 else self.default


decode_rate = DecodeRate()

_pool: WarmPool | None = None
_pool_lock = threading.Lock()


def warm_pool() -> WarmPool:
    """The process's pool of warm recognisers (``warm_recognizers`` and ``live_recognizers`` in
    config/asr.yaml)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            # busy from the second turn decoding at once: a turn has the model's own search only while it has
            # the decoders to itself (bench_sip, 40 callers on 2 cores, four runs each: from the third turn,
            # voice-to-voice p50 0.67-0.82 s and key-to-audio p99 50-107 ms; from the second, 0.66-0.68 s and
            # 35-97 ms)
            _pool = WarmPool(warm_recognizers(), live_recognizers(), busy=bool(busy_search()), busy_at=1)
        return _pool


def _whole(name: str, default: int, top: int, fix: str) -> int:
    value = settings().get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise IvrError(f"config/asr.yaml: '{name}' must be a whole number between 0 and {top}, not {value!r}", fix)
    return value


def warm_recognizers() -> int:
    """``warm_recognizers`` in config/asr.yaml: idle recognisers kept warm per setting (0 = none)."""
    return _whole("warm_recognizers", 16, 256, "write 0 (each turn decodes with a new recogniser) or a number such as 16")


def live_recognizers() -> int:
    """``live_recognizers`` in config/asr.yaml: recognisers decoding at once per setting on the phone
    (0 = two per CPU core)."""
    value = _whole("live_recognizers", 0, 1024, "write 0 (two per CPU core) or a number such as 4")
    return value or 2 * (os.cpu_count() or 1)


def warm_up(model, rate: int, clips, *, count: int | None = None, seconds: float | None = None) -> dict:
    """Decode ``seconds`` of ``clips`` (mono int16 at ``rate``, e.g. the line's own prompts) through each of
    ``count`` recognisers, then leave them warm in the pool, so the first callers do not pay the cold price.
    Defaults: ``live_recognizers`` (at most ``warm_recognizers``) recognisers, ``warm_up_seconds`` each.
    With ``busy_search`` on, as many recognisers of the busy line's search are warmed after them.
    Returns {recognisers, busy (recognisers of the busy search), seconds (of audio each), wall_s}."""

    count = min(live_recognizers(), warm_recognizers()) if count is None else count
    seconds = warm_up_seconds() if seconds is None else seconds
    clips = [c for c in clips if len(c)]
    t0 = time.perf_counter()
    if not clips or count <= 0 or seconds <= 0:
        return {"recognisers": 0, "busy": 0, "seconds": 0.0, "wall_s": 0.0}
    template = Recognizer(model, rate)
    fed = 0.0
    for _ in range(count):
        fed = template.warm_one(clips, seconds)
    busy = 0
    if template._pool.busy and busy_model(model) is not None:
        # the busy line's narrower search, ready before the line is busy (a new one would decode cold)
        for _ in range(count):
            busy += template.warm_one(clips, seconds, busy=True) > 0
    return {"recognisers": count, "busy": busy, "seconds": round(fed, 1),
            "wall_s": round(time.perf_counter() - t0, 2)}


def warm_up_seconds() -> float:
    """``warm_up_seconds`` in config/asr.yaml: audio decoded by each recogniser when a server starts."""
    value = settings().get("warm_up_seconds", 15)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 600:
        raise IvrError(f"config/asr.yaml: 'warm_up_seconds' must be a number of seconds from 0 to 600, not {value!r}",
                       "write 0 (no warm-up) or a number such as 15")
    return float(value)


def menu_phrases() -> list[str]:
    """The keypad-menu words from config/asr.yaml (NFC)."""
    return [_nfc(str(p)) for p in (settings().get("menu_phrases") or [])]


def max_alternatives() -> int:
    """``alternatives`` in config/asr.yaml: the n-best length (0 = off). A bad value is an ``IvrError``."""
    return _whole("alternatives", 0, 20, "write 0 (off) or a small number such as 3")


def endpoint_settings() -> dict:
    return dict(settings().get("endpoint") or {})
