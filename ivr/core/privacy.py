"""Identity digits never leave a call in clear: one masking rule, applied where a call's records are made.

A run of 6 or more digits (an identity card or phone number), in figures or as spoken Vietnamese digit words,
is masked in every text (``mask_text``, ``mask``). Keys are one record each, so a run is seen across records:
digit keys typed close together (gaps up to ``RUN_GAP`` seconds) form a run, and once a run has ``MIN_RUN``
digit keys every key the run's records carry (the ``key`` records, and the dialogue's echoes of them:
``digit``, ``typeahead``, ``invalid``, ``digits``, ...) is masked in place (``KeyRun``, ``mask_keys``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

MASK = "•"
MIN_RUN = 6  # digits in a row that are masked
RUN_GAP = 1.5  # seconds: keys closer together than this belong to one run
KEY_FIELDS = ("digit", "keys")  # record fields that carry what the caller typed

_DIGIT_WORDS = ("không", "một", "mốt", "hai", "ba", "bốn", "tư", "năm", "lăm", "sáu", "bảy", "tám", "chín",
                "linh", "lẻ")
_TOKEN = r"(?:\d|" + "|".join(_DIGIT_WORDS) + r")"
_SEP = r"[\s.\-_/,]*"
_FIGURES_RE = re.compile(r"\d(?:[\s.\-]*\d){" + str(MIN_RUN - 1) + ",}")
_WORDS_RE = re.compile(r"(?<!\w)" + _TOKEN + "(?:" + _SEP + _TOKEN + "){" + str(MIN_RUN - 1) + r",}(?!\w)",
                       re.IGNORECASE)
_KEY_DIGIT_RE = re.compile(r"[0-9]")

# Fields that identify the call or the record, never what a caller said or typed: kept as they are so a
# log can be matched to a SIP trace (Call-ID) or an Asterisk channel (AudioSocket UUID).
UNMASKED_FIELDS = frozenset({"call_id", "channel", "type", "at"})  # "at": the wall-clock start the log writes


def mask_text(text: str) -> str:
    """Mask runs of 6 or more digits (figures, or spoken Vietnamese digit words) in ``text``."""
    text = unicodedata.normalize("NFC", text)
    text = _FIGURES_RE.sub(lambda m: re.sub(r"\d", MASK, m.group(0)), text)
    return _WORDS_RE.sub(lambda m: MASK * 6, text)


def mask(value: Any) -> Any:
    """``mask_text`` applied to every string inside ``value`` (dicts, lists, tuples), except the
    identifying fields in ``UNMASKED_FIELDS``."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: v if k in UNMASKED_FIELDS else mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def is_key(record: dict) -> bool:
    """A record of one digit key pressed by the caller (masked already or not)."""
    digit = record.get("digit")
    return record.get("type") == "key" and isinstance(digit, str) and len(digit) == 1 and digit in "0123456789" + MASK


def mask_keys(record: dict) -> None:
    """Mask, in place, every digit key ``record`` carries (the fields in ``KEY_FIELDS``)."""
    for name in KEY_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            record[name] = _KEY_DIGIT_RE.sub(MASK, value)


class KeyRun:
    """The run of keys being typed, over a stream of records (``note`` each one as it is made).

    Records that carry keys while a run lasts belong to it; when the run reaches ``MIN_RUN`` digit keys, all
    of them are masked in place, and so is every later one until the run ends. A run ends after a pause of
    more than ``run_gap`` (``note`` or ``expire`` with a later time), at other input (speech, hang-up), or
    at ``close``. ``start`` is the index (in the stream) of the run's first record, None when no run lasts.
    """

    def __init__(self, run_gap: float = RUN_GAP):
        self.run_gap = float(run_gap)
        self.start: int | None = None
        self._records: list[dict] = []
        self._digits = 0
        self._last: float | None = None
        self._count = 0

    @property
    def sensitive(self) -> bool:
        return self._digits >= MIN_RUN

    def note(self, record: dict) -> None:
        index = self._count
        self._count += 1
        self.expire(float(record.get("t", 0.0)))
        if is_key(record):
            if self.start is None:
                self.start = index
            self._digits += 1
            self._last = float(record.get("t", 0.0))
        elif record.get("type") in ("heard", "hangup"):
            self.close()
            return
        elif self.start is None or not any(name in record for name in KEY_FIELDS):
            return
        self._records.append(record)
        if self.sensitive:
            for rec in self._records:
                mask_keys(rec)

    def expire(self, t: float) -> None:
        if self._last is not None and t - self._last > self.run_gap:
            self.close()

    def close(self) -> None:
        self.start = None
        self._records = []
        self._digits = 0
        self._last = None
