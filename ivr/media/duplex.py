"""Full-duplex microphone for the kiosk: echo cancelled, with a barge-in decision.

The kiosk calls ``feed`` once per 20 ms with the microphone frame it just recorded and the loudspeaker
frame it played at the same time (silence when the IVR is quiet):

    mic = DuplexMic(16000)
    cleaned, barge_in = mic.feed(mic_frame, speaker_frame)
    # cleaned: goes to the VAD gate / recogniser instead of the raw frame
    # barge_in: True once per visitor utterance that interrupts the IVR -> stop the playout

Barge-in needs three things: the VAD (ivr/media/vad.py) on the *cleaned* signal is inside an utterance;
that utterance has had ``confirm_ms`` of speech-like frames (a residual echo blip of 60-120 ms right after
a loud echo onset does not stop the IVR, a visitor's word does, 0.2 s into it) which, while the loudspeaker
sounds (and ``hold_s`` after), pass a double-talk check: the cleaned frame keeps at least the mic frame's
power minus ``double_talk_db`` (12 dB). Echo alone comes out of the canceller 15-45 dB below the mic (the
VAD may still call the residue speech, its floor being the very quiet cleaned background); a visitor who
speaks comes out at 0-10 dB below it (their voice is not cancelled), so a visitor up to about 10 dB quieter
than the echo at the mic still barges in. Without this check the greeting's own echo barged in on itself in
four renders out of six of the same text (espeak-ng's timing varies a little between renders); and the echo
canceller has heard ``warmup_s`` of loudspeaker audio (before that its filter has not converged and the IVR's own voice
leaks through: until then the kiosk stays half-duplex while it speaks and for ``hold_s`` after) and takes at
least ``min_erle_db`` (25 dB) of the echo out, measured on the last second of loudspeaker sound (a loud,
reverberant hall converges more slowly than its first 3 s).

"The loudspeaker frame played at the same time" matters: the sound card plays a block one period (plus
its output latency) after it was handed over. The kiosk should pair each mic block with the speaker block
the card was playing while recording it, and make ``tail_ms`` cover the card's input + output latency on
top of the room's echo (the canceller learns any delay shorter than its tail).

The first ``SETTLE_FRAMES`` frames out of the canceller are not given to the VAD: libspeexdsp's preprocessor
ramps up over its first frame, and a VAD whose noise floor starts on that near-silence takes any steady
background (a fan, a hall) for a visitor who never stops speaking.
"""

from __future__ import annotations

import numpy as np

from ivr.media.aec import EchoCanceller
from ivr.media.vad import Vad, VadSettings

SETTLE_FRAMES = 5  # canceller output frames (100 ms) the VAD does not hear while the preprocessor starts


class DuplexMic:
    """Echo canceller + VAD + barge-in rule for one microphone; one per kiosk for its whole run (the learnt
    echo path is kept across visits). See the module notes."""

    def __init__(self, rate: int = 16000, *, tail_ms: float = 200.0, confirm_ms: float = 200.0,
                 warmup_s: float = 3.0, hold_s: float = 0.5, vad: VadSettings | None = None,
                 speaker_floor_dbfs: float = -50.0, double_talk_db: float = 12.0, min_erle_db: float = 25.0):
        self.rate = rate
        self.frame = rate // 50
        self.aec = EchoCanceller(rate, self.frame, tail_ms)
        self.vad = Vad(rate, vad)
        self.confirm_frames = max(1, int(round(confirm_ms / 20)))
        self.warmup_frames = int(round(warmup_s * 50))
        self.speaker_floor = 32768.0 ** 2 * 10 ** (speaker_floor_dbfs / 10) / 2
        self.hold_frames = int(round(hold_s * 50))
        self.double_talk = 10 ** (-float(double_talk_db) / 10)
        self._since_playing = 10**9
        self.speaker_frames = 0  # loudspeaker frames with sound heard so far (convergence)
        self.min_erle = 10 ** (float(min_erle_db) / 10)
        self._mic_power = 0.0  # smoothed (about 1 s) power of mic and cleaned frames while the speaker sounds
        self._out_power = 0.0
        self._converged = False
        self.t = 0.0
        self._utt_frames = 0  # speech-like frames in the current utterance
        self._fired = False
        self.barge_ins: list[float] = []  # seconds (from the first frame) of each barge-in

    @property
    def settling(self) -> bool:
        """The canceller's output is not yet a fair picture of the room (its first frames): no VAD on it."""
        return self.aec.frames <= SETTLE_FRAMES

    @property
    def converged(self) -> bool:
        """The canceller has heard ``warmup_s`` of the loudspeaker and takes at least ``min_erle_db`` of its
        echo out (smoothed over the last second of it); once true, it stays true (the echo path is kept)."""
        return self._converged

    @property
    def erle_db(self) -> float:
        """The echo reduction measured lately (dB), while the loudspeaker sounds."""
        return 10 * float(np.log10(max(self._mic_power, 1.0) / max(self._out_power, 1.0)))

    def feed(self, mic_frame, speaker_frame) -> tuple[np.ndarray, bool]:
        """One 20 ms frame of each -> (the cleaned microphone frame, whether the visitor barges in now)."""
        spk = np.asarray(speaker_frame)
        playing = float(np.mean(spk.astype(np.float64) ** 2)) > self.speaker_floor
        if playing:
            self.speaker_frames += 1
            self._since_playing = 0
        else:
            self._since_playing += 1
        cleaned = self.aec.process(mic_frame, spk)
        self.t += 0.02
        if playing:
            a = 0.05
            self._mic_power += a * (float(np.mean(np.asarray(mic_frame, dtype=np.float64) ** 2)) - self._mic_power)
            self._out_power += a * (float(np.mean(cleaned.astype(np.float64) ** 2)) - self._out_power)
            self._converged = self._converged or (self.speaker_frames >= self.warmup_frames
                                                  and self._mic_power >= self.min_erle * max(self._out_power, 1.0))
        if self.settling:
            self.vad.skip(len(cleaned))
            return cleaned, False
        self.vad.feed(cleaned)
        if not self.vad.speaking:
            self._utt_frames = 0
            self._fired = False
            return cleaned, False
        near = self.vad.last_is_speech
        if near and self._since_playing <= self.hold_frames:  # the IVR's echo may be in the room: double talk?
            mic_power = float(np.mean(np.asarray(mic_frame, dtype=np.float64) ** 2))
            near = float(np.mean(cleaned.astype(np.float64) ** 2)) >= self.double_talk * mic_power
        self._utt_frames += int(near)
        barge = (not self._fired and self._utt_frames >= self.confirm_frames
                 and (self.converged or self._since_playing > self.hold_frames))
        if barge:
            self._fired = True
            self.barge_ins.append(round(self.t, 2))
        return cleaned, barge

    def close(self) -> None:
        self.aec.close()
