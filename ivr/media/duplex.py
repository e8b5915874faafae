"""Full-duplex microphone for the kiosk: echo cancelled, with a barge-in decision.

The kiosk calls ``feed`` once per 20 ms with the microphone frame it just recorded and the loudspeaker
frame it played at the same time (silence when the IVR is quiet):

    mic = DuplexMic(16000)
    cleaned, barge_in = mic.feed(mic_frame, speaker_frame)
    # cleaned: goes to the VAD gate / recogniser instead of the raw frame
    # barge_in: True once per visitor utterance that interrupts the IVR -> stop the playout

Barge-in needs three things: the VAD (ivr/media/vad.py) on the *cleaned* signal is inside an utterance;
that utterance has had ``confirm_ms`` of speech-like frames (a residual echo blip of 60-120 ms right after
a loud echo onset does not stop the IVR, a visitor's word does, 0.2 s into it); and the echo canceller has
heard ``warmup_s`` of loudspeaker audio (before that its filter has not converged and the IVR's own voice
leaks through: until then the kiosk stays half-duplex while it speaks and for ``hold_s`` after, as today).

"The loudspeaker frame played at the same time" matters: the sound card plays a block one period (plus
its output latency) after it was handed over. The kiosk should pair each mic block with the speaker block
the card was playing while recording it, and make ``tail_ms`` cover the card's input + output latency on
top of the room's echo (the canceller learns any delay shorter than its tail).
"""

from __future__ import annotations

import numpy as np

from ivr.media.aec import EchoCanceller
from ivr.media.vad import Vad, VadSettings


class DuplexMic:
    """Echo canceller + VAD + barge-in rule for one microphone; one per kiosk for its whole run (the learnt
    echo path is kept across visits). See the module notes."""

    def __init__(self, rate: int = 16000, *, tail_ms: float = 200.0, confirm_ms: float = 200.0,
                 warmup_s: float = 3.0, hold_s: float = 0.5, vad: VadSettings | None = None,
                 speaker_floor_dbfs: float = -50.0):
        self.rate = rate
        self.frame = rate // 50
        self.aec = EchoCanceller(rate, self.frame, tail_ms)
        self.vad = Vad(rate, vad)
        self.confirm_frames = max(1, int(round(confirm_ms / 20)))
        self.warmup_frames = int(round(warmup_s * 50))
        self.speaker_floor = 32768.0 ** 2 * 10 ** (speaker_floor_dbfs / 10) / 2
        self.hold_frames = int(round(hold_s * 50))
        self._since_playing = 10**9
        self.speaker_frames = 0  # loudspeaker frames with sound heard so far (convergence)
        self.t = 0.0
        self._utt_frames = 0  # speech-like frames in the current utterance
        self._fired = False
        self.barge_ins: list[float] = []  # seconds (from the first frame) of each barge-in

    @property
    def converged(self) -> bool:
        return self.speaker_frames >= self.warmup_frames

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
        self.vad.feed(cleaned)
        self.t += 0.02
        if not self.vad.speaking:
            self._utt_frames = 0
            self._fired = False
            return cleaned, False
        self._utt_frames += int(self.vad.last_is_speech)
        barge = (not self._fired and self._utt_frames >= self.confirm_frames
                 and (self.converged or self._since_playing > self.hold_frames))
        if barge:
            self._fired = True
            self.barge_ins.append(round(self.t, 2))
        return cleaned, barge

    def close(self) -> None:
        self.aec.close()
