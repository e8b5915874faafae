"""DTMF keypad tones: a streaming receiver (ITU-T Q.23/Q.24 style) and a generator.

Receiver
--------
The signal is cut into 20 ms Hann-windowed blocks every 5 ms. For every block the complex DFT at the
eight DTMF frequencies is one matrix product (blocks x samples @ samples x 16 cos/sin basis), so a
whole file or a 20 ms frame is analysed without a per-sample Python loop.

A block votes for a key when all of these hold:

* the strongest low-group and high-group tones are above ``min_level_dbfs`` (per tone);
* each of them beats the others in its group by ``group_margin_db``;
* twist (high minus low) lies within ``-max_normal_twist_db .. +max_reverse_twist_db``;
* purity: the two tones carry at least ``min_purity`` of the block's total energy. Speech spreads its
  energy over many harmonics and formants (and noise over the whole band), a keypad puts it into two
  lines, so this is the main talk-off guard; harmonics of the tones themselves count against them;
* frequency: the phase advance of each tone between consecutive blocks (5 ms apart) gives its real
  frequency to about a hertz; both must lie within ``max_freq_error`` (2.5 %) of nominal. A 20 ms
  block alone cannot tell 1.5 % from 3.5 % by energy (its bins are 50 Hz wide), the phase can.

Powers are corrected for the Hann window's loss at the measured offset before the level, twist and
purity checks, so a tone 1.5 % off is judged like one on frequency.

Consecutive votes for one key form a run (short dropouts of up to ``bridge_ms`` are bridged). A run whose
estimated duration reaches ``min_tone_ms`` is a key press: :attr:`DtmfReceiver.pressed` reports it at
once (for barge-in) and a :class:`DtmfEvent` is returned when the tone ends. Tone edges are estimated
from the first and last voting blocks; they land within a few milliseconds of the true edges.

Quiet audio costs almost nothing: a block's power on any bin is bounded by its energy (Cauchy-Schwarz), so
a frame too quiet for any of its blocks to reach the tone floor is not analysed (only its last block's DFT is
kept, the phase reference of the next). Most of a call's frames are silence or line noise.

The receiver runs natively at 8 kHz and 16 kHz; other rates are resampled to 8 kHz (soxr).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ivr.errors import IvrError

LOW_FREQS = (697.0, 770.0, 852.0, 941.0)
HIGH_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
KEYS = "".join(KEYPAD)
NATIVE_RATES = (8000, 16000)

_DIGIT_TONES = {KEYPAD[r][c]: (LOW_FREQS[r], HIGH_FREQS[c]) for r in range(4) for c in range(4)}
_FREQS = np.array(LOW_FREQS + HIGH_FREQS)


@dataclass(frozen=True)
class DtmfEvent:
    """One key press: ``digit`` in ``0-9 * # A-D``, ``start``/``end`` in seconds from stream start."""

    digit: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class DtmfSettings:
    block_ms: float = 20.0
    hop_ms: float = 5.0
    min_level_dbfs: float = -40.0  # per tone, AES17 (a sine peaking at full scale is 0 dBFS)
    group_margin_db: float = 6.0
    max_normal_twist_db: float = 10.0  # low group louder
    max_reverse_twist_db: float = 6.0  # high group louder
    min_purity: float = 0.7
    max_freq_error: float = 0.025
    min_tone_ms: float = 31.0
    bridge_ms: float = 10.0
    edge_ms: float = 5.0  # a block votes once the tone fills about this much less than all of it


class _Analyser:
    """Per-rate constants: window, DFT basis, window-loss table."""

    def __init__(self, rate: int, s: DtmfSettings):
        self.rate = rate
        self.n = int(round(rate * s.block_ms / 1000))
        self.hop = int(round(rate * s.hop_ms / 1000))
        n = np.arange(self.n)
        w = np.hanning(self.n + 2)[1:-1]  # Hann without the zero end points
        ang = 2 * np.pi * np.outer(n, _FREQS) / rate
        self.basis = np.concatenate([w[:, None] * np.cos(ang), w[:, None] * np.sin(ang)], axis=1).astype(
            np.float32
        )
        self.w2 = (w * w).astype(np.float32)
        self.small_index = np.arange(self.n)[None, :] + self.hop * np.arange(32)[:, None]
        # P = 2|X|^2 / (sum w)^2 gives A^2/2 for a sine of amplitude A on the bin; E the block's mean power.
        self.p_scale = 2.0 / float(w.sum()) ** 2
        self.e_scale = 1.0 / float(self.w2.sum())
        self.hop_phase = np.exp(-1j * 2 * np.pi * _FREQS * self.hop / rate)
        self.hz_per_rad = rate / (2 * np.pi * self.hop)
        # Window power response vs. frequency offset, for the loss correction.
        self.loss_hz = np.linspace(-150.0, 150.0, 601)
        resp = np.abs(np.exp(2j * np.pi * np.outer(self.loss_hz, n) / rate) @ w) / w.sum()
        self.loss_pow = np.maximum(resp**2, 1e-6)
        # the most power the window can lose on a tone still within the accepted offset (for a cheap pre-screen)
        within = np.abs(self.loss_hz) <= s.max_freq_error * _FREQS.max() + 1
        self.max_loss = float(self.loss_pow[within].min())
        # A tone's power P on any bin is at most p_scale * sum(w^2) * (the block's sum of x^2) (Cauchy-Schwarz),
        # and a block votes only with both tones at min_level * max_loss or more: audio whose sum of squares
        # over all of a frame's blocks is below this cannot vote, and skips the DFT (half the margin for float
        # rounding). Most of a call's frames are quiet.
        floor = 10 ** (s.min_level_dbfs / 10) / 2 * self.max_loss
        self.quiet_sum = 0.5 * floor / (self.p_scale * float(self.w2.sum()))


@lru_cache(maxsize=16)
def _analyser(rate: int, settings: DtmfSettings) -> _Analyser:
    return _Analyser(rate, settings)


class DtmfReceiver:
    """Streaming DTMF receiver. Feed int16 (or float in [-1, 1]) samples in any chunk size."""

    def __init__(self, rate: int = 8000, settings: DtmfSettings | None = None):
        rate = int(rate)
        if rate < 4000 or rate > 384000:
            raise IvrError(f"DTMF receiver: sample rate {rate} Hz is not usable", "use 8000 or 16000 Hz audio")
        self.rate = rate
        self.settings = settings or DtmfSettings()
        self._arate = rate if rate in NATIVE_RATES else 8000
        self._resampler = None
        if self._arate != rate:
            from ivr.media.audio import StreamResampler

            self._resampler = StreamResampler(rate, self._arate)
        self._an = _analyser(self._arate, self.settings)
        s = self.settings
        self._min_level = 10 ** (s.min_level_dbfs / 10) / 2  # sine power at that level
        self._margin = 10 ** (s.group_margin_db / 10)
        self._twist_lo = 10 ** (-s.max_normal_twist_db / 10)
        self._twist_hi = 10 ** (s.max_reverse_twist_db / 10)
        self._bridge = int(round(s.bridge_ms / s.hop_ms))
        self._edge = s.edge_ms * self._arate / 1000
        self._min_span = s.min_tone_ms * self._arate / 1000
        # The stream is preceded by one hop of silence so that a tone already sounding at the first sample
        # has a block before it to measure its phase advance against, and is timed from 0.
        hop = self._an.hop
        self._buf = np.zeros(hop, dtype=np.float32)
        self._next_block = -1  # index of the next block to analyse; block i starts at sample i * hop
        self._buf_start = -hop  # sample index (analysis rate) of _buf[0]
        self._prev_y = None  # DFT (cos/sin parts) of the last block analysed
        self._run = None  # [key, first_block, last_block]
        self._ended = False

    # -- public ---------------------------------------------------------------------------------------------
    @property
    def pressed(self) -> str | None:
        """The key being held right now, once it is long enough to count; else None."""
        r = self._run
        if r is not None and self._span(r) >= self._min_span:
            return KEYS[r[0]]
        return None

    def feed(self, samples) -> list[DtmfEvent]:
        """Add samples; return the key presses that ended within them."""
        x = np.asarray(samples)
        if x.ndim != 1:
            raise IvrError("DTMF receiver takes mono samples", "mix the channels down first (ivr.media.audio.read_audio)")
        if x.dtype.kind == "f":
            x = x.astype(np.float32)
        else:
            x = x.astype(np.float32) / np.float32(32768.0)
        if self._resampler is not None:
            x = self._resampler.process(x).astype(np.float32) / np.float32(32768.0)
        return self._process(x)

    def flush(self) -> list[DtmfEvent]:
        """End of stream: analyse what is left and close a tone still sounding."""
        events: list[DtmfEvent] = []
        if self._resampler is not None and not self._ended:
            tail = self._resampler.process(np.zeros(0, np.float32), last=True)
            events += self._process(tail.astype(np.float32) / np.float32(32768.0))
        self._ended = True
        if self._run is not None:
            ev = self._close()
            if ev:
                events.append(ev)
        return events

    # -- internals ------------------------------------------------------------------------------------------
    def _span(self, run) -> float:
        return (run[2] - run[1]) * self._an.hop + self._an.n - 2 * self._edge

    def _close(self) -> DtmfEvent | None:
        key, first, last = self._run
        self._run = None
        if self._span((key, first, last)) < self._min_span:
            return None
        a = self._an
        # a run from block 0 (the first one with a phase reference) was sounding when the stream began
        start = 0.0 if first <= 0 else (first * a.hop + self._edge) / a.rate
        end = (last * a.hop + a.n - self._edge) / a.rate
        return DtmfEvent(KEYS[key], round(start, 4), round(end, 4))

    def _process(self, x: np.ndarray) -> list[DtmfEvent]:
        a = self._an
        self._buf = np.concatenate([self._buf, x]) if len(self._buf) else x
        events: list[DtmfEvent] = []
        chunk = 4096  # blocks per matrix product, bounds memory on long files
        while True:
            first_off = self._next_block * a.hop - self._buf_start
            avail = (len(self._buf) - first_off - a.n) // a.hop + 1
            if avail <= 0:
                break
            m = min(avail, chunk)
            seg = self._buf[first_off : first_off + (m - 1) * a.hop + a.n]
            small = m <= len(a.small_index)  # a frame or two (streaming), not a file
            if small and float(np.dot(seg, seg)) < a.quiet_sum:
                # too quiet for any block to vote: only the last block's DFT is needed (the phase reference)
                self._prev_y = seg[len(seg) - a.n:] @ a.basis
                if self._run is not None:
                    events += self._runs(np.full(m, -1, dtype=np.int64), self._next_block)
                self._next_block += m
                continue
            if small:  # a fancy-index gather is cheaper than a strided view
                blocks = seg[a.small_index[:m]]
            else:
                blocks = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(seg, a.n)[:: a.hop])
            votes = self._votes(blocks)
            events += self._runs(votes, self._next_block)
            self._next_block += m
        drop = self._next_block * a.hop - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return events

    def _votes(self, blocks: np.ndarray) -> np.ndarray:
        """One vote per block: key index 0-15, or -1."""
        a, s = self._an, self.settings
        y = blocks @ a.basis  # (m, 16): X = y[:, :8] - 1j * y[:, 8:]
        p = (y[:, :8] ** 2 + y[:, 8:] ** 2) * a.p_scale
        e = (blocks * blocks) @ a.w2 * a.e_scale
        prev = self._prev_y
        self._prev_y = y[-1].copy()
        votes = np.full(len(p), -1, dtype=np.int64)
        pl, ph = p[:, :4].max(axis=1), p[:, 4:].max(axis=1)
        # cheap pre-screen, loose enough for any tone the full checks could accept
        floor = self._min_level * a.max_loss
        idx = np.flatnonzero((pl + ph >= s.min_purity * a.max_loss * e) & (np.minimum(pl, ph) >= floor))
        if idx.size == 0:
            return votes
        pl, ph, e, pi = pl[idx], ph[idx], e[idx], p[idx]
        lo = np.argmax(pi[:, :4], axis=1)
        hi = 4 + np.argmax(pi[:, 4:], axis=1)
        before = np.zeros((len(idx), 16), dtype=y.dtype)
        inside = idx > 0
        before[inside] = y[idx[inside] - 1]
        # the stream's very first block has nothing to measure a phase advance against
        has_ref = np.ones(len(idx), dtype=bool) if prev is not None else inside
        if prev is not None:
            before[~inside] = prev
        cur = y[idx]
        k = np.arange(len(idx))

        def offset(col):
            x_now = cur[k, col] - 1j * cur[k, col + 8].astype(np.complex128)
            x_before = before[k, col] - 1j * before[k, col + 8].astype(np.complex128)
            return np.angle(x_now * np.conj(x_before) * a.hop_phase[col]) * a.hz_per_rad

        off_l, off_h = offset(lo), offset(hi)
        fl, fh = _FREQS[lo], _FREQS[hi]
        pl_c = pl / np.interp(off_l, a.loss_hz, a.loss_pow)
        ph_c = ph / np.interp(off_h, a.loss_hz, a.loss_pow)
        lo_next = np.sort(pi[:, :4], axis=1)[:, -2]
        hi_next = np.sort(pi[:, 4:], axis=1)[:, -2]
        ok = (
            has_ref
            & (np.abs(off_l) <= s.max_freq_error * fl)
            & (np.abs(off_h) <= s.max_freq_error * fh)
            & (pl_c >= self._min_level)
            & (ph_c >= self._min_level)
            & (pl >= self._margin * lo_next)
            & (ph >= self._margin * hi_next)
            & (ph_c >= self._twist_lo * pl_c)
            & (ph_c <= self._twist_hi * pl_c)
            & (pl_c + ph_c >= s.min_purity * e)
        )
        votes[idx[ok]] = lo[ok] * 4 + (hi[ok] - 4)
        return votes

    def _runs(self, votes: np.ndarray, base: int) -> list[DtmfEvent]:
        events: list[DtmfEvent] = []
        if self._run is None and votes.max() < 0:
            return events
        change = np.flatnonzero(np.diff(votes)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(votes)]])
        for i0, i1 in zip(starts, ends, strict=True):
            v = int(votes[i0])
            b0, b1 = base + int(i0), base + int(i1) - 1
            run = self._run
            if v < 0:
                if run is not None and b1 - run[2] > self._bridge:
                    ev = self._close()
                    if ev:
                        events.append(ev)
                continue
            if run is not None and (run[0] != v or b0 - run[2] - 1 > self._bridge):
                ev = self._close()
                if ev:
                    events.append(ev)
                run = None
            if run is None:
                self._run = [v, b0, b1]
            else:
                run[2] = b1
        return events


def detect(samples, rate: int) -> list[DtmfEvent]:
    """All key presses in a whole signal."""
    rx = DtmfReceiver(rate)
    return rx.feed(samples) + rx.flush()


def digits_of(events: list[DtmfEvent]) -> str:
    return "".join(e.digit for e in events)


def generate(
    digits: str,
    rate: int = 8000,
    tone_ms: float = 100,
    gap_ms: float = 100,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    freq_error: float = 0.0,
) -> np.ndarray:
    """Keypad tones for ``digits`` as int16: each key sounds ``tone_ms`` and is followed by ``gap_ms`` silence.

    ``level_dbfs`` is the low-group tone's level; the high-group tone is ``twist_db`` louder (negative: the
    low group is louder, the usual "normal" twist). ``freq_error`` shifts both tones, e.g. 0.015 for +1.5 %.
    """
    bad = [c for c in digits if c.upper() not in _DIGIT_TONES]
    if bad:
        raise IvrError(
            f"DTMF: cannot generate key {bad[0]!r} in {digits!r}", "use only the keypad keys 0-9 * # A B C D"
        )
    if not (np.isfinite(tone_ms) and np.isfinite(gap_ms) and tone_ms > 0 and gap_ms >= 0):
        raise IvrError(f"DTMF: tone_ms={tone_ms}, gap_ms={gap_ms} make no sense", "give a positive tone length")
    if not (np.isfinite(level_dbfs) and np.isfinite(twist_db) and max(level_dbfs, level_dbfs + twist_db) <= 0):
        raise IvrError(f"DTMF: level {level_dbfs} dBFS (twist {twist_db} dB) is not a usable level",
                       "give a level below 0 dBFS, e.g. -10")
    nt = int(round(rate * tone_ms / 1000))
    ng = int(round(rate * gap_ms / 1000))
    t = np.arange(nt) / rate
    a_lo = 10 ** (level_dbfs / 20)
    a_hi = 10 ** ((level_dbfs + twist_db) / 20)
    parts = []
    for c in digits.upper():
        f_lo, f_hi = _DIGIT_TONES[c]
        k = 1.0 + freq_error
        tone = a_lo * np.sin(2 * np.pi * f_lo * k * t) + a_hi * np.sin(2 * np.pi * f_hi * k * t)
        parts.append(tone)
        parts.append(np.zeros(ng))
    y = np.concatenate(parts) if parts else np.zeros(0)
    return np.clip(np.rint(y * 32767), -32768, 32767).astype(np.int16)
