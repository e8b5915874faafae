"""The committed WAV fixtures are what their manifest says: readable, the stated rate and encoding, and the
keys in them found by the DTMF receiver (and none in speech-only files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import yaml

from ivr.media.audio import read_audio
from ivr.media.dtmf import detect

AUDIO = Path(__file__).parent / "fixtures" / "audio"
MANIFEST = yaml.safe_load((AUDIO / "manifest.yaml").read_text(encoding="utf-8"))["fixtures"]


def test_manifest_covers_every_kind_and_all_voices():
    kinds = {f["kind"] for f in MANIFEST}
    assert kinds == {"question", "keys", "silence", "speech+keys"}
    questions = [f for f in MANIFEST if f["kind"] == "question"]
    assert {f["voice"] for f in questions} == {"north", "central", "south"}
    assert {f["rate"] for f in questions} == {8000, 16000}
    assert any(f["noise_snr_db"] for f in questions)
    assert len({f["faq_id"] for f in questions}) >= 6
    assert sorted(p.name for p in AUDIO.glob("*.wav")) == sorted(f["file"] for f in MANIFEST)


@pytest.mark.parametrize("fx", MANIFEST, ids=[f["file"] for f in MANIFEST])
def test_fixture_matches_manifest(fx):
    info = sf.info(AUDIO / fx["file"])
    assert info.samplerate == fx["rate"]
    assert info.subtype == ("ULAW" if fx["encoding"] == "ulaw" else "PCM_16")
    samples, rate = read_audio(AUDIO / fx["file"])
    assert rate == fx["rate"] and samples.size > 0
    digits = "".join(e.digit for e in detect(samples, rate))
    assert digits == fx.get("digits", "")
